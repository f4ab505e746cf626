"""The admin endpoint with real processes: `python -m fastproxy run -c FILE` with two workers
and `[admin]`; requests through the proxy on new connections (so both workers serve), then
/metrics parsed with prometheus_client and /status as JSON.  Also the bearer token, counters
surviving a killed worker (folded into the retired slot) and a reload (new labels appear, old
totals stay, a changed admin.listen is re-bound).

Everything runs on 127.0.0.1; every wait polls with a deadline.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from collections.abc import Callable
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from support import free_port, wait_for

import fastproxy

HOST = "app.test"


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------


def children_of(pid: int) -> set[int]:
    kids = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                if int(fh.read().rpartition(b")")[2].split()[1]) == pid:
                    kids.add(int(entry))
        except (OSError, ValueError, IndexError):
            continue
    return kids


def request(
    port: int, method: str = "GET", path: str = "/", host: str = HOST, headers: str = ""
) -> tuple[int, dict[str, str], bytes]:
    """One request on a new connection (Connection: close), read to EOF."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        head = f"{method} {path} HTTP/1.1\r\nHost: {host}\r\n{headers}Connection: close\r\n\r\n"
        s.sendall(head.encode())
        data = bytearray()
        while chunk := s.recv(65536):
            data += chunk
    head, sep, body = bytes(data).partition(b"\r\n\r\n")
    assert sep, f"no complete head: {bytes(data)!r}"
    lines = head.decode("latin-1").split("\r\n")
    fields = {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    if method != "HEAD" and "content-length" in fields:
        assert int(fields["content-length"]) == len(body), bytes(data)
    return int(lines[0].split()[1]), fields, body


def auth(token: str | None) -> str:
    return f"Authorization: Bearer {token}\r\n" if token else ""


class Metrics:
    """A /metrics scrape: samples by name and labels."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.families = {f.name: f for f in text_string_to_metric_families(text)}
        self.samples = [s for f in self.families.values() for s in f.samples]

    def all(self, name: str, **labels: str) -> list[Any]:
        return [
            s
            for s in self.samples
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
        ]

    def sum(self, name: str, **labels: str) -> float:
        return sum(s.value for s in self.all(name, **labels))

    def get(self, name: str, **labels: str) -> float:
        found = self.all(name, **labels)
        assert len(found) == 1, (name, labels, found)
        return found[0].value


def scrape(port: int, token: str | None = None) -> Metrics:
    status, fields, body = request(port, path="/metrics", host="admin", headers=auth(token))
    assert status == 200, body
    assert fields["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    return Metrics(body.decode())


def status_doc(port: int, token: str | None = None) -> dict[str, Any]:
    status, fields, body = request(port, path="/status", host="admin", headers=auth(token))
    assert status == 200, body
    assert fields["content-type"] == "application/json"
    return json.loads(body)


def settled(port: int, total: int, token: str | None = None, timeout: float = 5) -> Metrics:
    """Scrape until the responses counted reach `total` (a worker counts a request right
    after writing its last byte), then check it stays exactly there."""
    m: Metrics | None = None

    def reached() -> bool:
        nonlocal m
        m = scrape(port, token)
        return m.sum("fastproxy_responses_total") >= total

    wait_for(reached, timeout, f"{total} responses in /metrics")
    assert m is not None
    assert m.sum("fastproxy_responses_total") == total, m.text
    return m


def check_histograms(m: Metrics) -> None:
    """Buckets cumulative, +Inf last and equal to _count, for every series."""
    name = "fastproxy_upstream_response_seconds"
    series = {(s.labels["upstream"], s.labels["server"]) for s in m.all(name + "_count")}
    assert series
    for upstream, server in series:
        labels = {"upstream": upstream, "server": server}
        buckets = m.all(name + "_bucket", **labels)
        les = [s.labels["le"] for s in buckets]
        assert les[-1] == "+Inf"
        assert [float(le) for le in les[:-1]] == sorted(float(le) for le in les[:-1])
        counts = [s.value for s in buckets]
        assert counts == sorted(counts), f"not cumulative: {counts}"
        assert counts[-1] == m.get(name + "_count", **labels)
        assert m.get(name + "_sum", **labels) >= 0


def config(upstream: str, admin_port: int, token: str | None = None) -> dict[str, Any]:
    admin: dict[str, Any] = {"listen": f"127.0.0.1:{admin_port}"}
    if token:
        admin["token"] = token
    return {
        "server": {"listen": ["127.0.0.1:0"], "workers": 2, "pid_file": False},
        "log": {"access": "off"},
        "admin": admin,
        "upstreams": {"app": {"servers": [upstream]}},
        "routes": [
            {"host": HOST, "path_prefix": "/", "upstream": "app"},
            {"host": HOST, "path_prefix": "/gone", "return": 410},
        ],
    }


@pytest.fixture
def start(make_proxy: Callable[..., Any]) -> Callable[..., Any]:
    """make_proxy with our config, waiting until both workers and the admin are ready."""

    def run(doc: dict[str, Any]) -> Any:
        p = make_proxy(doc, merge=False)
        p.wait_log(r"\] ready$", 15)
        p.wait_log(r"admin endpoint on http://127\.0\.0\.1:\d+", 5)
        wait_for(lambda: len(children_of(p.pid)) == 2, 5, "2 workers")
        return p

    return run


# ---------------------------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------------------------


def test_metrics_count_every_request_exactly_once(origin, start):
    admin = free_port()
    t0 = time.time()
    p = start(config(origin.address, admin))
    ok, upstream_404, gone, unrouted = 60, 6, 4, 5
    for _ in range(ok):
        assert request(p.port)[0] == 200
    for _ in range(upstream_404):
        assert request(p.port, path="/status/404")[0] == 404
    for _ in range(gone):
        assert request(p.port, path="/gone")[0] == 410
    for _ in range(unrouted):  # no route for this host: 404, counted in no route
        assert request(p.port, host="other.test")[0] == 404
    total = ok + upstream_404 + gone + unrouted
    m = settled(admin, total)

    # per route and code; the routes' labels are host + path prefix
    req = "fastproxy_requests_total"
    assert m.sum(req) == ok + upstream_404 + gone
    assert m.get(req, route="app.test/", code="2xx") == ok
    assert m.get(req, route="app.test/", code="4xx") == upstream_404
    assert m.get(req, route="app.test/gone", code="4xx") == gone
    for code in ("aborted", "1xx", "3xx", "5xx"):
        assert m.sum(req, code=code) == 0
    assert {s.labels["route"] for s in m.all(req)} == {"app.test/", "app.test/gone"}
    # over everything, including the requests that met no route
    resp = "fastproxy_responses_total"
    assert m.get(resp, code="2xx") == ok
    assert m.get(resp, code="4xx") == upstream_404 + gone + unrouted
    assert m.sum(resp) == total

    # upstream side: only the proxied requests; histogram count = requests sent
    labels = {"upstream": "app", "server": origin.address}
    proxied = ok + upstream_404
    assert m.get("fastproxy_upstream_requests_total", **labels) == proxied
    assert m.get("fastproxy_upstream_failures_total", **labels) == 0
    assert m.get("fastproxy_upstream_response_seconds_count", **labels) == proxied
    assert m.get("fastproxy_upstream_response_seconds_sum", **labels) > 0
    check_histograms(m)

    assert m.get("fastproxy_connections_total") >= total
    assert m.get("fastproxy_connections_active") >= 0
    assert m.get("fastproxy_upstream_connections_active") >= 0
    assert m.get("fastproxy_bytes_received_total") > total * 30
    assert m.get("fastproxy_bytes_sent_total") > total * 30
    assert m.get("fastproxy_errors_total") >= 0
    assert m.get("fastproxy_workers") == 2
    assert m.get("fastproxy_config_generation") == 1
    assert t0 - 5 <= m.get("fastproxy_start_time_seconds") <= time.time()
    assert m.get("fastproxy_build_info", version=fastproxy.__version__) == 1

    # both workers served (new connections are spread over the SO_REUSEPORT slots)
    doc = status_doc(admin)
    assert all(w["requests"] > 0 for w in doc["workers"]), doc["workers"]
    assert sum(w["requests"] for w in doc["workers"]) == total


def test_status_document_and_endpoints(origin, start):
    admin = free_port()
    p = start(config(origin.address, admin))
    for _ in range(10):
        assert request(p.port)[0] == 200
    settled(admin, 10)
    doc = status_doc(admin)
    assert set(doc) == {"version", "uptime_seconds", "generation", "workers", "totals", "upstreams"}
    assert doc["version"] == fastproxy.__version__
    assert 0 <= doc["uptime_seconds"] < 60
    assert doc["generation"] == 1
    workers = doc["workers"]
    assert len(workers) == 2
    assert {w["pid"] for w in workers} == children_of(p.pid)
    assert sorted(w["slot"] for w in workers) == [0, 1]
    for w in workers:
        assert set(w) == {"pid", "slot", "generation", "requests", "connections_active"}
        assert w["generation"] == 1
    assert sum(w["requests"] for w in workers) == 10
    assert doc["totals"]["requests"]["2xx"] == 10
    assert doc["totals"]["connections_total"] >= 10
    (server,) = doc["upstreams"]["app"]["servers"]
    assert server["address"] == origin.address
    assert server["weight"] == 1 and server["state"] == "up"
    assert server["requests"] == 10 and server["failures"] == 0 and server["active"] >= 0

    # other paths and methods
    assert request(admin, path="/nope", host="admin")[0] == 404
    status, fields, _ = request(admin, "POST", "/metrics", host="admin")
    assert status == 405 and "GET" in fields["allow"]
    assert request(admin, "DELETE", "/status", host="admin")[0] == 405
    status, fields, body = request(admin, "HEAD", "/metrics", host="admin")
    assert status == 200 and body == b"" and int(fields["content-length"]) > 0
    with socket.create_connection(("127.0.0.1", admin), timeout=5) as s:
        s.sendall(b"GET /metrics HTTP/9.9\r\n\r\n")  # a bad request is answered, then closed
        assert s.recv(100).startswith(b"HTTP/1.1 505 ")
    with socket.create_connection(("127.0.0.1", admin), timeout=5) as s:
        # a body nobody reads does not turn the answer into a connection reset
        head = b"POST /metrics HTTP/1.1\r\nHost: a\r\nContent-Length: 20000\r\n\r\n"
        s.sendall(head + b"x" * 20000)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
        assert data.startswith(b"HTTP/1.1 405 "), data


def test_bearer_token(origin, start):
    admin = free_port()
    p = start(config(origin.address, admin, token="s3cret-token"))
    assert request(p.port)[0] == 200
    for path in ("/metrics", "/status", "/nope"):
        status, fields, _ = request(admin, path=path, host="admin")
        assert status == 401
        assert fields["www-authenticate"].startswith("Bearer")
        assert request(admin, path=path, host="admin", headers=auth("wrong"))[0] == 401
    assert request(admin, path="/metrics", host="admin", headers=auth("s3cret-token"))[0] == 200
    m = settled(admin, 1, token="s3cret-token")
    assert m.get("fastproxy_responses_total", code="2xx") == 1
    assert status_doc(admin, token="s3cret-token")["generation"] == 1


def test_killed_worker_does_not_lower_the_counters(origin, start):
    admin = free_port()
    p = start(config(origin.address, admin))
    for _ in range(40):
        assert request(p.port)[0] == 200
    before = settled(admin, 40)
    per_worker = {w["pid"]: w["requests"] for w in status_doc(admin)["workers"]}
    victim = max(per_worker, key=lambda pid: per_worker[pid])
    assert per_worker[victim] > 0
    old = children_of(p.pid)

    os.kill(victim, signal.SIGKILL)
    assert scrape(admin).sum("fastproxy_responses_total") == 40  # dead or reaped: still there
    new = wait_for(
        lambda: (k := children_of(p.pid)) and len(k) == 2 and victim not in k and k,
        10,
        "a new worker in place of the killed one",
    )
    (replacement,) = new - old
    p.wait_log(rf"\[{replacement}\] listening on", 10)
    doc = wait_for(
        lambda: (d := status_doc(admin)) and {w["pid"] for w in d["workers"]} == new and d,
        5,
        "/status to list the replacement",
    )
    assert {w["pid"]: w["requests"] for w in doc["workers"]}[replacement] == 0

    after = scrape(admin)
    for name in (
        "fastproxy_responses_total",
        "fastproxy_requests_total",
        "fastproxy_upstream_requests_total",
        "fastproxy_upstream_response_seconds_count",
        "fastproxy_connections_total",
        "fastproxy_bytes_sent_total",
    ):
        assert after.sum(name) == before.sum(name), name
    assert after.get("fastproxy_workers") == 2

    for _ in range(20):
        assert request(p.port)[0] == 200
    m = settled(admin, 60)
    assert m.get("fastproxy_requests_total", route="app.test/", code="2xx") == 60
    check_histograms(m)


def test_reload_adds_labels_keeps_totals_and_rebinds_admin(
    origin, start, label_origins, toml_dumps
):
    admin = free_port()
    p = start(config(origin.address, admin))
    for _ in range(20):
        assert request(p.port)[0] == 200
    settled(admin, 20)
    old_workers = children_of(p.pid)

    b = label_origins("B")
    admin2 = free_port()
    p.config_path.write_text(toml_dumps(config(b.address, admin2)))
    p.signal(signal.SIGHUP)
    p.wait_log(r"reloaded: generation 2, 2 workers", 15)
    wait_for(
        lambda: (k := children_of(p.pid)) and len(k) == 2 and not (k & old_workers),
        15,
        "the old generation to exit",
    )
    p.wait_log(rf"admin endpoint on http://127\.0\.0\.1:{admin2}", 5)
    with pytest.raises(ConnectionRefusedError):  # the old admin address is closed everywhere
        socket.create_connection(("127.0.0.1", admin), timeout=5).close()

    for _ in range(30):
        status, _, body = request(p.port)
        assert (status, body) == (200, b"origin-B")
    m = settled(admin2, 50)
    assert m.get("fastproxy_config_generation") == 2
    assert m.get("fastproxy_workers") == 2
    assert m.get("fastproxy_requests_total", route="app.test/", code="2xx") == 50
    old = {"upstream": "app", "server": origin.address}
    new = {"upstream": "app", "server": b.address}
    assert m.get("fastproxy_upstream_requests_total", **old) == 20  # kept
    assert m.get("fastproxy_upstream_response_seconds_count", **old) == 20
    assert m.get("fastproxy_upstream_requests_total", **new) == 30  # the new label
    assert m.get("fastproxy_upstream_response_seconds_count", **new) == 30
    check_histograms(m)

    doc = status_doc(admin2)
    assert doc["generation"] == 2
    assert {w["generation"] for w in doc["workers"]} == {2}
    assert {w["pid"] for w in doc["workers"]} == children_of(p.pid)
    assert [s["address"] for s in doc["upstreams"]["app"]["servers"]] == [b.address]
    assert doc["upstreams"]["app"]["servers"][0]["requests"] == 30


def test_admin_address_in_use_fails_the_start(origin, make_proxy):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        p = make_proxy(config(origin.address, port), merge=False, wait_ready=False)
        assert p.proc.wait(15) == 1
        p.wait_log(rf"cannot listen on 127\.0\.0\.1:{port} \(admin\): Address already in use")
