"""End to end: a worker SIGKILLed while it stores a response leaves the
shared cache working (the store-level crash tests are in test_cache_region)."""

from __future__ import annotations

import os
import signal
import socket
from typing import Any

from test_cache_region import children_of, wait_for


def test_sigkill_mid_store_leaves_cache_working(
    make_proxy: Any, origin: Any, http_conn: Any
) -> None:
    p = make_proxy(
        {
            "cache": {"size": "16MiB", "max_entry_size": "8MiB"},
            "routes": [{"path_prefix": "/", "upstream": "app", "cache": True}],
        }
    )
    worker = wait_for(lambda: children_of(p.pid), 10, "a worker")
    (pid,) = worker
    # a 4 MiB response read slowly: the worker is mid-store when it dies
    s = socket.create_connection(("127.0.0.1", p.port), timeout=5)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.sendall(b"GET /stream?mib=4&hdr=Cache-Control:max-age=60 HTTP/1.1\r\nHost: p\r\n\r\n")
    assert s.recv(4096).startswith(b"HTTP/1.1 200")
    os.kill(pid, signal.SIGKILL)
    s.close()
    new = wait_for(lambda: children_of(p.pid) - {pid}, 10, "a replacement worker")
    assert new
    # the region works: a store and a hit, on the key that was mid-store too
    t = "/stream?mib=1&hdr=Cache-Control:max-age=60"
    for target in (t, "/cache/after?hdr=Cache-Control:max-age=60"):
        c = http_conn(p.port)
        r1 = c.roundtrip("GET", target)
        r2 = c.roundtrip("GET", target)
        assert r1.status == r2.status == 200 and r2.header("X-Cache") == "HIT"
        assert r2.body == r1.body
    c = http_conn(p.port)
    r = c.roundtrip("GET", "/stream?mib=4&hdr=Cache-Control:max-age=60")
    assert r.status == 200 and r.header("X-Cache") == "MISS" and len(r.body) == 4 << 20
    assert (
        c.roundtrip("GET", "/stream?mib=4&hdr=Cache-Control:max-age=60").header("X-Cache") == "HIT"
    )
