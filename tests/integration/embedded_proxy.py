"""A fastproxy.Proxy embedded in a thread of the test process, on a uvloop loop the test
can stop between two of its turns (`Embedded.frozen()`), so that what the sockets do
meanwhile is found all at once by the loop's next turn: the way to force interleavings
that cannot be forced from outside a process.  Used with the `embed` fixture
(conftest.py); plus small raw-socket helpers, and the pipeline-then-reset scenario
the transport tests share."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import socket
import struct
import threading
from collections.abc import Callable, Iterator
from typing import Any

import uvloop
from support import connection_inode, wait_for

import fastproxy


class Embedded:
    """A fastproxy.Proxy serving on a uvloop loop in its own thread.  call()
    runs a function on that loop (between two of its callbacks) and returns
    its result; frozen() holds the loop inside one callback until the block
    ends, so whatever the sockets do meanwhile is found all at once by the
    loop's next turn."""

    def __init__(self, config: fastproxy.Config) -> None:
        self.config = config
        self.proxy: fastproxy.Proxy | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.loop_errors: list[dict[str, Any]] = []  # what reached the loop's exception handler
        self._ready = threading.Event()
        self._failed: BaseException | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="embedded-proxy", daemon=True)

    def _run(self) -> None:
        async def main() -> None:
            self.loop = asyncio.get_running_loop()
            self.loop.set_exception_handler(lambda _loop, ctx: self.loop_errors.append(ctx))
            self._stop = asyncio.Event()
            async with fastproxy.Proxy(self.config) as proxy:
                self.proxy = proxy
                self._ready.set()
                await self._stop.wait()

        try:
            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                runner.run(main())
        except BaseException as exc:  # noqa: BLE001 - reported by start()
            self._failed = exc
        finally:
            self._ready.set()

    def start(self) -> Embedded:
        self._thread.start()
        assert self._ready.wait(10), "the embedded proxy did not start"
        if self._failed is not None:
            raise self._failed
        return self

    def stop(self) -> None:
        if self.loop is not None and self._stop is not None and self._thread.is_alive():
            with contextlib.suppress(RuntimeError):  # (the loop is gone already)
                self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(15)
        assert not self._thread.is_alive(), "the embedded proxy did not stop"

    def call(self, fn: Callable[[], Any], timeout: float = 5) -> Any:
        assert self.loop is not None
        fut: concurrent.futures.Future[Any] = concurrent.futures.Future()

        def run() -> None:
            try:
                fut.set_result(fn())
            except BaseException as exc:  # noqa: BLE001 - re-raised in the caller
                fut.set_exception(exc)

        self.loop.call_soon_threadsafe(run)
        return fut.result(timeout)

    def stats(self) -> dict[str, Any]:
        assert self.proxy is not None
        return self.call(self.proxy.stats)

    @contextlib.contextmanager
    def frozen(self) -> Iterator[None]:
        assert self.loop is not None
        inside, release = threading.Event(), threading.Event()

        def hold() -> None:
            inside.set()
            release.wait(15)  # bounded: a test that dies here still frees the loop

        self.loop.call_soon_threadsafe(hold)
        assert inside.wait(5), "the proxy's loop did not come to the freeze"
        try:
            yield
        finally:
            release.set()


def config_for(origin_address: str, **server: Any) -> dict[str, Any]:
    return {
        "server": {"listen": ["127.0.0.1:0"], "pid_file": False, **server},
        "log": {"access": "off"},
        "upstreams": {"app": {"servers": [origin_address]}},
        "routes": [
            {"path_prefix": "/local", "return": 200, "body": "answered here\n"},
            {"path_prefix": "/", "upstream": "app"},
        ],
    }


def connect(port: int, host: str = "127.0.0.1") -> socket.socket:
    s = socket.create_connection((host, port), timeout=5)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def reset(s: socket.socket) -> None:
    """Close with a reset (SO_LINGER {1, 0}), as a client that gives up does."""
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


def read_response(s: socket.socket) -> tuple[bytes, bytes]:
    """One response with a Content-Length: (head, body)."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        more = s.recv(65536)
        assert more, f"closed before a whole head: {buf!r}"
        buf += more
    head, _, body = buf.partition(b"\r\n\r\n")
    [length] = [
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")[1:]
        if line.lower().startswith(b"content-length:")
    ]
    while len(body) < length:
        more = s.recv(65536)
        assert more, "closed before the whole body"
        body += more
    assert len(body) == length, "more bytes than the response"
    return head, body


def get(port: int, target: str, host: str = "127.0.0.1") -> tuple[bytes, bytes]:
    with connect(port, host) as s:
        s.sendall(f"GET {target} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode())
        return read_response(s)


def pipeline_then_reset(e: Embedded, s: socket.socket, port: int) -> tuple[dict, dict]:
    """/warm, then /local (answered by the proxy) and /second (for the origin, over
    the pooled connection /warm left) in one segment, and a reset, all while the
    proxy's loop is frozen.  Returns the proxy's stats before and after."""
    s.sendall(b"GET /warm HTTP/1.1\r\nHost: t\r\n\r\n")  # keep-alive both ways
    head, body = read_response(s)
    assert head.startswith(b"HTTP/1.1 200") and body == b"GET /warm"
    before = e.stats()
    assert before["connections_active"] == 1
    client_port = s.getsockname()[1]
    assert connection_inode(port, client_port) is not None
    with e.frozen():
        s.sendall(
            b"GET /local HTTP/1.1\r\nHost: t\r\n\r\n"  # 1: answered by the proxy, keep-alive
            b"GET /second HTTP/1.1\r\nHost: t\r\n\r\n"  # 2: for the origin
        )
        reset(s)
        # the reset is in: the proxy's end of the connection has left the table
        wait_for(lambda: connection_inode(port, client_port) is None, 5, "the reset to land")
    wait_for(lambda: e.stats()["connections_active"] == 0, 5, "connection_lost")
    return before, e.stats()
