"""The estimator against the tracker: ``python -m benchmarks.estimate [preset ...]``.

Each row is a fresh worker (2 steps): the predicted peak before the run, the
tracked peak measured, and the error; then the categories that moved the most.
The budget is 10 % of the tracked peak for every technique on every preset.
"""

from __future__ import annotations

import sys

from memviz.cli.formatting import table
from memviz.core.run import Run
from memviz.core.spec import RunSpec
from memviz.estimate import predict
from memviz.session import WorkerSession
from memviz.techniques import parse_technique

BUDGET = 0.10
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


def measure(spec: RunSpec) -> Run:
    run = Run(spec)
    session = WorkerSession(run)
    session.start()
    session.wait(600)
    return run


def row(model: str, label: str, texts: list[str], extra: dict) -> list | None:
    fields = {"model": model, "steps": 2, **extra}
    spec = RunSpec(techniques=[parse_technique(t) for t in texts], **fields)
    if spec.mode == "generate" and model not in ("gpt2-tiny", "llama-tiny"):
        return None
    estimate = predict(spec)
    run = measure(spec)
    tracking = (run.worker_summary or {}).get("tracking")
    if run.state != "finished" or not tracking:
        return [model, label, f"{estimate.peak_bytes / MIB:.1f}", "—", "failed",
                (run.error or {}).get("message", "")[:40]]
    measured = tracking["tracked_bytes"]
    error = estimate.peak_bytes / measured - 1
    cats = tracking["peak_by_category"]
    gaps = sorted(((estimate.by_category.get(k, 0) - cats.get(k, 0), k)
                   for k in set(cats) | set(estimate.by_category)), key=lambda g: -abs(g[0]))
    gap = ", ".join(f"{k} {v / MIB:+.1f}" for v, k in gaps[:2] if abs(v) >= MIB / 10)
    return [model, label, f"{estimate.peak_bytes / MIB:.1f}", f"{measured / MIB:.1f}",
            f"{error:+.1%}" + (" MISS" if abs(error) > BUDGET else ""), gap]


def main(argv: list[str]) -> int:
    models = argv or PRESETS
    rows = []
    for model in models:
        for label, texts, extra in TRAIN_SETS + INFER_SETS:
            if applicable(model, texts):
                result = row(model, label, texts, extra)
                if result is not None:
                    rows.append(result)
                    print("  ".join(str(c) for c in result), file=sys.stderr, flush=True)
    print(table(["model", "set", "predicted MiB", "tracked MiB", "error", "largest gaps (MiB)"],
                rows, numbers=False))
    misses = [r for r in rows if "MISS" in r[4] or r[4] == "failed"]
    print(f"\n{len(rows) - len(misses)} of {len(rows)} within {BUDGET:.0%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
