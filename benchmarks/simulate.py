"""Simulation against measurement (``python -m benchmarks.simulate``): every category at
the tracked peak, on the presets and on models of other structures built here
(vocabulary 4096), then simulation time and memory against model size.

Each row runs the same spec twice in fresh workers, for real and on fake tensors
(2 steps, every op tracked), and compares the tracker's peak and each category at
it. The target is 1 % for the peak and every category.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

from memviz.cli.formatting import table
from memviz.core.run import Run
from memviz.core.spec import RunSpec
from memviz.session import WorkerSession
from memviz.techniques import parse_technique

MIB = 1 << 20
TARGET = 0.01
ROOT = Path(__file__).resolve().parent.parent


def _run(spec: RunSpec) -> tuple[Run, float]:
    run = Run(spec)
    session = WorkerSession(run)
    started = time.monotonic()
    session.start()
    session.wait()
    return run, time.monotonic() - started


def _cases(zoo: Path) -> list[tuple[str, dict]]:
    sys.path.insert(0, str(ROOT))
    from tests.model_zoo import save_hf

    dirs = {k: save_hf(k, zoo) for k in ("mistral", "qwen2", "phi", "t5", "mamba")}
    base = {"steps": 2, "batch_size": 2, "seq_len": 128, "data": "random", "detail": "all"}
    cases = [(f"{m}", {"model": m}) for m in ("gpt2-tiny", "llama-tiny", "bert-tiny",
                                              "lstm-lm", "conv-lm")]
    cases += [("gpt2-tiny checkpointing", {"model": "gpt2-tiny", "techniques": [
        parse_technique("checkpointing")]}),
        ("llama-tiny lora", {"model": "llama-tiny", "techniques": [parse_technique("lora")]}),
        ("gpt2-tiny infer", {"model": "gpt2-tiny", "mode": "infer"}),
        ("mistral (lora: frozen base)", {"model": str(dirs["mistral"]),
                                         "techniques": [parse_technique("lora")]}),
        ("qwen2 (tied embeddings)", {"model": str(dirs["qwen2"])}),
        ("phi", {"model": str(dirs["phi"])}),
        ("t5", {"model": str(dirs["t5"])}),
        ("mamba", {"model": str(dirs["mamba"])}),
        ("nanoGPT-style module", {"model": f"{ROOT / 'tests' / 'model_zoo.py'}:nanogpt"})]
    return [(name, {**base, **fields}) for name, fields in cases]


def error_table(zoo: Path) -> list[list[str]]:
    rows = []
    for name, fields in _cases(zoo):
        real, _ = _run(RunSpec(**fields))
        fake, _ = _run(RunSpec(simulate=True, **fields))
        if real.state != "finished" or fake.state != "finished":
            rows.append([name, "—", "—", "—", f"real {real.state}, simulated {fake.state}: "
                         f"{(fake.error or real.error or {}).get('message', '')[:60]}"])
            continue
        a = real.worker_summary["tracking"]
        b = fake.worker_summary["tracking"]
        error = b["tracked_bytes"] / a["tracked_bytes"] - 1
        worst = max(((abs(b["peak_by_category"][c] - v) / a["tracked_bytes"], c)
                     for c, v in a["peak_by_category"].items()), default=(0.0, ""))
        rows.append([name, f"{a['tracked_bytes'] / MIB:,.2f}", f"{b['tracked_bytes'] / MIB:,.2f}",
                     f"{error:+.2%}" + (" MISS" if abs(error) > TARGET else ""),
                     "every category exact" if worst[0] == 0 else
                     f"largest gap: {worst[1]} {worst[0]:.2%} of the peak"])
    return rows


def scale_table(folder: Path) -> list[list[str]]:
    rows = []
    for hidden, layers, inter, heads in ((768, 12, 2048, 12), (1536, 16, 4096, 16),
                                         (2048, 22, 5632, 32)):
        path = folder / f"llama-{hidden}x{layers}"
        path.mkdir()
        (path / "config.json").write_text(json.dumps({
            "model_type": "llama", "architectures": ["LlamaForCausalLM"],
            "hidden_size": hidden, "intermediate_size": inter, "num_hidden_layers": layers,
            "num_attention_heads": heads, "num_key_value_heads": 4, "vocab_size": 32000,
            "max_position_embeddings": 2048, "tie_word_embeddings": False}))
        spec = RunSpec(model=str(path), steps=1, batch_size=1, seq_len=2048, simulate=True,
                       techniques=[parse_technique("checkpointing")])
        run, seconds = _run(spec)
        params = run.model.get("parameters") or 0
        rss = max(run.samples.column("rss")) if len(run.samples) else float("nan")
        tracked = (run.worker_summary.get("tracking") or {}).get("tracked_bytes") or 0
        rows.append([f"{params / 1e9:.2f} B", f"{tracked / (1 << 30):.1f} GiB",
                     f"{seconds:.1f} s", f"{rss / MIB:,.0f} MiB", run.state])
    return rows


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        zoo = Path(tmp) / "zoo"
        zoo.mkdir()
        print(table(["model", "measured MiB", "simulated MiB", "peak error", "categories"],
                    error_table(zoo), numbers=False))
        print()
        print("Llama at batch 1 × 2048, AdamW, checkpointing, simulated (one step):")
        print(table(["parameters", "simulated peak", "time (worker start included)",
                     "worker RSS", "state"], scale_table(Path(tmp)), numbers=False))


if __name__ == "__main__":
    main()
