"""memviz's callbacks run as plain Python inside a compiled program, never compiled.

While a ``torch.compile``'d function runs, Dynamo looks at every Python frame that
starts, memviz's too: a storage's free callback, the per-op dispatch mode, autograd's
saved-tensor and gradient hooks. Left alone it would try to compile them (graph
breaks on ``time.monotonic`` and ``sys._getframe``, recompiles on every new shape,
frames counted as the program's), which changes what the program runs. Each such
code object, and everything it calls, is marked to be skipped: Dynamo then runs
them as they are, at no cost per call (the mark lives on the code object).

Hooks that Dynamo inlines while it traces a module (global module hooks, optimizer
step hooks) cannot be skipped that way (a skipped function met while tracing is a
graph break): they return at once when ``torch.compiler.is_compiling()``, which
Dynamo folds to a constant, so their traced part is empty.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Iterator
from typing import Any


def _codes(code: types.CodeType) -> Iterator[types.CodeType]:
    yield code
    for const in code.co_consts:
        if isinstance(const, types.CodeType):  # a lambda or a function defined inside
            yield from _codes(const)


def _code_of(function: Callable[..., Any]) -> types.CodeType:
    function = getattr(function, "__func__", function)  # a bound or class method
    return function.__code__


def run_as_plain_python(*functions: Callable[..., Any]) -> None:
    """Dynamo never compiles these functions, what is defined inside them, or what they
    call, wherever it meets them; a torch without Dynamo has nothing to skip."""
    try:
        from torch._C._dynamo.eval_frame import (
            _FrameAction,
            _FrameExecStrategy,
            set_code_exec_strategy,
        )
    except ImportError:
        return
    skip = _FrameExecStrategy(_FrameAction.SKIP, _FrameAction.SKIP)
    for function in functions:
        for code in _codes(_code_of(function)):
            set_code_exec_strategy(code, skip)
