"""The one small interface every memory technique implements.

A technique is metadata (name, group, description, where it applies,
parameters, conflicts) plus hooks the worker calls at fixed points of a run.
This module and every technique module import torch only inside their hooks,
so the window can list and validate techniques without loading torch.
"""

from __future__ import annotations

import math
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..core.spec import SpecError

if TYPE_CHECKING:
    from ..core.model_facts import ModelFacts
    from ..core.spec import RunSpec
    from ..models.task import Task

GROUPS = ("model structure", "training strategy", "deployment")


class TechniqueError(SpecError):
    """A technique that cannot run as asked; the message says why, for the user."""


@dataclass(frozen=True)
class Param:
    """One parameter of a technique: its type, default and allowed values."""

    name: str
    kind: type  # int, float, str or bool
    default: Any
    help: str
    choices: tuple[str, ...] = ()
    low: float | None = None
    high: float | None = None

    def parse(self, text: str) -> Any:
        """Turn command-line text into a value of this parameter's type."""
        if self.kind is bool:
            lowered = text.strip().lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise TechniqueError(f"{self.name} must be true or false, not {text!r}")
        try:
            return self.kind(text)
        except ValueError:
            raise TechniqueError(
                f"{self.name} must be {self.kind.__name__}, not {text!r}") from None

    def check(self, value: Any) -> Any:
        """The value if it is allowed, else a TechniqueError naming the bounds."""
        if self.kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if self.kind is float and isinstance(value, float) and not math.isfinite(value):
            raise TechniqueError(f"{self.name} must be a finite number, not {value!r}")
        if not isinstance(value, self.kind) or (self.kind is int and isinstance(value, bool)):
            raise TechniqueError(f"{self.name} must be {self.kind.__name__}, not {value!r}")
        if self.choices and value not in self.choices:
            raise TechniqueError(f"{self.name} must be one of {', '.join(self.choices)}, "
                                 f"not {value!r}")
        if self.low is not None and value < self.low:
            raise TechniqueError(f"{self.name} must be at least {self.low}, not {value!r}")
        if self.high is not None and value > self.high:
            raise TechniqueError(f"{self.name} must be at most {self.high}, not {value!r}")
        return value

    def describe(self) -> str:
        if self.choices:
            allowed = "|".join(map(str, self.choices))
        elif self.low is not None or self.high is not None:
            allowed = f"{self.low if self.low is not None else ''}..{self.high or ''}"
        else:
            allowed = self.kind.__name__
        return f"{self.name}={self.default} ({allowed})"


@dataclass
class Applied:
    """What a technique did to this run, for the summary JSON and the closing table."""

    name: str
    params: dict[str, Any]
    report: dict[str, Any] = field(default_factory=dict)


class Technique:
    """Subclasses set the metadata and override the hooks they need."""

    name: str = ""
    group: str = "training strategy"
    description: str = ""
    modes: frozenset[str] = frozenset({"train", "infer", "generate"})
    devices: frozenset[str] = frozenset({"cpu", "cuda"})
    params: tuple[Param, ...] = ()
    conflicts: frozenset[str] = frozenset()
    order: int = 50  # model transforms run in this order (lower first)

    # -- validation (no torch) ------------------------------------------------------
    def refusal(self, spec: RunSpec, params: dict[str, Any], names: set[str]) -> str | None:
        """A reason this technique cannot run with this spec and these others, or None."""
        return None

    def refusal_for_model(self, params: dict[str, Any], facts: ModelFacts,
                          spec: RunSpec) -> str | None:
        """A reason it cannot run on this model (what is known before it is built)."""
        return None

    def libraries(self, params: dict[str, Any]) -> tuple[str, ...]:
        """The optional libraries (``libraries.EXTRA_OF``) these params import."""
        return ()

    # -- worker hooks (may import torch) ----------------------------------------------
    def prepare_process(self, params: dict[str, Any], device: str) -> None:
        """Before torch allocates anything: environment and allocator settings."""

    def model_dtype(self, params: dict[str, Any]) -> str | None:
        """The dtype the model should be built in ("bf16", "fp16"), or None."""
        return None

    def apply_model(self, task: Task, params: dict[str, Any], spec: RunSpec) -> dict[str, Any]:
        """Change the model in place (or replace ``task.model``); return a report."""
        return {}

    def opaque_bytes(self, task: Task, params: dict[str, Any]) -> list[tuple[int, str, str, str]]:
        """``(bytes, category, module, label)`` of memory the dispatcher cannot see."""
        return []

    def forward_context(self, params: dict[str, Any],
                        device: str) -> AbstractContextManager | None:
        """A context entered around each forward pass, or None."""
        return None

    def after_step(self, params: dict[str, Any]) -> None:
        """Called after each step's optimizer update (or forward, without training)."""

    def generate_kwargs(self, params: dict[str, Any]) -> dict[str, Any]:
        """Extra keyword arguments for ``model.generate``."""
        return {}

    def grad_scaler(self, params: dict[str, Any], device: str) -> Any:
        """A loss scaler for the backward pass (fp16 autocast on CUDA), or None."""
        return None

    def wrap_optimizer(self, optimizer: Any, task: Task, params: dict[str, Any]) -> Any:
        """The optimizer to use instead (master weights), or ``optimizer`` itself."""
        return optimizer

    def before_step(self, step: int, task: Task, params: dict[str, Any], spec: RunSpec,
                    report: dict[str, Any]) -> bool:
        """Change the model between steps (``report`` is this technique's own, from
        ``apply_model``); True if it changed, and the optimizer is then rebuilt."""
        return False

