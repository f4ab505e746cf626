"""Three fixes to fastproxy's own client transport (fastproxy/_socktransport.pxi,
commit e275d58) whose interleavings cannot be forced from outside a process:
here the engine is embedded (a `fastproxy.Proxy` on a uvloop loop in a thread
of this process, or in a child process), so the test can stop its event loop
between two of its turns, and each test drives real sockets on 127.0.0.1.

1. A write to the client that fails ends the connection for the protocol at
   once (SockTransport.finish() marks it closed): a request pipelined behind
   the failed answer, in the same read, never starts, so it never reaches a
   server.
2. A connection whose set-up fails after its accept (SockServer.started())
   is closed and never counted as live.  (made() itself has no failure after
   it counts the connection that a test can cause; see that test.)
3. SockTransport.get_extra_info("peername") has asyncio's shapes: (host, port)
   for IPv4, (host, port, flowinfo, scope_id) for IPv6; other keys give the
   default."""

from __future__ import annotations

import contextlib
import errno
import gc
import json
import queue
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from embedded_proxy import (
    Embedded,
    config_for,
    connect,
    get,
    pipeline_then_reset,
    read_response,
)
from support import has_ipv6_loopback, wait_for

from fastproxy import _protocols
from fastproxy import proxy as proxy_module

uvloop = pytest.importorskip("uvloop")

pytestmark = pytest.mark.skipif(
    proxy_module.UVLOOP_ACCEPT, reason="FASTPROXY_UVLOOP_ACCEPT=1: not fastproxy's own transport"
)


# ---- 1. no request starts behind a write that failed -------------------------------------
def test_a_request_pipelined_behind_a_failed_write_never_reaches_the_server(embed, origin):
    """Request 1 is answered by the proxy itself (a `return` route); request
    2, pipelined behind it in the same segment, would go to the origin over
    the pooled connection that /warm left -- a send made at once, inside the
    same read.  The client resets before the proxy reads either: the loop is
    frozen while it sends both and resets, and released only once the proxy's
    socket is seen reset in the kernel's table.  The next turn then reads
    both requests in one read(2) (Linux hands over the queued bytes before
    the reset), answers request 1, whose send(2) fails (ECONNRESET), and
    must stop there."""
    e = embed(config_for(origin.address))
    [(_, port)] = e.proxy.addresses

    before, after_reset = pipeline_then_reset(e, connect(port), port)
    [warm] = origin.wait_requests(1)
    # Request 1 was read and answered (counted, a 2xx); request 2 never started:
    # had it, connection_lost would have counted it too (a 499).
    assert sum(after_reset["requests"]) - sum(before["requests"]) == 1, (before, after_reset)
    assert after_reset["requests"][2] - before["requests"][2] == 1, (before, after_reset)
    assert after_reset["upstream_requests"] == before["upstream_requests"]

    # The proxy serves on, and the origin's next request comes over the same
    # pooled connection as /warm: nothing was sent on it, nor was it aborted.
    head, body = get(port, "/after")
    assert head.startswith(b"HTTP/1.1 200") and body == b"GET /after"
    wait_for(lambda: any(r.target == "/after" for r in origin.requests), 5, "/after upstream")
    assert [r.target for r in origin.requests] == ["/warm", "/after"]
    assert origin.requests[1].conn_id == warm.conn_id
    assert origin.connections == 1
    assert not e.loop_errors, e.loop_errors


# ---- 2. a connection whose set-up fails --------------------------------------------------
# An embedding program, run as a child process: its descriptor limit can be
# lowered so that accept4() takes the last free descriptor and the set-up of
# the connection, which makes the worker's read loop (epoll_create1) on the
# first connection, fails with EMFILE.  It reports its loop's exception
# handler calls and, asked on stdin, its counters.
SETUP_FAILS = r"""
import asyncio, fcntl, json, os, resource, sys
import uvloop
import fastproxy

config = fastproxy.Config.from_dict({
    "server": {"listen": ["127.0.0.1:0"], "pid_file": False},
    "log": {"access": "off"},
    "upstreams": {"app": {"servers": [sys.argv[1]]}},
    "routes": [{"path_prefix": "/local", "return": 200, "body": "answered here\n"},
               {"path_prefix": "/", "upstream": "app"}],
})

def say(**kw):
    sys.stdout.write(json.dumps(kw) + "\n")
    sys.stdout.flush()

def is_open(fd):
    try:
        fcntl.fcntl(fd, fcntl.F_GETFD)
        return True
    except OSError:
        return False

async def main():
    loop = asyncio.get_running_loop()
    def handler(_loop, ctx):
        exc = ctx.get("exception")
        say(event="loop_error", message=ctx.get("message"), exc=repr(exc),
            errno=getattr(exc, "errno", None))
    loop.set_exception_handler(handler)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    async with fastproxy.Proxy(config) as proxy:
        rt = proxy._runtime
        pending = b""
        def command():
            nonlocal pending
            pending += os.read(0, 4096)
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                what = line.decode().strip()
                if what == "one_fd_left":
                    # one free descriptor number below the limit: the first free one
                    first = next(fd for fd in range(soft) if not is_open(fd))
                    resource.setrlimit(resource.RLIMIT_NOFILE, (first + 1, hard))
                    say(event="one_fd_left", limit=first + 1)
                elif what == "restore":
                    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
                    say(event="restored")
                elif what == "stats":
                    say(event="stats", conns=len(rt.conns),
                        readloop=rt.readloop is not None, **proxy.stats())
        loop.add_reader(0, command)
        say(event="port", port=proxy.addresses[0][1])
        await asyncio.Event().wait()

uvloop.run(main())
"""


class Child:
    def __init__(self, origin_address: str) -> None:
        self.p = subprocess.Popen(
            [sys.executable, "-c", SETUP_FAILS, origin_address],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self.lines: queue.Queue[dict[str, Any]] = queue.Queue()
        self.others: list[dict[str, Any]] = []  # lines next() passed over
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.p.stdout is not None
        for raw in self.p.stdout:
            self.lines.put(json.loads(raw))

    def next(self, event: str, timeout: float = 10) -> dict[str, Any]:
        """The child's next line of this kind (lines of other kinds are
        kept as `others`)."""
        while True:
            try:
                line = self.lines.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError(f"no {event!r} from the child: {self.stderr()}") from None
            if line["event"] == event:
                return line
            self.others.append(line)

    def ask(self, what: str) -> dict[str, Any]:
        assert self.p.stdin is not None
        self.p.stdin.write(what.encode() + b"\n")
        self.p.stdin.flush()
        return self.next(what if what != "restore" else "restored")

    def stderr(self) -> str:
        if self.p.poll() is None:
            return "(still running)"
        assert self.p.stderr is not None
        return self.p.stderr.read().decode(errors="replace")[-3000:]

    def stop(self) -> None:
        if self.p.poll() is None:
            self.p.kill()  # (its own process: by its PID)
        self.p.wait(10)
        for f in (self.p.stdin, self.p.stdout, self.p.stderr):
            with contextlib.suppress(OSError):
                f.close()  # type: ignore[union-attr]


@pytest.fixture
def child(origin) -> Iterator[Child]:
    c = Child(origin.address)
    try:
        yield c
    finally:
        c.stop()


def test_a_connection_whose_set_up_fails_is_closed_and_never_counted(child):
    """The first connection's set-up fails in SockServer.started() (making the
    read loop: EMFILE) with the request already sent: the loop's exception
    handler hears of it, the client's connection is closed, nothing counts
    it (connections_total and connections_active stay 0, rt.conns is empty),
    and with descriptors again the next connection is served.

    This is the one set-up failure a test can cause for real, and it comes
    before made() (readloop_of() in started()), so it guards only the
    not-counted half of started()'s `except`.  made() itself can raise only
    before `rt.conns.add()` (and then only on MemoryError): what follows the
    add is C arithmetic and a noexcept clock, and the add is PySet_Add on a
    `cdef public set`, which no embedder's object can replace.  The branch
    that calls connection_lost() for a connection made() had counted cannot
    be reached without a hook in fastproxy's source."""
    port = child.next("port")["port"]
    stats = child.ask("stats")
    assert (stats["conns"], stats["connections_total"], stats["readloop"]) == (0, 0, False)

    child.ask("one_fd_left")
    with connect(port) as s:
        s.sendall(b"GET /local HTTP/1.1\r\nHost: t\r\n\r\n")
        err = child.next("loop_error")
        assert err["message"] == "Failed to set up an accepted connection", err
        assert err["errno"] == errno.EMFILE, err
        s.settimeout(5)
        try:
            got = s.recv(4096)  # the proxy closed it: an EOF, or a reset (the request unread)
        except ConnectionResetError:
            got = b""
        assert got == b""
    stats = child.ask("stats")
    assert (stats["conns"], stats["connections_total"], stats["connections_active"]) == (0, 0, 0)
    assert sum(stats["requests"]) == 0

    child.ask("restore")
    head, body = get(port, "/local")
    assert head.startswith(b"HTTP/1.1 200") and body == b"answered here\n"
    stats = wait_for(
        lambda: (st := child.ask("stats"))["connections_active"] == 0 and st, 5, "its close"
    )
    assert (stats["conns"], stats["connections_total"], stats["readloop"]) == (0, 1, True), stats
    assert child.others == [], child.others  # no other loop error


# ---- 3. get_extra_info("peername") -------------------------------------------------------


def _transports(e: Embedded) -> list[Any]:
    """The transports of the live client connections.  Nothing in the public
    API hands a plain-TCP connection's transport out (a Policy sees a
    RequestInfo; the protocol keeps `transport` in a C field), so they are
    found as what the runtime's live connections (rt.conns) refer to."""
    assert e.proxy is not None
    found = {
        id(t): t
        for c in e.proxy._runtime.conns
        for t in gc.get_referents(c)  # (`transport` and `own_tr`: the same one)
        if isinstance(t, _protocols.SockTransport)
    }
    return list(found.values())


@pytest.mark.skipif(not has_ipv6_loopback(), reason="no IPv6 loopback here")
def test_peername_has_asyncios_shapes_for_ipv4_and_ipv6(embed, origin):
    conf = config_for(origin.address)
    conf["server"]["listen"] = ["127.0.0.1:0", "[::1]:0"]
    e = embed(conf)
    ports = {host: port for host, port in e.proxy.addresses}
    with connect(ports["127.0.0.1"]) as c4, connect(ports["::1"], "::1") as c6:
        for c in (c4, c6):  # served and kept open (keep-alive)
            c.sendall(b"GET /local HTTP/1.1\r\nHost: t\r\n\r\n")
            assert read_response(c)[0].startswith(b"HTTP/1.1 200")

        def ask() -> list[tuple[Any, Any, Any, Any, Any]]:
            return [
                (
                    t.get_extra_info("peername"),
                    t.get_extra_info("peername", "unused default"),
                    t.get_extra_info("no such key"),
                    t.get_extra_info("no such key", "the default"),
                    t.get_extra_info("sockname"),
                )
                for t in _transports(e)
            ]

        transports = e.call(lambda: _transports(e))
        seen = e.call(ask)
        v4, v6 = c4.getsockname(), c6.getsockname()
        # what the client socket calls itself is what asyncio's transport
        # would call its peer, and the other way round: a 2-tuple for IPv4,
        # a 4-tuple for IPv6
        assert len(v4) == 2 and len(v6) == 4
        assert sorted(seen, key=lambda x: len(x[0])) == [
            (v4, v4, None, "the default", c4.getpeername()),
            (v6, v6, None, "the default", c6.getpeername()),
        ]
        assert all(type(peer) is tuple for peer, *_ in seen)
    # asyncio's transports keep their peer's address after the end; so does ours
    wait_for(lambda: e.stats()["connections_active"] == 0, 10, "both connections to end")
    assert sorted(
        (e.call(lambda: [t.get_extra_info("peername") for t in transports])), key=len
    ) == [v4, v6]
