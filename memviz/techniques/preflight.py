"""Everything about a spec that can be refused before a worker starts, in one place.

The CLI, the window and the worker all call ``preflight``: the spec's own
bounds, the techniques and their combination, the techniques against the
model's depth, the sequence against the model's positions, and the device.
No torch: what only the built model can tell (a factory's depth) the worker
checks when it has it.
"""

from __future__ import annotations

import os

from ..core.devices import device_refusal
from ..core.model_facts import ModelFacts, facts_of
from ..core.spec import PRESETS, ModelError, RunSpec, SpecError
from .libraries import missing_reason
from .registry import check_techniques, libraries_for


def preflight(spec: RunSpec, *, check_device: bool = True) -> ModelFacts:
    """Raise SpecError with the reason if ``spec`` cannot run; return the model facts."""
    spec.validate()
    reason = model_refusal(spec.model)
    if reason:
        raise ModelError(reason)
    resolved = check_techniques(spec)
    reason = missing_reason(libraries_for(spec))
    if reason:
        raise SpecError(f"this run {reason}")
    facts = facts_of(spec.model)
    if facts.max_positions is not None and spec.seq_len > facts.max_positions:
        raise SpecError(f"seq_len {spec.seq_len} is beyond {spec.model}'s "
                        f"{facts.max_positions} positions")
    if spec.mode == "generate" and facts.max_positions is not None and \
            spec.seq_len + spec.max_new_tokens > facts.max_positions:
        raise SpecError(f"seq_len {spec.seq_len} + max_new_tokens {spec.max_new_tokens} is "
                        f"beyond {spec.model}'s {facts.max_positions} positions")
    for technique, params in resolved:
        reason = technique.refusal_for_model(params, facts, spec)
        if reason:
            raise SpecError(f"{technique.name}: {reason}")
    if check_device:
        reason = device_refusal(spec.device)
        if reason:
            raise SpecError(reason)
    return facts


def model_refusal(name: str) -> str | None:
    """Why ``name`` names no model memviz can load, where that is known without loading it."""
    if name in PRESETS:
        return None
    path = os.path.expanduser(name)
    if os.path.isdir(path):
        if not os.path.isfile(os.path.join(path, "config.json")):
            return f"{name} is not a Hugging Face model directory (no config.json)"
        return None
    module, colon, function = name.rpartition(":")
    if colon and module and function:
        if not function.isidentifier():
            return f"{name!r}: {function!r} is not a function name"
        if module.endswith(".py") and not os.path.isfile(os.path.expanduser(module)):
            return f"factory file {module} does not exist"
        return None
    return (f"no preset, directory or factory named {name!r} (presets: {', '.join(PRESETS)}; "
            "a directory must exist; a factory is module:function or file.py:function)")
