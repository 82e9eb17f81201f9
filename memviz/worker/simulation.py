"""A run on fake tensors: the real step, with every storage and op, and no data.

Under ``torch._subclasses.fake_tensor.FakeTensorMode`` every tensor has its shape,
dtype, device and storage size, and every op runs its fake kernel: no memory for
data is allocated and no arithmetic is done. The tensor tracker, entered above the
fake mode, sees the same ops and storages as in a real run, so categories,
modules, phases and the timeline come out as measured, and a 7B model's step fits
on a laptop. ``--device cuda`` is simulated on fake CPU tensors: a CPU build of
torch cannot run ops on fake CUDA ones (its autograd asks for the device), so the
same shapes and dtypes go through the CPU's kernels, and ``core.cuda_model`` turns
the allocations into what CUDA's caching allocator would reserve. Where a CUDA
kernel would allocate differently (attention kernels, cuBLAS workspaces), the
figure is marked unverified.

What cannot be simulated says so, naming the op: a kernel without a fake
implementation, or an op whose output depends on values (which a fake tensor does
not have).
"""

from __future__ import annotations

from ..core.spec import RunSpec, SpecError


class SimulationError(SpecError):
    """This run cannot be simulated; the message names the op."""


def run_spec_for(spec: RunSpec) -> RunSpec:
    """The spec the simulated run executes: on the CPU, whatever device it stands for."""
    from dataclasses import replace

    return replace(spec, device="cpu")


def enter_fake_mode(spec: RunSpec):
    """Enter (and return) the fake mode every tensor of the run is made under."""
    from .fake_mode import SimulationFakeMode

    _allow_moves_that_change_nothing()
    _position_ids_are_one_sequence()
    _grouped_mm_takes_what_the_cpu_kernel_takes()
    # real tensors made outside it (a tokenizer's ids, say) are taken in as fake
    mode = SimulationFakeMode(allow_non_fake_inputs=True)
    mode.__enter__()
    return mode


def _position_ids_are_one_sequence() -> None:
    """transformers looks for packed sequences (several per row) in the position ids
    of a training step without a cache, by reading their values: a real run finds one
    sequence per row (memviz's batches are never packed) and lets attention mask by
    ``is_causal``. On fake ids it cannot read, it would build the packed-sequence mask
    instead, a tensor the real run never has; a simulation answers as the real run
    does."""
    try:
        from transformers import masking_utils
    except ImportError:
        return
    original = getattr(masking_utils, "find_packed_sequence_indices", None)
    if original is None or getattr(original, "memviz_simulation", False):
        return
    from torch._subclasses.fake_tensor import FakeTensor

    def find_packed_sequence_indices(position_ids, *args, **kwargs):
        if isinstance(position_ids, FakeTensor):
            return None
        return original(position_ids, *args, **kwargs)

    find_packed_sequence_indices.memviz_simulation = True
    masking_utils.find_packed_sequence_indices = find_packed_sequence_indices


def _grouped_mm_takes_what_the_cpu_kernel_takes() -> None:
    """``torch._grouped_mm``'s fake kernel carries the CUDA kernel's checks: bfloat16
    only. The CPU kernel (which the simulation stands on, whatever device it stands
    for) takes float32 and float16 too, as a measured CPU run of a mixture of experts
    does (transformers' default expert path). Its output is the same shape in the
    input's dtype, contiguous, as the CPU kernel makes it."""
    import torch
    import torch._decomp as decomp
    from torch._meta_registrations import meta_grouped_mm

    op = torch.ops.aten._grouped_mm.default
    if getattr(decomp.meta_table.get(op), "memviz_simulation", False):
        return

    def grouped_mm(mat_a, mat_b, offs=None, bias=None, out_dtype=None):
        if mat_a.dtype == mat_b.dtype == torch.bfloat16:
            return meta_grouped_mm(mat_a, mat_b, offs=offs, bias=bias, out_dtype=out_dtype)
        shaped = meta_grouped_mm(mat_a.to(torch.bfloat16), mat_b.to(torch.bfloat16), offs=offs,
                                 bias=None if bias is None else bias.to(torch.bfloat16),
                                 out_dtype=torch.bfloat16)
        return torch.empty(shaped.shape, dtype=out_dtype or mat_a.dtype, device=mat_a.device)

    grouped_mm.memviz_simulation = True  # type: ignore[attr-defined]
    _LIBRARIES.append(library := torch.library.Library("aten", "IMPL"))
    library.impl("_grouped_mm", grouped_mm, "Meta", allow_override=True)
    decomp.meta_table[op] = grouped_mm


_LIBRARIES: list = []  # a Library's registrations last as long as it does


def _allow_moves_that_change_nothing() -> None:
    """``module.to(device, dtype)`` on fake parameters: torch swaps each one for its
    converted copy, and the swap fails while anything else holds the parameter (peft
    moves every adapted layer this way). A move to the device and dtype they already
    have changes nothing, so it is let through as the no-op it is; any real change
    still raises."""
    from torch import nn

    original = nn.Module._apply
    if getattr(original, "memviz_simulation", False):
        return

    def _apply(self, fn, recurse=True):
        try:
            return original(self, fn, recurse)
        except RuntimeError as exc:
            if "Couldn't swap" not in str(exc):
                raise
            for tensor in (*self.parameters(), *self.buffers()):
                applied = fn(tensor)
                if applied is not tensor and (applied.dtype != tensor.dtype
                                              or applied.device != tensor.device):
                    raise
            return self

    _apply.memviz_simulation = True
    nn.Module._apply = _apply


def explain(exc: BaseException) -> BaseException:
    """A fake-mode failure as the one line a user can act on; anything else unchanged."""
    from torch._subclasses import fake_tensor

    name = type(exc).__name__
    func = getattr(exc, "func", None)
    op = str(func) if func is not None else "an op"
    if isinstance(exc, fake_tensor.UnsupportedOperatorException):
        return SimulationError(f"cannot simulate: {op} has no fake implementation (run it "
                               "for real, or without the technique that uses it)")
    if isinstance(exc, fake_tensor.DataDependentOutputException |
                  fake_tensor.DynamicOutputShapeException):
        return SimulationError(f"cannot simulate: {op} needs the tensors' values "
                               f"({name}), which a simulation does not have")
    if "data-dependent" in str(exc).lower() or "FakeTensor" in str(exc):
        return SimulationError(f"cannot simulate: {str(exc).strip().splitlines()[0]}")
    return exc
