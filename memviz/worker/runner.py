"""The workloads: training steps, no-grad inference, generation; phases marked.

Every phase and step boundary is a message stamped by the worker's clock, the
same clock the samplers use, so the timeline lines up exactly.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from ..core.detail import parse_detail
from ..core.spec import RunSpec
from ..models.task import Task
from ..techniques.plan import Plan
from ..tracking.caches import CacheTagger
from .emitter import Emitter, now
from .optimizers import make_optimizer
from .samplers import MemorySampler
from .steps import StepMeter


class StopRequested(Exception):
    """The controller asked the run to stop; raised between phases."""


class Runner:
    def __init__(
        self, spec: RunSpec, task: Task, emitter: Emitter, sampler: MemorySampler,
        stop: threading.Event, t0: float, tracker=None, plan: Plan | None = None,
        detail_next: threading.Event | None = None,
    ) -> None:
        self.spec = spec
        self.task = task
        self.emitter = emitter
        self.sampler = sampler
        self.stop = stop
        self.t0 = t0
        self.device = torch.device(spec.device)
        # a simulation's tensors are fake: no device to wait for, no value to read
        self.simulated = spec.simulate
        self.cuda = self.device.type == "cuda" and not self.simulated
        self.tracker = tracker
        self.plan = plan or Plan(spec)
        # a controller's "record the next step in full"
        self.detail_next = detail_next or threading.Event()
        # a generation's steps are its prefill and every new token: its FLOPs a step are
        # counted apart, over the prefill alone
        self.meter = StepMeter(emitter, sampler, t0, tracker,
                               torch.device("cpu") if self.simulated else self.device,
                               parse_detail(spec.detail), self.detail_next,
                               count_flops=spec.mode != "generate")
        self.done = self.meter.done  # every step_done message, for a rank's final figures
        self.scaler = self.plan.grad_scaler()

    def _t(self) -> float:
        return now() - self.t0

    def _check_stop(self) -> None:
        if self.stop.is_set():
            raise StopRequested

    @contextmanager
    def phase(self, step: int, name: str) -> Iterator[None]:
        self._check_stop()
        self.meter.phase_begin(step, name)
        try:
            yield
        finally:
            self.meter.phase_end(step, name)

    def _batch(self, rows: int | None = None):
        batch = self.task.make_batch(rows or self.spec.batch_size, self.spec.seq_len, self.device)
        if self.tracker is not None:
            values = batch.values() if isinstance(batch, dict) else [batch]
            self.tracker.tag(values, "input")
        return batch

    def mark(self, step: int, label: str) -> None:
        self.meter.mark(step, label)

    def _begin_step(self, step: int) -> None:
        self.meter.begin(step)

    def _end_step(self, step: int, loss: float | None, tokens: int) -> None:
        self.meter.end(step, loss, tokens)

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
            self.detail_next.set()  # a new shape of step: its first one is seen in full
        self._begin_step(step)
        k = self.plan.micro_batches
        loss_value = 0.0
        for micro in range(k):
            batch = self._batch(self.spec.batch_size // k)
            with self.phase(step, "forward"), self.plan.forward_context():
                loss = self.task.loss(batch) / k
            with self.phase(step, "backward"):
                (self.scaler.scale(loss) if self.scaler else loss).backward()
            if not self.simulated:
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
                # a gradient that is a view of storage made before the tracker started
                # (DDP's buckets) is found here
                self.tracker.tag((p.grad for p in self.task.model.parameters()
                                  if p.grad is not None), "gradient")
            self.mark(step, "after_optimizer_step")
            self.optimizer.zero_grad(set_to_none=True)
        self.plan.after_step()
        self._end_step(step, None if self.simulated else _finite_or_none(loss_value),
                       self.spec.batch_size * self.spec.seq_len)

    def _infer_step(self, step: int) -> None:
        self._begin_step(step)
        batch = self._batch()
        # a causal LM's forward fills its KV cache (transformers' use_cache default)
        # even for one forward: it is kv_cache, as in a generation
        tagger = CacheTagger(self.tracker).attach(self.task.model) if self.tracker else None
        try:
            with self.phase(step, "forward"), torch.no_grad(), self.plan.forward_context():
                loss = self.task.loss(batch)
                loss_value = math.nan if self.simulated else float(loss)
                del loss
        finally:
            if tagger is not None:
                tagger.detach()
        del batch
        self.plan.after_step()
        self._end_step(step, _finite_or_none(loss_value),
                       self.spec.batch_size * self.spec.seq_len)

    def _generate_step(self, step: int) -> None:
        self._begin_step(step)
        batch = self._batch()
        tagger = CacheTagger(self.tracker).attach(self.task.model) if self.tracker else None
        try:
            with self.phase(step, "generate"), torch.no_grad():
                out = self.task.generate(batch, self.spec.max_new_tokens,
                                         **self.plan.generate_kwargs())
        finally:
            if tagger is not None:
                tagger.detach()
        self.plan.after_step()
        new_tokens = int(out.shape[0] * (out.shape[1] - _prompt_length(self.task, batch)))
        del out, batch
        self._end_step(step, None, new_tokens)


def _prompt_length(task: Task, batch) -> int:
    """What generate's output starts with: the prompt (a decoder-only model), or the
    decoder's start token (an encoder-decoder's output is the new text alone)."""
    return 1 if task.kind == "seq2seq" else int(batch["input_ids"].shape[1])


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None
