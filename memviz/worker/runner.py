"""The workloads: training steps, no-grad inference, generation; phases marked.

Every phase and step boundary is a message stamped by the worker's clock, the
same clock the samplers use, so the timeline lines up exactly.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from ..core.spec import RunSpec
from ..models.task import Task
from .emitter import Emitter, now
from .samplers import MemorySampler


class StopRequested(Exception):
    """The controller asked the run to stop; raised between phases."""


def make_optimizer(spec: RunSpec, model: torch.nn.Module) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if spec.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=spec.lr)
    return torch.optim.SGD(params, lr=spec.lr)


class Runner:
    def __init__(
        self, spec: RunSpec, task: Task, emitter: Emitter, sampler: MemorySampler,
        stop: threading.Event, t0: float,
    ) -> None:
        self.spec = spec
        self.task = task
        self.emitter = emitter
        self.sampler = sampler
        self.stop = stop
        self.t0 = t0
        self.device = torch.device(spec.device)
        self.cuda = self.device.type == "cuda"

    def _t(self) -> float:
        return now() - self.t0

    def _check_stop(self) -> None:
        if self.stop.is_set():
            raise StopRequested

    @contextmanager
    def phase(self, step: int, name: str) -> Iterator[None]:
        self._check_stop()
        self.emitter.send({"type": "phase", "t": self._t(), "step": step, "name": name,
                           "edge": "begin"})
        try:
            yield
        finally:
            if self.cuda:
                torch.cuda.synchronize(self.device)
            self.emitter.send({"type": "phase", "t": self._t(), "step": step, "name": name,
                               "edge": "end"})

    def _begin_step(self) -> float:
        self.sampler.take_step_peak()
        if self.cuda:
            torch.cuda.reset_peak_memory_stats(self.device)
        return time.perf_counter()

    def _end_step(self, step: int, started: float, loss: float | None, tokens: int) -> None:
        self.emitter.send({
            "type": "step_done",
            "t": self._t(),
            "step": step,
            "loss": loss,
            "seconds": time.perf_counter() - started,
            "tokens": tokens,
            "peak_rss_bytes": self.sampler.take_step_peak(),
            "peak_gpu_bytes": (
                int(torch.cuda.max_memory_allocated(self.device)) if self.cuda else None
            ),
        })

    def run(self) -> str:
        """Run every step; return "finished" or "stopped"."""
        work = {"train": self._train_step, "infer": self._infer_step,
                "generate": self._generate_step}[self.spec.mode]
        if self.spec.mode == "train":
            self.task.model.train()
            self.optimizer = make_optimizer(self.spec, self.task.model)
        else:
            self.task.model.eval()
        try:
            for step in range(self.spec.steps):
                work(step)
        except StopRequested:
            return "stopped"
        return "finished"

    def _train_step(self, step: int) -> None:
        started = self._begin_step()
        batch = self.task.make_batch(self.spec.batch_size, self.spec.seq_len, self.device)
        with self.phase(step, "forward"):
            loss = self.task.loss(batch)
        with self.phase(step, "backward"):
            loss.backward()
        loss_value = float(loss.detach())
        del loss, batch
        with self.phase(step, "optimizer"):
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
        self._end_step(step, started, _finite_or_none(loss_value),
                       self.spec.batch_size * self.spec.seq_len)

    def _infer_step(self, step: int) -> None:
        started = self._begin_step()
        batch = self.task.make_batch(self.spec.batch_size, self.spec.seq_len, self.device)
        with self.phase(step, "forward"), torch.no_grad():
            loss_value = float(self.task.loss(batch))
        del batch
        self._end_step(step, started, _finite_or_none(loss_value),
                       self.spec.batch_size * self.spec.seq_len)

    def _generate_step(self, step: int) -> None:
        started = self._begin_step()
        batch = self.task.make_batch(self.spec.batch_size, self.spec.seq_len, self.device)
        with self.phase(step, "generate"), torch.no_grad():
            out = self.task.generate(batch, self.spec.max_new_tokens)
        new_tokens = int(out.shape[0] * (out.shape[1] - batch["input_ids"].shape[1]))
        del out, batch
        self._end_step(step, started, None, new_tokens)


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None
