"""The random generator's state, copied into a tensor by ``torch.get_rng_state()``.

The copy is made in C++ without the dispatcher, so no op of the per-op tracker
shows it; ``torch.utils.checkpoint`` takes one for every checkpointed call (5,056
bytes on a CPU) and keeps it until the call is recomputed in backward: 20 KB for
four checkpointed blocks, which torch.profiler counted and the tracker did not.
While the tracker runs, ``torch.get_rng_state`` is wrapped so each copy made on a
detailed step is an allocation of op ``get_rng_state``.
"""

from __future__ import annotations

from typing import Any

import torch


class RngStates:
    def __init__(self, tracker: Any) -> None:
        self.tracker = tracker
        with tracker.lock:  # the string table is shared with the taking thread
            self.op = tracker.strings.id("op", "get_rng_state")
        self.original = torch.get_rng_state

        def get_rng_state() -> torch.Tensor:
            state = self.original()
            if self.tracker.detailed:
                self.tracker._seen(state, self.op)
            return state

        torch.get_rng_state = get_rng_state

    def restore(self) -> None:
        torch.get_rng_state = self.original
