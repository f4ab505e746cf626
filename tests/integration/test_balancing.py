"""Load balancing end to end: least_conn, ip_hash, max_conns -> 503 (csrc/fp_lb*.c)."""

from __future__ import annotations

import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@contextmanager
def more_origins(origin: Any, n: int) -> Iterator[list[Any]]:
    """n more origins like the fixture's, each answering with X-Origin: its index."""
    extra = [type(origin)() for _ in range(n)]
    for o in extra:
        o.start()
    try:
        for i, o in enumerate([origin, *extra]):
            o.extra_headers = [("X-Origin", str(i))]
        yield [origin, *extra]
    finally:
        for o in extra:
            o.stop()


class _Slow(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    delay = 0.3

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        time.sleep(self.delay)
        self.send_response(200)
        self.send_header("Content-Length", "4")
        self.send_header("X-Origin", "slow")
        self.end_headers()
        self.wfile.write(b"slow")

    def log_message(self, *args: Any) -> None:
        pass


@contextmanager
def slow_origin() -> Iterator[str]:
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Slow)
    srv.daemon_threads = True
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield f"127.0.0.1:{srv.server_address[1]}"
    finally:
        srv.shutdown()
        srv.server_close()


def get_from(port: int, source_ip: str, target: str = "/") -> tuple[int, str | None]:
    """One request on a fresh connection bound to source_ip: (status, X-Origin)."""
    with socket.socket() as s:
        s.settimeout(5)
        s.bind((source_ip, 0))
        s.connect(("127.0.0.1", port))
        s.sendall(f"GET {target} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    status = int(head[0].split()[1])
    origin = None
    for line in head[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "x-origin":
            origin = value.strip()
    return status, origin


def test_least_conn_sends_less_to_a_slow_server(origin, make_proxy, http_conn):
    with more_origins(origin, 0) as (fast,), slow_origin() as slow:
        proxy = make_proxy(
            {"upstreams": {"app": {"servers": [fast.address, slow], "balance": "least_conn"}}}
        )
        seen: Counter[str | None] = Counter()
        errors: list[BaseException] = []
        lock = threading.Lock()

        def client() -> None:
            try:
                c = http_conn(proxy.port, timeout=10)
                for _ in range(10):
                    r = c.roundtrip("GET", "/")
                    assert r.status == 200
                    with lock:
                        seen[r.header("X-Origin")] += 1
            except BaseException as e:  # noqa: BLE001 - reported below
                errors.append(e)

        threads = [threading.Thread(target=client) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert not errors, errors
        assert sum(seen.values()) == 80
        # round robin would give the slow server ~half; least_conn keeps it to the few
        # requests that arrive while it is idle
        assert seen["slow"] < 20, seen
        assert seen["0"] > 60, seen


def test_ip_hash_keeps_each_client_on_one_server(origin, make_proxy):
    with more_origins(origin, 2) as origins:
        proxy = make_proxy(
            {"upstreams": {"app": {"servers": [o.address for o in origins], "balance": "ip_hash"}}}
        )
        placement: dict[str, set[str | None]] = {}
        for i in range(2, 22):
            ip = f"127.0.0.{i}"
            for _ in range(10):
                status, which = get_from(proxy.port, ip)
                assert status == 200
                placement.setdefault(ip, set()).add(which)
        assert all(len(s) == 1 for s in placement.values()), placement
        used = {next(iter(s)) for s in placement.values()}
        assert len(used) >= 2, placement  # 20 addresses do not all hash to one server


def test_hash_on_header_is_sticky(origin, make_proxy, http_conn):
    with more_origins(origin, 2) as origins:
        proxy = make_proxy(
            {
                "upstreams": {
                    "app": {
                        "servers": [o.address for o in origins],
                        "balance": "hash",
                        "hash_key": "header:X-User",
                    }
                }
            }
        )
        c = http_conn(proxy.port)
        owners: dict[str, set[str | None]] = {}
        for rnd in range(3):
            for u in range(15):
                r = c.roundtrip("GET", f"/r{rnd}", headers=[("X-User", f"user{u}")])
                assert r.status == 200
                owners.setdefault(f"user{u}", set()).add(r.header("X-Origin"))
        assert all(len(s) == 1 for s in owners.values()), owners
        assert len({next(iter(s)) for s in owners.values()}) >= 2


def test_max_conns_full_answers_503(origin, make_proxy, http_conn):
    proxy = make_proxy(
        {"upstreams": {"app": {"servers": [{"address": origin.address, "max_conns": 1}]}}}
    )
    holder = http_conn(proxy.port, timeout=10)
    holder.request("GET", "/slow?delay=1.5")
    origin.wait_requests(1)
    assert len(origin.requests) == 1
    r = http_conn(proxy.port).roundtrip("GET", "/other")
    assert r.status == 503
    assert len(origin.requests) == 1
    assert holder.read_response().status == 200
    # the one connection is now idle in the pool: reusing it stays within max_conns
    r = http_conn(proxy.port).roundtrip("GET", "/after")
    assert r.status == 200
    assert [q.path for q in origin.requests] == ["/slow", "/after"]


def test_backup_takes_over_when_the_primary_is_full(origin, make_proxy, http_conn):
    with more_origins(origin, 1) as (primary, backup):
        proxy = make_proxy(
            {
                "upstreams": {
                    "app": {
                        "servers": [
                            {"address": primary.address, "max_conns": 1},
                            {"address": backup.address, "backup": True},
                        ]
                    }
                }
            }
        )
        assert http_conn(proxy.port).roundtrip("GET", "/a").header("X-Origin") == "0"
        holder = http_conn(proxy.port, timeout=10)
        holder.request("GET", "/slow?delay=1.5")
        primary.wait_requests(2)
        assert http_conn(proxy.port).roundtrip("GET", "/b").header("X-Origin") == "1"
        assert holder.read_response().status == 200
        assert http_conn(proxy.port).roundtrip("GET", "/c").header("X-Origin") == "0"
