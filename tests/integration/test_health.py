"""Active health checks with a real master process (`workers = 2`, `[admin]`) and origins
this test starts and stops on fixed ports: a stopped origin is marked down by the master
and every worker stops sending it requests; restarted, it comes back after `rise`
passes; with every primary down the backup serves; with everything down, 503.
Every wait is bounded."""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from support import free_port, get_until_close, wait_for

HOST = "app.test"
CHECK = {"path": "/healthz", "interval": "0.2s", "timeout": "0.2s", "fall": 2, "rise": 2}
# interval x fall + timeout, plus a margin for a loaded machine
DETECT = 3.0


class NamedOrigin:
    """An HTTP/1.0 origin answering every request with its name (and /healthz with 200);
    stop() closes the listening socket, start() listens on the same port again."""

    def __init__(self, name: str, port: int | None = None) -> None:
        self.name = name
        self.port = port or free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.hits = 0
        self.checks = 0
        self._server: http.server.ThreadingHTTPServer | None = None

    def start(self) -> None:
        origin = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                if self.path == "/healthz":
                    origin.checks += 1
                    body = b"ok"
                else:
                    origin.hits += 1
                    body = origin.name.encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        self._server = server

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


@pytest.fixture
def origins() -> Iterator[Callable[[str], NamedOrigin]]:
    made: list[NamedOrigin] = []

    def make(name: str) -> NamedOrigin:
        o = NamedOrigin(name)
        o.start()
        made.append(o)
        return o

    yield make
    for o in made:
        o.stop()


def get(port: int, path: str = "/", host: str = HOST) -> tuple[int, bytes]:
    """One request on a new connection (Connection: close), read to EOF."""
    data = get_until_close(port, path, host)
    head, sep, body = data.partition(b"\r\n\r\n")
    assert sep, data
    return int(head.split()[1]), body


def status_doc(admin: int) -> dict[str, Any]:
    code, body = get(admin, "/status", host="admin")
    assert code == 200, body
    return json.loads(body)


def states(admin: int) -> dict[str, str]:
    doc = status_doc(admin)
    return {s["address"]: s["state"] for s in doc["upstreams"]["app"]["servers"]}


def metric_up(admin: int, server: str) -> str:
    code, body = get(admin, "/metrics", host="admin")
    assert code == 200
    for line in body.decode().splitlines():
        if line.startswith("fastproxy_upstream_server_up{") and f'server="{server}"' in line:
            return line.rsplit(" ", 1)[1]
    raise AssertionError(f"no fastproxy_upstream_server_up for {server}")


@pytest.fixture
def start(make_proxy: Callable[..., Any]) -> Callable[..., Any]:
    def run(servers: list[Any]) -> tuple[Any, int]:
        admin = free_port()
        doc = {
            "server": {"listen": ["127.0.0.1:0"], "workers": 2, "pid_file": False},
            "log": {"access": "off"},
            "admin": {"listen": f"127.0.0.1:{admin}"},
            "upstreams": {"app": {"servers": servers, "health_check": dict(CHECK)}},
            "routes": [{"host": HOST, "path_prefix": "/", "upstream": "app"}],
        }
        p = make_proxy(doc, merge=False)
        p.wait_log(r"\] ready$", 15)
        p.wait_log(r"admin endpoint on http://127\.0\.0\.1:\d+", 5)
        return p, admin

    return run


def bodies(port: int, n: int = 40) -> list[tuple[int, bytes]]:
    return [get(port) for _ in range(n)]


def test_down_server_gets_no_traffic_then_comes_back(
    start: Callable[..., Any], origins: Callable[[str], NamedOrigin]
) -> None:
    a, b = origins("A"), origins("B")
    p, admin = start([a.address, b.address])
    assert set(bodies(p.port)) == {(200, b"A"), (200, b"B")}
    assert states(admin) == {a.address: "up", b.address: "up"}
    wait_for(lambda: a.checks and b.checks, DETECT, "the first health checks")
    assert metric_up(admin, a.address) == "1"

    a.stop()
    t0 = time.monotonic()
    wait_for(lambda: states(admin)[a.address] == "down", DETECT, "A marked down")
    assert time.monotonic() - t0 < DETECT
    p.wait_log(rf"app {a.address} down: 2 consecutive health checks failed: connection refused", 2)
    assert states(admin)[b.address] == "up"
    assert metric_up(admin, a.address) == "0"
    # every new request, on either worker, goes to B, with no failure
    assert set(bodies(p.port, 60)) == {(200, b"B")}
    workers = status_doc(admin)["workers"]
    assert len(workers) == 2 and all(w["requests"] > 0 for w in workers), workers

    a.start()  # same port
    t1 = time.monotonic()
    wait_for(lambda: states(admin)[a.address] == "up", DETECT, "A back up")
    assert time.monotonic() - t1 < DETECT
    p.wait_log(rf"app {a.address} up: 2 consecutive health checks passed", 2)
    assert metric_up(admin, a.address) == "1"
    before = a.hits
    assert set(bodies(p.port)) == {(200, b"A"), (200, b"B")}
    assert a.hits > before


def test_backup_takes_over_then_503(
    start: Callable[..., Any], origins: Callable[[str], NamedOrigin]
) -> None:
    a, b, c = origins("A"), origins("B"), origins("C")
    p, admin = start([a.address, b.address, {"address": c.address, "backup": True}])
    assert set(bodies(p.port, 20)) == {(200, b"A"), (200, b"B")}
    assert c.hits == 0

    a.stop()
    b.stop()
    wait_for(
        lambda: states(admin) == {a.address: "down", b.address: "down", c.address: "up"},
        DETECT,
        "both primaries down",
    )
    assert set(bodies(p.port)) == {(200, b"C")}

    c.stop()
    wait_for(lambda: states(admin)[c.address] == "down", DETECT, "the backup down")
    assert {code for code, _ in bodies(p.port, 20)} == {503}

    b.start()
    wait_for(lambda: states(admin)[b.address] == "up", DETECT, "B back up")
    assert set(bodies(p.port, 20)) == {(200, b"B")}
