"""Technique sets: what one column of a comparison runs.

A set is written as the CLI takes it: ``baseline``, ``amp``,
``amp,checkpointing``, ``lora:r=4,alpha=8,checkpointing`` (a ``key=value``
piece without a name belongs to the technique before it), and
``optimizer=adafactor`` for a workload option. Presets build sets from the
registry: every technique alone, or a greedy stack grown one technique at a
time while it still lowers the peak.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from ..core.spec import OPTIMIZERS, RunSpec, SpecError
from ..techniques import TECHNIQUES, applicability, parse_technique, preflight

OVERRIDABLE = {"optimizer": OPTIMIZERS}
# Greedy candidates: techniques that keep the model's quality class (no pruning or
# dropped layers) and compose with each other.
GREEDY_CANDIDATES = ("amp", "checkpointing", "grad-accum", "lora", "optimizer=adafactor",
                     "optimizer=adamw-8bit")
GREEDY_MIN_SAVING = 0.02  # a technique that saves less than 2 % of the peak is not added


@dataclass
class TechniqueSet:
    name: str
    techniques: list[dict[str, Any]] = field(default_factory=list)
    options: dict[str, str] = field(default_factory=dict)

    def spec(self, base: RunSpec) -> RunSpec:
        """The run of this set: the base workload with these techniques and options."""
        return replace(base, techniques=[dict(t) for t in self.techniques], **self.options)

    def plus(self, other: TechniqueSet) -> TechniqueSet:
        name = other.name if self.name == "baseline" else f"{self.name},{other.name}"
        return TechniqueSet(name, self.techniques + other.techniques,
                            {**self.options, **other.options})


def parse_set(text: str) -> TechniqueSet:
    """``amp,lora:r=4,alpha=8,optimizer=sgd`` → its techniques and options."""
    text = text.strip()
    if not text:
        raise SpecError("an empty technique set (use 'baseline' for none)")
    if text == "baseline":
        return TechniqueSet("baseline")
    pieces: list[str] = []
    options: dict[str, str] = {}
    for piece in (p.strip() for p in text.split(",")):
        if not piece:
            raise SpecError(f"an empty piece in the set {text!r}")
        key, eq, value = piece.partition("=")
        if ":" not in piece and eq and key in OVERRIDABLE:
            if value not in OVERRIDABLE[key]:
                raise SpecError(f"{key} must be one of {', '.join(OVERRIDABLE[key])}, "
                                f"not {value!r}")
            options[key] = value
        elif ":" not in piece and eq:
            if not pieces:
                raise SpecError(f"{piece!r} in {text!r} follows no technique")
            sep = "," if ":" in pieces[-1] else ":"
            pieces[-1] += sep + piece
        else:
            pieces.append(piece)
    return TechniqueSet(text, [parse_technique(p) for p in pieces], options)


def runnable(base: RunSpec, candidate: TechniqueSet) -> str | None:
    """Why ``candidate`` cannot run on ``base`` (None when it can)."""
    try:  # a simulated device need not be here
        preflight(candidate.spec(base), check_device=not base.simulate)
    except SpecError as exc:
        return str(exc)
    return None


def each_alone(base: RunSpec) -> list[TechniqueSet]:
    """The baseline and every technique that applies to this workload and device, alone."""
    sets = [TechniqueSet("baseline")]
    for name, technique in TECHNIQUES.items():
        if applicability(technique, base) is None:
            candidate = parse_set(name)
            if runnable(base, candidate) is None:
                sets.append(candidate)
    if base.mode == "train":
        sets += [parse_set(f"optimizer={o}") for o in ("sgd", "adafactor", "adamw-8bit")]
    return sets


def greedy_candidates(base: RunSpec, stack: TechniqueSet,
                      tried: set[str]) -> list[TechniqueSet]:
    """The next sets a greedy stack tries: the stack plus each candidate not in it yet."""
    if base.mode != "train":
        names: tuple[str, ...] = ("quantize", "kv-cache:kind=static") \
            if base.mode == "generate" else ("quantize",)
    else:
        names = GREEDY_CANDIDATES
    used = {t["name"] for t in stack.techniques} | {f"{k}={v}" for k, v in stack.options.items()}
    out = []
    for name in names:
        piece = parse_set(name)
        key = name.split(":")[0]
        if key in used or (key.startswith("optimizer=") and "optimizer" in stack.options):
            continue
        candidate = stack.plus(piece)
        if candidate.name not in tried and runnable(base, candidate) is None:
            out.append(candidate)
    return out
