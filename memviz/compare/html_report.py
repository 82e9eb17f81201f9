"""A comparison as one offline HTML file: the table and three inline SVG charts.

Stacked bars of the peak by category per set, every set's memory over time
aligned at its first step, and peak against step time (the trade-off
frontier). No script, stylesheet or font from the network.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from ..core.categories import COLOURS, LABELS
from ..snapshot.html_report import mib, page, table, thin
from .comparison import SetResult
from .results import CATEGORIES_SHOWN, TABLE_HEADERS, prediction_gaps, table_rows
from .series import aligned

W, H, PAD = 900, 340, 60
SET_COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
               "#7f7f7f", "#bcbd22", "#17becf"]


def _svg(body: list[str], label: str, height: int = H) -> str:
    return (f'<svg viewBox="0 0 {W} {height}" width="{W}" height="{height}" role="img" '
            f'aria-label="{html.escape(label)}"><rect width="{W}" height="{height}" '
            f'fill="white"/>{"".join(body)}</svg>')


def _scales(xmax: float, top: float):
    """Data → pixels for a chart whose x runs 0..xmax and y 0..top."""
    def x(v: float) -> float:
        return PAD + v / xmax * (W - PAD - 20)

    def y(v: float) -> float:
        return H - PAD - v / top * (H - 2 * PAD)

    return x, y


def _y_axis(top: float, y, parts: list[str]) -> None:
    for k in range(5):
        v = top * k / 4
        parts.append(f'<line x1="{PAD}" x2="{W - 20}" y1="{y(v):.1f}" y2="{y(v):.1f}" '
                     f'stroke="#ddd"/><text x="4" y="{y(v) + 4:.1f}" font-size="10">'
                     f"{mib(v)}</text>")


def bars_svg(items: list[dict[str, Any]]) -> str:
    """Stacked bars: each set's tracked peak by category."""
    usable = [e for e in items if e["peak_by_category"]]
    if not usable:
        return "<p>No tensor tracking: no categories to stack.</p>"
    top = max(sum(e["peak_by_category"].values()) for e in usable) or 1.0
    height = H + 60
    _, y = _scales(1.0, top)

    parts: list[str] = []
    _y_axis(top, y, parts)
    slot = (W - PAD - 20) / len(usable)
    for i, e in enumerate(usable):
        x0, base = PAD + i * slot + slot * 0.15, 0.0
        for cat in CATEGORIES_SHOWN:
            v = e["peak_by_category"].get(cat) or 0
            if v:
                parts.append(f'<rect x="{x0:.1f}" y="{y(base + v):.1f}" '
                             f'width="{slot * 0.7:.1f}" height="{y(base) - y(base + v):.1f}" '
                             f'fill="{COLOURS[cat]}"><title>{html.escape(e["name"])}: '
                             f'{html.escape(LABELS[cat])} {mib(v)}</title></rect>')
                base += v
        parts.append(f'<text x="{x0 + slot * 0.35:.1f}" y="{H - PAD + 14}" font-size="10" '
                     f'text-anchor="end" transform="rotate(-30 {x0 + slot * 0.35:.1f} '
                     f'{H - PAD + 14})">{html.escape(e["name"])}</text>')
    return _svg(parts, "peak by category per set", height)


def timelines_svg(results: list[SetResult]) -> str:
    series = [(r.name, *aligned(r.run)) for r in results]
    series = [s for s in series if len(s[1])]
    if not series:
        return "<p>No samples.</p>"
    t1 = max(float(s[1][-1]) for s in series) or 1.0
    top = max(float(s[2].max()) for s in series) or 1.0
    x, y = _scales(t1, top)

    parts: list[str] = []
    _y_axis(top, y, parts)
    for i, (name, t, v, _what) in enumerate(series):
        tt, vv = thin(t, v)
        points = " ".join(f"{x(a):.1f},{y(b):.1f}" for a, b in zip(tt, vv, strict=True))
        parts.append(f'<polyline points="{points}" fill="none" stroke-width="1.5" '
                     f'stroke="{SET_COLOURS[i % len(SET_COLOURS)]}">'
                     f"<title>{html.escape(name)}</title></polyline>")
    parts.append(f'<text x="{W / 2}" y="{H - 16}" font-size="11" text-anchor="middle">'
                 f"seconds since each set's first step (0 to {t1:.1f} s); "
                 f"{series[0][3]} bytes</text>")
    return _svg(parts, "memory over time per set")


def scatter_svg(items: list[dict[str, Any]]) -> str:
    points = [(e["name"], e["step_seconds_median"], e["peak"]["compared_bytes"]) for e in items
              if e["step_seconds_median"] and e["peak"]["compared_bytes"]]
    if not points:
        return "<p>No finished steps.</p>"
    xmax = max(p[1] for p in points) * 1.1
    top = max(p[2] for p in points) * 1.1
    x, y = _scales(xmax, top)

    parts: list[str] = []
    _y_axis(top, y, parts)
    # the frontier: sets no other set beats on both memory and time
    frontier = sorted((p for p in points if not any(
        q[1] <= p[1] and q[2] <= p[2] and q != p for q in points)), key=lambda p: p[1])
    if len(frontier) > 1:
        path = " ".join(f"{x(p[1]):.1f},{y(p[2]):.1f}" for p in frontier)
        parts.append(f'<polyline points="{path}" fill="none" stroke="#999" '
                     'stroke-dasharray="4 3"/>')
    for i, (name, seconds, peak) in enumerate(points):
        colour = SET_COLOURS[i % len(SET_COLOURS)]
        parts.append(f'<circle cx="{x(seconds):.1f}" cy="{y(peak):.1f}" r="5" fill="{colour}">'
                     f"<title>{html.escape(name)}: {seconds:.3f} s, {mib(peak)}</title></circle>"
                     f'<text x="{x(seconds) + 7:.1f}" y="{y(peak) + 4:.1f}" font-size="10">'
                     f"{html.escape(name)}</text>")
    parts.append(f'<text x="{W / 2}" y="{H - 16}" font-size="11" text-anchor="middle">'
                 f"median step time (s, 0 to {xmax:.2f}); dashed: the frontier</text>")
    return _svg(parts, "peak against step time")


def render(base_label: str, results: list[SetResult], items: list[dict[str, Any]]) -> str:
    legend = " ".join(f'<span class="key" style="background:{COLOURS[c]}"></span>'
                      f"{html.escape(LABELS[c])}" for c in CATEGORIES_SHOWN)
    set_legend = " ".join(f'<span class="key" style="background:'
                          f'{SET_COLOURS[i % len(SET_COLOURS)]}"></span>{html.escape(r.name)}'
                          for i, r in enumerate(results))
    body = f"""<p>{html.escape(base_label)}; the first set is the baseline.</p>
{table(TABLE_HEADERS, table_rows(items))}
<h2>Prediction against measurement</h2>
<p>The estimator's categories at its predicted peak against the tracker's at the
measured peak, largest gap first.</p>
{table(["set", "category", "predicted", "measured", "gap"], [
    [e["name"], c, mib(p), mib(m), mib(p - m)] for e in items
    for c, p, m in prediction_gaps(e)])}
<h2>Peak by category</h2>
{bars_svg(items)}
<p>{legend}</p>
<h2>Memory over time</h2>
{timelines_svg(results)}
<p>{set_legend}</p>
<h2>Memory against speed</h2>
{scatter_svg(items)}"""
    return page(f"memviz comparison: {base_label}", "memviz comparison", body)


def write(path: Path, base_label: str, results: list[SetResult],
          items: list[dict[str, Any]]) -> None:
    path.write_text(render(base_label, results, items), encoding="utf-8")
