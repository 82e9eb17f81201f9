"""A user's own program, profiled: ``memviz record``, ``memviz.track()`` and the Trainer
callback, on scripts memviz never saw, exact to the byte."""

from __future__ import annotations

import ast
import contextlib
import json
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from memviz.snapshot import open_run

from .conftest import WORKER_DEADLINE_S

ROOT = Path(__file__).resolve().parent.parent
MEMVIZ = [sys.executable, "-m", "memviz"]
ADAMW_STEP_BYTES = 4  # AdamW keeps each parameter's step count as a float32 scalar


def _record(tmp_path, *program: str, name: str = "run") -> tuple[subprocess.CompletedProcess,
                                                                   dict, Path]:
    out, summary = tmp_path / f"{name}.memviz", tmp_path / f"{name}.json"
    done = subprocess.run([*MEMVIZ, "record", "-o", str(out), "--summary", str(summary), "--",
                           "python", *program], capture_output=True, text=True,
                          timeout=WORKER_DEADLINE_S, cwd=ROOT)
    return done, json.loads(summary.read_text()), out


def _steps_in(path: Path) -> int:
    if not path.exists():
        return 0
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            return db.execute("SELECT count(*) FROM steps").fetchone()[0]
    except sqlite3.Error:
        return 0


def _script(tmp_path, name: str, body: str) -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return str(path)


def _sizes(model) -> tuple[int, int, int]:
    """(trainable bytes, frozen bytes, trainable tensors), tied weights once."""
    params = list(model.parameters())
    trainable = [p for p in params if p.requires_grad]
    return (sum(p.numel() * p.element_size() for p in trainable),
            sum(p.numel() * p.element_size() for p in params if not p.requires_grad),
            len(trainable))


def test_a_script_memviz_never_saw_is_recorded_exactly(tmp_path):
    sys.path.insert(0, str(ROOT / "examples"))
    try:
        from train_loop import build_model
    finally:
        sys.path.pop(0)
    trainable, _, tensors = _sizes(build_model())
    done, summary, path = _record(tmp_path, "examples/train_loop.py", "--steps", "3",
                                  "--accumulate", "2")
    assert done.returncode == 0, done.stderr
    assert [line for line in done.stdout.splitlines() if line.startswith("step")] == \
        [line for line in done.stdout.splitlines() if "loss" in line]  # its own output, whole
    assert done.stdout.count("step ") == 3
    assert "memviz record: finished, 3 steps recorded" in done.stderr
    assert [s["step"] for s in summary["steps"]] == [0, 1, 2]  # one per optimizer step
    assert all(s["tokens"] == 2 * 2 * 128 for s in summary["steps"])  # two micro-batches
    assert summary["model"]["name"] == "GPT2LMHeadModel" and summary["mode"] == "train"
    assert (summary["batch_size"], summary["seq_len"]) == (2, 128)
    most = summary["max_by_category"]
    assert most["parameter"] == trainable
    assert most["gradient"] == trainable
    assert most["optimizer_state"] == 2 * trainable + ADAMW_STEP_BYTES * tensors
    assert most["input"] >= 2 * 128 * 8
    back = open_run(path)
    phases = [(p.step, p.name) for p in back.phases if p.step == 1]
    assert phases == [(1, "forward"), (1, "backward"), (1, "forward"), (1, "backward"),
                      (1, "optimizer")]


def test_a_recorded_programs_own_optimizer_is_named_and_its_state_counted(tmp_path):
    """A hand-written Lion (one momentum buffer a parameter): the summary names Lion,
    never the runner's default, and its state is optimizer_state."""
    script = _script(tmp_path, "lion.py", """
        import torch
        from torch import nn

        class Lion(torch.optim.Optimizer):
            def __init__(self, params, lr=1e-4, betas=(0.9, 0.99)):
                super().__init__(params, {"lr": lr, "betas": betas})

            @torch.no_grad()
            def step(self):
                for group in self.param_groups:
                    b1, b2 = group["betas"]
                    for p in group["params"]:
                        state = self.state[p]
                        if not state:
                            state["exp_avg"] = torch.zeros_like(p)
                        m = state["exp_avg"]
                        p.add_(torch.sign(m * b1 + p.grad * (1 - b1)), alpha=-group["lr"])
                        m.mul_(b2).add_(p.grad, alpha=1 - b2)

        model = nn.Sequential(nn.Embedding(97, 32), nn.Linear(32, 97))
        optimizer = Lion(model.parameters())
        for _ in range(2):
            ids = torch.randint(0, 97, (2, 16))
            model(ids).logsumexp(-1).mean().backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
    """)
    done, summary, _ = _record(tmp_path, script)
    assert done.returncode == 0, done.stderr
    assert summary["optimizer"] == "Lion"
    trainable = (97 * 32 + 32 * 97 + 97) * 4
    assert summary["max_by_category"]["optimizer_state"] == trainable  # one buffer each


def test_frozen_parts_tied_weights_and_two_groups_are_exact(tmp_path):
    script = _script(tmp_path, "frozen.py", """
        import sys, torch
        from torch import nn
        import memviz
        sys.path.insert(0, sys.argv[2])
        from track_in_script import TinyLM
        model = TinyLM()
        for p in model.blocks[0].parameters():
            p.requires_grad_(False)
        trainable = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW([{"params": trainable[:2], "lr": 1e-3},
                                       {"params": trainable[2:], "lr": 1e-4}])
        with memviz.track(output=sys.argv[1], summary=sys.argv[1] + ".json", force=True):
            for _ in range(2):
                ids = torch.randint(0, 512, (2, 32))
                out = model(ids)
                out.float().pow(2).mean().backward()
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
        print("transformers imported:", "transformers" in sys.modules)
    """)
    out = tmp_path / "frozen.memviz"
    done = subprocess.run([sys.executable, script, str(out), str(ROOT / "examples")],
                          capture_output=True, text=True, timeout=WORKER_DEADLINE_S)
    assert done.returncode == 0, done.stderr
    # a program that never uses transformers is not made to wait for its import
    assert "transformers imported: False" in done.stdout
    sys.path.insert(0, str(ROOT / "examples"))
    try:
        from track_in_script import TinyLM
    finally:
        sys.path.pop(0)
    model = TinyLM()
    for p in model.blocks[0].parameters():
        p.requires_grad_(False)
    trainable, frozen, tensors = _sizes(model)
    summary = json.loads((tmp_path / "frozen.memviz.json").read_text())
    most = summary["max_by_category"]
    assert most["parameter"] == trainable  # the tied head and embedding once
    assert most["parameter_frozen"] == frozen > 0
    assert most["gradient"] == trainable
    assert most["optimizer_state"] == 2 * trainable + ADAMW_STEP_BYTES * tensors
    assert len(summary["steps"]) == 2


def test_the_same_loop_gives_memviz_runs_numbers(tmp_path):
    """gpt2-tiny, batch 4 × 256, AdamW: the runner's step and a user's loop that does
    what it does have the same peak, byte for byte, and the same categories there."""
    run_summary = tmp_path / "run.json"
    ran = subprocess.run([*MEMVIZ, "run", "--model", "gpt2-tiny", "--steps", "2",
                          "--data", "random", "--summary", str(run_summary)],
                         capture_output=True, text=True, timeout=WORKER_DEADLINE_S)
    assert ran.returncode == 0, ran.stderr
    script = _script(tmp_path, "loop.py", """
        import torch
        from memviz.models.presets import PRESETS
        model = PRESETS["gpt2-tiny"].build(torch.float32)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
        model.train()
        for _ in range(2):
            ids = torch.randint(0, 256, (4, 256))
            loss = model(input_ids=ids, labels=ids).loss
            loss.backward()
            del loss, ids
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
    """)
    done, summary, _ = _record(tmp_path, script, name="loop")
    assert done.returncode == 0, done.stderr
    expected = json.loads(run_summary.read_text())
    assert summary["peak"]["tracked_bytes"] == expected["peak"]["tracked_bytes"]
    assert summary["peak_by_category"] == expected["peak_by_category"]
    assert [s["tracked_peak_bytes"] for s in summary["steps"]] == \
        [s["tracked_peak_bytes"] for s in expected["steps"]]


def test_inference_and_generation_loops_make_a_step_per_forward(tmp_path):
    script = _script(tmp_path, "infer.py", """
        import torch
        from memviz.models.presets import PRESETS
        model = PRESETS["gpt2-tiny"].build(torch.float32).eval()
        with torch.no_grad():
            for _ in range(4):
                model(input_ids=torch.randint(0, 256, (2, 64)), use_cache=False)
            model.generate(input_ids=torch.randint(0, 256, (2, 16)), max_new_tokens=5,
                           min_new_tokens=5, do_sample=False, pad_token_id=0)
    """)
    done, summary, _ = _record(tmp_path, script, name="infer")
    assert done.returncode == 0, done.stderr
    assert len(summary["steps"]) == 4 + 5  # four forwards, then one per new token
    assert summary["mode"] == "infer"
    most = summary["max_by_category"]
    assert most["gradient"] == 0 and most["optimizer_state"] == 0
    layers, hidden = 4, 256
    # the cache the last forward kept: keys and values of 16 + 4 positions, every layer
    assert most["kv_cache"] == 2 * layers * 2 * (16 + 4) * hidden * 4
    assert [s["tokens"] for s in summary["steps"][:4]] == [2 * 64] * 4


def test_a_script_that_crashes_keeps_what_it_recorded(tmp_path):
    script = _script(tmp_path, "crash.py", """
        import torch
        model = torch.nn.Linear(64, 64)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        for step in range(5):
            model(torch.randn(8, 64)).sum().backward()
            optimizer.step()
            optimizer.zero_grad()
            if step == 1:
                raise ValueError("the data ran out")
    """)
    done, summary, path = _record(tmp_path, script, name="crash")
    assert done.returncode == 1
    assert "ValueError: the data ran out" in done.stderr  # the program's own traceback
    assert summary["state"] == "failed" and len(summary["steps"]) == 2
    back = open_run(path)
    assert back.state == "failed" and back.error["message"] == "ValueError: the data ran out"
    assert len(back.steps) == 2


def test_a_killed_script_keeps_what_it_streamed(tmp_path):
    script = _script(tmp_path, "forever.py", """
        import torch
        model = torch.nn.Linear(64, 64)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        while True:
            model(torch.randn(8, 64)).sum().backward()
            optimizer.step()
            optimizer.zero_grad()
    """)
    out = tmp_path / "killed.memviz"
    record = subprocess.Popen([*MEMVIZ, "record", "-o", str(out), "--", "python", script],
                              stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + WORKER_DEADLINE_S
        while _steps_in(out) < 3 and time.monotonic() < deadline and record.poll() is None:
            time.sleep(0.1)
        (program,) = psutil.Process(record.pid).children()
        program.kill()  # as the kernel's OOM killer or a user's kill -9 would
        _, err = record.communicate(timeout=WORKER_DEADLINE_S)
    finally:
        record.kill()
    assert record.returncode == 128 + 9  # the program's fate, as a shell reports it
    assert "the program was killed by SIGKILL" in err
    back = open_run(out)
    assert back.state == "failed" and len(back.steps) >= 3
    assert len(back.tensors) > 0


def test_the_trainer_callback_counts_trainer_steps_and_its_losses(tmp_path):
    out = tmp_path / "trainer.memviz"
    done = subprocess.run([sys.executable, str(ROOT / "examples" / "trainer_callback.py"),
                           str(out)], capture_output=True, text=True, timeout=WORKER_DEADLINE_S)
    assert done.returncode == 0, done.stderr
    logged = [ast.literal_eval(line) for line in done.stdout.splitlines()
              if line.startswith("{'loss'")]
    run = open_run(out)
    assert len(run.steps) == 3 == len(logged)
    assert all(s.tokens == 2 * 2 * 128 for s in run.steps)  # two micro-batches of 2 × 128
    for step, log in zip(run.steps, logged, strict=True):
        assert f"{step.loss:.4g}" == f"{float(log['loss']):.4g}"
    sys.path.insert(0, str(ROOT / "examples"))
    from transformers import GPT2Config, GPT2LMHeadModel

    sys.path.pop(0)
    config = GPT2Config(vocab_size=256, n_positions=512, n_embd=128, n_layer=2, n_head=4)
    trainable, _, _ = _sizes(GPT2LMHeadModel(config))
    assert run.worker_summary["tracking"]["max_by_category"]["parameter"] == trainable
    names = {p.name for p in run.phases}
    # the first two steps with every op tracked, the third with the cheap signals
    assert names == {"forward", "backward", "optimizer", "untracked"}
    assert [s.detailed for s in run.steps] == [True, True, False]


@pytest.mark.parametrize("argv,says", [
    ([], "nothing to run"),
    (["python", "-c", "print(1)"], "not -c code"),
    (["python", "missing.py"], "no such script: missing.py"),
])
def test_record_refuses_what_it_cannot_run(argv, says):
    done = subprocess.run([*MEMVIZ, "record", "--", *argv], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2 and says in done.stderr


def test_the_lightning_callback_counts_optimizer_steps(tmp_path):
    script = _script(tmp_path, "fit.py", """
        import sys, torch
        import lightning as L
        from memviz.integrations.lightning import MemvizCallback

        class Tiny(L.LightningModule):
            def __init__(self):
                super().__init__()
                self.net = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.ReLU(),
                                               torch.nn.Linear(256, 64))
            def training_step(self, batch, _):
                (x,) = batch
                loss = self.net(x).pow(2).mean()
                print("loss", float(loss))
                return loss
            def configure_optimizers(self):
                return torch.optim.AdamW(self.parameters(), lr=1e-3)

        data = torch.utils.data.DataLoader(
            torch.utils.data.TensorDataset(torch.randn(48, 64)), batch_size=4)
        trainer = L.Trainer(max_steps=3, accumulate_grad_batches=2, accelerator="cpu",
                            logger=False, enable_checkpointing=False,
                            enable_progress_bar=False, enable_model_summary=False)
        trainer.fit(Tiny(), data)
    """)
    text = Path(script).read_text().replace(
        "trainer = L.Trainer(max_steps=3,",
        "trainer = L.Trainer(callbacks=[MemvizCallback(sys.argv[1], force=True)], max_steps=3,")
    Path(script).write_text(text)
    out = tmp_path / "fit.memviz"
    done = subprocess.run([sys.executable, script, str(out)], capture_output=True, text=True,
                          timeout=WORKER_DEADLINE_S)
    assert done.returncode == 0, done.stderr[-2000:]
    run = open_run(out)
    assert len(run.steps) == 3  # six batches, two to each optimizer step
    # each step's loss: the mean of its two batches' training_step losses
    printed = [float(line.split()[1]) for line in done.stdout.splitlines()
               if line.startswith("loss ")]
    assert len(printed) == 6
    for step, pair in zip(run.steps, zip(printed[::2], printed[1::2], strict=True),
                          strict=True):
        assert step.loss == pytest.approx(sum(pair) / 2, rel=1e-6)
    trainable = (64 * 256 + 256 + 256 * 64 + 64) * 4
    most = run.worker_summary["tracking"]["max_by_category"]
    assert most["parameter"] == trainable and most["gradient"] == trainable
    assert most["optimizer_state"] == 2 * trainable + ADAMW_STEP_BYTES * 4
    # Lightning runs the last micro-batch in the optimizer's closure, inside its step:
    # the first micro-batch has no optimizer phase; the second's forward and backward
    # run inside its optimizer step (the step's pre-hook, then the closure, then the
    # update itself)
    assert [p.name for p in run.phases if p.step == 1] == \
        ["forward", "backward", "optimizer", "forward", "backward", "optimizer"]


def test_folded_stacks_at_the_peak_name_the_users_lines_and_add_up(tmp_path):
    """``memviz export --to folded``: one line per stack, outermost frame first, the
    user's own file in it, the bytes adding up to the tracked peak."""
    out, summary = tmp_path / "stacks.memviz", tmp_path / "stacks.json"
    done = subprocess.run([*MEMVIZ, "record", "--track", "tensors+stacks", "-o", str(out),
                           "--summary", str(summary), "--", "python", "examples/train_loop.py",
                           "--steps", "2"], capture_output=True, text=True,
                          timeout=WORKER_DEADLINE_S, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    folded = tmp_path / "stacks.folded"
    done = subprocess.run([*MEMVIZ, "export", str(out), "--to", "folded", "-o", str(folded)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = folded.read_text().splitlines()
    stacks = [line.rsplit(" ", 1) for line in lines]
    assert len({s for s, _ in stacks}) == len(lines) > 10  # each stack once
    tracking = json.loads(summary.read_text())
    assert sum(int(n) for _, n in stacks) == tracking["peak"]["tracked_bytes"]
    frames = [s.split(";") for s, _ in stacks]
    assert all(f[-1].startswith("[") and f[-1].endswith("]") for f in frames)  # category
    # the optimizer's state at the peak, made on a line of the user's training loop
    state = [f for f in frames if f[-1] == "[optimizer_state]"]
    assert state and all(f[0].startswith("examples/train_loop.py:") for f in state)


def test_the_trainer_callback_reads_the_loss_of_a_model_that_returns_a_dict(tmp_path):
    """A model of the user's own (no transformers class, a dict out, no loss keywords:
    the Trainer divides its loss by the accumulation itself): each step's loss is the
    one the Trainer logs, under gradient accumulation 2."""
    script = _script(tmp_path, "dict_model.py", """
        import sys, tempfile, torch
        from torch import nn
        from transformers import Trainer, TrainingArguments
        from memviz.integrations.transformers import MemvizCallback
        sys.path.insert(0, sys.argv[2])
        from trainer_callback import RandomTokens

        class Tiny(nn.Module):
            def __init__(self):
                super().__init__()
                self.emb, self.head = nn.Embedding(256, 64), nn.Linear(64, 256)

            def forward(self, input_ids, labels):
                logits = self.head(self.emb(input_ids))
                loss = nn.functional.cross_entropy(logits.view(-1, 256), labels.view(-1))
                return {"loss": loss, "logits": logits}

        args = TrainingArguments(output_dir=tempfile.mkdtemp(), max_steps=3,
                                 per_device_train_batch_size=2, gradient_accumulation_steps=2,
                                 logging_steps=1, report_to=[], save_strategy="no",
                                 use_cpu=True, disable_tqdm=True)
        Trainer(model=Tiny(), args=args, train_dataset=RandomTokens(),
                callbacks=[MemvizCallback(sys.argv[1], force=True)]).train()
    """)
    out = tmp_path / "dict.memviz"
    done = subprocess.run([sys.executable, script, str(out), str(ROOT / "examples")],
                          capture_output=True, text=True, timeout=WORKER_DEADLINE_S)
    assert done.returncode == 0, done.stderr
    logged = [ast.literal_eval(line) for line in done.stdout.splitlines()
              if line.startswith("{'loss'")]
    steps = open_run(out).steps
    assert len(steps) == len(logged) == 3
    for step, log in zip(steps, logged, strict=True):
        assert step.loss is not None and f"{step.loss:.4g}" == f"{float(log['loss']):.4g}"
