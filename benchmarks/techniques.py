"""What each technique saves and costs on the default model: ``python -m benchmarks.techniques``.

Each row is a fresh worker on gpt2-tiny (batch 4 × 256, AdamW, CPU) against the
baseline: tracked peak and its change, the change per category at the peak's
largest movers, peak RSS, step time, and the cost in quality (loss after the
steps for training; output drift from the unmodified model for inference).
"""

from __future__ import annotations

import sys

from memviz.cli.formatting import table
from memviz.core.run import Run
from memviz.core.spec import RunSpec
from memviz.core.summary import build_summary, peak_rss_bytes
from memviz.session import WorkerSession
from memviz.techniques import parse_technique

STEPS = 6
TRAIN = [
    ("baseline", [], {}), ("amp:dtype=bf16", ["amp"], {}),
    ("low-precision:bf16", ["low-precision"], {}),
    ("low-precision+masters", ["low-precision:master_weights=true"], {}),
    ("checkpointing", ["checkpointing"], {}), ("grad-accum:4", ["grad-accum"], {}),
    ("lora:r=8", ["lora"], {}), ("int8-weight+lora", ["quantize", "lora"], {}),
    ("prune:structured", ["prune:structured=true"], {}), ("prune:masks", ["prune"], {}),
    ("layer-drop:keep=2", ["layer-drop"], {}), ("low-rank:rank=32", ["low-rank:rank=32"], {}),
    ("share-layers:2", ["share-layers"], {}), ("progressive:2", ["progressive"], {}),
    ("allocator", ["allocator"], {}),
    ("sgd", [], {"optimizer": "sgd"}), ("sgd-momentum", [], {"optimizer": "sgd-momentum"}),
    ("adafactor", [], {"optimizer": "adafactor"}), ("adamw-8bit", [], {"optimizer": "adamw-8bit"}),
    ("zero:2 (per rank)", ["zero"], {}), ("fsdp:2 (per rank)", ["fsdp"], {}),
]
INFER = [
    ("infer baseline", [], {}), ("int8-weight", ["quantize:method=int8-weight"], {}),
    ("int8-dynamic", ["quantize:method=int8-dynamic"], {}),
    ("prune:sparse csr 0.5", ["prune:sparse=true"], {}),
    ("prune:sparse bsr16 0.5", ["prune:sparse=true,block=16"], {}),
    ("low-rank:energy=0.9", ["low-rank"], {}),
]
# real pretrained weights: the drift is the true quality cost here
PRETRAINED = [
    ("minilm-l6 infer baseline", [], {}), ("int8-weight", ["quantize:method=int8-weight"], {}),
    ("int8-dynamic", ["quantize:method=int8-dynamic"], {}),
    ("prune:structured 0.3", ["prune:structured=true,amount=0.3"], {}),
    ("prune:sparse csr 0.5", ["prune:sparse=true"], {}),
    ("prune:sparse bsr16 0.5", ["prune:sparse=true,block=16"], {}),
    ("low-rank:energy=0.9", ["low-rank"], {}), ("layer-drop:keep=4", ["layer-drop:keep=4"], {}),
    ("low-precision:bf16", ["low-precision"], {}),
]
GENERATE = [("generate baseline", [], {}), ("kv-cache:static", ["kv-cache:kind=static"], {})]
SHOWN = ("parameter", "parameter_frozen", "gradient", "optimizer_state", "activation",
         "temporary", "kv_cache")


def measure(mode: str, texts: list[str], extra: dict, model: str = "gpt2-tiny") -> dict:
    spec = RunSpec(model=model, mode=mode, steps=STEPS if mode == "train" else 3,
                   techniques=[parse_technique(t) for t in texts], **extra)
    run = Run(spec)
    session = WorkerSession(run)
    session.start()
    session.wait(600)
    summary = build_summary(run)
    if run.state != "finished":
        return {"error": summary["error"]}
    tracked = summary["peak"]["tracked_bytes"]
    by_cat = summary["max_by_category"]
    distributed = summary.get("distributed")
    if distributed:  # a sharded run: rank 0's own figures are the per-rank ones
        by_cat = distributed["ranks"][0]["tracking"]["max_by_category"]
    return {"tracked": tracked, "by_category": by_cat, "rss": peak_rss_bytes(run),
            "seconds": summary["step_seconds_median"], "loss": summary["loss_final"],
            "drift": summary["output_drift"]}


def mib(n: float) -> str:
    return f"{n / 2**20:.1f}"


def rows_for(mode: str, configs, model: str = "gpt2-tiny") -> list[list[str]]:
    results = [(label, measure(mode, texts, extra, model)) for label, texts, extra in configs]
    base = results[0][1]
    rows = []
    for label, r in results:
        if "error" in r:
            rows.append([label, "error: " + str(r["error"])[:60]] + [""] * (len(SHOWN) + 5))
            continue
        saving = 1 - r["tracked"] / base["tracked"]
        quality = (f"{r['loss']:.3f} ({r['loss'] - base['loss']:+.3f})" if mode == "train"
                   else "—" if not r["drift"] else
                   f"err {r['drift']['relative_logit_error']:.3f}, "
                   f"top1 {r['drift']['top1_agreement']:.2f}")
        rows.append([label, mib(r["tracked"]), f"{saving:+.0%}"[0:] if label != results[0][0]
                     else "—",
                     *[mib(r["by_category"][c]) for c in SHOWN], mib(r["rss"]),
                     f"{r['seconds'] / base['seconds']:.2f}×", quality])
        print(f"  {label} done", file=sys.stderr, flush=True)
    return rows


def main() -> None:
    headers = ["technique", "tracked MiB", "saving", *[f"{c} max" for c in SHOWN],
               "RSS MiB", "time", "loss (Δ) / drift"]
    only = sys.argv[1:]  # e.g. "pretrained" for just that table
    for key, mode, model, configs in (
            ("train", "train", "gpt2-tiny", TRAIN), ("infer", "infer", "gpt2-tiny", INFER),
            ("generate", "generate", "gpt2-tiny", GENERATE),
            ("pretrained", "infer", "minilm-l6", PRETRAINED)):
        if only and key not in only:
            continue
        print(f"\n{mode}: {model}, batch 4 × 256, CPU")
        print(table(headers, rows_for(mode, configs, model)))


if __name__ == "__main__":
    main()
