"""Where a worker and its controller meet: ``unix:/path`` or ``tcp:host:port``.

Listening on anything but a Unix socket or a loopback address must be asked
for explicitly (``allow_remote``), so a token is never exposed by accident.
"""

from __future__ import annotations

import ipaddress
import socket
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


def connect(addr: Address, timeout: float = 30.0) -> socket.socket:
    if addr.family == "unix":
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        sock.connect(addr.path)
    else:
        sock = socket.create_connection((addr.host, addr.port), timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.settimeout(None)
    return sock
