"""The techniques of one run, applied at the worker's fixed points (worker side only)."""

from __future__ import annotations

from contextlib import ExitStack
from typing import Any

from ..core.spec import RunSpec
from .base import Applied, Technique
from .registry import check_techniques


class Plan:
    def __init__(self, spec: RunSpec, checked: RunSpec | None = None) -> None:
        """``checked``: the spec the techniques are checked against, where it differs from
        the one that runs (a simulation of CUDA runs on fake CPU tensors)."""
        self.spec = spec
        self.entries: list[tuple[Technique, dict[str, Any]]] = check_techniques(
            checked or spec)
        self.applied = [Applied(t.name, dict(p)) for t, p in self.entries]

    def _each(self):
        return zip(self.entries, self.applied, strict=True)

    def params_of(self, name: str) -> dict[str, Any] | None:
        return next((p for t, p in self.entries if t.name == name), None)

    def prepare_process(self) -> None:
        for technique, params in self.entries:
            technique.prepare_process(params, self.spec.device)

    def model_dtype(self) -> str:
        dtypes = {d for t, p in self.entries if (d := t.model_dtype(p))}
        return dtypes.pop() if dtypes else "fp32"

    def apply_model(self, task) -> None:
        for (technique, params), applied in self._each():
            applied.report.update(technique.apply_model(task, params, self.spec) or {})

    def opaque_bytes(self, task) -> list[tuple[int, str, str, str]]:
        return [item for t, p in self.entries for item in t.opaque_bytes(task, p)]

    def forward_context(self) -> ExitStack:
        stack = ExitStack()
        for technique, params in self.entries:
            context = technique.forward_context(params, self.spec.device)
            if context is not None:
                stack.enter_context(context)
        return stack

    def grad_scaler(self):
        return next((s for t, p in self.entries
                     if (s := t.grad_scaler(p, self.spec.device)) is not None), None)

    def wrap_optimizer(self, optimizer, task):
        for technique, params in self.entries:
            optimizer = technique.wrap_optimizer(optimizer, task, params)
        return optimizer

    def before_step(self, step: int, task) -> bool:
        changed = False
        for (technique, params), applied in self._each():
            changed |= technique.before_step(step, task, params, self.spec, applied.report)
        return changed

    def after_step(self) -> None:
        for technique, params in self.entries:
            technique.after_step(params)

    def generate_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {}
        for technique, params in self.entries:
            kwargs.update(technique.generate_kwargs(params))
        return kwargs

    @property
    def micro_batches(self) -> int:
        params = self.params_of("grad-accum")
        return params["micro_batches"] if params else 1

    @property
    def world_size(self) -> int:
        params = self.params_of("zero") or self.params_of("fsdp")
        return params["world_size"] if params else 1

    def record(self) -> list[dict[str, Any]]:
        """What was applied, with its parameters and report, for the summary."""
        return [{"name": a.name, "params": a.params, "report": a.report} for a in self.applied]
