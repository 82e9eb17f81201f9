"""FLOPs of the ops a detailed step runs, by torch's own formulas.

``torch.utils.flop_counter`` keeps a formula for every op that does a matmul or a
convolution (mm, addmm, bmm, the attention kernels, convolutions and their
backwards); its ``FlopCounterMode`` is a dispatch mode that applies them. The
tracker's dispatch mode already sees every op of a detailed step, so it applies the
same formulas to the same ops there: a step's FLOPs come with its measurement,
without a second forward and backward after the run.
"""

from __future__ import annotations

_UNKNOWN = object()


class FlopTally:
    def __init__(self) -> None:
        from torch.utils.flop_counter import flop_registry

        self._registry = flop_registry  # OpOverloadPacket -> formula over shapes
        self._formulas: dict[object, object] = {}  # OpOverload -> formula or None
        self.total = 0

    def count(self, func, args: tuple, kwargs: dict | None, out) -> None:
        formula = self._formulas.get(func, _UNKNOWN)
        if formula is _UNKNOWN:
            formula = self._formulas[func] = self._registry.get(func._overloadpacket)
        if formula is not None:
            self.total += int(formula(*args, **(kwargs or {}), out_val=out))
