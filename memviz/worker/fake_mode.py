"""The simulation's fake mode: torch's ``FakeTensorMode`` with a cheaper cache key.

Every op of a simulated step goes through the fake mode's dispatch cache, and on a
cache hit two thirds of its time is the key: torch flattens each fake argument's
seventeen metadata fields one by one through a generic recursion (about 60 µs of a
90 µs op here). A simulated Llama-2-7B step is some 15,000 such ops.

The key here holds the same facts for the arguments a simulated step has (plain,
strided fake tensors of this mode, without symbolic sizes; numbers, dtypes,
devices, and lists of them) as one tuple a tensor: dtype, sizes, strides, device,
storage offset, storage size, requires_grad, quantized, conjugate, negative,
inference. Layout and memory format, which torch's key also holds, follow from a
strided tensor's sizes and strides. Anything else (a real tensor, a symbolic
size, a sparse tensor, an argument of another type) takes torch's own key, with
its own decision to bypass the cache; both kinds of key live side by side in
torch's cache, the fast one marked so that it never equals torch's. What the
cache then returns, and how it builds outputs, views and in-place results from an
entry, is torch's.
"""

from __future__ import annotations

import torch
from torch._subclasses.fake_tensor import FakeTensor, FakeTensorMode, _DispatchCacheKey

# types a key takes as they are: each value is hashable and stands for itself
_PLAIN = frozenset({int, float, bool, str, type(None), torch.dtype, torch.device,
                    torch.memory_format, torch.layout})
_FAST = object()  # marks a key made here: never equal to a key torch makes


class _NotPlain(Exception):
    """An argument the fast key does not describe: torch's key is used."""


class SimulationFakeMode(FakeTensorMode):
    def _cache_key(self, state, func, args, kwargs):  # type: ignore[override]
        if self.shape_env is None:
            try:
                return _DispatchCacheKey((
                    _FAST, func, torch.get_default_dtype(), torch._C._get_default_device(),
                    torch.is_inference_mode_enabled(),
                    torch.fx.experimental.proxy_tensor.get_proxy_mode() is not None,
                    self._describe(args) if args else (),
                    (tuple(kwargs), self._describe(kwargs.values())) if kwargs else ()))
            except _NotPlain:
                pass
        return super()._cache_key(state, func, args, kwargs)

    def _describe(self, args) -> tuple:
        described: list[object] = []
        for arg in args:
            kind = type(arg)
            if kind is FakeTensor:
                if (arg.fake_mode is not self or arg.constant is not None
                        or arg.layout is not torch.strided
                        or arg._has_symbolic_sizes_strides):
                    raise _NotPlain
                described.append((arg.dtype, tuple(arg.shape), arg.stride(), arg.fake_device,
                                  arg.storage_offset(), arg.untyped_storage().nbytes(),
                                  arg.requires_grad, arg.is_quantized, arg.is_conj(),
                                  arg.is_neg(), arg.is_inference()))
            elif kind in _PLAIN:  # 1 and 1.0 are equal, and make different dtypes
                described.append(kind)
                described.append(arg)
            elif kind is list or kind is tuple:
                described.append(kind)
                described.append(self._describe(arg))
            else:
                raise _NotPlain
        return tuple(described)
