"""Every technique by name; parsing ``name:key=value,...`` and checking a set of them.

Pure Python: the window, the CLI and the worker all validate the same way,
and an invalid combination is refused before a worker starts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .allocator import Allocator
from .amp import Amp
from .base import Technique, TechniqueError
from .checkpointing import Checkpointing
from .compression import LayerDrop, LowRank, ShareLayers
from .cpu_offload import CpuOffload
from .distributed import Fsdp, Zero
from .grad_accum import GradAccum
from .kv_cache import KvCache
from .libraries import OPTIMIZER_LIBRARIES, missing_reason
from .lora import Lora
from .low_precision import LowPrecision
from .progressive import Progressive
from .prune import Prune
from .quantize import Quantize

if TYPE_CHECKING:
    from ..core.spec import RunSpec

TECHNIQUES: dict[str, Technique] = {t.name: t for t in (
    LayerDrop(), LowRank(), ShareLayers(), Progressive(),
    Amp(), LowPrecision(), Checkpointing(), GradAccum(), Lora(), CpuOffload(), Zero(), Fsdp(),
    Quantize(), Prune(), KvCache(), Allocator(),
)}


def parse_technique(text: str) -> dict[str, Any]:
    """``lora:r=8,alpha=16`` → ``{"name": "lora", "params": {"r": 8, "alpha": 16}}``."""
    name, _, rest = text.strip().partition(":")
    technique = TECHNIQUES.get(name)
    if technique is None:
        raise TechniqueError(f"no technique named {name!r} (known: {', '.join(TECHNIQUES)})")
    by_name = {p.name: p for p in technique.params}
    params: dict[str, Any] = {}
    items = [part.strip() for part in rest.split(",")] if rest.strip() else []
    if any(not item for item in items):
        raise TechniqueError(f"{name}: an empty setting in {text.strip()!r} "
                             "(settings are key=value, separated by single commas)")
    for item in items:
        key, eq, value = item.partition("=")
        if not eq:
            raise TechniqueError(f"{name}: {item!r} is not key=value")
        if key not in by_name:
            raise TechniqueError(f"{name} has no parameter {key!r} "
                                 f"(it has: {', '.join(by_name) or 'none'})")
        params[key] = by_name[key].parse(value)
    return {"name": name, "params": params}


def resolve(entry: dict[str, Any]) -> tuple[Technique, dict[str, Any]]:
    """A spec entry → its technique and every parameter, defaults filled and checked."""
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
        raise TechniqueError(f"a technique must be {{'name': ..., 'params': {{...}}}}, "
                             f"not {entry!r}")
    technique = TECHNIQUES.get(entry["name"])
    if technique is None:
        raise TechniqueError(f"no technique named {entry['name']!r}")
    given = entry.get("params") or {}
    unknown = sorted(set(given) - {p.name for p in technique.params})
    if unknown:
        raise TechniqueError(f"{technique.name} has no parameter {', '.join(unknown)}")
    params = {}
    for param in technique.params:
        try:
            params[param.name] = param.check(given.get(param.name, param.default))
        except TechniqueError as exc:
            raise TechniqueError(f"{technique.name}: {exc}") from None
    return technique, params


def check_techniques(spec: RunSpec) -> list[tuple[Technique, dict[str, Any]]]:
    """Every technique of ``spec``, resolved, in apply order; the first refusal raises."""
    resolved = [resolve(entry) for entry in spec.techniques]
    names = [t.name for t, _ in resolved]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise TechniqueError(f"{', '.join(repeated)} given more than once")
    present = set(names)
    device = spec.device.partition(":")[0]
    for technique, params in resolved:
        if spec.mode not in technique.modes:
            raise TechniqueError(f"{technique.name} applies to {'/'.join(sorted(technique.modes))}"
                                 f", not {spec.mode}")
        if device not in technique.devices:
            raise TechniqueError(f"{technique.name} needs {'/'.join(sorted(technique.devices))}"
                                 f", not {device}")
        clash = sorted(technique.conflicts & present)
        if clash:
            raise TechniqueError(f"{technique.name} cannot be combined with {', '.join(clash)}")
        reason = technique.refusal(spec, params, present)
        if reason:
            raise TechniqueError(f"{technique.name}: {reason}")
    return sorted(resolved, key=lambda tp: tp[0].order)


def applicability(technique: Technique, spec: RunSpec,
                  present: set[str] | None = None) -> str | None:
    """Why ``technique`` (with defaults) does not apply to this workload alongside the
    ``present`` ones (default: alone), or None."""
    device = spec.device.partition(":")[0]
    if spec.mode not in technique.modes:
        return f"only for {'/'.join(sorted(technique.modes))}"
    if device not in technique.devices:
        return f"needs {'/'.join(sorted(technique.devices))}"
    present = present or {technique.name}
    clash = sorted(technique.conflicts & present)
    if clash:
        return f"cannot be combined with {', '.join(clash)}"
    _, params = resolve({"name": technique.name})
    reason = technique.refusal(spec, params, present)
    if reason:
        return reason
    return missing_reason(technique.libraries(params))


def libraries_for(spec: RunSpec) -> set[str]:
    """Every optional library ``spec`` imports: its techniques' and its optimizer's."""
    needed: set[str] = set()
    for entry in spec.techniques:
        technique, params = resolve(entry)
        needed.update(technique.libraries(params))
    if spec.mode == "train" and spec.optimizer in OPTIMIZER_LIBRARIES:
        needed.add(OPTIMIZER_LIBRARIES[spec.optimizer])
    return needed
