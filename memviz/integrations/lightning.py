"""``MemvizCallback`` for Lightning: ``Trainer(callbacks=[MemvizCallback("fit.memviz")])``.

Steps are Lightning's training batches (with gradient accumulation, the batches
an optimizer step gathers form one step); phases and tensors come from
``memviz.track``. A step's loss is what ``training_step`` returned, summed over the
step's micro-batches as Lightning scales them (each divided by
``accumulate_grad_batches``): the mean loss of the batches the step gathered.
"""

from __future__ import annotations

from typing import Any

try:
    from lightning.pytorch.callbacks import Callback
except ImportError:  # the older package name
    from pytorch_lightning.callbacks import Callback

from ..program.api import Tracking


class MemvizCallback(Callback):
    def __init__(self, output: str | None = None, **options: Any) -> None:
        self.output = output
        self.options = options
        self.tracking: Tracking | None = None
        self._batches = 0
        self._loss = 0.0
        self._losses = 0

    def on_train_start(self, trainer, pl_module) -> None:
        if self.tracking is None and trainer.is_global_zero:
            self.tracking = Tracking(self.output, model=pl_module, steps="callback",
                                     scan_heap=False, **self.options).start()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.tracking is not None:
            self.tracking.program_tracker.step_begins()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.tracking is None:
            return
        self._batches += 1
        loss = _loss_of(outputs)
        if loss is not None:
            self._loss += loss
            self._losses += 1
        if self._batches % max(trainer.accumulate_grad_batches, 1) == 0:
            if self._losses:
                self.tracking.program_tracker.set_step_loss(self._loss)
            self._loss, self._losses = 0.0, 0
            self.tracking.program_tracker.step_ends()

    def on_train_end(self, trainer, pl_module) -> None:
        if self.tracking is not None:
            self.tracking.stop()
            self.tracking = None


def _loss_of(outputs: Any) -> float | None:
    """The loss in ``on_train_batch_end``'s outputs (a tensor, or a dict's "loss"), as
    Lightning scaled it for gradient accumulation."""
    loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
    try:
        return float(loss) if loss is not None and loss.numel() == 1 else None
    except (AttributeError, TypeError, RuntimeError):
        return None
