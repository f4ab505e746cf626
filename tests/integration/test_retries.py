"""Retries end to end (`retries`, `retry_non_idempotent`, `retry_timeout`, `host =
"upstream"`): a server that refuses, closes at once or says nothing until `read_timeout`
is replaced by another one and the client never sees it; a server that has started
answering is not.  Then the issue's scenario: 3 servers with health checks and 2 workers,
one killed mid-load -> zero failed GETs, marked down within interval x fall + timeout,
back after `rise` passes once restarted on the same port.

The misbehaving servers are plain sockets (`Listener`); every wait polls with a deadline.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from support import free_port, get_until_close, read_head, wait_for

CHECK = {"path": "/healthz", "interval": "0.2s", "timeout": "0.2s", "fall": 2, "rise": 2}
DETECT = 3.0  # interval x fall + timeout = 0.6 s, plus a margin for a loaded machine


class Listener:
    """A TCP server on 127.0.0.1 that treats every connection per `mode`:
    "ok"           HTTP/1.1 keep-alive, 200 with body `name` (and /healthz)
    "close"        accept and close at once
    "hang"         read the request, never answer
    "late_close"   read the request, close 0.4 s later without answering
    "partial_head" read the request, send half a status line's head, close
    "partial_body" read the request, send a head with Content-Length: 100 and 3 bytes, close
    `accepts` counts connections, `requests` request heads; `kill()` closes the listener and
    shuts every open connection down (a crash); `start()` listens on the same port again."""

    def __init__(self, mode: str, name: str = "", port: int = 0) -> None:
        self.mode = mode
        self.name = name
        self.port = port
        self.accepts = 0
        self.requests = 0
        self.hits = 0  # non-health requests answered
        self._lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        self._sock: socket.socket | None = None
        self.start()
        self.address = f"127.0.0.1:{self.port}"

    def start(self) -> None:
        sock = socket.create_server(("127.0.0.1", self.port), backlog=256)
        sock.settimeout(0.1)
        self.port = sock.getsockname()[1]
        self._sock = sock
        threading.Thread(target=self._accept, args=(sock,), daemon=True).start()

    def kill(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()
        with self._lock:
            conns = list(self._conns)
        for c in conns:
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)

    def _accept(self, sock: socket.socket) -> None:
        while self._sock is sock:
            try:
                conn, _ = sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.accepts += 1
                self._conns.add(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        buf = b""
        try:
            if self.mode == "close":
                return
            while True:
                got = read_head(conn, buf)
                if got is None:
                    return
                head, buf = got
                with self._lock:
                    self.requests += 1
                if self.mode == "hang":
                    while conn.recv(65536):
                        pass
                    return
                if self.mode == "late_close":
                    threading.Event().wait(0.4)
                    return
                if self.mode == "partial_head":
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Le")
                    return
                if self.mode == "partial_body":
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabc")
                    return
                health = head.split(b" ", 2)[1] == b"/healthz"
                body = b"ok" if health else self.name.encode()
                if not health:
                    with self._lock:
                        self.hits += 1
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        except OSError:
            pass
        finally:
            with self._lock:
                self._conns.discard(conn)
            conn.close()


@pytest.fixture
def listeners() -> Iterator[Callable[..., Listener]]:
    made: list[Listener] = []

    def make(mode: str, name: str = "") -> Listener:
        made.append(Listener(mode, name))
        return made[-1]

    yield make
    for lst in made:
        lst.kill()


@pytest.fixture
def refused() -> Iterator[Callable[[], str]]:
    """Addresses that refuse connections: bound but not listening, and held until the test
    ends, so no other process on the machine can be handed the port meanwhile."""
    held: list[socket.socket] = []

    def make() -> str:
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        held.append(s)
        return f"127.0.0.1:{s.getsockname()[1]}"

    yield make
    for s in held:
        s.close()


def config(servers: list[Any], admin: int | None = None, **upstream: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "server": {"listen": ["127.0.0.1:0"], "pid_file": False, "workers": 1},
        "log": {"access": "off"},
        "upstreams": {"app": {"servers": servers, **upstream}},
        "routes": [{"path_prefix": "/", "upstream": "app"}],
    }
    if admin is not None:
        doc["admin"] = {"listen": f"127.0.0.1:{admin}"}
    return doc


@pytest.fixture
def start(make_proxy: Callable[..., Any]) -> Callable[..., Any]:
    def run(doc: dict[str, Any]) -> Any:
        p = make_proxy(doc, merge=False)
        if "admin" in doc:
            p.wait_log(r"admin endpoint on http://127\.0\.0\.1:\d+", 5)
        return p

    return run


def admin_get(admin: int, path: str) -> bytes:
    data = get_until_close(admin, path, host="admin", timeout=5)
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), data[:300]
    return body


def retries_total(admin: int) -> float:
    text = admin_get(admin, "/metrics").decode()
    m = re.search(r"^fastproxy_upstream_retries_total (\S+)$", text, re.M)
    assert m, text
    return float(m.group(1))


def states(admin: int) -> dict[str, str]:
    doc = json.loads(admin_get(admin, "/status"))
    return {s["address"]: s["state"] for s in doc["upstreams"]["app"]["servers"]}


def fetch(port: int, method: str = "GET", target: str = "/", body: bytes = b"") -> bytes:
    """One request on a new connection, everything read until the proxy closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        head = f"{method} {target} HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n"
        if body or method in ("POST", "PUT", "PATCH"):
            head += f"Content-Length: {len(body)}\r\n"
        s.sendall(head.encode() + b"\r\n" + body)
        data = b""
        with contextlib.suppress(ConnectionResetError):
            while chunk := s.recv(65536):
                data += chunk
    return data


def status_of(data: bytes) -> int:
    return int(data.split(b" ", 2)[1])


# ---- retries -------------------------------------------------------------------------------


def test_refused_server_is_retried_and_the_client_sees_nothing(origin, start, http_conn, refused):
    dead = refused()
    admin = free_port()
    p = start(config([dead, origin.address], admin))
    responses = [http_conn(p.port).roundtrip("GET", f"/r{i}") for i in range(8)]
    assert [r.status for r in responses] == [200] * 8
    assert [r.body for r in responses] == [f"GET /r{i}".encode() for i in range(8)]
    assert len(origin.requests) == 8
    # the first request went to the first server and was retried: its response has the same
    # shape as the others, and nothing about the failure
    shapes = {tuple(k.lower() for k, _ in r.headers) for r in responses}
    assert len(shapes) == 1, shapes
    for r in responses:
        text = r.raw.decode("latin-1").lower()
        assert "refused" not in text and "retr" not in text and dead not in text
    p.wait_log(
        rf"upstream={re.escape(dead)} connect failed: .*; retrying on "
        rf"{re.escape(origin.address)} \(retry 1 of 2\)"
    )
    assert retries_total(admin) >= 1


def test_three_servers_two_refusing_every_get_succeeds(origin, start, listeners, refused):
    closer = listeners("close")
    servers = [refused(), closer.address, origin.address]
    p = start(config(servers, max_fails=0))  # keep the bad ones in rotation
    for i in range(9):
        data = fetch(p.port, target=f"/g{i}")
        assert status_of(data) == 200, data
        assert data.endswith(f"GET /g{i}".encode())
    assert len(origin.requests) == 9
    assert closer.accepts >= 1
    p.wait_log(r"upstream closed the connection .*; retrying on")


def test_retries_bound_the_attempts(origin, start, refused):
    servers = [refused(), refused(), origin.address]
    p = start(config(servers, max_fails=0, retries=1))
    codes = Counter(status_of(fetch(p.port)) for _ in range(9))
    # smooth round-robin sends some request to a dead server and its one retry to the other
    assert codes[502] >= 1 and codes[200] >= 1, codes
    assert set(codes) == {200, 502}
    assert len(origin.requests) == codes[200]
    p.wait_log(r"retry 1 of 1")


@pytest.mark.parametrize("balance", ["round_robin", "least_conn", "ip_hash", "hash", "random"])
def test_every_balance_method_retries_elsewhere(origin, start, balance, refused):
    dead = refused()
    extra = {"hash_key": "header:X-User"} if balance == "hash" else {}
    p = start(config([dead, origin.address], max_fails=0, balance=balance, **extra))
    n = 30
    for i in range(n):
        # distinct client addresses and keys, so ip_hash and hash also land on the dead one
        with socket.create_connection(
            ("127.0.0.1", p.port), timeout=10, source_address=(f"127.0.0.{i + 2}", 0)
        ) as s:
            s.sendall(
                f"GET /u{i} HTTP/1.1\r\nHost: a\r\nX-User: user{i}\r\n"
                "Connection: close\r\n\r\n".encode()
            )
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        assert status_of(data) == 200 and data.endswith(f"GET /u{i}".encode()), data
    assert len(origin.requests) == n
    p.wait_log(r"retrying on " + re.escape(origin.address))


@pytest.mark.parametrize(
    "method, upstream, all_ok",
    [
        ("POST", {}, False),
        ("PATCH", {}, False),
        ("POST", {"retry_non_idempotent": True}, True),
        ("PUT", {}, True),
        ("DELETE", {}, True),
        ("GET", {"retries": 0}, False),
    ],
)
def test_which_requests_are_retried(origin, start, method, upstream, all_ok, refused):
    dead = refused()
    p = start(config([dead, origin.address], max_fails=0, **upstream))
    results = [fetch(p.port, method, "/echo", body=f"body{i}".encode()) for i in range(4)]
    codes = Counter(status_of(d) for d in results)
    if all_ok:
        assert codes == {200: 4}, results
        assert sorted(r.body for r in origin.requests) == [f"body{i}".encode() for i in range(4)]
    else:
        # round-robin alternates between the two servers: the dead one's requests fail
        assert codes == {200: 2, 502: 2}, results
        assert len(origin.requests) == 2
        assert "retrying on" not in p.stderr_text()
        p.wait_log(rf"upstream={re.escape(dead)} 502: connect failed")


def test_read_timeout_before_any_byte_is_retried(origin, start, listeners):
    silent = listeners("hang")
    p = start(config([silent.address, origin.address], read_timeout="500ms"))
    t0 = time.monotonic()
    first = fetch(p.port, target="/t0")
    elapsed = time.monotonic() - t0
    assert status_of(first) == 200 and first.endswith(b"GET /t0"), first
    assert elapsed >= 0.45, elapsed  # it waited for the silent server first
    assert silent.requests == 1
    p.wait_log(r"upstream read timeout; retrying on " + re.escape(origin.address))
    # max_fails = 1 (the default): the silent server is out now, no more waiting
    t1 = time.monotonic()
    assert status_of(fetch(p.port, target="/t1")) == 200
    assert time.monotonic() - t1 < 0.45
    assert silent.requests == 1


@pytest.mark.parametrize("retry_timeout, expect", [("100ms", 502), ("10s", 200)])
def test_retry_timeout_stops_retrying(origin, start, listeners, retry_timeout, expect):
    late = listeners("late_close")
    p = start(config([late.address, origin.address], retry_timeout=retry_timeout))
    data = fetch(p.port)
    assert status_of(data) == expect, data
    assert late.requests == 1
    assert len(origin.requests) == (1 if expect == 200 else 0)
    if expect == 502:
        p.wait_log(r"502: upstream closed the connection before a response")
        assert "retrying on" not in p.stderr_text()
    else:
        p.wait_log(r"before a response; retrying on " + re.escape(origin.address))


@pytest.mark.parametrize("mode", ["partial_head", "partial_body"])
def test_a_server_that_started_answering_is_not_retried(origin, start, listeners, mode):
    partial = listeners(mode)
    p = start(config([partial.address, origin.address], max_fails=0))
    seen_bad = 0
    for i in range(4):
        before = (partial.requests, len(origin.requests))
        data = fetch(p.port, target=f"/p{i}")
        if partial.requests == before[0]:
            assert status_of(data) == 200 and data.endswith(f"GET /p{i}".encode())
            continue
        seen_bad += 1
        assert len(origin.requests) == before[1], "the request went to a second server"
        if mode == "partial_head":
            assert status_of(data) == 502, data
        else:  # the head was forwarded: the client gets a cut body, never a second answer
            head, _, body = data.partition(b"\r\n\r\n")
            assert status_of(data) == 200 and b"Content-Length: 100" in head, data
            assert body == b"abc", data
    assert seen_bad == 2
    assert "retrying on" not in p.stderr_text()
    p.wait_log("upstream closed mid-head" if mode == "partial_head" else "closed mid-response")


def test_host_upstream_retry_sends_the_new_servers_host(origin, start, refused):
    dead = refused()
    p = start(config([dead, origin.address], host="upstream"))
    data = fetch(p.port, target="/h")
    assert status_of(data) == 200, data
    (req,) = origin.requests
    assert req.header_all("Host") == [origin.address]
    p.wait_log(r"retrying on " + re.escape(origin.address))


# ---- the scenario: one of 3 servers killed mid-load ---------------------------------


class Load:
    """GETs on new connections (so both workers serve) from 3 threads until stopped."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.bodies: Counter[bytes] = Counter()
        self.failures: list[Any] = []
        self.done = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(3)]
        self._deadline = time.monotonic() + 30  # bounded whatever happens

    def _run(self) -> None:
        while not self._stop.is_set() and time.monotonic() < self._deadline:
            try:
                data = fetch(self.port)
                ok = status_of(data) == 200
                body = data.partition(b"\r\n\r\n")[2]
            except Exception as e:  # noqa: BLE001 - counted as a failure below
                ok, body, data = False, b"", repr(e).encode()
            with self._lock:
                self.done += 1
                if ok:
                    self.bodies[body] += 1
                else:
                    self.failures.append(data[:300])

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(15)

    def count(self, body: bytes) -> int:
        with self._lock:
            return self.bodies[body]


def test_one_of_three_killed_mid_load_zero_failures(start, listeners):
    a, b, c = listeners("ok", "A"), listeners("ok", "B"), listeners("ok", "C")
    admin = free_port()
    doc = config([a.address, b.address, c.address], admin, health_check=dict(CHECK), max_fails=0)
    doc["server"]["workers"] = 2
    p = start(doc)
    p.wait_log(r"\] ready$", 15)
    with Load(p.port) as load:
        wait_for(lambda: all(load.count(n) >= 5 for n in (b"A", b"B", b"C")), 10, "load on all")
        b.kill()
        t0 = time.monotonic()
        wait_for(lambda: states(admin)[b.address] == "down", DETECT, "B marked down")
        assert time.monotonic() - t0 < DETECT
        p.wait_log(
            rf"app {re.escape(b.address)} down: 2 consecutive health checks failed: "
            r"connection refused",
            2,
        )
        assert states(admin) == {a.address: "up", b.address: "down", c.address: "up"}
        served = load.done
        wait_for(lambda: load.done >= served + 30, 10, "more load while B is down")
        b_hits = b.hits

        b.start()  # same port
        t1 = time.monotonic()
        wait_for(lambda: states(admin)[b.address] == "up", DETECT, "B back up")
        assert time.monotonic() - t1 < DETECT
        p.wait_log(rf"app {re.escape(b.address)} up: 2 consecutive health checks passed", 2)
        wait_for(lambda: b.hits > b_hits + 3, 10, "B serving again")
    assert load.failures == [], load.failures[:5]
    assert load.done > 60
    assert set(load.bodies) == {b"A", b"B", b"C"}
