"""The worker's read loop (fastproxy/_readloop.pxi): a keep-alive client
connection, once a read leaves it waiting for its next request, and a
plain-TCP server connection after its first read, are read by one epoll set
per worker instead of by their transports.  These tests run an embedded Proxy in this
process, so they can see which connections the read loop holds, and drive it
with real sockets through each way a read can end: more bytes, a pause and
resume, EOF, a reset, a stop."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import socket
import struct
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
from support import read_head, wait_for

import fastproxy

uvloop = pytest.importorskip("uvloop")

LOOPS = {"uvloop": uvloop.new_event_loop, "asyncio": asyncio.new_event_loop}


def _config(origin: Any, **extra: Any) -> fastproxy.Config:
    return fastproxy.Config.from_dict(
        {
            "server": {"listen": ["127.0.0.1:0"], "pid_file": False},
            "log": {"access": "off"},
            "upstreams": {"app": {"servers": [origin.address]}},
            "routes": [{"path_prefix": "/", "upstream": "app"}],
            **extra,
        }
    )


def _run(
    origin: Any,
    body: Callable[[Any, int], Awaitable[Any]],
    loop: str = "uvloop",
    **extra: Any,
) -> Any:
    """body(runtime, port) inside an embedded Proxy on the named loop."""

    async def main() -> Any:
        async with fastproxy.Proxy(_config(origin, **extra)) as proxy:
            [(_, port)] = proxy.addresses
            return await body(proxy._runtime, port)

    with asyncio.Runner(loop_factory=LOOPS[loop]) as runner:
        return runner.run(main())


def _blocking(fn: Callable[..., Any], *args: Any) -> Awaitable[Any]:
    """fn(*args) in a thread (a blocking client), bounded in time."""
    loop = asyncio.get_running_loop()
    return asyncio.wait_for(loop.run_in_executor(None, fn, *args), 20)


def _get(conn: Any, target: str) -> bytes:
    """GET target on conn; the body (the origin echoes the request line last)."""
    answer = conn.roundtrip("GET", target, host="t")
    assert answer.status == 200, answer
    return answer.body


def _rest(conn: Any) -> bytes:
    """What comes after the answers read so far: b"" for a clean close (a
    reset raises, where HTTPConn.at_eof() would take it for an EOF)."""
    assert not conn.reader.buf, "bytes after the last answer"
    conn.sock.settimeout(5)
    return conn.sock.recv(100)


def _clients(rt: Any) -> list[Any]:
    return [c for c in rt.conns if type(c).__name__ == "ClientProtocol"]


def _held(rt: Any) -> list[Any]:
    return [c for c in _clients(rt) if c.own_read]


@pytest.mark.parametrize("loop", sorted(LOOPS))
def test_keepalive_connection_moves_to_the_read_loop(origin, http_conn, loop):
    async def body(rt: Any, port: int) -> None:
        conn = http_conn(port, timeout=15)
        assert (await _blocking(_get, conn, "/one")).endswith(b"GET /one")
        assert len(_held(rt)) == 1, "the read loop did not take the connection"
        for i in range(20):
            assert (await _blocking(_get, conn, f"/n{i}")).endswith(f"GET /n{i}".encode())
        # A request sent a byte at a time is put together across reads.
        req = b"GET /slowly HTTP/1.1\r\nHost: t\r\n\r\n"

        def trickle() -> bytes:
            for i in range(len(req)):
                conn.sock.send(req[i : i + 1])
            return conn.read_response().body

        assert (await _blocking(trickle)).endswith(b"GET /slowly")
        conn.close()

    _run(origin, body, loop)
    assert len(origin.requests) == 22


def test_connection_close_request_never_moves(origin, http_conn):
    async def body(rt: Any, port: int) -> int:
        conn = http_conn(port, timeout=15)
        conn.request("GET", "/x", headers={"Connection": "close"})
        assert (await _blocking(conn.read_response)).status == 200
        held = len(_held(rt))
        conn.close()
        return held

    assert _run(origin, body) == 0


@pytest.mark.parametrize("loop", sorted(LOOPS))
def test_pipelined_burst_pauses_and_resumes(origin, http_conn, loop):
    """Over 64 KiB of pipelined requests: the connection is paused (taken
    out of the set) while they wait, and put back; every one is answered.
    If putting it back did not report the bytes already waiting, this
    would hang."""
    count = 900  # under keepalive_requests (1000)
    pad = "p" * 300  # 300 KB in all: read in several rounds around the pauses

    async def body(rt: Any, port: int) -> list[bytes]:
        conn = http_conn(port, timeout=15)
        await _blocking(_get, conn, "/first")
        await _blocking(_get, conn, "/second")
        assert len(_held(rt)) == 1

        def burst() -> list[bytes]:
            conn.send(
                b"".join(
                    f"GET /b{i}?{pad} HTTP/1.1\r\nHost: t\r\n\r\n".encode() for i in range(count)
                )
            )
            return [conn.read_response().body for _ in range(count)]

        answers = await _blocking(burst)
        conn.close()
        return answers

    answers = _run(origin, body, loop)
    assert [a.rsplit(b"?", 1)[0][-5:] for a in answers[:3]] == [b"T /b0", b"T /b1", b"T /b2"]
    assert all(a.endswith(f"GET /b{i}?{pad}".encode()) for i, a in enumerate(answers))


def test_large_upload_on_a_moved_connection(origin, http_conn):
    """8 MiB to an origin that reads at 16 MiB/s: the body is read in many
    rounds, paused whenever the upstream falls behind, and arrives whole."""
    size = 8 << 20

    async def body(rt: Any, port: int) -> Any:
        conn = http_conn(port, timeout=15)
        await _blocking(_get, conn, "/first")
        await _blocking(_get, conn, "/second")
        assert len(_held(rt)) == 1

        def upload() -> Any:
            conn.send(
                f"POST /sink?rate=16 HTTP/1.1\r\nHost: t\r\nContent-Length: {size}\r\n\r\n".encode()
            )
            block = b"u" * 65536
            for _ in range(size // len(block)):
                conn.send(block)
            return conn.read_response("POST")

        answer = await _blocking(upload)
        conn.close()
        return answer

    answer = _run(origin, body)
    assert answer.status == 200, answer
    assert answer.body.endswith(str(size).encode())


def test_half_close_while_waiting_still_gets_the_answer(origin, http_conn):
    async def body(rt: Any, port: int) -> tuple[Any, bool]:
        conn = http_conn(port, timeout=15)
        await _blocking(_get, conn, "/first")
        await _blocking(_get, conn, "/second")
        assert len(_held(rt)) == 1

        def half_close() -> tuple[Any, bool]:
            conn.send(b"GET /slow?delay=0.3 HTTP/1.1\r\nHost: t\r\n\r\n")
            conn.sock.shutdown(socket.SHUT_WR)
            answer = conn.read_response()
            return answer, _rest(conn)  # then the proxy closes: a FIN

        got = await _blocking(half_close)
        conn.close()
        return got

    answer, rest = _run(origin, body)
    assert answer.status == 200 and answer.body.endswith(b"slow")
    assert rest == b""


def test_resets_and_closes_leave_nothing_behind(origin, http_conn):
    """Connections taken by the read loop and then reset, or closed, by the
    client: each leaves the set and is freed (the loop's reference is given
    back), and a connection that stays keeps being served throughout, though
    the closed ones' fd numbers are reused at once."""

    def count_protocols() -> int:
        gc.collect()
        return sum(type(o).__name__ == "ClientProtocol" for o in gc.get_objects())

    async def body(rt: Any, port: int) -> tuple[int, int, int]:
        keeper = http_conn(port, timeout=15)
        await _blocking(_get, keeper, "/keep")
        await _blocking(_get, keeper, "/keep2")
        await asyncio.sleep(0)
        before = count_protocols()
        for i in range(60):
            conn = http_conn(port, timeout=15)
            await _blocking(_get, conn, f"/r{i}")
            await _blocking(_get, conn, f"/r{i}b")
            if i % 2:
                conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()  # a reset when SO_LINGER is 0, else a FIN
            assert (await _blocking(_get, keeper, f"/k{i}")).endswith(f"GET /k{i}".encode())
        deadline = asyncio.get_running_loop().time() + 10
        while len(_clients(rt)) > 1 and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.02)
        left = len(_clients(rt))
        after = count_protocols()
        keeper.close()
        return before, after, left

    before, after, left = _run(origin, body)
    assert left == 1
    assert after == before, f"{after - before} client protocols were never freed"


def _burst(
    origin: Any, http_conn: Any, target: str, status: int, **extra: Any
) -> tuple[int, int, int]:
    """N keep-alive connections held by the read loop, then one request of
    `target` on each, all waiting before the loop's next turn: (ready()
    calls, batches read, answers other than `status`) for that burst."""
    n = 100  # more than one batch of READY_BATCH (64)
    origin.extra_headers = [("Cache-Control", "max-age=600")]

    async def body(rt: Any, port: int) -> tuple[int, int, int]:
        conns = [http_conn(port, timeout=15) for _ in range(n)]

        def one_each() -> list[int]:
            return [c.roundtrip("GET", target, host="t").status for c in conns]

        first = await _blocking(one_each)  # the first fills the cache on a cache route
        assert len(_held(rt)) == n, "every connection waits in the read loop"
        rl = rt.readloop
        calls, batches = rl.calls, rl.batches
        for c in conns:  # no await: every request is in before ready() runs
            c.send(f"GET {target} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        again = await _blocking(lambda: [c.read_response().status for c in conns])
        bad = sum(s != status for s in first + again)
        return rl.calls - calls, rl.batches - batches, bad

    return _run(origin, body, **extra)


def test_cache_hits_answered_whole_ask_the_set_again(origin, http_conn):
    """While every connection of a batch is answered whole from the cache,
    ready() reads its set again before the loop gets its turn back: the
    burst is one call.  (Without that it takes one call per batch.)"""
    routes = [{"path_prefix": "/", "upstream": "app", "cache": True}]
    calls, batches, bad = _burst(
        origin, http_conn, "/cache/hot", 200, routes=routes, cache={"size": "32MiB"}
    )
    assert bad == 0
    assert origin.cache_hits == {"/cache/hot": 1}
    assert (calls, batches) == (1, 2)


def test_other_answers_give_the_loop_its_turn(origin, http_conn):
    """A batch with anything but a whole cache hit (here local answers) ends
    ready(): the loop may have work from it, so the burst takes two calls."""
    calls, batches, bad = _burst(
        origin, http_conn, "/local", 204, routes=[{"path_prefix": "/", "return": 204}]
    )
    assert bad == 0
    assert (calls, batches) == (2, 2)


def test_stop_closes_moved_idle_connections(origin, http_conn):
    async def body(rt: Any, port: int) -> Any:
        conn = http_conn(port, timeout=15)
        await _blocking(_get, conn, "/idle")
        await _blocking(_get, conn, "/idle2")
        assert len(_held(rt)) == 1
        return conn  # the Proxy stops with it idle and held

    conn = _run(origin, body)
    assert _rest(conn) == b""  # closed by the stop (a FIN), not left hanging


# ---- the server side: a plain-TCP upstream connection is read by the loop
# after its first read, for the rest of its life (in the pool too).


def _upstreams(rt: Any) -> list[Any]:
    return [c for c in rt.conns if type(c).__name__ == "UpstreamProtocol"]


def _ok(body: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


class Scripted:
    """An origin whose n-th connection answers its requests (GETs) from
    scripts[n], one step per request: (bytes to send, then "keep", "close"
    (a FIN), "reset" (SO_LINGER 0), or "stray": 0.3 s later, unasked-for
    bytes, then wait for the proxy to close).  A connection past its script
    closes."""

    def __init__(self, scripts: list[list[tuple[bytes, str]]]) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.scripts = scripts
        self.accepted = 0
        self.requests: list[tuple[int, bytes]] = []  # (connection number, request line)
        self.proxy_closed: dict[int, bool] = {}  # "stray": the proxy closed the connection
        self.threads: list[threading.Thread] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            n, self.accepted = self.accepted, self.accepted + 1
            t = threading.Thread(target=self._serve, args=(conn, n), daemon=True)
            self.threads.append(t)
            t.start()

    def _serve(self, conn: socket.socket, n: int) -> None:
        buf = b""
        with conn:
            for answer, then in self.scripts[n] if n < len(self.scripts) else []:
                got = read_head(conn, buf)
                if got is None:
                    return
                head, buf = got
                self.requests.append((n, head.split(b"\r\n", 1)[0]))
                conn.sendall(answer)
                if then == "reset":
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    return
                if then == "close":
                    conn.shutdown(socket.SHUT_WR)
                    conn.recv(1)  # until the proxy closes too
                    return
                if then == "stray":
                    time.sleep(0.3)
                    conn.sendall(b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\n\r\n")
                    conn.settimeout(10)
                    try:
                        self.proxy_closed[n] = conn.recv(1) == b""
                    except ConnectionResetError:
                        self.proxy_closed[n] = True  # closed with a reset
                    except OSError:
                        pass  # timed out: still open
                    return

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def scripted() -> Iterator[Callable[[list[list[tuple[bytes, str]]]], Scripted]]:
    made: list[Scripted] = []

    def make(scripts: list[list[tuple[bytes, str]]]) -> Scripted:
        made.append(Scripted(scripts))
        return made[-1]

    yield make
    for s in made:
        s.close()


async def _until(cond: Callable[[], bool], what: str, timeout: float = 10) -> None:
    """Wait for the loop to make cond() true (it is an effect of events the
    loop handles, so it is checked between its turns)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not cond():
        assert asyncio.get_running_loop().time() < deadline, f"timed out: {what}"
        await asyncio.sleep(0.01)


def test_server_connection_moves_and_survives_backpressure(origin, http_conn):
    """The pooled connection is read by the loop from its second read on,
    serves every later request, and is paused and resumed there while a
    slow client takes 8 MiB: the body arrives whole and in order, and the
    same connection serves the next request."""
    size = 8 << 20

    async def body(rt: Any, port: int) -> tuple[bytes, list[bytes]]:
        conn = http_conn(port, timeout=15, rcvbuf=4096)
        await _blocking(_get, conn, "/first")
        assert [u.own_read for u in _upstreams(rt)] == [True], "the read loop did not take it"
        answers = [await _blocking(_get, conn, f"/n{i}") for i in range(20)]

        def slow_stream() -> bytes:
            conn.request("GET", f"/stream?mib={size / 1048576}", host="t")
            time.sleep(0.2)  # let the proxy's buffers fill before reading
            return conn.read_response().body

        [up] = _upstreams(rt)
        reading = asyncio.ensure_future(_blocking(slow_stream))
        paused = 0
        while not reading.done():  # the loop's view between its turns
            paused += not up.rl_watched
            await asyncio.sleep(0)
        streamed = await reading
        assert paused, "the server connection was never paused in the read loop"
        answers.append(await _blocking(_get, conn, "/last"))
        assert [u.own_read for u in _upstreams(rt)] == [True]
        conn.close()
        return streamed, answers

    streamed, answers = _run(origin, body)
    assert len(streamed) == size and streamed == b"x" * size
    assert all(a.endswith(f"GET /n{i}".encode()) for i, a in enumerate(answers[:20]))
    assert answers[20].endswith(b"GET /last")
    assert len({r.conn_id for r in origin.requests}) == 1, "the pooled connection was not reused"


def test_server_close_of_a_pooled_connection(scripted, http_conn):
    """The server closes a pooled connection the loop reads: the proxy sees
    the EOF while the connection sits in the pool, lets it go (the loop's
    reference too), and the next request opens a new one."""
    origin = scripted([[(_ok(b"a"), "keep"), (_ok(b"b"), "close")], [(_ok(b"c"), "keep")]])

    def count_upstreams() -> int:
        gc.collect()
        return sum(type(o).__name__ == "UpstreamProtocol" for o in gc.get_objects())

    async def body(rt: Any, port: int) -> tuple[list[bytes], int]:
        conn = http_conn(port, timeout=15)
        got = [await _blocking(_get, conn, "/1")]
        assert [u.own_read for u in _upstreams(rt)] == [True]
        got.append(await _blocking(_get, conn, "/2"))
        await _until(lambda: not _upstreams(rt), "the server's close was not seen")
        left = count_upstreams()
        got.append(await _blocking(_get, conn, "/3"))
        conn.close()
        return got, left

    got, left = _run(origin, body)
    assert got == [b"a", b"b", b"c"]
    assert left == 0, "a closed upstream connection was never freed"
    assert origin.accepted == 2
    assert [n for n, _ in origin.requests] == [0, 0, 1], "a request went to the closed connection"


def test_server_reset_mid_head_on_a_held_connection(scripted, http_conn):
    """A reset after part of a response head, on a connection the loop
    reads: that client gets a 502, and the proxy serves the next one."""
    origin = scripted(
        [
            [(_ok(b"a"), "keep"), (b"HTTP/1.1 200 OK\r\nContent-Len", "reset")],
            [(_ok(b"c"), "keep")],
        ]
    )

    async def body(rt: Any, port: int) -> tuple[bytes, int, bytes]:
        conn = http_conn(port, timeout=15)
        first = await _blocking(_get, conn, "/1")
        assert [u.own_read for u in _upstreams(rt)] == [True]
        failed = await _blocking(conn.roundtrip, "GET", "/2")
        conn.close()
        other = http_conn(port, timeout=15)
        last = await _blocking(_get, other, "/3")
        other.close()
        return first, failed.status, last

    assert _run(origin, body) == (b"a", 502, b"c")


def test_server_reset_mid_body_on_a_held_connection(scripted, http_conn):
    """A reset part-way through a body the loop is reading: the client gets
    the head and what came, then its connection is cut, never a response
    that looks whole."""
    partial = b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"z" * 5000
    origin = scripted([[(_ok(b"a"), "keep"), (partial, "reset")], [(_ok(b"c"), "keep")]])

    async def body(rt: Any, port: int) -> tuple[bytes, bytes]:
        conn = http_conn(port, timeout=15)
        await _blocking(_get, conn, "/1")
        assert [u.own_read for u in _upstreams(rt)] == [True]

        def cut() -> bytes:
            conn.request("GET", "/2", host="t")
            got = b""
            conn.sock.settimeout(10)
            with contextlib.suppress(ConnectionResetError):
                while more := conn.sock.recv(65536):
                    got += more
            return got

        got = await _blocking(cut)
        other = http_conn(port, timeout=15)
        last = await _blocking(_get, other, "/3")
        other.close()
        return got, last

    got, last = _run(origin, body)
    head, _, rest = got.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and b"Content-Length: 100000" in head
    assert rest == b"z" * len(rest) and 0 < len(rest) < 100000
    assert last == b"c"


@pytest.mark.parametrize("loop", sorted(LOOPS))
def test_server_reset_mid_close_delimited_body(scripted, http_conn, loop):
    """A body delimited by the close, cut by a reset: the re-chunked answer
    to an HTTP/1.1 client must not end with the last chunk, as if whole; the
    connection is cut instead.  Both ways a reset is seen: by the read loop
    (uvloop, a held connection), and by the transport (asyncio, whose
    server connections stay with it: connection_lost gets the error)."""
    partial = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n" + b"y" * 5000
    origin = scripted([[(_ok(b"a"), "keep"), (partial, "reset")], [(_ok(b"c"), "keep")]])

    async def body(rt: Any, port: int) -> bytes:
        conn = http_conn(port, timeout=15)
        await _blocking(_get, conn, "/1")
        assert [u.own_read for u in _upstreams(rt)] == [loop == "uvloop"]

        def cut() -> bytes:
            conn.request("GET", "/2", host="t")
            got = b""
            conn.sock.settimeout(10)
            with contextlib.suppress(ConnectionResetError):
                while not got.endswith(b"0\r\n\r\n") and (more := conn.sock.recv(65536)):
                    got += more
            return got

        return await _blocking(cut)

    got = _run(origin, body, loop)
    head, _, rest = got.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and b"transfer-encoding: chunked" in head.lower()
    assert b"y" * 100 in rest
    assert not rest.endswith(b"0\r\n\r\n"), "a cut body was made to look complete"


def test_stray_bytes_on_a_pooled_connection(scripted, http_conn):
    """A server that sends bytes nobody asked for on a pooled connection:
    the proxy closes that connection, it leaves the pool at once, and the
    next request goes to a new one."""
    origin = scripted([[(_ok(b"a"), "stray")], [(_ok(b"b"), "keep")]])

    async def body(rt: Any, port: int) -> tuple[bytes, bytes, int]:
        [server] = rt.router.upstreams["app"].unique_servers()
        conn = http_conn(port, timeout=15)
        first = await _blocking(_get, conn, "/1")
        assert len(server.idle) == 1
        await _until(lambda: not _upstreams(rt), "the stray bytes did not close it")
        left = len(server.idle)
        second = await _blocking(_get, conn, "/2")
        conn.close()
        return first, second, left

    first, second, left = _run(origin, body)
    assert (first, second) == (b"a", b"b")
    assert left == 0, "a closed connection stayed in the pool"
    assert [n for n, _ in origin.requests] == [0, 1]
    wait_for(lambda: 0 in origin.proxy_closed, 10, "the origin to see the connection end")
    assert origin.proxy_closed[0], "the proxy did not close the connection"
