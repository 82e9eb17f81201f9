"""The warm parent: a process that has imported torch and transformers once and forks
a fresh worker for each run of a comparison or a fit search.

Started as ``memviz worker --zygote --connect ADDR`` by ``session.warm.WarmStart``;
it proves the token like any worker, then waits for ``fork`` messages. Each child
is a new process (its own memory, its own measurements) that skips the seconds of
imports: it connects to the address the message names, with the token it names,
and runs exactly as a worker started from scratch. The zygote never touches CUDA
and runs no torch op, and forks from its only thread, so a child starts clean.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import sys
import time

from ..protocol import address, handshake
from ..protocol.transport import Connection, ConnectionClosed
from ..protocol.waker import Waker

POLL_S = 5.0  # a safety net: a child's exit (SIGCHLD) and a message wake the loop


def _warm_up() -> None:
    """Import what every worker imports, once, here: torch, transformers and the model
    classes the presets build (their modules take seconds to import the first time;
    building a model after that takes a few tens of ms). Not peft, torchao or
    bitsandbytes: a child imports those only for a set that uses them
    (``lean_imports``), so no other set carries their memory."""
    import torch  # noqa: F401
    import transformers  # noqa: F401
    from transformers import (  # noqa: F401
        AutoModelForCausalLM,
        AutoModelForMaskedLM,
        AutoModelForSeq2SeqLM,
        BertForMaskedLM,
        GPT2LMHeadModel,
        LlamaForCausalLM,
    )

    from ..models import load_task  # noqa: F401
    from ..tracking import TensorTracker  # noqa: F401
    from . import environment, model_summary, runner  # noqa: F401

    _build_save_tables()


def _build_save_tables() -> None:
    """``save_pretrained`` first builds transformers' checkpoint conversion tables (~950
    regular expressions, ~0.1 s): built here once, every run's size on disk skips it.
    Pure Python, no torch op."""
    try:
        from transformers.conversion_mapping import get_checkpoint_conversion_mapping
    except ImportError:  # a transformers without them
        return
    get_checkpoint_conversion_mapping("gpt2")


def _child(conn: Connection, message: dict, wake: Waker,
           selector: selectors.BaseSelector) -> None:
    """In the forked child: become a worker for ``message``'s controller, then exit."""
    code = 1
    try:
        wake.forget_signals(signal.SIGCHLD)  # its own children are its own business
        wake.close()
        selector.close()  # the parent's: closing it here leaves the parent's as it is
        conn.sock.close()  # the zygote's own line (closing, not shutting down: it stays up)
        os.setsid()
        fd = os.open(message["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
        os.environ["MEMVIZ_TOKEN"] = message["token"]
        from .lean_imports import hide_technique_libraries
        from .main import connect_and_serve

        hide_technique_libraries()
        code = connect_and_serve(message["connect"], message["token"])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def _reap(conn: Connection) -> None:
    """Tell the controller how each child that ended ended."""
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        code = os.waitstatus_to_exitcode(status)
        conn.send([{"type": "exited", "pid": pid, "code": code}])


def serve(where: str, token: str) -> int:
    from .import_gc import imports_without_collection

    with imports_without_collection():
        _warm_up()
    conn = Connection(address.connect(address.parse(where)))
    handshake.perform(conn, token, "worker")
    conn.send([{"type": "log", "t": 0.0, "level": "info", "text": "warm parent ready"}])
    wake = Waker()  # a child's exit wakes the loop: the controller hears of it at once
    wake.wake_on_signals(signal.SIGCHLD)
    selector = selectors.DefaultSelector()
    selector.register(conn.sock, selectors.EVENT_READ)
    selector.register(wake, selectors.EVENT_READ)
    while True:
        ready = {key.fileobj for key, _ in selector.select(POLL_S)}
        if wake in ready:
            wake.drain()
        if conn.sock not in ready:
            _reap(conn)
            continue
        try:
            messages = conn.receive()
        except (ConnectionClosed, OSError):
            break
        for message in messages:
            if message["type"] == "stop":
                conn.close()
                return 0
            if message["type"] == "fork":
                pid = os.fork()
                if pid == 0:
                    _child(conn, message, wake, selector)
                conn.send([{"type": "forked", "pid": pid, "started": time.time()}])
        _reap(conn)
    for pid in _children():  # the controller went away: so do the runs it asked for
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    return 0


def _children() -> list[int]:
    try:
        import psutil

        return [p.pid for p in psutil.Process().children()]
    except Exception:
        return []
