"""A user's own program, measured as ``memviz run`` measures its runner's loop.

The samplers, the tensor tracker, the emitter and the step meter are the
worker's own; what the runner knows because it runs the loop, this learns from
``Discovery``: the models, the inputs, the phases, and a step per optimizer step
(or per top-level forward of a loop that never steps an optimizer). A Trainer
callback may mark the steps itself (``steps="callback"``).
"""

from __future__ import annotations

import math
import os
import shlex
import sys
import threading
import traceback
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ..core.detail import DEFAULT as DEFAULT_DETAIL
from ..core.detail import parse_detail
from ..core.rank_files import launched_job, launched_rank
from ..core.spec import RunSpec
from ..tracking.caches import CacheTagger, cache_tensors, output_cache
from ..tracking.compile_report import compile_report
from ..worker import environment, model_summary
from ..worker.emitter import Emitter, now
from ..worker.gpu import open_nvml
from ..worker.samplers import MemorySampler
from ..worker.steps import StepMeter
from .discovery import Discovery, tensors_in
from .interrupts import InterruptGuard


def _compiled_line(compiled: dict) -> str:
    line = (f"compiled with torch.compile: {compiled['frames_compiled']} frames, "
            f"{compiled['graphs']} graphs, {compiled['graph_breaks']} graph breaks, "
            f"{compiled['recompiles']} recompiles")
    return f"{line}; {compiled['unseen']}" if compiled["unseen"] else line


def program_line() -> str:
    """This program as it was started (``train.py --epochs 3``)."""
    argv = [os.path.basename(sys.argv[0]) or "python", *sys.argv[1:]] if sys.argv else []
    return shlex.join(argv)[:200] or "python"


class ProgramTracker:
    def __init__(self, *, level: str = "tensors+stacks", sample_hz: float = 20.0,
                 conn=None, deliver: Callable[[list[dict]], None] | None = None,
                 models: list[nn.Module] | None = None,
                 optimizers: list[torch.optim.Optimizer] | None = None,
                 steps: str = "optimizer", program: str | None = None,
                 detail: str = DEFAULT_DETAIL) -> None:
        self.level = level
        self.t0 = now()
        self.emitter = Emitter(conn, deliver)
        self.cuda_index = torch.cuda.current_device() if torch.cuda.is_initialized() else None
        self.nvml = open_nvml(self.cuda_index or 0)
        self.sampler = MemorySampler(sample_hz, self.emitter.sample, now, self.t0, self.nvml,
                                     self.cuda_index)
        self.tracker = None
        if level != "samples":
            from ..tracking import TensorTracker

            self.tracker = TensorTracker(now, self.t0, stacks=level == "tensors+stacks")
        self.meter = StepMeter(self.emitter, self.sampler, self.t0, self.tracker,
                               detail=parse_detail(detail))
        self.discovery = Discovery(self, models, optimizers)
        self.steps_from = steps
        self.spec = RunSpec(model=program or program_line(), mode="infer", steps=0,
                            sample_hz=sample_hz, track=level, detail=detail,
                            program=program or program_line())
        self.models: list[nn.Module] = []
        self._taggers: list = []  # a generation's caches tagged as each block writes them
        self.step = 0
        self.in_step = False
        self.phase = ""
        self.trained = False  # a backward or an optimizer step was seen
        self._losses: list[torch.Tensor] = []
        self._tokens = 0
        self._awaiting_backward = False  # the last forward built a graph, no backward yet
        self._loss_over_step = False
        self._step_loss: float | None = None  # a framework's own figure for the step
        self._optimizer_open = False  # between an optimizer step's pre and post hooks
        self.optimizer_classes: list[str] = []  # what the program steps, by class name
        self._stop_asked = threading.Event()
        self.stopped = False
        self._interrupts = InterruptGuard()

    # -- lifecycle ----------------------------------------------------------------------
    def start(self, scan_heap: bool = True) -> None:
        self._interrupts.install()
        self.sampler.start()
        if self.tracker is not None:
            self.tracker.start()
            self.sampler.tracker = self.tracker
            self.emitter.sources.append(self.tracker.take_messages)
        described = environment.describe(self.nvml, "cpu")
        started = {"type": "run_started", "spec": self.spec.to_dict(),
                   "environment": described, "model": {}, "techniques": [],
                   "t0_wall": _wall_at(self.t0)}
        launched = launched_rank()
        if launched is not None:  # one rank of a launched job: which, of how many
            described["distributed"] = {"rank": launched[0], "world_size": launched[1],
                                        "job": launched_job()}
            started["rank"] = launched[0]
        self.emitter.send(started)
        self.discovery.start(scan_heap)

    def stop(self, error: BaseException | None = None) -> None:
        """End tracking: close the open step, send the summary, flush everything."""
        if self.stopped:
            return
        self.stopped = True
        self.discovery.stop()
        for tagger in self._taggers:
            tagger.detach()
        if self.in_step:
            self._end_step()
        reason = "finished"
        if isinstance(error, SystemExit):  # the program ended itself: its exit code says how
            self.emitter.send({"type": "log", "t": now() - self.t0, "level": "info",
                               "text": f"the program called sys.exit({error.code!r})"})
        elif isinstance(error, KeyboardInterrupt):
            reason = "stopped"
        elif error is not None:
            from ..worker.failures import classify, one_line

            kind, _ = classify(error)
            message = one_line(error) if kind == "oom" else \
                f"{type(error).__name__}: {one_line(error)}"
            self.emitter.send({"type": "error", "kind": "oom" if kind == "oom" else "program",
                               "message": message,
                               "traceback": "".join(traceback.format_exception(error)),
                               "t": now() - self.t0})
            reason = "error"
        if self.tracker is not None:
            self.tracker.stop()
        self.sampler.stop()
        compiled = compile_report()
        if compiled is not None:  # said in the run, not only in the docs
            self.emitter.send({"type": "log", "t": now() - self.t0, "level": "warning",
                               "text": _compiled_line(compiled)})
        self.emitter.send({"type": "run_done", "t": now() - self.t0, "reason": reason,
                           "summary": {"tracking": self.tracker.summary()
                                       if self.tracker else None, "techniques": [],
                                       "compiled": compiled}})
        self.emitter.close()
        self._interrupts.remove()

    def ask_to_stop(self) -> None:
        """From another thread (a window's Stop): tracking ends at the next phase edge,
        on the tracked thread; the program itself goes on."""
        self._stop_asked.set()

    def _honour_stop(self) -> bool:
        if self._stop_asked.is_set() and not self.stopped:
            self.stop()
        return self.stopped

    # -- what discovery found -----------------------------------------------------------
    def model_found(self, model: nn.Module) -> None:
        prefix = "" if not self.models else f"{type(model).__name__}#{len(self.models)}."
        self.models.append(model)
        if self.tracker is not None:
            self.tracker.add_model(model, prefix)
            self._taggers.append(CacheTagger(self.tracker).attach(model))
        if len(self.models) == 1:
            self._describe(model)

    def optimizer_found(self, optimizer) -> None:
        """An optimizer alive when tracking began: the state it holds already is
        optimizer state from the start (the rest is tagged as its steps make it)."""
        if self.tracker is not None:
            self.tracker.tag_optimizer_state(optimizer)

    def _describe(self, model: nn.Module, **spec_changes: Any) -> None:
        """The discovered model (and what the program runs) for the run's header."""
        first = next(model.parameters(), None)
        device = str(first.device) if first is not None else "cpu"
        if device.startswith("cuda") and self.cuda_index is None:
            self.cuda_index = self.sampler.cuda_index = first.device.index or 0
            self.meter.device, self.meter.cuda = first.device, True
        kind = "program"
        changes = {"model": type(model).__name__, "device": device.replace("cuda:0", "cuda"),
                   **spec_changes}
        for key, value in changes.items():
            setattr(self.spec, key, value)
        summary = model_summary.summarize(self.spec.model, kind, model)
        summary["optimizers"] = list(self.optimizer_classes)
        self.emitter.send({"type": "discovered", "spec": self.spec.to_dict(),
                           "model": summary})

    def forward_begins(self, model: nn.Module, inputs: list[torch.Tensor],
                       loss_over_step: bool = False) -> None:
        if self._honour_stop():
            return
        self._loss_over_step = loss_over_step
        training = torch.is_grad_enabled()
        if self.in_step and self._awaiting_backward and not self.trained and \
                self.steps_from != "callback":
            self._end_step()  # the last forward made a graph no backward used: inference
        if not self.in_step:
            self._begin_step()
        self._enter("forward")
        if self.tracker is not None:
            self.tracker.tag(inputs, "input")
        ids = [t for t in inputs if not t.is_floating_point() and t.dim() == 2]
        if ids:
            self._tokens += ids[0].numel()
            if self.step == 0 and self.models and (self.spec.batch_size, self.spec.seq_len) \
                    != tuple(ids[0].shape) and ids[0].shape[1] >= 2:
                self._describe(self.models[0], batch_size=int(ids[0].shape[0]),
                               seq_len=int(ids[0].shape[1]))
        self._awaiting_backward = training

    def forward_ends(self, model: nn.Module, output: Any) -> None:
        if self.stopped:
            return
        loss = loss_in(output)
        if isinstance(loss, torch.Tensor) and loss.numel() == 1:
            self._losses.append(loss.detach())
        cache = output_cache(output)
        if cache is not None and self.tracker is not None and not self._awaiting_backward:
            # a cache kept for the next forward (generation); in training the same keys
            # and values are activations saved for backward
            self.tracker.tag(cache_tensors(cache), "kv_cache")
        if not self._awaiting_backward and not self.trained and self.steps_from != "callback":
            self._end_step()  # an inference or generation loop: a step per forward

    def backward_begins(self) -> None:
        if self.stopped:
            return
        self._awaiting_backward = False
        if not self.trained:
            self.trained = True
            if self.models:
                self._describe(self.models[0], mode="train")
        if not self.in_step:
            self._begin_step()
        self._enter("backward")

    def backward_ends(self) -> None:
        if self.stopped:
            return
        if self._optimizer_open:  # a closure's backward (Lightning, LBFGS): the step goes on
            self._enter("optimizer")
        else:
            self._leave()

    def optimizer_begins(self, optimizer) -> None:
        if self._honour_stop():
            return
        self.trained = True
        self._optimizer_open = True
        name = type(optimizer).__name__
        if name not in self.optimizer_classes:  # the program's own, never a default
            self.optimizer_classes.append(name)
            if self.models:
                self._describe(self.models[0], mode="train")
        if not self.in_step:
            self._begin_step()
        self._enter("optimizer")

    def optimizer_ends(self, optimizer) -> None:
        self._optimizer_open = False
        if self.stopped:
            return
        if self.tracker is not None:
            self.tracker.tag_optimizer_state(optimizer)
        self.meter.mark(self.step, "after_optimizer_step")
        self._leave()
        if self.steps_from == "optimizer":
            self._end_step()

    # -- steps marked by a framework's callbacks ---------------------------------------
    def step_begins(self) -> None:
        if not self._honour_stop() and not self.in_step:
            self._begin_step()

    def step_ends(self) -> None:
        if not self.stopped and self.in_step:
            self._end_step()

    def set_step_loss(self, loss: float) -> None:
        """The step's loss as the framework computes it (Lightning's training_step
        outputs): it replaces what the model's forwards returned."""
        self._step_loss = loss

    # -- steps and phases ---------------------------------------------------------------
    def _begin_step(self) -> None:
        self.in_step = True
        self._losses, self._tokens = [], 0
        self.meter.begin(self.step)

    def _end_step(self) -> None:
        self._leave()
        losses = [float(x) for x in self._losses]
        # the mean of the micro-batches' losses, or their sum when each is already a share
        # of the step's (transformers' Trainer under gradient accumulation)
        loss = None if not losses else sum(losses) / (1 if self._loss_over_step
                                                      else len(losses))
        if self._step_loss is not None:
            loss, self._step_loss = self._step_loss, None
        self.meter.end(self.step, loss if loss is None or math.isfinite(loss) else None,
                       self._tokens)
        self.step += 1
        self.in_step = False
        self._losses = []

    def _enter(self, name: str) -> None:
        if self.phase == name:
            return
        self._leave()
        self.phase = name
        self.meter.phase_begin(self.step, name)

    def _leave(self) -> None:
        if self.phase:
            self.meter.phase_end(self.step, self.phase)
            self.phase = ""


def _wall_at(t0: float) -> float:
    import time

    return time.time() - (now() - t0)


def loss_in(output: Any) -> Any:
    """The loss a forward returned, where a trainer would look for it: a scalar tensor
    itself, a ``loss`` field or key (transformers' outputs, a dict), or the first item
    of a tuple when that is a scalar (as transformers' Trainer reads one)."""
    if isinstance(output, torch.Tensor):
        return output if output.dim() == 0 else None
    if isinstance(output, dict):
        return output.get("loss")
    if isinstance(output, tuple | list) and output and isinstance(output[0], torch.Tensor) \
            and output[0].dim() == 0:
        return output[0]
    return getattr(output, "loss", None)


def inputs_of(value: Any) -> list[torch.Tensor]:
    return list(tensors_in(value, depth=2))
