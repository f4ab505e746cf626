"""The master's listening sockets: one per worker slot for each listen address.

Every address is bound once per worker slot with SO_REUSEPORT (the kernel
spreads new connections across the slots); the master keeps its copies, so a
slot's socket outlives the worker accepting on it and queued connections are
never reset by a worker's death or a reload.
"""

from __future__ import annotations

import errno
import socket

from fastproxy.config import Address, Config

BACKLOG = 1024

Listeners = dict[Address, list[socket.socket]]


class ListenError(OSError):
    """A listen address could not be bound; the message names it.  An
    OSError with the errno of the failed call (when there was one), whose
    text is the message alone."""

    def __init__(self, message: str, errno_: int | None = None) -> None:
        super().__init__(errno_, message)
        self.message = message

    def __str__(self) -> str:
        return self.message


def _check_free(addr: Address) -> None:
    """Fail if another process listens on addr.

    SO_REUSEPORT would otherwise let the slot sockets join a group that a
    second fastproxy of the same user already listens with, and silently share
    its traffic.  A probe bound without SO_REUSEPORT gets EADDRINUSE instead.
    """
    family = socket.AF_INET6 if ":" in addr.host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        try:
            probe.bind((addr.host, addr.port))
        except OSError as exc:
            why = "another process listens there" if exc.errno == errno.EADDRINUSE else ""
            raise ListenError(
                f"cannot listen on {addr}: {exc.strerror}" + (f" ({why})" if why else ""),
                exc.errno,
            ) from None


def open_group(addr: Address, port: int, count: int) -> list[socket.socket]:
    """count listening sockets on addr.host:port sharing the port with SO_REUSEPORT.

    With port 0 the first socket gets an ephemeral port and the others join it.
    """
    family = socket.AF_INET6 if ":" in addr.host else socket.AF_INET
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            s = socket.socket(family, socket.SOCK_STREAM)
            socks.append(s)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            s.bind((addr.host, port))
            port = s.getsockname()[1]
            s.listen(BACKLOG)
            s.setblocking(False)
    except OSError as exc:
        for s in socks:
            s.close()
        raise ListenError(f"cannot listen on {addr}: {exc.strerror}", exc.errno) from None
    return socks


def plan_listeners(config: Config, current: Listeners) -> Listeners:
    """The slot sockets config needs: one per worker for each listen address.

    Sockets of `current` are reused (a kept address keeps its sockets and, for
    port 0, its port); missing ones are created.  Sockets of `current` left out
    of the result are the caller's to close.
    """
    n = config.worker_count()
    out: Listeners = {}
    created: list[socket.socket] = []
    try:
        for addr in dict.fromkeys(config.server.listen):
            group = current.get(addr, [])[:n]
            if len(group) < n:
                if not group and addr.port:
                    _check_free(addr)
                port = group[0].getsockname()[1] if group else addr.port
                extra = open_group(addr, port, n - len(group))
                created += extra
                group = group + extra
            out[addr] = group
    except ListenError:
        for s in created:
            s.close()
        raise
    return out


def sockets_of(listeners: Listeners) -> list[socket.socket]:
    return [s for group in listeners.values() for s in group]


def close_unused(listeners: Listeners, keep: Listeners) -> None:
    kept = {id(s) for s in sockets_of(keep)}
    for s in sockets_of(listeners):
        if id(s) not in kept:
            s.close()
