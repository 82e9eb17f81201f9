"""A run's memory at one moment as one story: how the figures different tools show
add up, each gap named and sized.

On CPU: the process's RSS = the tracked tensors (by category) + the runtime (the
interpreter, torch and the other libraries: RSS before the model loaded) + what
the C allocator holds beyond the live tensors (freed memory not yet returned,
fragmentation). On CUDA: what the driver charges the process (NVML, what
nvidia-smi shows) = torch's reserved memory + the CUDA context and memory not
allocated through PyTorch; reserved = allocated + cached free blocks (the largest
free block says how fragmented). Every part is measured, except the last of each
sum, which is the difference and is said to be so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .analysis import moment, tracked_peak_time
from .categories import LABELS
from .cuda_model import CUBLAS_WORKSPACE_BYTES, CUDA_CONTEXT_BYTES
from .run import Run
from .segments import history_of

LOAD = "load"


@dataclass
class Part:
    label: str
    nbytes: int | None
    explanation: str
    parts: list[Part] = field(default_factory=list)
    derived: bool = False  # the difference of the others, not measured itself


@dataclass
class Story:
    t: float
    cpu: Part
    gpu: Part | None


def _sample_at(run: Run, column: str, t: float) -> float | None:
    times = run.samples.column("t")
    if not len(times) or not run.samples.has_data(column):
        return None
    i = max(int(np.searchsorted(times, t, side="right")) - 1, 0)
    values = run.samples.column(column)
    finite = np.flatnonzero(np.isfinite(values[: i + 1]))
    if not len(finite):
        return None
    return float(values[finite[-1]])


def runtime_bytes(run: Run) -> float | None:
    """RSS before the model loaded: the interpreter, torch and the other libraries."""
    times = run.samples.column("t")
    if not len(times):
        return None
    load = next((p.begin for p in run.phases if p.name == LOAD), None)
    t = load if load is not None else float(times[0])
    return _sample_at(run, "rss", t)


def default_moment(run: Run) -> float:
    """The tracked peak, or the highest RSS for a run without tensors."""
    if len(run.tensors):
        return tracked_peak_time(run.tensors)[0]
    rss = run.samples.column("rss")
    if not len(rss) or not np.isfinite(rss).any():
        return 0.0
    return float(run.samples.column("t")[int(np.nanargmax(rss))])


def story_at(run: Run, t: float | None = None) -> Story:
    with run.lock:
        t = default_moment(run) if t is None else t
        return Story(t, _cpu(run, t), _gpu(run, t))


def _cpu(run: Run, t: float) -> Part:
    rss = _sample_at(run, "rss", t)
    runtime = runtime_bytes(run)
    tensors: Part
    if len(run.tensors):
        at = moment(run.tensors, t)
        tracked = at.total
        tensors = Part("tracked tensors", tracked, "every tensor live at this moment, as the "
                       "tracker counted them", [
                           Part(LABELS[c], b, "") for c, b in
                           sorted(at.by_category.items(), key=lambda kv: -kv[1])])
    else:
        tracked = None
        tensors = Part("tracked tensors", None, "not tracked in this run (set Tracking to "
                                                "tensors to see them)")
    parts = [tensors, Part("runtime and libraries", None if runtime is None else int(runtime),
                           "the interpreter, torch and the other libraries: RSS before the "
                           "model loaded", _library_imports(run))]
    if run.spec.simulate:  # fake tensors take no memory here: the host is the simulator's
        tensors.explanation = ("every fake tensor live at this moment: the simulated "
                               "run's bytes, held by no memory of this machine")
        return Part("tracked tensors (simulated)", tracked, tensors.explanation, [
            *tensors.parts, Part("RSS of the simulating process (host)",
                                 None if rss is None else int(rss),
                                 "the process that ran the simulation: not part of the "
                                 "simulated figures")])
    if rss is not None and runtime is not None and tracked is not None:
        rest = int(rss - runtime - tracked)
        parts.append(Part(
            "held by the allocator, beyond live tensors", rest,
            "freed memory the C allocator keeps for reuse, and fragmentation; negative when "
            "tensors were allocated but not yet touched (their pages are not resident)",
            derived=True))
    return Part("RSS (resident memory of the process)",
                None if rss is None else int(rss),
                "what the operating system counts for the process (top, ps)", parts)


def _library_imports(run: Run) -> list[Part]:
    """The technique libraries the run imported, each with the RSS its import added:
    part of the runtime, not of the technique's tensors."""
    found = (run.environment or {}).get("technique_libraries") or {}
    return [Part(f"importing {name}", info["import_rss_bytes"]
                 if isinstance(info.get("import_rss_bytes"), int) else None,
                 f"{name} {info.get('version', '')}: memory the import itself costs, "
                 "whatever the technique does") for name, info in sorted(found.items())
            if isinstance(info, dict)]


def _gpu(run: Run, t: float) -> Part | None:
    driver = _sample_at(run, "gpu_process_used", t)
    reserved = _sample_at(run, "torch_reserved", t)
    allocated = _sample_at(run, "torch_allocated", t)
    history = history_of(run) if run.spec.simulate else None
    if history is not None:  # the allocator model's own state at t, not the last sample's
        state = history.state_at(t)
        allocated, reserved = float(state.allocated), float(state.reserved)
        driver = reserved + CUDA_CONTEXT_BYTES + CUBLAS_WORKSPACE_BYTES
    if reserved is None and driver is None:
        return None
    cached = None if reserved is None or allocated is None else int(reserved - allocated)
    step = next((m for m in reversed(run.cuda_memory) if m.get("t", math.inf) <= t), None)
    largest = step.get("largest_free_block") if step else None
    reserved_part = Part(
        "reserved by PyTorch", None if reserved is None else int(reserved),
        "segments PyTorch's caching allocator holds from the driver", [
            Part("allocated (live tensors)", None if allocated is None else int(allocated),
                 "torch.cuda.memory_allocated()"),
            Part("cached free blocks", cached,
                 "freed blocks kept for reuse" + (
                     f"; the largest is {largest:,} B (what one new tensor can take without "
                     "a new segment)" if largest is not None else ""), derived=True)])
    parts = [reserved_part]
    if run.spec.simulate:
        reserved_part.label = "reserved by PyTorch (simulated)"
        reserved_part.explanation = ("segments the caching allocator's model reserves for "
                                     "these allocations")
        reserved_part.parts[0].explanation = "the allocator model's allocated blocks"
    if driver is not None and reserved is not None:
        parts.append(Part("CUDA context and memory outside PyTorch", int(driver - reserved),
                          "assumed for a simulation: a CUDA context and cuBLAS's workspace, "
                          "typical values not measured here" if run.spec.simulate else
                          "the CUDA context, cuBLAS workspaces and libraries that allocate "
                          "without PyTorch's allocator", derived=True))
    if run.spec.simulate:
        return Part("GPU memory of the process (simulated, as nvidia-smi would show)",
                    None if driver is None else int(driver),
                    "reserved + the CUDA context and memory outside PyTorch", parts)
    return Part("GPU memory of the process (NVML, as nvidia-smi shows)",
                None if driver is None else int(driver),
                "what the driver charges this process", parts)
