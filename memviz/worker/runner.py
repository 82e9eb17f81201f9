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
from ..techniques.plan import Plan
from .emitter import Emitter, now
from .optimizers import make_optimizer
from .samplers import MemorySampler


class StopRequested(Exception):
    """The controller asked the run to stop; raised between phases."""


class Runner:
    def __init__(
        self, spec: RunSpec, task: Task, emitter: Emitter, sampler: MemorySampler,
        stop: threading.Event, t0: float, tracker=None, plan: Plan | None = None,
    ) -> None:
        self.spec = spec
        self.task = task
        self.emitter = emitter
        self.sampler = sampler
        self.stop = stop
        self.t0 = t0
        self.device = torch.device(spec.device)
        self.cuda = self.device.type == "cuda"
        self.tracker = tracker
        self.plan = plan or Plan(spec)
        self.done: list[dict] = []  # every step_done message, for a rank's final figures
        self.scaler = self.plan.grad_scaler()

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
        if self.tracker is not None:
            self.tracker.set_phase(name, step)
        try:
            yield
        finally:
            if self.cuda:
                torch.cuda.synchronize(self.device)
            if self.tracker is not None:
                self.tracker.set_phase("", step)
            self.emitter.send({"type": "phase", "t": self._t(), "step": step, "name": name,
                               "edge": "end"})

    def _batch(self, rows: int | None = None):
        batch = self.task.make_batch(rows or self.spec.batch_size, self.spec.seq_len, self.device)
        if self.tracker is not None:
            values = batch.values() if isinstance(batch, dict) else [batch]
            self.tracker.tag(values, "input")
        return batch

    def mark(self, step: int, label: str) -> None:
        """Send the live bytes per category at this moment (tracked runs only)."""
        if self.tracker is not None:
            self.emitter.send({"type": "mark", "t": self._t(), "step": step, "label": label,
                               "live_by_category": self.tracker.live_bytes()})

    def _begin_step(self) -> float:
        self.sampler.take_step_peak()
        if self.tracker is not None:
            self.tracker.take_step_peak()
        if self.cuda:
            torch.cuda.reset_peak_memory_stats(self.device)
        return time.perf_counter()

    def _send_cuda_memory(self, step: int) -> None:
        """The allocator's own view at the step's end, joined to the tracker's categories."""
        from ..tracking import cuda

        snapshot = cuda.take_snapshot()
        summary = cuda.segment_summary(snapshot, self.tracker.category_by_address(),
                                       self.device.index or 0)
        tracked = self.tracker.live_block_bytes("cuda", cuda.rounded)
        self.emitter.send({"type": "cuda_memory", "t": self._t(), "step": step, **summary,
                           "torch_allocated": int(torch.cuda.memory_allocated(self.device)),
                           "tracked_rounded": tracked})

    def _end_step(self, step: int, started: float, loss: float | None, tokens: int) -> None:
        if self.cuda and self.tracker is not None:
            self._send_cuda_memory(step)
        self.done.append({
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
            "tracked_peak_bytes": (
                self.tracker.take_step_peak() if self.tracker is not None else None
            ),
        })
        self.emitter.send(self.done[-1])

    def run(self) -> str:
        """Run every step; return "finished" or "stopped"."""
        work = {"train": self._train_step, "infer": self._infer_step,
                "generate": self._generate_step}[self.spec.mode]
        if self.spec.mode == "train":
            self.task.model.train()
            self._new_optimizer()
        else:
            self.task.model.eval()
        try:
            for step in range(self.spec.steps):
                work(step)
        except StopRequested:
            return "stopped"
        return "finished"

    def _new_optimizer(self) -> None:
        params = [p for p in self.task.model.parameters() if p.requires_grad]
        optimizer = make_optimizer(self.spec.optimizer, self.spec.lr, params)
        self.optimizer = self.plan.wrap_optimizer(optimizer, self.task)

    def _train_step(self, step: int) -> None:
        if self.plan.before_step(step, self.task):  # the model grew: new parameters
            if self.tracker is not None:
                self.tracker.track_parameters(self.task.model)
            self._new_optimizer()
        started = self._begin_step()
        k = self.plan.micro_batches
        loss_value = 0.0
        for micro in range(k):
            batch = self._batch(self.spec.batch_size // k)
            with self.phase(step, "forward"), self.plan.forward_context():
                loss = self.task.loss(batch) / k
            with self.phase(step, "backward"):
                (self.scaler.scale(loss) if self.scaler else loss).backward()
            loss_value += float(loss.detach())
            del loss, batch
            if micro < k - 1:
                self._check_stop()
        with self.phase(step, "optimizer"):
            if self.scaler:
                self.scaler.step(self.optimizer)
                self.scaler.update()
            else:
                self.optimizer.step()
            if self.tracker is not None:
                self.tracker.tag_optimizer_state(self.optimizer)
            self.mark(step, "after_optimizer_step")
            self.optimizer.zero_grad(set_to_none=True)
        self.plan.after_step()
        self._end_step(step, started, _finite_or_none(loss_value),
                       self.spec.batch_size * self.spec.seq_len)

    def _infer_step(self, step: int) -> None:
        started = self._begin_step()
        batch = self._batch()
        with self.phase(step, "forward"), torch.no_grad(), self.plan.forward_context():
            loss_value = float(self.task.loss(batch))
        del batch
        self.plan.after_step()
        self._end_step(step, started, _finite_or_none(loss_value),
                       self.spec.batch_size * self.spec.seq_len)

    def _generate_step(self, step: int) -> None:
        started = self._begin_step()
        batch = self._batch()
        hook = None
        if self.tracker is not None:
            hook = self.task.model.register_forward_hook(self._tag_kv_cache)
        try:
            with self.phase(step, "generate"), torch.no_grad():
                out = self.task.generate(batch, self.spec.max_new_tokens,
                                         **self.plan.generate_kwargs())
        finally:
            if hook is not None:
                hook.remove()
        self.plan.after_step()
        new_tokens = int(out.shape[0] * (out.shape[1] - batch["input_ids"].shape[1]))
        del out, batch
        self._end_step(step, started, None, new_tokens)


    def _tag_kv_cache(self, _module, _args, output) -> None:
        cache = getattr(output, "past_key_values", None)
        if cache is not None:
            self.tracker.tag(_cache_tensors(cache), "kv_cache")


def _cache_tensors(cache) -> list[torch.Tensor]:
    """The key/value tensors of a transformers cache (Cache object or legacy tuples)."""
    layers = getattr(cache, "layers", None)
    if layers is not None:
        return [t for layer in layers for t in (getattr(layer, "keys", None),
                                                 getattr(layer, "values", None))
                if isinstance(t, torch.Tensor)]
    if isinstance(cache, tuple | list):
        return [t for item in cache for t in (_cache_tensors(item) if isinstance(item, tuple | list)
                                               else [item]) if isinstance(t, torch.Tensor)]
    return []


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None
