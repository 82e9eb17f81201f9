"""What a program does, found through PyTorch's process-wide hooks.

- Models: a module whose forward runs at the top (no other module's forward
  around it) and that belongs to no model seen before is a new model. Models
  alive when tracking starts are found on the heap, so their weights are
  reported at once.
- Phases: forward from a top-level forward's start until its backward begins;
  backward from the first gradient reaching one of that forward's outputs (a hook
  on its graph node) to the end of that backward pass (a callback queued on
  autograd's engine); optimizer around each optimizer step (global step hooks).
- Inputs: the tensors a top-level forward is called with.

Only the thread that started tracking is followed: it is the one the tensor
tracker sees (PyTorch's dispatch modes are per thread).
"""

from __future__ import annotations

import gc
import sys
import threading
from collections.abc import Iterator
from typing import Any, Protocol

import torch
from torch import nn
from torch.nn.modules.module import register_module_forward_pre_hook
from torch.optim.optimizer import (
    register_optimizer_step_post_hook,
    register_optimizer_step_pre_hook,
)

from ..tracking.not_compiled import run_as_plain_python

MAX_OUTPUT_HOOKS = 8  # graph nodes of a forward's outputs watched for its backward


class Listener(Protocol):
    def model_found(self, model: nn.Module) -> None: ...
    def forward_begins(self, model: nn.Module, inputs: list[torch.Tensor],
                       loss_over_step: bool) -> None: ...
    def forward_ends(self, model: nn.Module, output: Any) -> None: ...
    def backward_begins(self) -> None: ...
    def backward_ends(self) -> None: ...
    def optimizer_found(self, optimizer: torch.optim.Optimizer) -> None: ...
    def optimizer_begins(self, optimizer: torch.optim.Optimizer) -> None: ...
    def optimizer_ends(self, optimizer: torch.optim.Optimizer) -> None: ...


def tensors_in(value: Any, depth: int = 4) -> Iterator[torch.Tensor]:
    """Every tensor in a forward's arguments or output, ``depth`` containers down
    (tuples, lists, dicts, and the ModelOutput of transformers, which is a dict)."""
    if isinstance(value, torch.Tensor):
        yield value
    elif depth > 0 and isinstance(value, list | tuple):
        for item in value:
            yield from tensors_in(item, depth - 1)
    elif depth > 0 and isinstance(value, dict):
        for item in value.values():
            yield from tensors_in(item, depth - 1)


def live_models() -> list[nn.Module]:
    """The models alive now: every module on the heap that is no other module's part
    and holds weights, the largest first."""
    # type() rather than isinstance: some objects on the heap warn when their class is
    # asked for through __class__
    modules = [o for o in gc.get_objects() if issubclass(type(o), nn.Module)]
    parts = {id(child) for m in modules for child in m.children()}
    roots = [m for m in modules if id(m) not in parts]
    sized = [(sum(p.numel() for p in m.parameters()) + sum(b.numel() for b in m.buffers()), m)
             for m in roots]
    return [m for size, m in sorted(sized, key=lambda sm: -sm[0]) if size]


def live_optimizers() -> list[torch.optim.Optimizer]:
    """The optimizers alive now (a program attached to while it trains holds its state
    in them already)."""
    return [o for o in gc.get_objects() if issubclass(type(o), torch.optim.Optimizer)]


class Discovery:
    """Process-wide module hooks slow every module call a little (PyTorch takes its slow
    path for all of them), so they are armed only while no known model's forward runs:
    they catch a model's first forward; from then on its own hooks (on that one module)
    mark its forwards, and its submodules run untouched."""

    def __init__(self, listener: Listener, models: list[nn.Module] | None = None,
                 optimizers: list[torch.optim.Optimizer] | None = None) -> None:
        self.listener = listener
        self.thread = threading.get_ident()
        self.explicit_models = list(models or [])
        self.explicit_optimizers = list(optimizers or [])
        self._known: set[int] = set()  # ids of every module of the models seen
        self._tops: set[int] = set()  # modules whose own hooks mark their forwards
        self._models: list[nn.Module] = []  # keeps them alive while tracked
        self._depth = 0
        self._optimizer_depth = 0
        self._global: list = []  # the process-wide forward hook, while armed
        self._handles: list = []
        self._backward_hooks: list = []
        self._in_backward = False
        self._rest_of_a_forward = False

    # -- lifecycle ----------------------------------------------------------------
    def start(self, scan_heap: bool = True) -> None:
        for model in self.explicit_models or (live_models() if scan_heap else []):
            self._found(model)
            self._hook_top(model)
        if self._inside_a_forward():
            # started from inside a forward (attached to a running program): the rest of
            # that call is not a forward of its own; the next top-level call is
            self._depth, self._rest_of_a_forward = 1, True
        for optimizer in self.explicit_optimizers or (live_optimizers() if scan_heap else []):
            self.listener.optimizer_found(optimizer)
        self._arm()
        if self.explicit_optimizers:
            for optimizer in self.explicit_optimizers:
                self._handles += [optimizer.register_step_pre_hook(self._optimizer_pre),
                                  optimizer.register_step_post_hook(self._optimizer_post)]
        else:
            self._handles += [register_optimizer_step_pre_hook(self._optimizer_pre),
                              register_optimizer_step_post_hook(self._optimizer_post)]

    def stop(self) -> None:
        self._disarm()
        for handle in self._handles + self._backward_hooks:
            handle.remove()
        self._handles, self._backward_hooks = [], []

    def _arm(self) -> None:
        if not self._global:
            self._global = [register_module_forward_pre_hook(self._global_pre)]

    def _disarm(self) -> None:
        for handle in self._global:
            handle.remove()
        self._global = []

    # -- models ---------------------------------------------------------------------
    def _found(self, model: nn.Module) -> None:
        if id(model) in self._known:
            return
        self._known.update(id(m) for m in model.modules())
        self._models.append(model)
        self.listener.model_found(model)

    def _hook_top(self, module: nn.Module) -> None:
        """Mark this module's forwards with its own hooks (they see keyword arguments)."""
        if id(module) in self._tops:
            return
        self._tops.add(id(module))
        self._handles += [
            module.register_forward_pre_hook(self._top_pre, with_kwargs=True),
            module.register_forward_hook(self._top_post, always_call=True)]

    # -- forward ----------------------------------------------------------------------
    def _global_pre(self, module: nn.Module, args: tuple) -> None:
        """A module called at the top while no known forward runs."""
        if torch.compiler.is_compiling():  # traced by Dynamo: no part of the graph
            return
        if threading.get_ident() != self.thread or self._depth:
            return
        if id(module) in self._tops:  # its own pre-hook, next, takes it from here
            self._disarm()
            return
        if id(module) not in self._known:
            if next(module.parameters(), None) is None and next(module.buffers(), None) is None:
                return  # a loss function or an activation: no model
            self._found(module)
        # its own hooks mark its later forwards; this one is begun here (its pre-hook was
        # not yet there when PyTorch gathered them for this call; its post-hook is)
        self._hook_top(module)
        self._disarm()
        self._depth = 1
        self._begin(module, args, _caller_kwargs())

    def _inside_a_forward(self) -> bool:
        """A known model's code is running on this thread's stack now."""
        frame = sys._getframe(1)
        while frame is not None:
            owner = frame.f_locals.get("self")
            if isinstance(owner, nn.Module) and id(owner) in self._known:
                return True
            frame = frame.f_back
        return False

    def _top_pre(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        if torch.compiler.is_compiling():  # traced by Dynamo: no part of the graph
            return
        if threading.get_ident() != self.thread:
            return
        if self._rest_of_a_forward and id(module) in {id(m) for m in self._models}:
            self._depth, self._rest_of_a_forward = 0, False  # that forward has returned
        self._depth += 1
        if self._depth == 1:
            self._disarm()
            self._begin(module, args, kwargs)

    def _top_post(self, module: nn.Module, args: tuple, output: Any) -> None:
        if torch.compiler.is_compiling():  # traced by Dynamo: no part of the graph
            return
        if threading.get_ident() != self.thread or not self._depth:
            return
        self._depth -= 1
        if self._depth:
            return
        self._watch_backward(output)
        self.listener.forward_ends(module, output)
        self._arm()

    def _begin(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        # the call's own arguments (not a cache of tensors passed back in)
        inputs = [t for t in tensors_in([list(args), kwargs], depth=2) if not t.requires_grad]
        # transformers' Trainer passes num_items_in_batch under gradient accumulation: the
        # model's loss is then already a share of the whole step's, to be added up
        self.listener.forward_begins(module, inputs, "num_items_in_batch" in kwargs)

    # -- backward ----------------------------------------------------------------------
    def _watch_backward(self, output: Any) -> None:
        nodes = {}
        for t in tensors_in(output):
            if t.grad_fn is not None and len(nodes) < MAX_OUTPUT_HOOKS:
                nodes.setdefault(id(t.grad_fn), t.grad_fn)
        for node in nodes.values():
            self._backward_hooks.append(node.register_prehook(self._backward_reached))

    def _backward_reached(self, _grad_outputs) -> None:
        if self._in_backward:
            return
        self._in_backward = True
        self.listener.backward_begins()
        torch.autograd.Variable._execution_engine.queue_callback(self._backward_done)

    def _backward_done(self) -> None:
        self._in_backward = False
        for handle in self._backward_hooks:
            handle.remove()
        self._backward_hooks = []
        self.listener.backward_ends()

    # -- optimizer ---------------------------------------------------------------------
    def _optimizer_pre(self, optimizer, _args, _kwargs) -> None:
        if torch.compiler.is_compiling():  # a compiled opt.step: no part of it
            return
        if threading.get_ident() != self.thread:
            return
        self._optimizer_depth += 1
        if self._optimizer_depth == 1:  # a wrapper's step runs its inner optimizer's
            self.listener.optimizer_begins(optimizer)

    def _optimizer_post(self, optimizer, _args, _kwargs) -> None:
        if torch.compiler.is_compiling():  # a compiled opt.step: no part of it
            return
        if threading.get_ident() != self.thread or not self._optimizer_depth:
            return
        self._optimizer_depth -= 1
        if not self._optimizer_depth:
            self.listener.optimizer_ends(optimizer)


def _caller_kwargs() -> dict:
    """The keyword arguments of the module call under way. A process-wide pre-hook is
    given only the positional ones; the module's own ``_call_impl`` frame holds the rest
    (HF models are called with keywords: ``model(input_ids=..., labels=...)``)."""
    frame = sys._getframe(2)
    for _ in range(4):
        if frame is None:
            break
        if frame.f_code.co_name in ("_call_impl", "_wrapped_call_impl"):
            kwargs = frame.f_locals.get("kwargs")
            if isinstance(kwargs, dict):
                return kwargs
        frame = frame.f_back
    return {}


# what runs from inside a program's calls at run time: never compiled by Dynamo
run_as_plain_python(Discovery._global_pre, Discovery._top_pre, Discovery._top_post,
                    Discovery._backward_reached, Discovery._backward_done,
                    Discovery._optimizer_pre, Discovery._optimizer_post)
