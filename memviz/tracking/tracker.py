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

The hot path (an op's new storage, a free, a retag) only appends a record to a
log, with no lock: a list append and a dict store are atomic. Everything else
(the layout offset, the totals by category and their peaks, the string ids, the
event rows) is worked out from the log in order, in one pass, when the events
are taken or a total is read. In a training step that pass runs warm, at about
a third of what the same work costs spread between the ops.
"""

from __future__ import annotations

import itertools
import os
import sys
import threading
import weakref
from collections.abc import Iterable

import numpy as np
import torch
from torch._subclasses.fake_tensor import FakeTensor
from torch.utils._python_dispatch import TorchDispatchMode

from ..core.categories import CATEGORIES, CODE
from ..core.cuda_model import SimulatedDevice
from ..protocol.messages import EVENT_COLUMNS, EVENT_DTYPES
from .components import SCALE, dense_parts, is_plain
from .flop_tally import FlopTally
from .interning import Interner
from .layout import FirstFitLayout
from .module_scope import ModuleScope
from .not_compiled import run_as_plain_python
from .rng_states import RngStates
from .storage_resizes import StorageResizes

ALLOC, FREE, RETAG = 0, 1, 2
PHASES = ("", "load", "forward", "backward", "optimizer", "generate")
PHASE_CODE = {name: i for i, name in enumerate(PHASES)}
STACK_DEPTH = 24
CATEGORY_COLUMN = EVENT_COLUMNS.index("category")
EVENTS_PER_MESSAGE = 65_536  # ~4 MiB a message: a burst never makes one oversized frame
# frames a user never needs: torch's own, memviz's machinery (its models' own code is
# kept: a preset's forward is the model a user runs), the import machinery's
_MEMVIZ = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
_SKIP_IN_STACKS = ("/torch/", "<frozen", *(_MEMVIZ + part + os.sep for part in (
    "tracking", "worker", "program", "session", "techniques", "cli")))


def _line_at(code, instruction: int) -> int:
    """The line of ``code`` that the instruction at this byte offset belongs to."""
    for start, end, line in code.co_lines():
        if start <= instruction < end:
            return line or code.co_firstlineno
    return code.co_firstlineno


def _storage_key(t: torch.Tensor):
    st = t.untyped_storage()
    return st, st._cdata


# ops that can hand back a storage new to the tracker though their schema says the
# output aliases the input: resizes, and lift_fresh, which torch.tensor(data) calls on
# the storage it just made outside the dispatcher (AdamW's step counters)
_ALWAYS_CHECKED = ("resize_", "resize_as_", "set_", "_resize_output_", "lift_fresh")


# collectives that, run in backward, reduce gradients in place: DDP's buckets
_GRADIENT_REDUCTIONS = ("allreduce_", "allreduce_coalesced_")
_REDUCES = 1 << 40  # added to such an op's string id


def makes_storage(func) -> bool:
    """Whether ``func`` can return a storage that did not exist before it ran.

    Views and in-place ops return their input's storage: about 60 % of a training
    step's ops, and checking their outputs would cost a storage lookup each. An
    ``out=`` overload or a resize may allocate, so those are always checked.
    """
    schema = func._schema
    if any(r.alias_info is None for r in schema.returns):
        return True
    return (any(a.is_out for a in schema.arguments)
            or func._opname.startswith(_ALWAYS_CHECKED))


# A fake tensor's device is asked through the dispatcher (``prim.device``) each time
# C++ reads it: the autograd engine and the optimizers ask some 20,000 times in a
# simulated 7B step, more than all the step's other ops together. It is answered here,
# as the fake tensor itself answers it, instead of through a second Python mode.
_DEVICE_QUERY = torch.ops.prim.device.default


class _Dispatch(TorchDispatchMode):
    def __init__(self, tracker: TensorTracker) -> None:
        super().__init__()
        self.tracker = tracker
        # OpOverload -> its op string id, or -1 when it never makes a storage
        self.op_ids: dict[object, int] = {}
        self.flops: FlopTally | None = None  # counting this step's FLOPs

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        # Dynamo is kept out of __torch_dispatch__ by a mark on its code
        # (not_compiled.py), not by the wrapper this would add: about 2 µs an op.
        return False

    @classmethod
    def ignore_compile_internals(cls) -> bool:
        # A compiled program compiles as it would without memviz: Dynamo does not
        # fall back to eager code because this mode is on the stack, and the mode
        # sees the ops the compiled code dispatches.
        return True

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is _DEVICE_QUERY and type(args[0]) is FakeTensor \
                and not args[0].fake_mode.in_kernel_invocation:
            return args[0].fake_device
        out = func._op(*args, **kwargs) if kwargs else func._op(*args)
        op = self.op_ids.get(func)
        if op is None:
            with self.tracker.lock:  # the string table is shared with the taking thread
                op = self.op_ids[func] = (self.tracker.strings.id("op", func.__name__)
                                          if makes_storage(func) else -1)
                if op >= 0 and func.namespace == "c10d" and \
                        func._opname in _GRADIENT_REDUCTIONS:
                    self.op_ids[func] = op + _REDUCES  # one comparison on the hot path
                    op += _REDUCES
        if op < 0:
            return out
        if self.flops is not None:  # a matmul or a convolution always makes its output
            self.flops.count(func, args, kwargs, out)
        if op >= _REDUCES:  # an all-reduce: its tensors, in backward, hold gradients
            op -= _REDUCES
            self.tracker.reduced(args[0])
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


# An entry of _live: [id, nbytes, declared category, weakref, data_ptr,
#                    offset, counted category, device type]
# The first four are set on the hot path; offset, counted category and device
# type once the log has been worked through. The declared category is the latest
# one a signal gave; the counted one is what the totals hold now.
ID, NBYTES, CATEGORY, REF, DATA_PTR, OFFSET, COUNTED, DEVICE_TYPE = range(8)


class TensorTracker:
    def __init__(self, clock, t0: float, *, stacks: bool = False) -> None:
        self.clock = clock
        self.t0 = t0
        self.stacks = stacks
        self.strings = Interner()
        self._existing_op = self.strings.id("op", "(existing)")  # tensors made before tracking
        self._packed_op = self.strings.id("op", "(packed)")  # bytes behind a C++ object
        self._saved_op = self.strings.id("op", "(saved for backward)")  # found by autograd
        # Guards the pass over the log and the taking of events. Re-entrant: a GC
        # pass can run a free callback on the thread that holds it.
        self.lock = threading.RLock()
        self._live: dict[int, list] = {}  # storage key -> entry
        self._ids = itertools.count()
        self._log: list[tuple] = []  # ALLOC / FREE / RETAG records, in order
        # One list per event, in EVENT_COLUMNS order; turned into columns at take time.
        self._rows: list[list] = []
        self._pending_row: dict[int, list] = {}  # id -> its alloc row, until the next take
        # string ids cached by the objects themselves: no formatting per allocation
        self._dtype_device_ids: dict[tuple, tuple[int, int, str]] = {}
        self._shape_ids: dict[object, int] = {}
        self._module_ids: dict[str, int] = {}
        self._layout = FirstFitLayout()
        self._by_category = [0] * len(CATEGORIES)
        self._total = 0
        self._peak = 0
        self._peak_t = 0.0  # when the peak was reached, seconds on the run's clock
        self._peak_by_category = [0] * len(CATEGORIES)
        # allocation ids are made in order: the last one made when the peak was
        # reached, and when the timeline was last sampled (see the retag in the pass)
        self._peak_through = -1
        self._sampled_through = -1
        self._last_id = -1
        self._max_by_category = [0] * len(CATEGORIES)
        self._step_peak = 0
        self._allocations = 0
        self.phase = 0
        self.step = -1
        self.scope: ModuleScope | None = None
        self._dispatch = _Dispatch(self)  # one, entered and left (its op cache stays)
        self._mode: _Dispatch | None = None  # the dispatch mode while it is entered
        self.detailed = False
        self._saved_hooks = None
        self._grad_hooks: list = []
        self._rng_states: RngStates | None = None
        self._hooked: set[int] = set()  # ids of parameters whose gradient is hooked
        self._opaque: list[torch.Tensor] = []
        self._stack_ids: dict[tuple, int] = {}  # ((id(code), instruction), ...) -> stack id
        self._stack_ids_by_line: dict[tuple, int] = {}  # ((id(code), line), ...) -> id
        self._stack_numbers = itertools.count()  # every stack's id, whatever found it
        self._hidden_code: dict[int, bool] = {}  # id(code object) -> left out of stacks
        self._codes: dict[int, object] = {}  # id -> the code object, kept alive
        self.new_stacks: list[list] = []
        # a simulated CUDA run: the caching allocator's model, fed every allocation
        self.simulated_device: SimulatedDevice | None = None
        self._resizes = StorageResizes(self._storage_resized)
        self._emptied: dict[int, tuple[int, object]] = {}  # key -> (category, its weakref)
        self._resized_op = self.strings.id("op", "UntypedStorage.resize_")

    # -- lifecycle ----------------------------------------------------------------
    def start(self, model: torch.nn.Module | None = None) -> None:
        """Report the model's existing tensors (if given), then track everything from here
        on; more models can join with ``add_model``."""
        self.scope = ModuleScope()
        if model is not None:
            self.add_model(model)
        self.scope.start()
        self._saved_hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, _unpack)
        self._saved_hooks.__enter__()
        self._rng_states = RngStates(self)
        self._resizes.start()
        self.set_detail(True)

    def set_detail(self, detailed: bool) -> None:
        """Per-op tracking (every temporary, every op) on or off; the cheap signals stay.
        Call it on the thread that started the tracker (dispatch modes are per thread)."""
        if detailed and self._mode is None:
            self._mode = self._dispatch
            self._mode.__enter__()
        elif not detailed and self._mode is not None:
            self._mode.__exit__(None, None, None)
            self._mode = None
        self.detailed = detailed

    def count_flops(self, counting: bool) -> int | None:
        """Start counting the FLOPs of the ops seen from now (``True``), or stop; the
        count since the start (None when none was under way)."""
        tally = self._dispatch.flops
        self._dispatch.flops = FlopTally() if counting else None
        return None if tally is None else tally.total

    def stop(self) -> None:
        self._resizes.stop()
        if self._mode is not None:
            self._mode.__exit__(None, None, None)
            self._mode = None
        if self._saved_hooks is not None:
            self._saved_hooks.__exit__(None, None, None)
            self._saved_hooks = None
        if self._rng_states is not None:
            self._rng_states.restore()
            self._rng_states = None
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
        """Autograd keeps ``t`` for backward: an activation. Seen by the per-op tracker
        already, it is retagged; in a step without it, this is where it is found."""
        if not t.is_meta and is_plain(t):
            st, key = _storage_key(t)
            entry = self._live.get(key)
            if entry is None:
                nbytes = st.nbytes()
                if nbytes:
                    self._register(t, st, key, nbytes, CODE["activation"], self._saved_op)
            elif entry[CATEGORY] == CODE["temporary"]:
                self._set_category(entry, CODE["activation"])
        return t

    def _grad_ready(self, p: torch.Tensor) -> None:
        if p.grad is not None:
            self.retag(p.grad, "gradient")

    def reduced(self, tensors) -> None:
        """An all-reduce ran on ``tensors`` in place. In backward these are gradient
        buckets (DDP copies each gradient into its bucket and reduces the bucket): a
        bucket that holds gradients is gradient memory, from its birth."""
        if self.phase != PHASE_CODE["backward"]:
            return
        for t in tensors if isinstance(tensors, list | tuple) else (tensors,):
            if not isinstance(t, torch.Tensor) or t.is_meta or not is_plain(t):
                continue
            _, key = _storage_key(t)
            entry = self._live.get(key)
            if entry is None:
                self.retag(t, "gradient")
            elif entry[CATEGORY] in (CODE["temporary"], CODE["other"]):
                self._set_category(entry, CODE["gradient"])

    def tag_optimizer_state(self, optimizer: torch.optim.Optimizer) -> None:
        """Mark every tensor in the optimizer's state (after a step)."""
        for state in _optimizer_states(optimizer):
            for value in state.values():
                if isinstance(value, torch.Tensor):
                    self.retag(value, "optimizer_state")
        held = getattr(optimizer, "held_tensors", None)  # fp32 master weights
        if held is not None:
            self.tag(held(), "optimizer_state")

    def add_model(self, model: torch.nn.Module, prefix: str = "") -> None:
        """Report a model's parameters and buffers (its modules named under ``prefix``),
        and mark its gradients as they come."""
        def owner(name: str) -> str:
            module = name.rpartition(".")[0]
            return f"{prefix}{module}" if module else prefix.rstrip(".")

        for name, p in model.named_parameters():
            self.retag(p, "parameter" if p.requires_grad else "parameter_frozen",
                       module=owner(name))
            self._hook_gradient(p)
        for name, b in model.named_buffers():
            self.retag(b, "buffer", module=owner(name))
        if self.scope is not None:
            self.scope.add_model(model, prefix)

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
        self._add(id(holder), nbytes, CODE[category], None, 0, "packed", "cpu", label, module,
                  self._packed_op, -1)

    def tag(self, tensors: Iterable[torch.Tensor], category: str) -> None:
        for t in tensors:
            if isinstance(t, torch.Tensor):
                self.retag(t, category)

    # -- the hot path: records only -------------------------------------------------
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
        if key in self._live:
            return
        nbytes = st.nbytes()
        if nbytes and not t.is_meta:
            self._register(t, st, key, nbytes, CODE["temporary"] if self.phase > 1
                           else CODE["other"], op)

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
        nbytes = st.nbytes()
        if not nbytes:
            return
        entry = self._live.get(key)
        if entry is None:
            self._register(t, st, key, nbytes, CODE[category], self._existing_op, module)
        else:
            self._set_category(entry, CODE[category])

    def _register(self, t: torch.Tensor, st, key: int, nbytes: int, category: int, op: int,
                  module: str | None = None) -> None:
        """A new live storage; ``op`` is the string id of the op that made it."""
        if module is None:
            module = self.scope.current() if self.scope else ""
        address = 0 if type(t) is FakeTensor else st.data_ptr()  # a fake one has no data
        self._add(key, nbytes, category, weakref.ref(st, lambda _r, key=key: self._freed(key)),
                  address, t.dtype, t.device, t.shape, module, op,
                  self._stack_id() if self.stacks and self.detailed else -1)

    def _add(self, key: int, nbytes: int, category: int, ref, data_ptr: int, dtype, device,
             shape, module: str, op: int, stack: int) -> None:
        """Log a new live allocation, then make it findable by ``key``: no retag or
        free of it can be logged before it."""
        entry = [next(self._ids), nbytes, category, ref, data_ptr, -1, category, ""]
        self._log.append((ALLOC, entry, self.clock(), category, dtype, device, shape,
                          module, op, self.phase, self.step, stack))
        self._live[key] = entry

    def _storage_resized(self, st: torch.UntypedStorage, before: int) -> None:
        """``st`` was resized in place from ``before`` bytes: what it held is freed,
        what it holds now is a new allocation, of the category it had before it was
        emptied (an all-gathered parameter is a parameter each time it is gathered)."""
        after = st.nbytes()
        if after == before:
            return
        key = st._cdata
        entry = self._live.get(key)
        if entry is not None:
            self._freed(key)
            if not after:  # kept, with its weak reference, until it grows or dies
                self._emptied[key] = (entry[CATEGORY], entry[REF])
        if not after:
            return
        emptied = self._emptied.pop(key, None)
        category = entry[CATEGORY] if entry is not None else emptied[0] if emptied else (
            CODE["temporary"] if self.phase > 1 else CODE["other"])
        device = st.device
        if device.type == "meta":  # a fake tensor's, in a simulation: no data, and the
            # device it stands for is the simulated one
            device = torch.device("cuda", 0) if self.simulated_device is not None \
                else torch.device("cpu")
        self._add(key, after, category, weakref.ref(st, lambda _r, key=key: self._freed(key)),
                  0 if st.device.type == "meta" else st.data_ptr(), torch.uint8, device,
                  torch.Size((after,)),
                  self.scope.current() if self.scope else "", self._resized_op,
                  self._stack_id() if self.stacks and self.detailed else -1)

    def _freed(self, key: int) -> None:
        if self._emptied:  # a storage emptied by a resize died: forget its category
            self._emptied.pop(key, None)
        entry = self._live.pop(key, None)
        if entry is not None:
            self._log.append((FREE, entry, self.clock(), self.phase, self.step))

    def _set_category(self, entry: list, category: int) -> None:
        if entry[CATEGORY] != category:
            entry[CATEGORY] = category
            self._log.append((RETAG, entry, self.clock(), category, self.phase, self.step))

    def _stack_id(self) -> int:
        """The id of the Python stack running now. Stacks repeat from step to step,
        so they are looked up by where each frame is: its code object's id (a code
        object's own hash is worked out from its contents on every call; the objects
        stay alive in ``_codes``, so an id is never reused) and its last instruction
        (a frame's line number is looked up in its code's line table, so only a
        stack never seen before has its lines worked out, its frames formatted and
        interned). Two places on one line are one stack."""
        frames = []
        frame = sys._getframe(1)
        hidden = self._hidden_code
        while frame is not None and len(frames) < STACK_DEPTH:
            code = frame.f_code
            skip = hidden.get(id(code))
            if skip is None:
                skip = hidden[id(code)] = any(s in code.co_filename for s in _SKIP_IN_STACKS)
                self._codes[id(code)] = code
            if not skip:
                frames.append((id(code), frame.f_lasti))
            frame = frame.f_back
        key = tuple(frames)
        found = self._stack_ids.get(key)
        if found is None:
            found = self._stack_ids[key] = self._stack_of_lines(frames)
        return found

    def _stack_of_lines(self, frames: list[tuple[int, int]]) -> int:
        codes = self._codes
        lines = tuple((c, _line_at(codes[c], at)) for c, at in frames)
        with self.lock:  # the string tables are shared with the taking thread
            found = self._stack_ids_by_line.get(lines)
            if found is None:
                ids = [self.strings.id("frame", f"{codes[c].co_filename}:{line}:"
                                                f"{codes[c].co_name}") for c, line in lines]
                found = self._stack_ids_by_line[lines] = next(self._stack_numbers)
                self.new_stacks.append([found, ids])
        return found

    # -- the pass over the log --------------------------------------------------------
    def _work_through_log(self) -> None:
        """Apply the records logged since the last pass, in order. Called under the lock.

        One tight loop with the totals in locals: this runs for every event."""
        log = self._log
        n = len(log)
        if not n:
            return
        records = log[:n]
        del log[:n]  # records appended meanwhile stay for the next pass
        t0 = self.t0
        rows, pending = self._rows, self._pending_row
        place, release = self._layout.place, self._layout.release
        dtype_device_ids, shape_ids, module_ids = (
            self._dtype_device_ids, self._shape_ids, self._module_ids)
        by_cat, max_by_cat = self._by_category, self._max_by_category
        total, peak, step_peak = self._total, self._peak, self._step_peak
        last_id = self._last_id
        simulated = self.simulated_device
        for record in records:
            kind, entry = record[0], record[1]
            nbytes = entry[NBYTES]
            if kind == ALLOC:
                _, _, when, category, dtype, device, shape, module, op, phase, step, stack = record
                dtype_device = (dtype_device_ids.get((dtype, device))
                                or self._dtype_device_id(dtype, device))
                shape_id = shape_ids.get(shape)
                if shape_id is None:
                    shape_id = self._shape_id(shape)
                module_id = module_ids.get(module)
                if module_id is None:
                    module_id = self._module_id(module)
                offset = place(nbytes)
                entry[OFFSET], entry[COUNTED], entry[DEVICE_TYPE] = (
                    offset, category, dtype_device[2])
                row = [when - t0, entry[ID], ALLOC, nbytes, category, offset, dtype_device[0],
                       shape_id, dtype_device[1], module_id, op, phase, step, stack]
                rows.append(row)
                pending[entry[ID]] = row
                last_id = entry[ID]
                self._allocations += 1
                if simulated is not None:
                    simulated.allocate(entry[ID], nbytes)
            elif kind == FREE:
                category = entry[COUNTED]
                release(entry[OFFSET], nbytes)
                if simulated is not None:
                    simulated.release(entry[ID])
                by_cat[category] -= nbytes
                total -= nbytes
                rows.append([record[2] - t0, entry[ID], FREE, nbytes, category, 0,
                             -1, -1, -1, -1, -1, record[3], record[4], -1])
                continue
            else:  # RETAG
                category, old = record[3], entry[COUNTED]
                if old == category:
                    continue
                by_cat[old] -= nbytes
                total -= nbytes
                entry[COUNTED] = category
                # A category is the allocation's from its birth. Not sent yet and
                # counted in no sample: the allocation itself is rewritten; otherwise
                # a retag event lets the timeline move its bytes back to its birth.
                row = pending.get(entry[ID])
                if row is not None and entry[ID] > self._sampled_through:
                    row[CATEGORY_COLUMN] = category
                else:
                    rows.append([record[2] - t0, entry[ID], RETAG, nbytes, category, 0,
                                 -1, -1, -1, -1, -1, record[4], record[5], -1])
                if entry[ID] <= self._peak_through:  # live at the peak: it was this
                    self._peak_by_category[old] -= nbytes
                    self._peak_by_category[category] += nbytes
            # the bytes arrive in ``category``: an allocation, or a retag's second half
            by_cat[category] += nbytes
            total += nbytes
            if by_cat[category] > max_by_cat[category]:
                max_by_cat[category] = by_cat[category]
            if total > step_peak:
                step_peak = total
            if total > peak:
                peak = total
                self._peak_by_category = list(by_cat)
                self._peak_t = record[2] - t0
                self._peak_through = last_id
        self._total, self._peak, self._step_peak = total, peak, step_peak
        self._last_id = last_id

    def _dtype_device_id(self, dtype, device) -> tuple[int, int, str]:
        found = self._dtype_device_ids.get((dtype, device))
        if found is None:
            as_device = torch.device(device)  # a packed holder names its device by string
            found = self._dtype_device_ids[(dtype, device)] = (
                self.strings.id("dtype", str(dtype).removeprefix("torch.")),
                self.strings.id("device", str(as_device)), as_device.type)
        return found

    def _shape_id(self, shape) -> int:
        found = self._shape_ids.get(shape)
        if found is None:
            text = shape if isinstance(shape, str) else "×".join(map(str, shape)) or "scalar"
            found = self._shape_ids[shape] = self.strings.id("shape", text)
        return found

    def _module_id(self, module: str) -> int:
        found = self._module_ids.get(module)
        if found is None:
            found = self._module_ids[module] = self.strings.id("module", module)
        return found

    def _current(self) -> None:
        """Bring the totals up to now."""
        with self.lock:
            self._work_through_log()

    # -- reading ------------------------------------------------------------------
    @property
    def total(self) -> int:
        self._current()
        return self._total

    @property
    def peak(self) -> int:
        self._current()
        return self._peak

    @property
    def extent(self) -> int:
        """The allocation view's top: the layout's highest live byte."""
        self._current()
        return self._layout.extent

    @property
    def live_by_category(self) -> list[int]:
        """The bytes live now by category, for the timeline's sample of now."""
        with self.lock:
            self._work_through_log()
            self._sampled_through = self._last_id
            return list(self._by_category)

    def device_sample(self) -> tuple[int, int, int]:
        """The simulated device's figures up to now (see ``SimulatedDevice.take_sample``)."""
        with self.lock:
            self._work_through_log()
            return self.simulated_device.take_sample()

    def device_step(self) -> tuple[int, dict[str, int]]:
        """The simulated device's peak allocated since the last step, and its state now."""
        with self.lock:
            self._work_through_log()
            return self.simulated_device.take_step_peak(), self.simulated_device.state()

    def take_messages(self) -> list[dict]:
        """The strings, stacks and events gathered since the last call, as messages."""
        with self.lock:
            self._work_through_log()
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
            self._work_through_log()
            return {entry[DATA_PTR]: entry[COUNTED] for entry in list(self._live.values())}

    def live_block_bytes(self, device_type: str, round_to) -> int:
        """Live bytes on one device type, each storage rounded as its allocator would."""
        with self.lock:
            self._work_through_log()
            return sum(round_to(e[NBYTES]) for e in list(self._live.values())
                       if e[DEVICE_TYPE] == device_type)

    def live_bytes(self) -> dict[str, int]:
        return dict(zip(CATEGORIES, self.live_by_category, strict=True))

    def take_step_peak(self) -> int:
        with self.lock:
            self._work_through_log()
            peak, self._step_peak = self._step_peak, self._total
        return peak

    def summary(self) -> dict:
        with self.lock:
            self._work_through_log()
            return {
                "tracked_bytes": self._peak,
                "peak_t": self._peak_t,
                "peak_by_category": dict(zip(CATEGORIES, self._peak_by_category, strict=True)),
                "max_by_category": dict(zip(CATEGORIES, self._max_by_category, strict=True)),
                "allocations": self._allocations,
            }


def _unpack(t: torch.Tensor) -> torch.Tensor:
    return t


# what runs from inside a program's ops: never compiled by Dynamo (not_compiled.py)
run_as_plain_python(_Dispatch.__torch_dispatch__, TensorTracker._pack, _unpack,
                    TensorTracker._grad_ready, TensorTracker._register, TensorTracker._freed,
                    TensorTracker.reduced, TensorTracker._storage_resized)


def _optimizer_states(optimizer) -> Iterable[dict]:
    # ZeroRedundancyOptimizer keeps its local optimizer in .optim
    inner = getattr(optimizer, "optim", None)
    if isinstance(inner, torch.optim.Optimizer):
        optimizer = inner
    return [s for s in optimizer.state.values() if isinstance(s, dict)]

