"""Which steps the per-op tracker sees (``--detail``): every temporary and every op
costs a Python call per op, so it runs on the steps that need it; the cheap signals
(activations saved for backward, gradients, optimizer state, inputs, parameters,
module attribution) run on every step.

``all``: every step. ``first:K,every:N``: the first K steps, then one step in N
(steps N, 2N, ...); ``first:K`` alone: only the first K. A user can also ask the
window to record the next step in full.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import SpecError

DEFAULT = "first:2,every:50"


@dataclass(frozen=True)
class DetailPolicy:
    first: int = 2
    every: int = 50  # 0: never again after the first steps
    everything: bool = False

    def detailed(self, step: int) -> bool:
        return self.everything or step < self.first or (self.every > 0 and step > 0
                                                         and step % self.every == 0)


def parse_detail(text: str) -> DetailPolicy:
    value = (text or DEFAULT).strip().lower()
    if value == "all":
        return DetailPolicy(everything=True)
    parts = dict(re.findall(r"(first|every):(\d+)", value))
    rebuilt = ",".join(f"{k}:{v}" for k, v in re.findall(r"(first|every):(\d+)", value))
    if not parts or rebuilt != value.replace(" ", ""):
        raise SpecError(f"detail is 'all' or 'first:K,every:N' (e.g. {DEFAULT}), not {text!r}")
    if any(len(v) > 9 for v in parts.values()):  # beyond any run's steps: a typo
        raise SpecError(f"detail: K and N are step counts below 10^9, not {text[:40]!r}")
    if "every" in parts and int(parts["every"]) < 1:
        raise SpecError(f"detail: every:N needs N of at least 1 (first:K alone details only "
                        f"the first K steps), not {text!r}")
    return DetailPolicy(int(parts.get("first", 0)), int(parts.get("every", 0)))
