"""torch's and transformers' imports without the cyclic garbage collector.

Importing them makes some 600,000 long-lived objects (modules, functions, classes),
and the collector, triggered every few hundred allocations, walks the older ones
again and again: 0.5–0.6 s of a 3.7–4.1 s import on a 2-core machine. With it off for the
imports and ``gc.freeze()`` after them, those objects are left out of every later
collection, in the process and in the children a warm parent forks (as Python's
documentation advises before ``fork()``: no collection touches, and so copies, the
parent's pages). The cycles the imports leave as garbage (about 7 MiB) stay.
Only imports run inside: a tensor frozen there would never be collected.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
from collections.abc import Iterator
from contextlib import contextmanager

# transformers' shared modeling code: most of a model class's import (1.6 s here, with
# torch.distributed.tensor and torch._dynamo, which it pulls in); the class's own
# module is a few tens of ms after it
TRANSFORMERS_MODELING = ("transformers.modeling_utils", "transformers.masking_utils",
                         "transformers.modeling_layers")


@contextmanager
def imports_without_collection() -> Iterator[None]:
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if enabled:
            gc.enable()


def import_transformers_modeling() -> None:
    """Import transformers' shared modeling code now (inside the window above), for a
    run whose model transformers builds."""
    for name in TRANSFORMERS_MODELING:
        # a transformers without one: the model imports what it has
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
