"""A hostile relay: listens where the owner dials, passes the owner's handshake on to
a real listening worker of the same owner, then sends its own ``start``.

    python -m tests.peers.relay LISTEN_PORT WORKER_PORT CANARY_FACTORY

It prints ``ready`` once listening, then one line saying what the worker did with
its ``start``. It knows no token: it only forwards and writes raw frames.
"""

from __future__ import annotations

import socket
import struct
import sys

import msgpack


def read_frame(sock: socket.socket) -> bytes:
    def exact(n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = sock.recv(n - len(buf))
            if not chunk:
                raise EOFError
            buf += chunk
        return buf
    header = exact(4)
    return header + exact(struct.unpack(">I", header)[0])


def main() -> int:
    listen_port, worker_port, factory = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    server = socket.create_server(("127.0.0.1", listen_port))
    print("ready", flush=True)
    owner, _ = server.accept()
    worker = socket.create_connection(("127.0.0.1", worker_port))
    owner.sendall(read_frame(worker))   # the worker's hello, with its nonce
    worker.sendall(read_frame(owner))   # the owner's hello
    worker.sendall(read_frame(owner))   # the owner's proof, made for the worker's nonce
    owner.sendall(read_frame(worker))   # the worker's proof: both believe the other
    owner.close()  # the owner is of no more use: now the relay speaks
    start = msgpack.packb([{"type": "start", "spec": {"model": factory, "steps": 1,
                                                      "batch_size": 1, "seq_len": 8}}])
    worker.sendall(struct.pack(">I", len(start)) + start + bytes(32))  # a tag it cannot make
    worker.settimeout(60)
    try:
        said = worker.recv(4096)
    except OSError as exc:
        said = repr(exc).encode()
    print("worker answered" if said else "worker hung up", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
