"""The tensor tracker: every storage that is allocated and freed, with its category.

How it sees everything:
- a ``TorchDispatchMode`` sees each op's outputs; a storage never seen before is
  an allocation (views share a storage and count once; tied weights likewise);
- a weak reference on the storage fires when its last view dies: the free;
- autograd's saved-tensor hook marks what backward keeps (``activation``);
  ``register_post_accumulate_grad_hook`` marks gradients; the optimizer's state is
  scanned after each step; tensors that existed before tracking (parameters,
  buffers) are reported at start.

Categories start as ``temporary`` (``other`` outside any phase) and are retagged
when one of those signals arrives. A retag of an allocation still waiting in
the batch rewrites it in place, so the common case costs no extra event.

Each allocation also gets a layout offset for the allocation view, placed
first-fit into the holes that frees leave (as an allocator would), so bands never
overlap and the picture stays as compact as the live bytes allow. (Placing each
one on top of the highest live allocation instead let long-lived gradients and
optimizer state push the top to 6× the live bytes within two steps.)
"""

from __future__ import annotations

import bisect
import sys
import threading
import weakref
from collections.abc import Iterable

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from ..core.categories import CATEGORIES, CODE
from ..protocol.messages import EVENT_COLUMNS, EVENT_DTYPES
from .components import SCALE, dense_parts, is_plain
from .interning import Interner
from .module_scope import ModuleScope

ALLOC, FREE, RETAG = 0, 1, 2
PHASES = ("", "load", "forward", "backward", "optimizer", "generate")
PHASE_CODE = {name: i for i, name in enumerate(PHASES)}
STACK_DEPTH = 24
CATEGORY_COLUMN = EVENT_COLUMNS.index("category")
EVENTS_PER_MESSAGE = 65_536  # ~4 MiB a message: a burst never makes one oversized frame
_SKIP_IN_STACKS = ("/torch/", "/memviz/tracking/", "/memviz/worker/runner.py", "<frozen")


def _storage_key(t: torch.Tensor):
    st = t.untyped_storage()
    return st, st._cdata


_RESIZING = ("resize_", "resize_as_", "set_", "_resize_output_")


def makes_storage(func) -> bool:
    """Whether ``func`` can return a storage that did not exist before it ran.

    Views and in-place ops return their input's storage: about half of a training
    step's ops, and checking their outputs would cost a storage lookup each. An
    ``out=`` overload or a resize may allocate, so those are always checked.
    """
    schema = func._schema
    if any(r.alias_info is None for r in schema.returns):
        return True
    return (any(a.is_out for a in schema.arguments)
            or func._opname.startswith(_RESIZING))


class _Dispatch(TorchDispatchMode):
    def __init__(self, tracker: TensorTracker) -> None:
        super().__init__()
        self.tracker = tracker
        # OpOverload -> its op string id, or -1 when it never makes a storage
        self.op_ids: dict[object, int] = {}

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        # The tracker never runs under torch.compile, and the wrapper that keeps
        # dynamo out of __torch_dispatch__ costs about 2 µs an op.
        return False

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func._op(*args, **kwargs) if kwargs else func._op(*args)
        op = self.op_ids.get(func)
        if op is None:
            op = self.op_ids[func] = (self.tracker.strings.id("op", func.__name__)
                                      if makes_storage(func) else -1)
        if op < 0:
            return out
        seen = self.tracker._seen
        if isinstance(out, torch.Tensor):
            seen(out, op)
        elif isinstance(out, tuple | list):
            for item in out:
                if isinstance(item, torch.Tensor):
                    seen(item, op)
                elif isinstance(item, tuple | list):
                    for sub in item:
                        if isinstance(sub, torch.Tensor):
                            seen(sub, op)
        return out


class TensorTracker:
    def __init__(self, clock, t0: float, *, stacks: bool = False) -> None:
        self.clock = clock
        self.t0 = t0
        self.stacks = stacks
        self.strings = Interner()
        # Re-entrant: a GC pass inside _register can run a free callback on this thread.
        self.lock = threading.RLock()
        # storage key -> [id, nbytes, category, weakref, offset, data_ptr, device type]
        self._live: dict[int, list] = {}
        self._next_id = 0
        # One list per event, in EVENT_COLUMNS order; turned into columns at take time.
        self._rows: list[list] = []
        self._pending_row: dict[int, list] = {}  # id -> its alloc row, until the next take
        # string ids cached by the objects themselves: no formatting per allocation
        self._dtype_device_ids: dict[tuple, tuple[int, int, str]] = {}
        self._shape_ids: dict[tuple, int] = {}
        self._module_ids: dict[str, int] = {}
        self._hole_starts: list[int] = []  # free gaps below the extent, sorted by start
        self._hole_sizes: list[int] = []
        self.extent = 0  # the layout's top
        self.live_by_category = [0] * len(CATEGORIES)
        self.total = 0
        self.peak = 0
        self.peak_by_category = [0] * len(CATEGORIES)
        self.max_by_category = [0] * len(CATEGORIES)
        self.step_peak = 0
        self.phase = 0
        self.step = -1
        self.scope: ModuleScope | None = None
        self._mode: _Dispatch | None = None
        self._saved_hooks = None
        self._grad_hooks: list = []
        self._hooked: set[int] = set()  # ids of parameters whose gradient is hooked
        self._opaque: list[torch.Tensor] = []
        self._stack_ids: dict[tuple, int] = {}
        self.new_stacks: list[list] = []

    # -- lifecycle ----------------------------------------------------------------
    def start(self, model: torch.nn.Module) -> None:
        """Report the model's existing tensors, then track everything from here on."""
        for name, p in model.named_parameters():
            self.retag(p, "parameter" if p.requires_grad else "parameter_frozen",
                       module=name.rpartition(".")[0])
            self._hook_gradient(p)
        for name, b in model.named_buffers():
            self.retag(b, "buffer", module=name.rpartition(".")[0])
        self.scope = ModuleScope(model)
        self.scope.start()
        self._saved_hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, _unpack)
        self._saved_hooks.__enter__()
        self._mode = _Dispatch(self)
        self._mode.__enter__()

    def stop(self) -> None:
        if self._mode is not None:
            self._mode.__exit__(None, None, None)
            self._mode = None
        if self._saved_hooks is not None:
            self._saved_hooks.__exit__(None, None, None)
            self._saved_hooks = None
        if self.scope is not None:
            self.scope.stop()
        for handle in self._grad_hooks:
            handle.remove()
        self._grad_hooks = []
        self._hooked.clear()

    def set_phase(self, name: str, step: int) -> None:
        code = PHASE_CODE.get(name, 0)
        if self.phase == PHASE_CODE["backward"] and code != self.phase and self.scope:
            self.scope.release()
        self.phase = code
        self.step = step

    # -- signals ------------------------------------------------------------------
    def _pack(self, t: torch.Tensor) -> torch.Tensor:
        if not t.is_meta and is_plain(t):
            entry = self._live.get(t.untyped_storage()._cdata)
            if entry is not None and entry[2] == CODE["temporary"]:
                self._set_category(entry, CODE["activation"])
        return t

    def _grad_ready(self, p: torch.Tensor) -> None:
        if p.grad is not None:
            self.retag(p.grad, "gradient")

    def tag_optimizer_state(self, optimizer: torch.optim.Optimizer) -> None:
        """Mark every tensor in the optimizer's state (after a step)."""
        for state in _optimizer_states(optimizer):
            for value in state.values():
                if isinstance(value, torch.Tensor):
                    self.retag(value, "optimizer_state")
        held = getattr(optimizer, "held_tensors", None)  # fp32 master weights
        if held is not None:
            self.tag(held(), "optimizer_state")

    def track_parameters(self, model: torch.nn.Module) -> None:
        """Parameters added since start (a model that grew) get their category and hook."""
        for name, p in model.named_parameters():
            self.retag(p, "parameter" if p.requires_grad else "parameter_frozen",
                       module=name.rpartition(".")[0])
            self._hook_gradient(p)

    def _hook_gradient(self, p: torch.nn.Parameter) -> None:
        """Mark ``p``'s gradient when it is accumulated (once per parameter)."""
        if p.requires_grad and id(p) not in self._hooked:
            self._hooked.add(id(p))
            self._grad_hooks.append(p.register_post_accumulate_grad_hook(self._grad_ready))

    def add_opaque(self, nbytes: int, category: str, module: str, label: str) -> None:
        """Bytes the dispatcher cannot see (packed weights behind a C++ object),
        reported once at their true size and live to the end of the run."""
        holder = torch.empty(0)  # stands in for the storage; kept alive by the tracker
        self._opaque.append(holder)
        strings = self.strings
        with self.lock:
            self._insert(id(holder), nbytes, CODE[category], None, 0, "cpu", (
                strings.id("dtype", "packed"), strings.id("shape", label),
                strings.id("device", "cpu"), strings.id("module", module),
                strings.id("op", "(packed)")), -1)

    def tag(self, tensors: Iterable[torch.Tensor], category: str) -> None:
        for t in tensors:
            if isinstance(t, torch.Tensor):
                self.retag(t, category)

    # -- the bookkeeping ----------------------------------------------------------
    def _seen(self, t: torch.Tensor, op: int) -> None:
        """An op's output: a storage not seen before is an allocation."""
        if type(t) is not torch.Tensor and not is_plain(t):  # sparse, quantized, DTensor
            if not t.is_meta:
                for part, _ in dense_parts(t):
                    if is_plain(part):
                        self._seen(part, op)
            return
        try:
            st = t.untyped_storage()
        except (RuntimeError, NotImplementedError):  # a layout without a storage
            return
        key = st._cdata
        if key in self._live or not st.nbytes() or t.is_meta:
            return
        self._register(t, st, key, CODE["temporary"] if self.phase > 1 else CODE["other"], op)

    def retag(self, t: torch.Tensor, category: str, module: str | None = None) -> None:
        """Give ``t``'s storage this category, registering it if it is new to us
        (under ``module`` if given, else the module running now)."""
        if t.is_meta:
            return
        if not is_plain(t):
            for part, role in dense_parts(t):
                if is_plain(part):
                    quant = role == SCALE and category.startswith("parameter")
                    self.retag(part, "quantization_state" if quant else category, module)
            return
        st, key = _storage_key(t)
        if not st.nbytes():
            return
        entry = self._live.get(key)
        if entry is None:
            self._register(t, st, key, CODE[category], self.strings.id("op", "(existing)"),
                           module)
        else:
            self._set_category(entry, CODE[category])

    def _register(self, t: torch.Tensor, st, key: int, category: int, op: int,
                  module: str | None = None) -> None:
        """``op`` is the string id of the op that made the storage."""
        strings = self.strings
        dtype_device = self._dtype_device_ids.get((t.dtype, t.device))
        if dtype_device is None:
            dtype_device = self._dtype_device_ids[(t.dtype, t.device)] = (
                strings.id("dtype", str(t.dtype).removeprefix("torch.")),
                strings.id("device", str(t.device)), t.device.type)
        shape = self._shape_ids.get(t.shape)
        if shape is None:
            shape = self._shape_ids[t.shape] = strings.id(
                "shape", "×".join(map(str, t.shape)) or "scalar")
        if module is None:
            stack = self.scope.stack if self.scope else None
            module = stack[-1] if stack else ""
        module_id = self._module_ids.get(module)
        if module_id is None:
            module_id = self._module_ids[module] = strings.id("module", module)
        ref = weakref.ref(st, lambda _r, key=key: self._freed(key))
        with self.lock:
            self._insert(key, st.nbytes(), category, ref, st.data_ptr(), dtype_device[2],
                         (dtype_device[0], shape, dtype_device[1], module_id, op),
                         self._stack_id() if self.stacks else -1)

    def _insert(self, key: int, nbytes: int, category: int, ref, data_ptr: int,
                device_type: str, labels: tuple[int, int, int, int, int], stack: int) -> None:
        """A new live allocation and its event; ``labels`` are the string ids of its
        dtype, shape, device, module and op. Called under the lock."""
        ident = self._next_id
        self._next_id += 1
        offset = self._place(nbytes)
        self._live[key] = [ident, nbytes, category, ref, offset, data_ptr, device_type]
        self._count(category, nbytes)
        row = [self.clock() - self.t0, ident, ALLOC, nbytes, category, offset, *labels,
               self.phase, self.step, stack]
        self._rows.append(row)
        self._pending_row[ident] = row

    def _place(self, nbytes: int) -> int:
        """First fit: the lowest hole that is large enough, else the top."""
        starts, sizes = self._hole_starts, self._hole_sizes
        for i, size in enumerate(sizes):
            if size >= nbytes:
                offset = starts[i]
                if size == nbytes:
                    del starts[i], sizes[i]
                else:
                    starts[i] += nbytes
                    sizes[i] -= nbytes
                return offset
        offset = self.extent
        self.extent += nbytes
        return offset

    def _release(self, offset: int, nbytes: int) -> None:
        """Give [offset, offset + nbytes) back, merging with neighbouring holes."""
        starts, sizes = self._hole_starts, self._hole_sizes
        i = bisect.bisect_left(starts, offset)
        if i > 0 and starts[i - 1] + sizes[i - 1] == offset:  # merge with the hole below
            i -= 1
            offset = starts[i]
            nbytes += sizes[i]
            del starts[i], sizes[i]
        if i < len(starts) and offset + nbytes == starts[i]:  # and the one above
            nbytes += sizes[i]
            del starts[i], sizes[i]
        if offset + nbytes == self.extent:
            self.extent = offset
        else:
            starts.insert(i, offset)
            sizes.insert(i, nbytes)

    def _freed(self, key: int) -> None:
        with self.lock:
            entry = self._live.pop(key, None)
            if entry is None:
                return
            ident, nbytes, category, _, offset, _, _ = entry
            self._release(offset, nbytes)
            self._count(category, -nbytes)
            self._rows.append([self.clock() - self.t0, ident, FREE, nbytes, category, 0,
                               -1, -1, -1, -1, -1, self.phase, self.step, -1])

    def _set_category(self, entry: list, category: int) -> None:
        if entry[2] == category:
            return
        with self.lock:
            ident, nbytes, old = entry[0], entry[1], entry[2]
            self._count(old, -nbytes)
            self._count(category, nbytes)
            entry[2] = category
            row = self._pending_row.get(ident)
            if row is not None:  # not sent yet: rewrite the allocation itself
                row[CATEGORY_COLUMN] = category
                return
            self._rows.append([self.clock() - self.t0, ident, RETAG, nbytes, category, 0,
                               -1, -1, -1, -1, -1, self.phase, self.step, -1])

    def _count(self, category: int, delta: int) -> None:
        by_cat = self.live_by_category
        by_cat[category] += delta
        self.total += delta
        if delta > 0:
            if by_cat[category] > self.max_by_category[category]:
                self.max_by_category[category] = by_cat[category]
            if self.total > self.step_peak:
                self.step_peak = self.total
            if self.total > self.peak:
                self.peak = self.total
                self.peak_by_category = list(by_cat)

    def _stack_id(self) -> int:
        frames = []
        frame = sys._getframe(1)
        while frame is not None and len(frames) < STACK_DEPTH:
            filename = frame.f_code.co_filename
            if not any(s in filename for s in _SKIP_IN_STACKS):
                frames.append(self.strings.id(
                    "frame", f"{filename}:{frame.f_lineno}:{frame.f_code.co_name}"))
            frame = frame.f_back
        key = tuple(frames)
        found = self._stack_ids.get(key)
        if found is None:
            found = self._stack_ids[key] = len(self._stack_ids)
            self.new_stacks.append([found, list(frames)])
        return found

    # -- reading ------------------------------------------------------------------
    def take_messages(self) -> list[dict]:
        """The strings, stacks and events gathered since the last call, as messages."""
        with self.lock:
            rows, self._rows = self._rows, []
            self._pending_row = {}
            strings = self.strings.take()
            stacks, self.new_stacks = self.new_stacks, []
        messages = []
        if strings:
            messages.append({"type": "strings", "entries": strings})
        if stacks:
            messages.append({"type": "stacks", "entries": stacks})
        for start in range(0, len(rows), EVENTS_PER_MESSAGE):
            table = np.array(rows[start:start + EVENTS_PER_MESSAGE], dtype=np.float64)
            messages.append({"type": "tensor_events", "columns": {
                name: table[:, i].astype(EVENT_DTYPES[name])
                for i, name in enumerate(EVENT_COLUMNS)}})
        return messages

    def category_by_address(self) -> dict[int, int]:
        """Category code of every live storage, by its data pointer (CUDA joins)."""
        with self.lock:
            return {entry[5]: entry[2] for entry in self._live.values()}

    def live_block_bytes(self, device_type: str, round_to) -> int:
        """Live bytes on one device type, each storage rounded as its allocator would."""
        with self.lock:
            return sum(round_to(e[1]) for e in self._live.values() if e[6] == device_type)

    def live_bytes(self) -> dict[str, int]:
        return {name: self.live_by_category[i] for i, name in enumerate(CATEGORIES)}

    def take_step_peak(self) -> int:
        peak, self.step_peak = self.step_peak, self.total
        return peak

    def summary(self) -> dict:
        return {
            "tracked_bytes": self.peak,
            "peak_by_category": dict(zip(CATEGORIES, self.peak_by_category, strict=True)),
            "max_by_category": dict(zip(CATEGORIES, self.max_by_category, strict=True)),
            "allocations": self._next_id,
        }


def _unpack(t: torch.Tensor) -> torch.Tensor:
    return t


def _optimizer_states(optimizer) -> Iterable[dict]:
    # ZeroRedundancyOptimizer keeps its local optimizer in .optim
    inner = getattr(optimizer, "optim", None)
    if isinstance(inner, torch.optim.Optimizer):
        optimizer = inner
    return [s for s in optimizer.state.values() if isinstance(s, dict)]

