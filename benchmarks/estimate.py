"""Predictions against the tracker: ``python -m benchmarks.estimate [preset ...]``.

Each row runs one workload three ways, 2 steps each, every op tracked: the
closed-form estimate (no torch, before anything runs), the step simulated on fake
tensors, and the real step. It prints both predictions' error on the tracked peak
and the simulation's largest gap in any category. Budgets: 10 % of the tracked peak
for the closed form; 1 % for the simulation, peak and every category. Sharded sets
compare every rank.
"""

from __future__ import annotations

import sys
from dataclasses import replace

from memviz.cli.formatting import table
from memviz.core.run import Run
from memviz.core.spec import RunSpec
from memviz.estimate import predict
from memviz.session import WorkerSession
from memviz.techniques import parse_technique

BUDGET = 0.10
SIM_BUDGET = 0.01
MIB = 1 << 20
TRAIN_SETS = [
    ("baseline", [], {}), ("b2×128", [], {"batch_size": 2, "seq_len": 128}),
    ("amp", ["amp"], {}), ("low-precision", ["low-precision"], {}),
    ("low-precision+masters", ["low-precision:master_weights=true"], {}),
    ("checkpointing", ["checkpointing"], {}), ("grad-accum:4", ["grad-accum"], {}),
    ("lora", ["lora"], {}), ("int8+lora", ["quantize", "lora"], {}),
    ("prune:structured", ["prune:structured=true"], {}), ("prune:masks", ["prune"], {}),
    ("layer-drop:2", ["layer-drop"], {}), ("low-rank:32", ["low-rank:rank=32"], {}),
    ("share-layers", ["share-layers"], {}),
    ("sgd", [], {"optimizer": "sgd"}), ("sgd-momentum", [], {"optimizer": "sgd-momentum"}),
    ("adafactor", [], {"optimizer": "adafactor"}), ("adamw-8bit", [], {"optimizer": "adamw-8bit"}),
    ("zero:2", ["zero"], {}), ("fsdp:2", ["fsdp"], {}),
]
INFER_SETS = [("infer", [], {"mode": "infer"}),
              ("infer int8", ["quantize:method=int8-weight"], {"mode": "infer"}),
              ("generate", [], {"mode": "generate"})]
PRESETS = ["gpt2-tiny", "llama-tiny", "bert-tiny", "lstm-lm", "conv-lm", "minilm-l6"]


def applicable(model: str, texts: list[str]) -> bool:
    if model in ("lstm-lm", "conv-lm"):  # no blocks of linear layers, no HF hooks
        return not any(t.split(":")[0] in ("lora", "quantize", "prune", "low-rank",
                                           "checkpointing", "share-layers", "layer-drop")
                       for t in texts)
    return True


WARM = None


def measure(spec: RunSpec) -> Run:
    """``spec`` in a worker forked from one warm parent (fresh imports each run)."""
    global WARM
    if WARM is None:
        from memviz.session.warm import WarmStart

        WARM = WarmStart()
    run = Run(spec)
    session = WorkerSession(run, warm=WARM)
    session.start()
    session.wait(600)
    return run


def _figures(run: Run) -> list[tuple[int, dict]]:
    """(tracked peak, categories at it) per rank; rank 0 alone for an unsharded run."""
    distributed = (run.worker_summary or {}).get("distributed")
    if distributed:
        return [(r["tracking"]["tracked_bytes"], r["tracking"]["peak_by_category"])
                for r in distributed["ranks"]]
    tracking = run.worker_summary["tracking"]
    return [(tracking["tracked_bytes"], tracking["peak_by_category"])]


def simulated_gap(real: Run, fake: Run) -> tuple[float, float, str]:
    """The simulation's error on the peak (rank 0), and its largest category gap over
    every rank as a share of that rank's peak, with where it is."""
    if fake.state != "finished":
        return float("nan"), float("nan"), (fake.error or {}).get("message", fake.state)[:40]
    measured, simulated = _figures(real), _figures(fake)
    worst, where = 0.0, "every category exact"
    for rank, ((peak_a, cats_a), (_, cats_b)) in enumerate(zip(measured, simulated,
                                                                strict=True)):
        for cat in set(cats_a) | set(cats_b):
            gap = abs(cats_b.get(cat, 0) - cats_a.get(cat, 0)) / peak_a
            if gap > worst:
                worst, where = gap, f"{cat} {gap:.2%}" + (f" (rank {rank})" if rank else "")
    error = simulated[0][0] / measured[0][0] - 1
    return error, worst, where


def row(model: str, label: str, texts: list[str], extra: dict) -> list | None:
    fields = {"model": model, "steps": 2, "detail": "all", **extra}
    spec = RunSpec(techniques=[parse_technique(t) for t in texts], **fields)
    if spec.mode == "generate" and model not in ("gpt2-tiny", "llama-tiny"):
        return None
    estimate = predict(spec)
    run = measure(spec)
    tracking = (run.worker_summary or {}).get("tracking")
    if run.state != "finished" or not tracking:
        return [model, label, f"{estimate.peak_bytes / MIB:.1f}", "—", "—", "failed", "—",
                (run.error or {}).get("message", "")[:40]]
    measured = tracking["tracked_bytes"]
    error = estimate.peak_bytes / measured - 1
    if spec.mode == "generate":  # generation stops on values: not simulated
        simulated, sim_error, gap = "—", "—", "not simulated (generation)"
    else:
        fake = measure(replace(spec, simulate=True))
        sim_peak = ((fake.worker_summary or {}).get("tracking") or {}).get("tracked_bytes")
        simulated = "—" if sim_peak is None or fake.state != "finished" \
            else f"{sim_peak / MIB:.2f}"
        e, worst, gap = simulated_gap(run, fake)
        missed = abs(e) > SIM_BUDGET or worst > SIM_BUDGET
        sim_error = "failed" if e != e else f"{e:+.2%}" + (" MISS" if missed else "")
    return [model, label, f"{estimate.peak_bytes / MIB:.1f}", simulated,
            f"{measured / MIB:.2f}",
            f"{error:+.1%}" + (" MISS" if abs(error) > BUDGET else ""), sim_error, gap]


def main(argv: list[str]) -> int:
    models = argv or PRESETS
    rows = []
    try:
        for model in models:
            for label, texts, extra in TRAIN_SETS + INFER_SETS:
                if applicable(model, texts):
                    result = row(model, label, texts, extra)
                    if result is not None:
                        rows.append(result)
                        print("  ".join(str(c) for c in result), file=sys.stderr, flush=True)
    finally:
        if WARM is not None:
            WARM.close()
    print(table(["model", "set", "closed form MiB", "simulated MiB", "tracked MiB",
                 "closed-form error", "simulated error", "simulation's largest category gap"],
                rows, numbers=False))
    closed = [r for r in rows if "MISS" not in r[5] and r[5] != "failed"]
    simulated = [r for r in rows if r[6] not in ("—",)]
    exact = [r for r in simulated if "MISS" not in r[6] and r[6] != "failed"]
    print(f"\nclosed form: {len(closed)} of {len(rows)} within {BUDGET:.0%}; "
          f"simulation: {len(exact)} of {len(simulated)} within {SIM_BUDGET:.0%} "
          "(peak and every category)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
