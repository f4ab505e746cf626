"""[server] client_send_timeout (nginx's send_timeout): a client that takes
none of its answer for that long is closed, whether the answer comes from a
server or from the cache, and the wait is never blamed on the server: its
read timeout waits while the client is not reading."""

from __future__ import annotations

import socket
import time
from typing import Any

import pytest

STREAM = 16  # MiB: far more than the sockets hold, so the rest queues in the proxy


def _stalled_client(port: int, target: str, rcvbuf: int = 4096) -> socket.socket:
    """A client with a small receive buffer that asks for target and reads nothing (yet)."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(10)
    s.connect(("127.0.0.1", port))
    s.sendall(f"GET {target} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
    return s


def _read_all(s: socket.socket) -> bytes:
    """Everything until the proxy's close (a reset counts as one)."""
    out = bytearray()
    try:
        while chunk := s.recv(1 << 20):
            out += chunk
    except ConnectionResetError:
        pass
    return bytes(out)


def _fetch(port: int, target: str) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(f"GET {target} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode())
        return _read_all(s)


@pytest.mark.parametrize("source", ["server", "cache"])
def test_a_client_that_takes_nothing_is_closed(make_proxy: Any, source: str) -> None:
    cfg: dict[str, Any] = {"server": {"client_send_timeout": "1s"}}
    target = f"/stream?mib={STREAM}"
    if source == "cache":
        cfg["cache"] = {"size": "64MiB", "max_entry_size": "16MiB"}
        cfg["routes"] = [{"path_prefix": "/", "upstream": "app", "cache": True}]
        target = f"/cache/big?n={8 << 20}&hdr=Cache-Control:max-age=60"
    p = make_proxy(cfg)
    if source == "cache":
        first = _fetch(p.port, target)  # stored; the stalled client gets a hit
        assert first.startswith(b"HTTP/1.1 200") and b"X-Cache: MISS" in first
    s = _stalled_client(p.port, target)
    t0 = time.monotonic()
    p.wait_log(r"client took no bytes of the answer for 1s: closed", 10)
    assert time.monotonic() - t0 >= 0.9
    got = _read_all(s)  # what the sockets held, then the close: not the whole answer
    s.close()
    assert got.startswith(b"HTTP/1.1 200"), got[:100]
    assert len(got) < (STREAM << 20 if source == "server" else 8 << 20)
    assert "upstream read timeout" not in p.stderr_text()
    assert p.alive()
    assert _fetch(p.port, "/bytes?n=5").startswith(b"HTTP/1.1 200")


def test_the_server_read_timeout_waits_while_the_client_is_not_reading(
    make_proxy: Any,
) -> None:
    """read_timeout 1 s, a client that reads nothing for 2.5 s and then
    everything: the whole answer, no 'upstream read timeout' -- the server
    had nothing to do with the wait."""
    p = make_proxy({"upstreams": {"app": {"read_timeout": "1s"}}})
    s = _stalled_client(p.port, f"/stream?mib={STREAM}")
    time.sleep(2.5)  # the client's own pause, the thing under test
    s.settimeout(20)
    head, _, body = _read_all_of(s, STREAM << 20)
    s.close()
    assert head.startswith(b"HTTP/1.1 200"), head
    assert len(body) == STREAM << 20
    assert "upstream read timeout" not in p.stderr_text()


def test_a_slow_reader_that_keeps_taking_bytes_is_not_cut(make_proxy: Any) -> None:
    """The timeout is between two writes the socket takes, not for the
    whole answer: a read (up to 64 KiB) every 0.25 s for about 4 s against
    a 1 s timeout."""
    p = make_proxy({"server": {"client_send_timeout": "1s"}})
    mib = 2
    s = _stalled_client(p.port, f"/stream?mib={mib}", rcvbuf=65536)
    got = bytearray()
    deadline = time.monotonic() + 30
    while len(got) < (mib << 20) and time.monotonic() < deadline:
        chunk = s.recv(64 << 10)
        if not chunk:
            break
        got += chunk
        if len(got) < (1 << 20):  # slow for the first half (about 4 s), then at once
            time.sleep(0.25)
    head, _, body = bytes(got).partition(b"\r\n\r\n")
    while len(body) < (mib << 20):
        chunk = s.recv(1 << 20)
        if not chunk:
            break
        body += chunk
    s.close()
    assert head.startswith(b"HTTP/1.1 200"), head
    assert len(body) == mib << 20
    assert "client took no bytes" not in p.stderr_text()


def _read_all_of(s: socket.socket, size: int) -> tuple[bytes, bytes, bytes]:
    """The head and `size` bytes of body (or what came before the close)."""
    buf = bytearray()
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(1 << 20)
        if not chunk:
            return bytes(buf), b"", b""
        buf += chunk
    head, sep, body = bytes(buf).partition(b"\r\n\r\n")
    rest = bytearray(body)
    while len(rest) < size:
        chunk = s.recv(1 << 20)
        if not chunk:
            break
        rest += chunk
    return head, sep, bytes(rest)
