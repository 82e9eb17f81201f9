"""What ``memviz.track()`` hands back when tracking stops: the figures a program (or a
notebook, or a test) uses without opening the file.

    with memviz.track() as t:
        train()
    t.result.peak_bytes, t.result.peak_by_category["activation"], t.result.steps

In a notebook the result shows itself as a small table (``_repr_html_``).
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.categories import LABELS

TOP_MODULES = 8


@dataclass(frozen=True)
class TrackResult:
    """A tracked stretch of a program, summed up."""

    state: str                              # finished, stopped or failed
    path: Path | None                       # the .memviz file (None: streamed only)
    peak_bytes: int | None                  # the tracked tensors' peak
    peak_rss_bytes: int | None
    peak_gpu_bytes: int | None
    peak_time: float | None                 # seconds from the start of tracking
    peak_by_category: dict[str, int] = field(default_factory=dict)  # live at the peak
    peak_by_module: list[tuple[str, int]] = field(default_factory=list)  # largest first
    steps: list[dict[str, Any]] = field(default_factory=list)  # step, loss, seconds, peaks
    summary: dict[str, Any] = field(default_factory=dict)  # what --summary writes

    @classmethod
    def from_file(cls, path: Path, state: str, keep_file: bool = True) -> TrackResult:
        """Read the finished recording back (a fresh read: what the file says)."""
        from ..core.analysis import moment, tracked_peak_time
        from ..core.summary import build_summary
        from ..snapshot import open_run

        run = open_run(path)
        summary = build_summary(run)
        t_peak = by_module = None
        if len(run.tensors):
            t_peak = tracked_peak_time(run.tensors)[0]
            by_module = moment(run.tensors, t_peak).by_module[:TOP_MODULES]
        return cls(
            state=state, path=path if keep_file else None,
            peak_bytes=summary["peak"]["tracked_bytes"],
            peak_rss_bytes=summary["peak"]["rss_bytes"],
            peak_gpu_bytes=summary["peak"]["gpu_bytes"], peak_time=t_peak,
            peak_by_category={k: int(v) for k, v in
                              (summary["peak_by_category"] or {}).items() if v},
            peak_by_module=list(by_module or []), steps=summary["steps"], summary=summary)

    @classmethod
    def streamed(cls, state: str, tracking: dict[str, Any] | None) -> TrackResult:
        """Without a file (streamed to a window): the tracker's own peak figures."""
        tracking = tracking or {}
        return cls(state=state, path=None, peak_bytes=tracking.get("tracked_bytes"),
                   peak_rss_bytes=None, peak_gpu_bytes=None, peak_time=None,
                   peak_by_category={k: int(v) for k, v in
                                     (tracking.get("peak_by_category") or {}).items() if v})

    def __repr__(self) -> str:
        peak = "—" if self.peak_bytes is None else _mib(self.peak_bytes)
        return (f"TrackResult({self.state}, peak {peak}, {len(self.steps)} steps"
                + (f", {self.path}" if self.path else "") + ")")

    def _repr_html_(self) -> str:
        rows = [("tracked peak", _mib(self.peak_bytes)),
                ("peak RSS", _mib(self.peak_rss_bytes))]
        if self.peak_gpu_bytes is not None:
            rows.append(("peak GPU", _mib(self.peak_gpu_bytes)))
        rows += [(f"&nbsp;&nbsp;{html.escape(LABELS.get(c, c))}", _mib(b)) for c, b in
                 sorted(self.peak_by_category.items(), key=lambda kv: -kv[1])]
        rows += [(f"module <code>{html.escape(name)}</code>", _mib(b))
                 for name, b in self.peak_by_module[:3]]
        rows.append(("steps", str(len(self.steps))))
        if self.path is not None:
            rows.append(("file", f"<code>{html.escape(str(self.path))}</code>"))
        body = "".join(f"<tr><td style='text-align:left'>{k}</td>"
                       f"<td style='text-align:right'>{v}</td></tr>" for k, v in rows)
        return (f"<table><caption>memviz · {html.escape(self.state)}</caption>"
                f"{body}</table>")


def _mib(n: int | None) -> str:
    return "—" if n is None else f"{n / 2**20:,.1f} MiB"
