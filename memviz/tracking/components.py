"""The plain tensors that really hold a tensor's bytes.

Quantized weights (torchao tensor subclasses), low-bit optimizer state and
sparse tensors own no storage of their own: their bytes live in inner plain
tensors (int8 data and float scales; CSR/BSR indices and values). The
tracker counts those, each once. Integer data counts as the tensor itself;
the float scales and zero points beside it are ``quantization_state``.
"""

from __future__ import annotations

import torch
from torch._subclasses.fake_tensor import FakeTensor

DATA, SCALE = "data", "scale"
_SPARSE = (torch.sparse_csr, torch.sparse_csc, torch.sparse_bsr, torch.sparse_bsc)


def dense_parts(t: torch.Tensor) -> list[tuple[torch.Tensor, str]]:
    """``[(plain tensor, role)]`` for any tensor; a plain tensor is ``[(t, DATA)]``."""
    if t.layout in _SPARSE:
        compressed = (t.crow_indices(), t.col_indices()) if t.layout in (
            torch.sparse_csr, torch.sparse_bsr) else (t.ccol_indices(), t.row_indices())
        return [(compressed[0], DATA), (compressed[1], DATA), (t.values(), DATA)]
    if t.layout == torch.sparse_coo:
        return [(t._indices(), DATA), (t._values(), DATA)]
    flatten = getattr(type(t), "__tensor_flatten__", None)
    if flatten is None or type(t) in (torch.Tensor, torch.nn.Parameter):
        return [(t, DATA)]
    names, _ = t.__tensor_flatten__()
    inners = [inner for name in names if isinstance(inner := getattr(t, name), torch.Tensor)]
    parts: list[tuple[torch.Tensor, str]] = []
    for inner in inners:  # a DTensor wraps one local shard: that is its data
        for plain, role in dense_parts(inner):
            is_data = (role == DATA and not plain.is_floating_point()) or len(inners) == 1
            parts.append((plain, DATA if is_data else SCALE))
    return parts


# A fake tensor (a simulated step, torch._subclasses.fake_tensor) is as plain as a real
# one: a storage of known size, only without data.
_PLAIN = (torch.Tensor, torch.nn.Parameter, FakeTensor)


def is_plain(t: torch.Tensor) -> bool:
    return t.layout == torch.strided and type(t) in _PLAIN


def storages(t: torch.Tensor) -> list[tuple[int, int]]:
    """``[(storage key, bytes)]`` of the plain tensors behind ``t`` (tied ones share a key)."""
    out = []
    for part, _ in dense_parts(t):
        if is_plain(part) and not part.is_meta:
            storage = part.untyped_storage()
            out.append((storage._cdata, storage.nbytes()))
    return out


def stored_bytes(t: torch.Tensor) -> int:
    """The bytes ``t`` really holds: int8 data and scales, sparse indices and values."""
    return sum(nbytes for _, nbytes in storages(t))
