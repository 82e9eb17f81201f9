"""A self-contained offline HTML report of a run: inline SVG charts and tables.

No script, no stylesheet or font from the network: the file opens anywhere,
offline, and can be attached to a bug. Charts are drawn here as SVG (no Qt), so
``memviz export --to html`` works on a headless server.
"""

from __future__ import annotations

import html
import itertools
from pathlib import Path

import numpy as np

from ..core.categories import COLOURS, LABELS, SAMPLE_PREFIX
from ..core.run import Run
from ..core.summary import build_summary

WIDTH, HEIGHT, PAD = 900, 320, 50
MAX_POINTS = 1500
STACK = ("parameter", "parameter_frozen", "buffer", "optimizer_state", "gradient",
         "quantization_state", "kv_cache", "input", "activation", "temporary", "other")
PHASE_COLOURS = {"forward": "#6baed6", "backward": "#fd8d3c", "optimizer": "#74c476",
                 "generate": "#9e9ac8", "load": "#bdbdbd"}


def mib(n: float | None) -> str:
    return "—" if n is None else f"{n / 2**20:,.1f} MiB"


def thin(t: np.ndarray, *series: np.ndarray) -> tuple:
    """Keep at most MAX_POINTS, taking each bucket's maximum (peaks stay visible)."""
    if len(t) <= MAX_POINTS:
        return (t, *series)
    edges = np.linspace(0, len(t), MAX_POINTS + 1).astype(int)
    pick = [e0 + int(np.nanargmax(series[0][e0:e1])) if e1 > e0 else e0
            for e0, e1 in itertools.pairwise(edges)]
    return (t[pick], *(s[pick] for s in series))


def timeline_svg(run: Run) -> str:
    with run.lock:
        t = np.asarray(run.samples.column("t"), dtype=float)
        rss = np.asarray(run.samples.column("rss"), dtype=float)
        cats = {c: np.nan_to_num(np.asarray(run.samples.column(SAMPLE_PREFIX + c)))
                for c in STACK if run.samples.has_data(SAMPLE_PREFIX + c)}
        phases = [(p.name, p.begin, p.end) for p in run.phases if np.isfinite(p.end)]
    if not len(t):
        return "<p>No samples.</p>"
    stacked = np.cumsum([cats[c] for c in cats], axis=0) if cats else np.zeros((0, len(t)))
    top = max(float(np.nanmax(rss)) if np.isfinite(rss).any() else 0.0,
              float(stacked.max()) if stacked.size else 0.0, 1.0)
    t0, t1 = float(t[0]), float(t[-1]) if t[-1] > t[0] else float(t[0]) + 1

    def x(v: float) -> float:
        return PAD + (v - t0) / (t1 - t0) * (WIDTH - 2 * PAD)

    def y(v: float) -> float:
        return HEIGHT - PAD + 0 - v / top * (HEIGHT - 2 * PAD)

    parts = [f'<svg viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" '
             'role="img" aria-label="memory timeline">',
             f'<rect x="0" y="0" width="{WIDTH}" height="{HEIGHT}" fill="white"/>']
    for name, begin, end in phases:
        parts.append(f'<rect x="{x(begin):.1f}" y="{PAD}" width="{max(x(end) - x(begin), .5):.1f}"'
                     f' height="{HEIGHT - 2 * PAD}" fill="{PHASE_COLOURS.get(name, "#ccc")}" '
                     f'fill-opacity="0.18"><title>{html.escape(name)}</title></rect>')
    for i, name in reversed(list(enumerate(cats))):
        tt, vv = thin(t, stacked[i])
        points = " ".join(f"{x(a):.1f},{y(b):.1f}" for a, b in zip(tt, vv, strict=True))
        parts.append(f'<polygon points="{x(tt[0]):.1f},{y(0):.1f} {points} '
                     f'{x(tt[-1]):.1f},{y(0):.1f}" fill="{COLOURS[name]}">'
                     f'<title>{html.escape(LABELS[name])}</title></polygon>')
    tt, vv = thin(t, np.nan_to_num(rss))
    points = " ".join(f"{x(a):.1f},{y(b):.1f}" for a, b in zip(tt, vv, strict=True))
    parts.append(f'<polyline points="{points}" fill="none" stroke="#1f77b4" stroke-width="1.5">'
                 "<title>RSS</title></polyline>")
    for k in range(5):
        v = top * k / 4
        parts.append(f'<line x1="{PAD}" x2="{WIDTH - PAD}" y1="{y(v):.1f}" y2="{y(v):.1f}" '
                     f'stroke="#ddd"/><text x="4" y="{y(v) + 4:.1f}" font-size="10">'
                     f"{mib(v)}</text>")
    parts.append(f'<text x="{WIDTH / 2}" y="{HEIGHT - 12}" font-size="11" text-anchor="middle">'
                 f"time since the worker started: {t0:.1f} s to {t1:.1f} s</text></svg>")
    return "".join(parts)


def table(headers: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>"
                   for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def render(run: Run) -> str:
    s = build_summary(run)
    legend = " ".join(f'<span class="key" style="background:{COLOURS[c]}"></span>'
                      f"{html.escape(LABELS[c])}" for c in STACK
                      if (s["max_by_category"] or {}).get(c))
    model = s["model"]
    facts = [["model", f"{model['name']} ({model['class']})"],
             ["parameters", f"{model['parameters']:,}" if model["parameters"] else "—"],
             ["workload", f"{s['mode']}, batch {s['batch_size']} × {s['seq_len']}, "
                          f"{s['device']}"],
             ["outcome", s["state"] + (f": {s['error']}" if s["error"] else "")],
             ["peak RSS", mib(s["peak"]["rss_bytes"])],
             ["tracked peak", mib(s["peak"]["tracked_bytes"])],
             ["peak GPU", mib(s["peak"]["gpu_bytes"])],
             ["median step", f"{s['step_seconds_median']:.3f} s"
              if s["step_seconds_median"] else "—"]]
    by_cat = [[LABELS[c], mib(v), mib((s["max_by_category"] or {}).get(c))]
              for c, v in (s["peak_by_category"] or {}).items()
              if v or (s["max_by_category"] or {}).get(c)]
    steps = [[st["step"], "—" if st["loss"] is None else f"{st['loss']:.4f}",
              f"{st['seconds']:.3f}", mib(st["peak_rss_bytes"]),
              mib(st["tracked_peak_bytes"])] for st in s["steps"]]
    by_cat_table = (table(["category", "at the peak", "its own maximum"], by_cat) if by_cat
                    else "<p>No tensor tracking.</p>")
    body = f"""{table(["", ""], facts)}
<h2>Memory over time</h2>
<p>RSS (blue line) over the tracked bytes stacked by category; phases shaded.</p>
{timeline_svg(run)}
<p>{legend}</p>
<h2>At the tracked peak, by category</h2>
{by_cat_table}
<h2>Steps</h2>
{table(["step", "loss", "seconds", "peak RSS", "tracked peak"], steps)}
<p>memviz {html.escape(s["memviz_version"])}</p>"""
    return page(f"memviz report: {run.spec.label()}", "memviz report", body)


def page(title: str, heading: str, body: str) -> str:
    """One offline HTML page: the shared style inline, nothing fetched."""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>{html.escape(title)}</title>
<style>
body {{ font: 14px sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; margin: 0.5em 0 1.5em; }}
td, th {{ border: 1px solid #ccc; padding: 3px 8px; text-align: right; }}
td:first-child, th:first-child {{ text-align: left; }}
.key {{ display: inline-block; width: 12px; height: 12px; margin: 0 4px 0 12px; }}
</style></head><body>
<h1>{html.escape(heading)}</h1>
{body}
</body></html>
"""


def write(run: Run, out: Path) -> None:
    out.write_text(render(run), encoding="utf-8")
