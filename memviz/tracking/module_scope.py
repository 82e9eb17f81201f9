"""Which module is running, in forward and in backward, by fully qualified name.

Forward: global module pre/post hooks push and pop names on a stack. At each
change they also note autograd's sequence number (the number the next graph node
will get) with the module then on top.

Backward needs no hooks of its own (a forward that checkpointing runs again inside
backward pushes on the stack as any forward, and the stack says then): the graph node running now
(``torch._C._current_autograd_node``) got its sequence number when forward made
it, so the module on top at that moment is the one whose backward is running. An
earlier version hooked every module's inputs and outputs in backward instead.
That cost about 45 µs a module call, and the hooks, if never removed, held
gradient buffers for good.
"""

from __future__ import annotations

import bisect

import torch
from torch import nn
from torch.nn.modules.module import register_module_forward_hook, register_module_forward_pre_hook

from .not_compiled import run_as_plain_python

_compiling = torch.compiler.is_compiling

_next_sequence_nr = torch._C._autograd._get_sequence_nr
_running_node = torch._C._current_autograd_node


class ModuleScope:
    def __init__(self, model: nn.Module | None = None) -> None:
        self.names: dict[nn.Module, str] = {}
        self.stack: list[str] = []
        # forward's module changes: from sequence number _marks[i] on, _owners[i] was on top
        self._marks: list[int] = []
        self._owners: list[str] = []
        self._handles: list = []
        if model is not None:
            self.add_model(model)

    def add_model(self, model: nn.Module, prefix: str = "") -> None:
        """Name ``model``'s modules by their qualified names (the root by its class),
        each under ``prefix`` (a second model of a program, say)."""
        root = prefix.rstrip(".") or type(model).__name__
        for name, module in model.named_modules():
            self.names.setdefault(module, f"{prefix}{name}" if name else root)

    def current(self) -> str:
        node = _running_node()
        # forward, the optimizer, outside any step; or a forward run again inside
        # backward (checkpointing's recomputation: the module being recomputed is on
        # the stack, not the node whose saved tensor asked for it)
        if node is None or self.stack:
            return self.stack[-1] if self.stack else ""
        i = bisect.bisect_right(self._marks, node._sequence_nr()) - 1
        return self._owners[i] if i >= 0 else ""

    def _name(self, module: nn.Module) -> str:
        return self.names.get(module) or type(module).__name__

    def _mark(self) -> None:
        if not torch.is_grad_enabled():  # no graph nodes will be made
            return
        top = self.stack[-1] if self.stack else ""
        number = _next_sequence_nr()
        if self._marks and self._marks[-1] == number:  # no node made since the last change
            self._owners[-1] = top
        else:
            self._marks.append(number)
            self._owners.append(top)

    def _pre(self, module, args) -> None:
        if _compiling():  # traced by Dynamo: nothing of this goes into the graph
            return
        self.stack.append(self._name(module))
        self._mark()

    def _post(self, module, args, output) -> None:
        if _compiling():
            return
        name = self._name(module)
        for i in range(len(self.stack) - 1, -1, -1):
            if self.stack[i] == name:
                del self.stack[i]
                break
        self._mark()

    def start(self) -> None:
        # always_call: a forward that raises still leaves the stack (checkpointing stops
        # its recomputation with an exception once it has what backward needs)
        self._handles = [register_module_forward_pre_hook(self._pre),
                         register_module_forward_hook(self._post, always_call=True)]

    def release(self) -> None:
        """Forget this step's marks (call once its backward is over)."""
        self._marks.clear()
        self._owners.clear()
        self.stack.clear()

    def stop(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
        self.names.clear()  # the program's modules: not kept once tracking stops
        self.release()


run_as_plain_python(ModuleScope._pre, ModuleScope._post)
