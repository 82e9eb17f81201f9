"""``MemvizCallback`` for transformers' ``Trainer``: the training's memory, step by step.

    trainer = Trainer(..., callbacks=[MemvizCallback(output="train.memviz")])

Steps are the Trainer's own (``on_step_begin`` / ``on_step_end``: one optimizer
update, however many micro-batches gradient accumulation runs); the forward,
backward and optimizer phases and every tensor come from ``memviz.track``.
"""

from __future__ import annotations

from typing import Any

from transformers import TrainerCallback

from ..program.api import Tracking


class MemvizCallback(TrainerCallback):
    def __init__(self, output: str | None = None, **options: Any) -> None:
        """``output`` and ``options`` as for ``memviz.track`` (``connect``, ``summary``,
        ``track``, ``sample_hz``, ``force``)."""
        self.output = output
        self.options = options
        self.tracking: Tracking | None = None

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if self.tracking is None and state.is_world_process_zero:
            self.tracking = Tracking(self.output, model=model, steps="callback",
                                     scan_heap=False, **self.options).start()

    def on_step_begin(self, args, state, control, **kwargs):
        if self.tracking is not None:
            self.tracking.program_tracker.step_begins()

    def on_step_end(self, args, state, control, **kwargs):
        if self.tracking is not None:
            self.tracking.program_tracker.step_ends()

    def on_train_end(self, args, state, control, **kwargs):
        if self.tracking is not None:
            self.tracking.stop()
            self.tracking = None
