"""Keep the technique libraries a run did not ask for out of the worker.

transformers imports torchao whenever it is installed (its quantizers probe for
it while a model is built): ~16 MiB of RSS and "Failed to load …so" lines in
every worker, and a comparison's baseline would be charged for a library only
another set uses. A worker therefore marks peft, torchao and bitsandbytes as
absent (``None`` in ``sys.modules``: ``import`` raises ImportError and
``importlib.util.find_spec`` answers None, which is how transformers probes)
until the spec it receives names a technique or optimizer that needs one.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable

from ..techniques.libraries import TECHNIQUE_LIBRARIES


def hide_technique_libraries() -> None:
    """Before torch or transformers is imported: each library not yet loaded is absent."""
    for name in TECHNIQUE_LIBRARIES:
        if name not in sys.modules:
            sys.modules[name] = None  # type: ignore[assignment]


def allow(names: Iterable[str]) -> None:
    """Make ``names`` importable again (the run needs them)."""
    for name in names:
        if name in sys.modules and sys.modules[name] is None:
            del sys.modules[name]


def import_measured(names: Iterable[str]) -> dict[str, int]:
    """Import ``names`` now (after torch and transformers), each with the RSS its import
    added: memory a run carries that no tensor accounts for, said apart from the
    technique's own cost where RSS is compared."""
    import importlib

    import psutil

    process = psutil.Process()
    added = {}
    for name in sorted(names):
        if name in sys.modules:
            continue
        before = process.memory_info().rss
        importlib.import_module(name)
        added[name] = max(0, process.memory_info().rss - before)
    return added


def loaded_technique_libraries(import_rss: dict[str, int]) -> dict[str, dict]:
    """The technique libraries this process has imported: version and, where measured,
    the RSS their import added."""
    found = {}
    for name in TECHNIQUE_LIBRARIES:
        module = sys.modules.get(name)
        if module is not None:
            found[name] = {"version": str(getattr(module, "__version__", "?")),
                           "import_rss_bytes": import_rss.get(name)}
    return found
