"""least_conn and health state agree across workers (`workers = 2`): requests in flight are
counted in shared memory, so slow requests held on server A through connections that both
workers accepted push every new request, in either worker, to B; /status sums the
in-flight count over the workers; a server the health checks mark down gets nothing from
either worker.  Origins answer with X-Origin: their index; every wait polls with a deadline.
"""

from __future__ import annotations

import json
import os
import signal
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from support import call as http_call
from support import free_port, two_origins, wait_for

CHECK = {"path": "/healthz", "interval": "0.2s", "timeout": "0.2s", "fall": 2, "rise": 2}


def call(port: int, method: str, path: str, host: str = "app.test") -> tuple[int, str, bytes]:
    """One request on a new connection: (status, X-Origin, body)."""
    code, fields, body = http_call(port, method, path, host)
    return code, fields.get("x-origin", ""), body


def status(admin: int) -> dict[str, Any]:
    code, _, body = call(admin, "GET", "/status", host="admin")
    assert code == 200, body
    return json.loads(body)


def servers(admin: int) -> dict[str, dict[str, Any]]:
    return {s["address"]: s for s in status(admin)["upstreams"]["app"]["servers"]}


def worker_requests(admin: int) -> dict[int, int]:
    return {w["pid"]: w["requests"] for w in status(admin)["workers"]}


def control(admin: int, address: str, action: str) -> None:
    code, _, body = call(admin, "POST", f"/upstreams/app/servers/{address}/{action}", "admin")
    assert code == 200, body


@pytest.fixture
def start(make_proxy: Callable[..., Any]) -> Callable[..., Any]:
    def run(addresses: list[str], **upstream: Any) -> tuple[Any, int]:
        admin = free_port()
        doc = {
            "server": {"listen": ["127.0.0.1:0"], "workers": 2, "pid_file": False},
            "log": {"access": "off"},
            "admin": {"listen": f"127.0.0.1:{admin}"},
            "upstreams": {"app": {"servers": addresses, "balance": "least_conn", **upstream}},
            "routes": [{"path_prefix": "/", "upstream": "app"}],
        }
        p = make_proxy(doc, merge=False)
        p.wait_log(r"\] ready$", 15)
        p.wait_log(r"admin endpoint on http://127\.0\.0\.1:\d+", 5)
        wait_for(lambda: len(status(admin)["workers"]) == 2, 5, "2 workers in /status")
        return p, admin

    return run


def active_conns(admin: int) -> dict[int, int]:
    return {w["pid"]: w["connections_active"] for w in status(admin)["workers"]}


def connect_to_worker(port: int, admin: int, http_conn: Any, pid: int) -> Any:
    """A client connection that worker `pid` accepted (others are closed and tried again:
    the kernel spreads new connections over the workers' SO_REUSEPORT sockets)."""
    for _ in range(40):
        before = active_conns(admin)
        total = sum(before.values())
        c = http_conn(port, timeout=15)
        after = wait_for(
            lambda total=total: (n := active_conns(admin)) and sum(n.values()) > total and n,
            5,
            "the new connection in /status",
        )
        if after[pid] > before[pid]:
            return c
        c.close()
        wait_for(lambda total=total: sum(active_conns(admin).values()) == total, 5, "a close")
    raise AssertionError(f"no connection landed on worker {pid}")


def test_least_conn_in_flight_counts_are_shared_by_the_workers(origin, start, http_conn):
    with two_origins(origin) as (a, b):
        p, admin = start([a.address, b.address])
        w1, w2 = sorted(active_conns(admin))
        held: list[tuple[Any, str]] = []

        def hold(on: Any, name: str, pid: int) -> None:
            c = connect_to_worker(p.port, admin, http_conn, pid)
            c.request("GET", "/slow?delay=5")
            held.append((c, name))
            n = sum(1 for _, x in held if x == name)
            wait_for(lambda: len(on.requests) == n, 5, f"slow request {n} at {name}")

        # A: 3 requests in flight through worker 1 and 1 through worker 2; B: 2 through
        # worker 2 (admin disable steers them).  Worker 2 alone sees A=1 < B=2, so only
        # shared counts (A=4 > B=2) send its new requests to B.
        control(admin, b.address, "disable")
        for pid in (w1, w1, w1, w2):
            hold(a, "A", pid)
        control(admin, b.address, "enable")
        control(admin, a.address, "disable")
        for pid in (w2, w2):
            hold(b, "B", pid)
        control(admin, a.address, "enable")
        st = servers(admin)
        assert (st[a.address]["inflight"], st[b.address]["inflight"]) == (4, 2)  # summed
        assert active_conns(admin) == {w1: 3, w2: 3}

        before = worker_requests(admin)
        seen = Counter(call(p.port, "GET", f"/q{i}")[1] for i in range(20))
        assert seen == {"B": 20}, seen
        after = worker_requests(admin)
        assert all(after[pid] > before[pid] for pid in before), (before, after)
        assert len(a.requests) == 4

        for c, name in held:
            r = c.read_response()
            assert (r.status, r.body, r.header("X-Origin")) == (200, b"slow", name)
        wait_for(lambda: servers(admin)[a.address]["inflight"] == 0, 5, "A idle")
        assert servers(admin)[b.address]["inflight"] == 0
        assert set(Counter(call(p.port, "GET", "/r")[1] for _ in range(20))) == {"A", "B"}


def test_a_down_server_gets_nothing_from_either_worker(origin, start):
    with two_origins(origin) as (a, b):
        p, admin = start([a.address, b.address], health_check=dict(CHECK), max_fails=0)
        assert set(Counter(call(p.port, "GET", "/x")[1] for _ in range(20))) == {"A", "B"}
        a.stop()
        wait_for(lambda: servers(admin)[a.address]["state"] == "down", 3, "A marked down")
        before = worker_requests(admin)
        results = Counter(call(p.port, "GET", f"/y{i}")[:2] for i in range(30))
        assert results == {(200, "B"): 30}, results
        after = worker_requests(admin)
        assert all(after[pid] > before[pid] for pid in before), (before, after)
        # nothing was even tried on A: no failure, no retry
        assert servers(admin)[a.address]["failures"] == 0
        assert status(admin)["totals"]["retries"] == 0


def test_a_killed_workers_requests_in_flight_stop_counting(origin, start, http_conn):
    with two_origins(origin) as (a, b):
        p, admin = start([a.address, b.address])
        victim = min(active_conns(admin))
        control(admin, b.address, "disable")
        held = []
        for _ in range(3):
            c = connect_to_worker(p.port, admin, http_conn, victim)
            c.request("GET", "/slow?delay=5")
            held.append(c)
        wait_for(lambda: len(a.requests) == 3, 5, "3 slow requests at A")
        control(admin, b.address, "enable")
        assert servers(admin)[a.address]["inflight"] == 3
        os.kill(victim, signal.SIGKILL)
        # the master folds the dead worker away: A is idle again for least_conn
        wait_for(lambda: servers(admin)[a.address]["inflight"] == 0, 5, "A's count back to 0")
        wait_for(
            lambda: (w := active_conns(admin)) and len(w) == 2 and victim not in w,
            10,
            "a replacement worker",
        )
        assert set(Counter(call(p.port, "GET", "/z")[1] for _ in range(20))) == {"A", "B"}
        for c in held:
            assert c.at_eof(5)
