"""Worker → GUI throughput over the real stack: Emitter, Unix socket, Connection, Run.

A producer process (the worker's own Emitter) sends as fast as it can; the
consumer decodes, validates and applies every frame to a Run exactly as the
session thread does, and checks that nothing was lost. Two streams:
- tensor events, the high-volume one, in the tracker's columnar batches;
- phase messages, one dict per message (the low-volume control stream).
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

EVENTS_PER_BATCH = 10_000
# as after a handshake: every frame tagged and checked (the keys' values do not matter)
_TO_CONSUMER, _TO_PRODUCER = b"c" * 32, b"p" * 32


def _produce(addr: str, kind: str, count: int) -> None:
    from memviz.worker.emitter import Emitter

    conn = Connection(address.connect(address.parse(addr)))
    conn.secure(_TO_CONSUMER, _TO_PRODUCER)
    emitter = Emitter(conn)
    if kind == "tensor_events":
        from .alloc_view import SYNTHETIC_STRINGS, synthetic_events

        cols = synthetic_events(count // 2)
        pending: list[dict] = [SYNTHETIC_STRINGS]

        def take() -> list[dict]:  # like the tracker: all gathered since the last flush
            out = pending[:]
            del pending[: len(out)]
            return out

        emitter.sources.append(take)
        for s in range(0, count, EVENTS_PER_BATCH):
            pending.append({"type": "tensor_events",
                            "columns": {k: v[s:s + EVENTS_PER_BATCH] for k, v in cols.items()}})
            time.sleep(0.0005)  # events are produced over time, not all at once
        while pending:
            time.sleep(0.001)
    else:
        for i in range(count):
            emitter.send({"type": "phase", "t": i * 1e-6, "step": i // 2, "name": "forward",
                          "edge": "begin" if i % 2 == 0 else "end"})
            if i % 5000 == 0:
                time.sleep(0)  # let the emitter thread run, as a real worker's GIL would
    emitter.close()
    conn.close()


def _consume(kind: str, count: int) -> tuple[float, int]:
    tmp = tempfile.mkdtemp()
    server, addr = address.listen(address.parse(f"unix:{tmp}/s"))
    run = Run(RunSpec())
    proc = mp.get_context("spawn").Process(target=_produce, args=(str(addr), kind, count))
    proc.start()
    sock, _ = server.accept()
    conn = Connection(sock)
    conn.secure(_TO_PRODUCER, _TO_CONSUMER)
    started = None
    try:
        while True:
            messages = conn.receive()
            if started is None:
                started = time.perf_counter()
            run.apply_all(messages)  # as the session does: one lock per frame
    except ConnectionClosed:
        pass
    elapsed = time.perf_counter() - (started or time.perf_counter())
    proc.join()
    os.unlink(f"{tmp}/s")
    received = run.tensors.event_count if kind == "tensor_events" else len(run.phases) * 2
    return (received / elapsed if elapsed else 0.0), received


def measure() -> list[Result]:
    results = []
    count = 1_000_000
    rate, received = _consume("tensor_events", count)
    results.append(Result("worker → GUI stream: tensor events", rate, "events/s",
                          "≥ 200,000 /s, none lost", rate >= 200_000 and received == count,
                          f"{received:,} of {count:,} received, {count - received} lost"))
    count = 400_000
    rate, received = _consume("phase", count)
    results.append(Result("worker → GUI stream: phase messages (one dict each)", rate,
                          "msg/s", "(info)", received == count,
                          f"{received:,} of {count:,} received, {count - received} lost"))
    return results
