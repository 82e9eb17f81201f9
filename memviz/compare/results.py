"""A comparison's figures: one entry per set, each against the baseline.

The same entries feed the terminal table, ``--summary compare.json``, the HTML
report and the window's table, so every view shows the same numbers.
"""

from __future__ import annotations

from typing import Any

from ..core.story import runtime_bytes
from ..core.summary import build_summary
from .comparison import SetResult

CATEGORIES_SHOWN = ("parameter", "parameter_frozen", "gradient", "optimizer_state",
                    "activation", "temporary", "kv_cache", "quantization_state", "input",
                    "buffer", "other")


def _change(value: float | None, base: float | None) -> float | None:
    if value is None or not base:
        return None
    return value / base - 1.0


def entry(result: SetResult, baseline: dict[str, Any] | None) -> dict[str, Any]:
    """One set's figures (``baseline``: the baseline's entry, None for the baseline)."""
    summary = build_summary(result.run)
    peak = summary["peak"]
    measured = peak["tracked_bytes"] or peak["rss_bytes"]
    base_peak = baseline["peak"]["compared_bytes"] if baseline else measured
    predicted = (result.estimate or {}).get("peak_bytes")
    tracked = peak["tracked_bytes"]
    out = {
        "name": result.name,
        "techniques": summary["techniques"],
        "options": dict(result.technique_set.options),
        "state": result.run.state,
        "error": summary["error"],
        "run_id": result.run.run_id,
        "peak": {**peak, "compared_bytes": measured},
        "peak_by_category": summary["peak_by_category"],
        "max_by_category": summary["max_by_category"],
        "saving_vs_baseline": None if measured is None or base_peak is None else {
            "bytes": base_peak - measured,
            "percent": 100.0 * (base_peak - measured) / base_peak if base_peak else None},
        "step_seconds_median": summary["step_seconds_median"],
        "tokens_per_second": summary["tokens_per_second"],
        "flops_per_step": summary["flops_per_step"],
        "model_on_disk": summary.get("model_on_disk"),
        # RSS before the model loaded: alike across sets (each worker forked from one warm
        # parent, or each started fresh), so their RSS peaks compare
        "rss_at_start_bytes": runtime_bytes(result.run),
        # of which the imports of the set's technique libraries (peft for lora, …):
        # memory the set carries for its library, not for what the technique does
        "library_import_bytes": {
            name: info.get("import_rss_bytes") for name, info in
            ((result.run.environment or {}).get("technique_libraries") or {}).items()
            if isinstance(info, dict)},
        "loss_final": summary["loss_final"],
        "output_drift": summary["output_drift"],
        "predicted_peak_bytes": predicted,
        "predicted_by_category": (result.estimate or {}).get("by_category"),
        "prediction_error": None if predicted is None or not tracked
        else predicted / tracked - 1.0,
        "prediction_note": result.estimate_error or None,
        # "simulation" (the step run on fake tensors) or "closed form" (the estimate)
        "prediction_source": None if predicted is None
        else (result.estimate or {}).get("source", "closed form"),
    }
    if baseline is not None:
        out["step_time_change"] = _change(out["step_seconds_median"],
                                          baseline["step_seconds_median"])
        out["tokens_per_second_change"] = _change(out["tokens_per_second"],
                                                  baseline["tokens_per_second"])
        out["loss_change"] = None if out["loss_final"] is None or \
            baseline["loss_final"] is None else out["loss_final"] - baseline["loss_final"]
    return out


def entries(results: list[SetResult]) -> list[dict[str, Any]]:
    """Every set's entry; the first result is the baseline."""
    out: list[dict[str, Any]] = []
    for result in results:
        out.append(entry(result, out[0] if out else None))
    return out


def prediction_gaps(e: dict[str, Any]) -> list[tuple[str, int, int]]:
    """(category, predicted, measured at the tracked peak), largest gap first."""
    predicted = e.get("predicted_by_category") or {}
    measured = e.get("peak_by_category") or {}
    cats = [c for c in CATEGORIES_SHOWN if predicted.get(c) or measured.get(c)]
    rows = [(c, int(predicted.get(c) or 0), int(measured.get(c) or 0)) for c in cats]
    return sorted(rows, key=lambda r: -abs(r[1] - r[2]))


def explain_gap(e: dict[str, Any]) -> str:
    """One line per category: predicted against measured, the largest gaps first."""
    if e.get("predicted_peak_bytes") is None:
        return e.get("prediction_note") or "no prediction"
    source = e.get("prediction_source") or "closed form"
    gaps = (f"{c}: predicted {p / 2**20:.1f} MiB, measured {m / 2**20:.1f} MiB "
            f"({(p - m) / 2**20:+.1f})" for c, p, m in prediction_gaps(e))
    return "\n".join([f"predicted by {source}", *gaps])


def _mib(n: float | None) -> str:
    return "—" if n is None else f"{n / 2**20:.1f}"


def _imports(e: dict[str, Any]) -> str:
    """' (peft +31.1)': the RSS at start that a technique library's import added."""
    found = [f"{name} +{_mib(n)}" for name, n in sorted((e.get("library_import_bytes")
                                                          or {}).items()) if n is not None]
    return f" ({', '.join(found)})" if found else ""


def _pct(x: float | None, signed: bool = True) -> str:
    return "—" if x is None else (f"{x:+.0%}" if signed else f"{x:.0%}")


TABLE_HEADERS = ["set", "tracked MiB", "RSS MiB", "RSS at start", "GPU MiB", "saving",
                 "act MiB", "opt MiB",
                 "step s", "time", "tok/s", "GFLOP/step", "loss (Δ) / drift", "disk MiB",
                 "zstd MiB", "predicted MiB", "pred. error"]


def table_rows(items: list[dict[str, Any]]) -> list[list[str]]:
    rows = []
    for e in items:
        saving = e["saving_vs_baseline"]
        cats = e["peak_by_category"] or {}
        if e["output_drift"]:
            quality = (f"err {e['output_drift']['relative_logit_error']:.3f}, "
                       f"top1 {e['output_drift']['top1_agreement']:.2f}")
        elif e["loss_final"] is not None:
            quality = f"{e['loss_final']:.3f}"
            if e.get("loss_change") is not None:
                quality += f" ({e['loss_change']:+.3f})"
        else:
            quality = "—" if e["state"] == "finished" else e["state"]
        rows.append([
            e["name"], _mib(e["peak"]["tracked_bytes"]), _mib(e["peak"]["rss_bytes"]),
            _mib(e.get("rss_at_start_bytes")) + _imports(e), _mib(e["peak"]["gpu_bytes"]),
            "—" if not saving or saving["percent"] is None else f"{saving['percent']:+.0f}%",
            _mib(cats.get("activation")), _mib(cats.get("optimizer_state")),
            "—" if e["step_seconds_median"] is None else f"{e['step_seconds_median']:.3f}",
            _pct(e.get("step_time_change")),
            "—" if e["tokens_per_second"] is None else f"{e['tokens_per_second']:.0f}",
            "—" if e["flops_per_step"] is None else f"{e['flops_per_step'] / 1e9:.2f}",
            quality, _mib((e.get("model_on_disk") or {}).get("bytes")),
            _mib((e.get("model_on_disk") or {}).get("zstd_bytes")),
            _mib(e["predicted_peak_bytes"]), _pct(e["prediction_error"]),
        ])
    return rows
