"""Passive checks (max_fails / fail_timeout / fail_on_5xx) and the circuit breaker through
a real proxy with 2 workers: a failing server gets no connection attempts while it is out
(counted at its listening socket), the transitions are logged with their reason, and
/status and /metrics show them.  Every wait polls with a deadline.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from support import free_port, get_until_close, read_head, wait_for


class Listener:
    """A TCP server on 127.0.0.1 counting connection attempts (`accepts`); `mode` (may be
    changed at any time) says what each new connection gets: "close" (closed at once),
    "500" (HTTP 500 to every request), "ok" (200 `ok`, keep-alive) or "eof" (200 `ok`
    without a length: the body ends when the server closes, as HTTP/1.0 servers do)."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.accepts = 0
        self.sock = socket.create_server(("127.0.0.1", 0), backlog=128)
        self.sock.settimeout(0.1)
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self._stop.set()
        self.sock.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepts += 1
            threading.Thread(target=self._serve, args=(conn, self.mode), daemon=True).start()

    def _serve(self, conn: socket.socket, mode: str) -> None:
        with conn, contextlib.suppress(OSError):
            buf = b""
            while mode != "close" and not self._stop.is_set():
                got = read_head(conn, buf)
                if got is None:
                    return
                buf = got[1]
                if mode == "eof":
                    conn.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nok")
                    return
                status = b"500 Internal Server Error" if mode == "500" else b"200 OK"
                conn.sendall(b"HTTP/1.1 " + status + b"\r\nContent-Length: 2\r\n\r\nok")


@pytest.fixture
def listener() -> Iterator[Callable[[str], Listener]]:
    made: list[Listener] = []

    def make(mode: str) -> Listener:
        made.append(Listener(mode))
        return made[-1]

    yield make
    for lst in made:
        lst.close()


def http(port: int, path: str = "/", host: str = "app.test") -> tuple[int, bytes]:
    """One GET on a new connection (Connection: close): (status, body)."""
    data = get_until_close(port, path, host)
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def ok(port: int) -> bool:
    status, body = http(port)
    assert status == 200, body
    return True


def server_status(admin: int, address: str) -> dict[str, Any]:
    code, body = http(admin, "/status", host="admin")
    assert code == 200, body
    (entry,) = [
        s for s in json.loads(body)["upstreams"]["app"]["servers"] if s["address"] == address
    ]
    return entry


def metric(admin: int, name: str, address: str) -> float:
    code, body = http(admin, "/metrics", host="admin")
    assert code == 200
    for line in body.decode().splitlines():
        if line.startswith(name + "{") and f'server="{address}"' in line:
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no {name} for {address}")


@pytest.fixture
def start(make_proxy: Callable[..., Any]) -> Callable[..., Any]:
    def run(servers: list[str], **upstream: Any) -> tuple[Any, int]:
        admin = free_port()
        doc = {
            "server": {"listen": ["127.0.0.1:0"], "workers": 2, "pid_file": False},
            "log": {"access": "off"},
            "admin": {"listen": f"127.0.0.1:{admin}"},
            "upstreams": {"app": {"servers": servers, **upstream}},
            "routes": [{"path_prefix": "/", "upstream": "app"}],
        }
        p = make_proxy(doc, merge=False)
        p.wait_log(r"\] ready$", 15)
        p.wait_log(r"admin endpoint on http://127\.0\.0\.1:\d+", 5)
        return p, admin

    return run


# ---- passive checks ------------------------------------------------------------------------


def test_failed_server_gets_no_attempts_for_fail_timeout(origin, start, listener):
    bad = listener("close")
    p, admin = start([bad.address, origin.address], max_fails=1, fail_timeout="3s")
    codes = []
    while bad.accepts == 0:
        codes.append(http(p.port, f"/a{len(codes)}")[0])
        assert len(codes) < 10, "the bad server never got a request"
    t_out = time.monotonic()
    assert codes == [200] * len(codes)  # the failure was retried on the other server
    p.wait_log(
        rf"app {re.escape(bad.address)} out for 3s: 1 failures within 3s: upstream closed", 5
    )
    assert server_status(admin, bad.address)["passive_out"] is True
    assert metric(admin, "fastproxy_upstream_server_passive_out", bad.address) == 1
    assert metric(admin, "fastproxy_upstream_server_trips_total", bad.address) == 1
    # out: new connections from both workers all go to the other server
    before = len(origin.requests)
    for i in range(20):
        assert http(p.port, f"/b{i}")[0] == 200
    assert time.monotonic() - t_out < 2.5, "too slow to observe the time-out"
    assert bad.accepts == 1
    assert len(origin.requests) == before + 20
    # after fail_timeout it gets attempts again (and fails, and is out again)
    while bad.accepts == 1:
        assert http(p.port)[0] == 200
        assert time.monotonic() - t_out < 9, "the server never came back"
    assert time.monotonic() - t_out >= 2.8
    assert metric(admin, "fastproxy_upstream_server_trips_total", bad.address) == 2


@pytest.mark.parametrize("fail_on_5xx", [True, False])
def test_fail_on_5xx(origin, start, listener, fail_on_5xx):
    bad = listener("500")
    p, admin = start(
        [bad.address, origin.address], max_fails=1, fail_timeout="10s", fail_on_5xx=fail_on_5xx
    )
    codes = [http(p.port, f"/c{i}")[0] for i in range(10)]
    # a 5xx is an answer, never retried; with fail_on_5xx it takes the server out, without
    # it the server keeps its round-robin share (each worker alternates on its own)
    if fail_on_5xx:
        assert codes.count(500) == 1, codes
    else:
        assert 3 <= codes.count(500) <= 7, codes
    assert set(codes) == {200, 500}
    assert server_status(admin, bad.address)["passive_out"] is fail_on_5xx
    if fail_on_5xx:
        p.wait_log(rf"app {re.escape(bad.address)} out for 10s: 1 failures within 10s: status 500")
    else:
        assert "out for" not in p.stderr_text()


# ---- circuit breaker -----------------------------------------------------------------------


def test_breaker_opens_half_opens_reopens_and_closes(origin, start, listener):
    bad = listener("close")
    cb = {"consecutive_failures": 2, "cooldown": "1s", "half_open_requests": 1}
    p, admin = start([bad.address, origin.address], max_fails=0, circuit_breaker=cb)
    n = 0
    while bad.accepts < 2:
        assert http(p.port, f"/d{n}")[0] == 200  # every failure retried elsewhere
        n += 1
        assert n < 20, "the bad server never got two requests"
    t_open = time.monotonic()
    p.wait_log(rf"app {re.escape(bad.address)} circuit breaker open for 1s: upstream closed", 5)
    assert server_status(admin, bad.address)["breaker"] == "open"
    assert metric(admin, "fastproxy_upstream_server_breaker_open", bad.address) == 1
    for i in range(10):
        assert http(p.port, f"/e{i}")[0] == 200
    if time.monotonic() - t_open < 0.9:
        assert bad.accepts == 2  # open: no attempts at all

    # after the cool-down one trial goes through; it fails: open again
    wait_for(lambda: ok(p.port) and bad.accepts == 3, 6, "a half-open trial")
    assert time.monotonic() - t_open >= 0.9
    p.wait_log(
        rf"app {re.escape(bad.address)} circuit breaker open again for 1s: trial request failed",
        5,
    )
    assert server_status(admin, bad.address)["breaker"] == "open"

    # the server recovers: the next trial closes the breaker, and it gets its share again
    bad.mode = "ok"
    wait_for(lambda: ok(p.port) and bad.accepts == 4, 6, "a second trial")
    p.wait_log(rf"app {re.escape(bad.address)} circuit breaker closed: trial request succeeded", 5)
    assert server_status(admin, bad.address)["breaker"] == "closed"
    assert metric(admin, "fastproxy_upstream_server_breaker_open", bad.address) == 0
    bodies = [http(p.port, f"/f{i}")[1] for i in range(10)]
    assert bodies.count(b"ok") >= 3, bodies
    assert metric(admin, "fastproxy_upstream_server_trips_total", bad.address) == 2


def test_breaker_closes_after_a_trial_answered_until_eof(origin, start, listener):
    bad = listener("close")
    cb = {"consecutive_failures": 1, "cooldown": "500ms", "half_open_requests": 1}
    p, admin = start([bad.address, origin.address], max_fails=0, circuit_breaker=cb)
    while bad.accepts < 1:
        assert ok(p.port)
    p.wait_log(rf"app {re.escape(bad.address)} circuit breaker open", 5)
    bad.mode = "eof"
    wait_for(lambda: ok(p.port) and bad.accepts >= 2, 6, "a half-open trial")
    wait_for(lambda: ok(p.port) and bad.accepts >= 4, 6, "more requests to the server")
    assert server_status(admin, bad.address)["breaker"] == "closed"
