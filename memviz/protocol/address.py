"""Where a worker and its controller meet: ``unix:/path`` or ``tcp:host:port``.

Listening on anything but a Unix socket or a loopback address must be asked
for explicitly (``allow_remote``), so a token is never exposed by accident.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import stat
import struct
import tempfile
from dataclasses import dataclass


class AddressError(ValueError):
    pass


@dataclass(frozen=True)
class Address:
    family: str  # "unix" or "tcp"
    path: str = ""
    host: str = ""
    port: int = 0

    def __str__(self) -> str:
        return f"unix:{self.path}" if self.family == "unix" else f"tcp:{self.host}:{self.port}"

    @property
    def is_loopback(self) -> bool:
        if self.family == "unix":
            return True
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False


def parse(text: str) -> Address:
    kind, _, rest = text.partition(":")
    if kind == "unix" and rest:
        return Address("unix", path=rest)
    if kind == "tcp":
        host, _, port = rest.rpartition(":")
        host = host.strip("[]")
        if host and port.isdigit() and 0 <= int(port) < 65536:
            return Address("tcp", host=host, port=int(port))
    raise AddressError(f"bad address {text!r}: use unix:/path or tcp:host:port")


def listen(addr: Address, *, allow_remote: bool = False) -> tuple[socket.socket, Address]:
    """A listening socket, and the address it really got (port 0 picks one)."""
    if not addr.is_loopback and not allow_remote:
        raise AddressError(
            f"refusing to listen on {addr}: not a loopback address (pass --allow-remote to do so)"
        )
    if addr.family == "unix":
        _clear_stale_socket(addr.path)
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(addr.path)
        server.listen(8)
        return server, addr
    family = socket.AF_INET6 if ":" in addr.host else socket.AF_INET
    server = socket.socket(family, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind((addr.host, addr.port))
    server.listen(8)
    return server, Address("tcp", host=addr.host, port=server.getsockname()[1])


def _clear_stale_socket(path: str) -> None:
    """A socket file left by a killed worker is removed (nothing answers at it); one
    that something still answers at, or a file that is no socket, is refused."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(info.st_mode):
        raise AddressError(f"cannot listen at {path}: a file that is not a socket is there")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except (ConnectionRefusedError, FileNotFoundError):
        os.unlink(path)  # stale: its listener is gone
        return
    finally:
        probe.close()
    raise AddressError(f"cannot listen at {path}: another process is listening there")


PRIVATE = "private"  # `--listen` alone: a private Unix socket (private_unix_address)


def private_unix_address(name: str = "worker.sock") -> Address:
    """A Unix socket in a new folder only this user can enter: no other local user can
    connect to it, or listen in its place."""
    folder = tempfile.mkdtemp(prefix="memviz-")  # mode 700
    return Address("unix", path=os.path.join(folder, name))


def _peer_uid(sock: socket.socket) -> int | None:
    """The user id of the process at the other end of a Unix socket (Linux)."""
    option = getattr(socket, "SO_PEERCRED", None)
    if option is None:
        return None
    creds = sock.getsockopt(socket.SOL_SOCKET, option, struct.calcsize("3i"))
    return struct.unpack("3i", creds)[1]


def connect(addr: Address, timeout: float = 30.0) -> socket.socket:
    if addr.family == "unix":
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        sock.connect(addr.path)
        uid = _peer_uid(sock)
        if uid is not None and uid not in (os.getuid(), 0):
            sock.close()
            raise AddressError(f"refusing to talk to {addr}: the process listening there "
                               f"belongs to another user (uid {uid})")
    else:
        sock = socket.create_connection((addr.host, addr.port), timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.settimeout(None)
    return sock
