"""Simulation against measurement (``python -m benchmarks.simulate``): every category at
the tracked peak, on the presets and on models of other structures built here
(vocabulary 4096), then simulation time and memory against model size
(``python -m benchmarks.simulate scale`` alone): Llama configs of 0.1B to 70B
parameters, one training step each from the command to its exit, and where the time
goes (the worker's imports, the model built on fake tensors, the step's ops, the
caching allocator's model for a simulated CUDA device).

Each row runs the same spec twice in fresh workers, for real and on fake tensors
(2 steps, every op tracked), and compares the tracker's peak and each category at
it. The target is 1 % for the peak and every category.
"""

from __future__ import annotations

import json
import subprocess
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


SCALE_HEADERS = ["model", "layers", "parameters", "simulated peak", "end to end",
                 "command and worker start", "imports", "model on fake tensors",
                 "the step's ops", "summary, file, exit", "worker RSS"]
SIZES = (  # name, hidden, layers, intermediate, heads, key-value heads
    ("0.1B", 768, 12, 2048, 12, 4), ("1.1B (TinyLlama)", 2048, 22, 5632, 32, 4),
    ("7B (Llama-2)", 4096, 32, 11008, 32, 32), ("70B (Llama-2)", 8192, 80, 28672, 64, 8))


def _llama(folder: Path, name: str, hidden: int, layers: int, inter: int, heads: int,
           kv_heads: int) -> Path:
    path = folder / name.split()[0]
    path.mkdir()
    (path / "config.json").write_text(json.dumps({
        "model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": hidden,
        "intermediate_size": inter, "num_hidden_layers": layers, "num_attention_heads": heads,
        "num_key_value_heads": kv_heads, "vocab_size": 32000, "max_position_embeddings": 4096,
        "tie_word_embeddings": False}))
    return path


def simulated_end_to_end(model: Path, out: Path, device: str = "cpu") -> dict:
    """``memviz run --simulate`` of one step (1 × 4096, AdamW, checkpointing) from the
    command to its exit, and where the time went, from the recording's own clock."""
    command = [sys.executable, "-m", "memviz", "run", "--model", str(model), "--simulate",
               "--steps", "1", "--batch-size", "1", "--seq-len", "4096", "--data", "random",
               "--technique", "checkpointing", "--device", device, "--force", "-o", str(out)]
    launched = time.time()
    done = subprocess.run(command, capture_output=True, text=True)
    ended = time.time()
    if done.returncode:
        raise SystemExit(f"{model.name}: {done.stderr[-1500:]}")
    from memviz.snapshot import open_run

    run = open_run(str(out))
    load = next(p for p in run.phases if p.name == "load")
    step = [p for p in run.phases if p.step == 0]
    return {"parameters": run.model.get("parameters") or 0,
            "tracked": (run.worker_summary.get("tracking") or {}).get("tracked_bytes") or 0,
            "end_to_end": ended - launched,
            "start": run.t0_wall - launched,  # the command, the worker's start, its handshake
            "imports": load.begin,  # torch and transformers, in the worker
            "build": load.end - load.begin,  # the model on fake tensors, techniques applied
            "step": step[-1].end - step[0].begin,
            "after": ended - (run.t0_wall + step[-1].end),  # the summary, the file, exits
            "rss": max(run.samples.column("rss")) if len(run.samples) else float("nan")}


def scale_table(folder: Path) -> list[list[str]]:
    rows = []
    for name, *shape in SIZES:
        model = _llama(folder, name, *shape)
        cases = [("cpu", simulated_end_to_end(model, folder / "run.memviz"))]
        if name.startswith("7B"):  # the caching allocator's model on every allocation
            cases.append(("cuda", simulated_end_to_end(model, folder / "run.memviz", "cuda")))
        for device, f in cases:
            rows.append([name + (" on simulated CUDA" if device == "cuda" else ""),
                         str(shape[1]), f"{f['parameters'] / 1e9:.2f} B",
                         f"{f['tracked'] / (1 << 30):,.1f} GiB", f"{f['end_to_end']:.1f} s",
                         f"{f['start']:.1f} s", f"{f['imports']:.1f} s", f"{f['build']:.2f} s",
                         f"{f['step']:.1f} s", f"{f['after']:.1f} s", f"{f['rss'] / MIB:,.0f} MiB"])
            print("  ".join(rows[-1]), file=sys.stderr, flush=True)
    return rows


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        if sys.argv[1:] != ["scale"]:
            zoo = Path(tmp) / "zoo"
            zoo.mkdir()
            print(table(["model", "measured MiB", "simulated MiB", "peak error", "categories"],
                        error_table(zoo), numbers=False))
            print()
        print("Llama, batch 1 × 4096, AdamW, checkpointing, one step simulated "
              "(memviz run --simulate, from the command to its exit):")
        print(table(SCALE_HEADERS, scale_table(Path(tmp)), numbers=False))


if __name__ == "__main__":
    main()
