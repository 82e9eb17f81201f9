"""A comparison kept in one file: saved with every set's run, opened back finished.

Apart from ``comparison.py`` (which runs sets) because it reads the results table
(``results.entries``), which itself reads what a comparison's sets hold.
"""

from __future__ import annotations

from collections.abc import Callable

from ..core.spec import RunSpec
from .comparison import Comparison, SetResult
from .sets import TechniqueSet


def save_comparison(comparison: Comparison, path: str, overwrite: bool = False) -> None:
    """The whole comparison in one file: the base, every set, every recorded run."""
    from ..snapshot.comparison_file import write_comparison
    from .results import entries

    items = entries(comparison.results)
    sets = [{"name": r.name, "techniques": r.technique_set.techniques,
             "options": r.technique_set.options, "estimate": r.estimate,
             "estimate_error": r.estimate_error, "entry": item}
            for r, item in zip(comparison.results, items, strict=True)]
    write_comparison(path, comparison.base.to_dict(), sets,
                     [r.run.snapshot_path or None for r in comparison.results],
                     overwrite=overwrite)


def load_comparison(path: str, next_run_id: Callable[[], int] | None = None) -> Comparison:
    """A saved comparison, finished, with each set's run reopened."""
    from ..snapshot.comparison_file import open_comparison

    base, sets = open_comparison(path, next_run_id)
    comparison = Comparison(RunSpec.from_dict(base), [], next_run_id=next_run_id)
    comparison.pending = []
    for item, run in sets:
        if run is None:
            continue
        chosen = TechniqueSet(item["name"], list(item.get("techniques") or []),
                              dict(item.get("options") or {}))
        comparison.results.append(SetResult(chosen, run, item.get("estimate"),
                                            item.get("estimate_error") or ""))
    return comparison
