"""Plain helpers shared by the integration tests (importable: this directory is on
sys.path while pytest runs them; fixtures live in conftest.py)."""

from __future__ import annotations

import contextlib
import http.server
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qs, urlsplit


def free_port() -> int:
    """A port that was free a moment ago (bind to 0, read it, release it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(cond: Callable[[], Any], timeout: float, what: str, interval: float = 0.02) -> Any:
    """Poll cond until it returns something true (returned), or fail after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def tcp_sockets() -> Iterator[tuple[int, int, str, int]]:
    """(local port, remote port, state, inode) of every TCP socket on the
    machine, from /proc/net/tcp and tcp6: state "0A" is LISTEN, inode 0 a
    socket no process holds any more (TIME_WAIT)."""
    for table in ("tcp", "tcp6"):
        with contextlib.suppress(OSError), open(f"/proc/net/{table}") as f:
            rows = list(f)[1:]
        for row in rows:
            f_ = row.split()
            ends = [int(end.rsplit(":", 1)[1], 16) for end in (f_[1], f_[2])]
            yield ends[0], ends[1], f_[3], int(f_[9])


def connection_inode(local_port: int, remote_port: int) -> int | None:
    """The inode of the live socket whose ends are local_port and remote_port."""
    return next(
        (ino for lp, rp, _, ino in tcp_sockets() if (lp, rp) == (local_port, remote_port) and ino),
        None,
    )


def read_head(conn: socket.socket, buf: bytes) -> tuple[bytes, bytes] | None:
    """A scripted origin's next request head from conn, after what buf holds
    already: (the head without its blank line, the bytes after it), or None
    when the peer closes first."""
    while b"\r\n\r\n" not in buf:
        more = conn.recv(65536)
        if not more:
            return None
        buf += more
    head, _, rest = buf.partition(b"\r\n\r\n")
    return head, rest


def get_until_close(port: int, target: str = "/", host: str = "t", timeout: float = 10) -> bytes:
    """One GET on a new connection with Connection: close; every byte read
    until the proxy closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(f"GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        data = bytearray()
        while chunk := s.recv(65536):
            data += chunk
    return bytes(data)


@contextmanager
def two_origins(origin: Any, labels: tuple[str, str] = ("A", "B")) -> Iterator[list[Any]]:
    """The `origin` fixture's server and one more of the same kind, answering with an
    X-Origin header of labels[0] and labels[1], so a test can tell who served what."""
    other = type(origin)()
    other.start()
    try:
        origin.extra_headers = [("X-Origin", labels[0])]
        other.extra_headers = [("X-Origin", labels[1])]
        yield [origin, other]
    finally:
        other.stop()


def call(
    port: int, method: str, path: str, host: str, extra: str = ""
) -> tuple[int, dict[str, str], bytes]:
    """One request on a new connection (Connection: close), read to EOF: (status, header
    fields by lower-case name, body).  `extra`: more header lines, each ending in CRLF."""
    length = "Content-Length: 0\r\n" if method == "POST" else ""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(
            f"{method} {path} HTTP/1.1\r\nHost: {host}\r\n{extra}{length}"
            "Connection: close\r\n\r\n".encode()
        )
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    fields = {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    return int(lines[0].split()[1]), fields, body


def admin_call(port: int, method: str, path: str, body: bytes = b"", extra: str = "") -> Any:
    """One request to an admin endpoint on a new connection (Connection: close), read
    to EOF: (status, body).  `extra`: more header lines, each ending in CRLF."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(
            f"{method} {path} HTTP/1.1\r\nHost: a\r\nContent-Length: {len(body)}\r\n{extra}"
            "Connection: close\r\n\r\n".encode()
            + body
        )
        data = bytearray()
        while chunk := s.recv(65536):
            data += chunk
    head, _, payload = bytes(data).partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), payload


class QuietHandler(http.server.BaseHTTPRequestHandler):
    """HTTP/1.1 keep-alive handler base: TCP_NODELAY (head and body are two writes:
    no Nagle delay between them), no log lines."""

    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, *args: object) -> None:
        pass


class ThreadedOrigin:
    """An http.server origin on 127.0.0.1, a thread per connection: `address`
    ("127.0.0.1:PORT") once serve() has run, close() to stop it."""

    address: str

    def serve(self, handler: type[http.server.BaseHTTPRequestHandler]) -> None:
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class LabelOrigin(ThreadedOrigin):
    """HTTP/1.1 origin: every path answers 200 `origin-NAME`; /slow?delay=S sleeps first."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.hits = 0
        self.slow_started = threading.Event()
        lock = threading.Lock()
        origin = self

        class Handler(QuietHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                with lock:
                    origin.hits += 1
                url = urlsplit(self.path)
                body = f"origin-{origin.name}".encode()
                if url.path == "/slow":
                    origin.slow_started.set()
                    time.sleep(float(parse_qs(url.query)["delay"][0]))
                    body = b"slow"
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.serve(Handler)


def one_response(raw: bytes) -> tuple[int, dict[str, list[str]], bytes]:
    """Status, headers (lower-case names) and body of ONE raw response."""
    head, sep, body = raw.partition(b"\r\n\r\n")
    assert sep, f"no complete response head in {raw[:500]!r}"
    lines = head.split(b"\r\n")
    m = re.fullmatch(rb"HTTP/1\.1 (\d{3})(?: .*)?", lines[0])
    assert m, f"bad status line {lines[0]!r}"
    headers: dict[str, list[str]] = {}
    for line in lines[1:]:
        k, _, v = line.decode("latin-1").partition(":")
        headers.setdefault(k.strip().lower(), []).append(v.strip())
    return int(m.group(1)), headers, body


def origin_barrier(port: int, origin: Any, path: str = "/barrier", host: str = "h") -> None:
    """Wait until what the proxy sent upstream so far has reached `origin` (a
    recording_origin.Origin or raw_origin.RawOrigin): one more GET `path` on a new client
    connection, which the proxy must forward, until the origin has recorded it.

    Anything the proxy wrongly sends upstream it sends while handling the client bytes
    that caused it, before it answers or closes that client connection (which the test
    has seen by now).  Both origins count connections on one accept thread, in order: if
    `path` went on a new upstream connection, every earlier connection is counted once it
    is recorded.  A request on another connection is recorded by that connection's own
    thread: almost always long before, the proxy having sent it a round trip earlier."""
    get_until_close(port, path, host)
    wait_for(lambda: any(q.target == path for q in origin.requests), 5, f"{path} at the origin")


def check_origin_untouched(
    proxy: Any, origin: Any, path: str = "/barrier", host: str = "h"
) -> None:
    """`origin` (no connection from the proxy before the test's refused requests) never
    got a connection from them: after origin_barrier, exactly its one connection and its
    one request.  Deterministic when the barrier opens a new upstream connection: any the
    proxy opened before it is then counted first.  The check before the barrier (which
    cannot fail spuriously) catches one left idle for the barrier to reuse, once the
    accept thread has run -- almost surely, it was opened a round trip earlier."""
    assert origin.connections == 0, "the proxy opened a connection to the origin"
    origin_barrier(proxy.port, origin, path, host)
    assert origin.connections == 1, "the proxy opened another connection to the origin"
    assert [q.target for q in origin.requests] == [path]


def expect_refusal(raw: bytes, status: int) -> dict[str, list[str]]:
    """`raw` was read until the proxy closed: exactly one response, with `status`, whose
    body is complete."""
    assert raw.count(b"HTTP/1.1 ") == 1, f"expected exactly one response, got {raw!r}"
    got, headers, body = one_response(raw)
    assert got == status, raw
    assert headers.get("content-length") == [str(len(body))], raw
    assert headers.get("connection") == ["close"], raw
    return headers


def has_ipv6_loopback() -> bool:
    """Whether ::1 can be bound here (tests over IPv6 skip without it)."""
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False
