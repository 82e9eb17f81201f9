import sys

from memviz.cli.main import main

sys.exit(main())
