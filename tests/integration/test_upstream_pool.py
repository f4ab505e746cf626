"""The upstream keep-alive pool: reuse, its bound, and lazy trimming.

A burst may leave up to twice `keepalive` idle connections for about a
second (so the next burst reuses them instead of reconnecting); after that
the pool is trimmed back to `keepalive`, oldest first."""

from __future__ import annotations

import threading
import time


def _burst(http_conn, port: int, n: int) -> None:
    """n concurrent slow requests, each on its own client connection."""
    errors: list[BaseException] = []

    def one() -> None:
        try:
            c = http_conn(port, timeout=10)
            assert c.roundtrip("GET", "/slow?delay=0.3").status == 200
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=one) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(15)
    assert not errors, errors


def _wait_open(origin, want: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if origin.open_connections <= want:
            return origin.open_connections
        time.sleep(0.05)
    return origin.open_connections


def test_pool_is_trimmed_back_to_keepalive(origin, make_proxy, http_conn):
    proxy = make_proxy({"upstreams": {"app": {"keepalive": 2}}})
    _burst(http_conn, proxy.port, 8)
    assert origin.connections == 8  # one upstream connection per slow request
    # right after the burst up to 2 x keepalive may stay idle; then the sweep trims
    assert _wait_open(origin, 2, timeout=5) == 2
    # the survivors are reused: a new request opens no new connection
    c = http_conn(proxy.port)
    assert c.roundtrip("GET", "/x").status == 200
    assert origin.connections == 8


def test_pool_never_holds_more_than_twice_keepalive(origin, make_proxy, http_conn):
    proxy = make_proxy({"upstreams": {"app": {"keepalive": 2}}})
    _burst(http_conn, proxy.port, 10)
    time.sleep(0.3)  # responses done, grace not yet over
    assert origin.open_connections <= 4


def test_keepalive_zero_disables_pooling(origin, make_proxy, http_conn):
    proxy = make_proxy({"upstreams": {"app": {"keepalive": 0}}})
    c = http_conn(proxy.port)
    for _ in range(3):
        assert c.roundtrip("GET", "/x").status == 200
    assert origin.connections == 3
    assert _wait_open(origin, 0, timeout=5) == 0
