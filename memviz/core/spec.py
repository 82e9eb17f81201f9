"""What to run: model, workload and options, validated before anything starts."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from .categories import TRACK_LEVELS
from .detail import parse_detail
from .errors import ModelError, SpecError

__all__ = ["DATA_SOURCES", "DEFAULT_MODEL", "MODES", "OPTIMIZERS", "PRESETS", "ModelError",
           "RunSpec", "SpecError", "technique_label"]

MODES = ("train", "infer", "generate")
OPTIMIZERS = ("adamw", "sgd", "sgd-momentum", "adafactor", "adamw-8bit", "adamw-4bit")
DATA_SOURCES = ("corpus", "random")
ROUTINGS = ("balanced", "worst")  # a mixture of experts' routing, when forced or assumed
PRESETS = ("gpt2-tiny", "llama-tiny", "bert-tiny", "lstm-lm", "conv-lm", "minilm-l6")
DEFAULT_MODEL = "gpt2-tiny"
_DEVICE = re.compile(r"^(cpu|cuda(:\d{1,4})?)$")  # no machine has 10,000 GPUs


def technique_label(entry: dict[str, Any]) -> str:
    """``lora:r=4`` for a technique entry (its parameters that differ from defaults)."""
    params = ",".join(f"{k}={v}" for k, v in (entry.get("params") or {}).items())
    return f"{entry['name']}:{params}" if params else str(entry["name"])


@dataclass
class RunSpec:
    model: str = DEFAULT_MODEL
    mode: str = "train"
    batch_size: int = 4
    seq_len: int = 256
    steps: int = 20
    optimizer: str = "adamw"
    lr: float = 1e-3
    device: str = "cpu"
    seed: int = 0
    data: str = "corpus"
    max_new_tokens: int = 32
    sample_hz: float = 20.0
    track: str = "tensors+stacks"  # Python stacks on the steps every op is tracked on
    techniques: list[dict[str, Any]] = field(default_factory=list)
    # A user's own program tracked by memviz.track (its command line), not memviz's
    # runner: then the model, mode and sizes are what the program ran, and steps is 0
    # (as many as it makes).
    program: str = ""
    # after the run, write the model as it would be shared and report its size
    disk_size: bool = True
    # which steps the per-op tracker sees (core.detail): the rest get the cheap signals
    detail: str = "first:2,every:50"
    # run the real step on fake tensors: every storage and op, no data and no arithmetic
    simulate: bool = False
    # a mixture of experts' routing: forced in a measured run, assumed in a simulated
    # one ("": the model's own; a simulation then assumes balanced)
    routing: str = ""
    # what the run was read from, where memviz did not run it (a PyTorch snapshot): then
    # only the model's name (the file's) and the device are known, nothing else
    imported: str = ""

    def validate(self) -> RunSpec:
        if not self.model or not isinstance(self.model, str):
            raise SpecError("model must be a preset name, a directory or a factory")
        if self.mode not in MODES:
            raise SpecError(f"mode must be one of {', '.join(MODES)}, not {self.mode!r}")
        if self.optimizer not in OPTIMIZERS:
            raise SpecError(
                f"optimizer must be one of {', '.join(OPTIMIZERS)}, not {self.optimizer!r}"
            )
        if self.track not in TRACK_LEVELS:
            raise SpecError(f"track must be one of {', '.join(TRACK_LEVELS)}, not {self.track!r}")
        if self.optimizer == "adamw-4bit" and self.track != "samples" and self.mode == "train":
            raise SpecError("adamw-4bit (torchao) compiles its step with torch.compile, which "
                            "cannot run under the tensor tracker: use --track samples, or "
                            "adamw-8bit")
        if self.data not in DATA_SOURCES:
            raise SpecError(f"data must be one of {', '.join(DATA_SOURCES)}, not {self.data!r}")
        if not _DEVICE.match(self.device):
            raise SpecError(f"device must be cpu, cuda or cuda:N, not {self.device!r}")
        if not isinstance(self.program, str):
            raise SpecError("program must be a command line")
        if not isinstance(self.imported, str):
            raise SpecError("imported must name what the run was read from")
        if not isinstance(self.simulate, bool):
            raise SpecError("simulate must be true or false")
        if self.simulate and self.track == "samples":
            raise SpecError("a simulation is what the tensor tracker sees: set track to "
                            "tensors")
        if self.simulate and self.mode == "generate":
            raise SpecError("generation stops on values a simulation does not have: "
                            "simulate training or inference")
        if self.routing not in ("", *ROUTINGS):
            raise SpecError(f"routing must be one of {', '.join(ROUTINGS)}, not "
                            f"{self.routing!r}")
        if not isinstance(self.detail, str):
            raise SpecError("detail must be text like first:2,every:50")
        parse_detail(self.detail)
        for name, low, high in (
            ("batch_size", 1, 1 << 16),
            ("seq_len", 2, 1 << 20),
            ("steps", 0 if self.program else 1, 1 << 24),
            ("max_new_tokens", 1, 1 << 16),
            ("seed", 0, (1 << 32) - 1),
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
                raise SpecError(f"{name} must be an integer from {low} to {high}, not {value!r}")
        if not 0 < float(self.lr) < 100:
            raise SpecError(f"lr must be a positive number below 100, not {self.lr!r}")
        if not isinstance(self.techniques, list) or not all(
                isinstance(t, dict) and isinstance(t.get("name"), str)
                and isinstance(t.get("params", {}), dict) for t in self.techniques):
            raise SpecError("techniques must be a list of {name, params}")
        if not 1 <= float(self.sample_hz) <= 100:
            raise SpecError(f"sample_hz must be from 1 to 100, not {self.sample_hz!r}")
        return self

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunSpec:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise SpecError(f"unknown option(s): {', '.join(unknown)}")
        return cls(**data).validate()

    def label(self) -> str:
        """What a run is, in one line: model, workload, sizes, device and techniques."""
        used = " + ".join(technique_label(t) for t in self.techniques)
        if self.mode == "train" and self.optimizer != "adamw" and not self.program:
            used = " + ".join(filter(None, [used, self.optimizer]))
        tail = f" · {used}" if used else ""
        if self.imported:
            return f"{self.model} · {self.device} · {self.imported}"
        if self.program:
            return f"{self.program} · {self.device}{tail}"
        return (f"{self.model} · {self.mode} · b{self.batch_size}×{self.seq_len} · "
                f"{self.device}{tail}")

    def steps_done(self, done: int) -> str:
        """``3/20 steps``, or ``3 steps`` for a program (its count is not known ahead)."""
        return f"{done} steps" if self.program or not self.steps else f"{done}/{self.steps} steps"
