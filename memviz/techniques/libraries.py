"""The optional libraries some techniques come from, and whether each is installed.

peft, torchao and bitsandbytes are extras (``memviz-profiler[lora]``,
``[torchao]``, ``[bitsandbytes]``, all three as ``[techniques]``): most runs use
none of them, and importing one costs memory a run would otherwise be charged for
(peft alone ~30-170 MiB of RSS after torch and transformers). A technique whose
library is missing is refused before a worker starts, with the command that
installs it. Pure Python: the window asks too.
"""

from __future__ import annotations

import importlib.machinery

from ..version import DISTRIBUTION

# import name → the extra that installs it
EXTRA_OF = {"peft": "lora", "torchao": "torchao", "bitsandbytes": "bitsandbytes"}
TECHNIQUE_LIBRARIES = tuple(EXTRA_OF)

OPTIMIZER_LIBRARIES = {"adamw-8bit": "bitsandbytes", "adamw-4bit": "torchao"}


def installed(name: str) -> bool:
    """Whether ``name`` can be imported from ``sys.path``. It searches the path itself,
    so a library a worker keeps out of ``sys.modules`` still counts as installed."""
    return importlib.machinery.PathFinder.find_spec(name) is not None


def install_command(name: str) -> str:
    return f"pip install '{DISTRIBUTION}[{EXTRA_OF[name]}]'"


def missing_reason(libraries: set[str] | tuple[str, ...]) -> str | None:
    """'needs peft, which is not installed: pip install …' for the first missing one."""
    for name in sorted(libraries):
        if not installed(name):
            return f"needs {name}, which is not installed: {install_command(name)}"
    return None
