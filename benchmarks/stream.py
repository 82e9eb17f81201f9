"""Worker → GUI throughput over the real stack: Emitter, Unix socket, Connection, Run.

A producer process (the worker's own Emitter) sends phase messages as fast as it
can; the consumer decodes, validates and applies them to a Run exactly as the
session thread does, and checks that none was lost.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import tempfile
import time

from memviz.core.run import Run
from memviz.core.spec import RunSpec
from memviz.protocol import address
from memviz.protocol.transport import Connection, ConnectionClosed

from .common import Result


def _produce(addr: str, count: int) -> None:
    from memviz.worker.emitter import Emitter

    conn = Connection(address.connect(address.parse(addr)))
    emitter = Emitter(conn)
    for i in range(count):
        emitter.send({"type": "phase", "t": i * 1e-6, "step": i // 2, "name": "forward",
                      "edge": "begin" if i % 2 == 0 else "end"})
        if i % 5000 == 0:
            time.sleep(0)  # let the emitter thread run, as a real worker's GIL would
    emitter.close()
    conn.close()


def measure(count: int = 400_000) -> list[Result]:
    tmp = tempfile.mkdtemp()
    server, addr = address.listen(address.parse(f"unix:{tmp}/s"))
    run = Run(RunSpec())
    proc = mp.get_context("spawn").Process(target=_produce, args=(str(addr), count))
    proc.start()
    sock, _ = server.accept()
    conn = Connection(sock)
    received = 0
    started = None
    try:
        while True:
            messages = conn.receive()
            if started is None:
                started = time.perf_counter()
            for msg in messages:
                run.apply(msg)
            received += len(messages)
    except ConnectionClosed:
        pass
    elapsed = time.perf_counter() - (started or time.perf_counter())
    proc.join()
    os.unlink(f"{tmp}/s")
    rate = received / elapsed if elapsed else 0.0
    lost = count - received
    return [Result("worker → GUI stream (phase messages, applied to a Run)", rate, "msg/s",
                   "≥ 200,000 /s, none lost", rate >= 200_000 and lost == 0,
                   f"{received:,} of {count:,} received, {lost} lost")]
