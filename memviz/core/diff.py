"""Two runs side by side: what grew and what shrank, at each run's tracked peak.

Compared per category, per module and per allocation site (the op that made the
tensor and the first frame of its stack), largest change first. Runs recorded
without tensor tracking still compare by peak RSS.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from . import analysis
from .run import Run
from .summary import peak_rss_bytes


@dataclass
class Profile:
    peak_rss: int | None
    tracked_peak: int
    t_peak: float
    categories: Counter = field(default_factory=Counter)
    modules: Counter = field(default_factory=Counter)
    sites: Counter = field(default_factory=Counter)


def profile(run: Run) -> Profile:
    """What was live at the run's tracked peak, grouped three ways."""
    with run.lock:
        log = run.tensors
        t_peak, peak = analysis.tracked_peak_time(log)
        moment = analysis.moment(log, t_peak)
        rows = log.rows
        sites: Counter = Counter()
        for row in moment.rows:
            op = log.string("op", int(rows.column("op")[row]))
            stack = int(rows.column("stack")[row])
            frames = log.stack_text(stack) if stack >= 0 else []
            site = f"{op} @ {frames[0]}" if frames else op
            sites[site] += int(rows.column("nbytes")[row])
        modules: Counter = Counter()
        for name, nbytes in moment.by_module:
            modules[aligned_module(name)] += nbytes
        return Profile(peak_rss_bytes(run), peak, t_peak, Counter(moment.by_category),
                       modules, sites)


_WRAPPERS = ("base_model.model.",)  # peft puts the model it adapts under this
_WRAPPED = (".base_layer",)  # and each adapted layer's own weights under this


def aligned_module(name: str) -> str:
    """A module's name as the unwrapped model calls it, so a LoRA run's modules line up
    with the base model's (its adapters, ``lora_A`` and ``lora_B``, stay new)."""
    for prefix in _WRAPPERS:
        if name.startswith(prefix):
            name = name[len(prefix):]
    for part in _WRAPPED:
        name = name.replace(part + ".", ".")
        if name.endswith(part):
            name = name[: -len(part)]
    return name


def _compare(a: Counter, b: Counter) -> list[dict]:
    keys = set(a) | set(b)
    out = [{"name": k, "a": a.get(k, 0), "b": b.get(k, 0), "delta": b.get(k, 0) - a.get(k, 0)}
           for k in keys]
    return sorted(out, key=lambda r: (-abs(r["delta"]), r["name"]))


def diff(a: Run, b: Run) -> dict:
    pa, pb = profile(a), profile(b)
    return {
        "a": {"label": a.spec.label(), "peak_rss_bytes": pa.peak_rss,
              "tracked_peak_bytes": pa.tracked_peak, "t_peak": pa.t_peak},
        "b": {"label": b.spec.label(), "peak_rss_bytes": pb.peak_rss,
              "tracked_peak_bytes": pb.tracked_peak, "t_peak": pb.t_peak},
        "categories": _compare(pa.categories, pb.categories),
        "modules": _compare(pa.modules, pb.modules),
        "sites": _compare(pa.sites, pb.sites),
    }
