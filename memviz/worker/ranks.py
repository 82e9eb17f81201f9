"""Distributed runs (``zero``, ``fsdp``): one worker process per rank.

The worker the controller started is rank 0: it starts ranks 1..N-1 as
``memviz worker --rank R`` (the same executable, so a frozen bundle works
too), and every rank joins a torch.distributed group over loopback (gloo on
CPU, nccl on CUDA). Each rank runs the same Runner and tracker on its share
of the batch. Every rank streams live: ranks 1..N-1 connect to the same
controller address as rank 0 (with the run's token, hello role ``rank``) and
send their own ``run_started`` (carrying ``rank``), samples, tensor events and
steps. At the end rank 0 gathers every rank's figures (tracked peaks by
category, peak RSS per step) into its summary, with their sum.
"""

from __future__ import annotations

import datetime
import json
import os
import socket
import subprocess
import threading
import time
from dataclasses import replace
from typing import Any

import torch
import torch.distributed as dist

from ..core.spec import RunSpec
from ..processes import worker_command

SPEC_ENV = "MEMVIZ_RANK_SPEC"
CONTROLLER_ENV = "MEMVIZ_RANK_CONNECT"  # where peers stream to; unset: they keep to themselves
JOIN_TIMEOUT = datetime.timedelta(seconds=120)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch_peers(spec: RunSpec, world_size: int, port: int, controller: str | None = None,
                 token: str = "") -> list[subprocess.Popen]:
    """Start ranks 1..N-1; they find rank 0 at 127.0.0.1:``port``, the controller at
    ``controller`` (its address, when rank 0 was started with ``--connect``)."""
    command = worker_command()
    env = {**os.environ, SPEC_ENV: json.dumps(spec.to_dict())}
    if controller:
        env.update({CONTROLLER_ENV: controller, "MEMVIZ_TOKEN": token})
    return [subprocess.Popen([*command, "--rank", str(rank), "--world-size", str(world_size),
                              "--master-port", str(port)], env=env)
            for rank in range(1, world_size)]


def join(rank: int, world_size: int, port: int, device: str) -> None:
    backend = "nccl" if device.startswith("cuda") else "gloo"
    if device.startswith("cuda"):
        torch.cuda.set_device(torch.device(device))
    dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world_size, timeout=JOIN_TIMEOUT)


def local_spec(spec: RunSpec, world_size: int) -> RunSpec:
    """Each rank runs its share of the batch; the global batch is the one asked for."""
    return replace(spec, batch_size=spec.batch_size // world_size)


def reseed_data(task, spec: RunSpec, rank: int) -> None:
    """Same weights on every rank (same seed), different data."""
    task.tokens.generator.manual_seed(spec.seed + 7919 * rank)


def rank_figures(rank: int, tracker, steps: list[dict]) -> dict[str, Any]:
    return {"rank": rank, "tracking": tracker.summary() if tracker is not None else None,
            "steps": [{k: s.get(k) for k in ("step", "loss", "seconds", "peak_rss_bytes",
                                             "tracked_peak_bytes")} for s in steps]}


def gather(figures: dict[str, Any]) -> list[dict[str, Any]] | None:
    """Every rank's figures, on rank 0 (None elsewhere)."""
    rank = dist.get_rank()
    out: list[Any] = [None] * dist.get_world_size() if rank == 0 else []
    dist.gather_object(figures, out if rank == 0 else None, dst=0)
    return out if rank == 0 else None


def connect_to_controller(rank: int):
    """An Emitter streaming to the controller, or a LocalEmitter if there is none to reach."""
    from ..protocol import address, handshake
    from ..protocol.transport import Connection
    from .emitter import Emitter

    where = os.environ.get(CONTROLLER_ENV)
    if not where:
        return LocalEmitter()
    try:
        conn = Connection(address.connect(address.parse(where)))
        handshake.perform(conn, os.environ.get("MEMVIZ_TOKEN", ""), "rank")
    except (OSError, ValueError) as exc:
        print(f"memviz worker rank {rank}: not streaming ({exc})", flush=True)
        return LocalEmitter()
    return Emitter(conn)


class LocalEmitter:
    """What a rank without a controller sends: dropped (its figures go to rank 0)."""

    def __init__(self) -> None:
        self.sources: list = []
        self.failed = None

    def send(self, message: dict) -> None:
        pass

    def sample(self, row) -> None:
        pass

    def close(self) -> None:
        pass


def exit_with_parent() -> None:
    """A rank whose rank 0 is gone must not wait in a collective forever."""
    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, daemon=True, name="memviz-parent-watch").start()
