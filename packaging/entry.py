"""The frozen app's entry point: the same CLI as ``memviz`` (window, ``worker``, ``run``…)."""

import sys

from memviz.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
