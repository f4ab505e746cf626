"""A body passed through as it is goes to the client from the upstream
connection's receive buffer, behind the head, without a copy; what the
client's socket does not take goes through the transport.  Byte for byte and
in order, however little the client's socket takes at a time."""

from __future__ import annotations

from typing import Any

import pytest

N = 3 << 20  # many reads from the origin, many short sends to the client


@pytest.mark.parametrize("path", ["/bytes", "/close"])
def test_body_arrives_whole_and_in_order_at_a_small_window(
    proxy: Any, http_conn: Any, payload: Any, path: str
) -> None:
    c = http_conn(proxy.port, timeout=30, rcvbuf=4096)
    r = c.roundtrip("GET", f"{path}?n={N}")
    assert r.status == 200
    assert len(r.body) == N
    assert r.body == payload(N)
    if path == "/bytes":  # framed by length: the connection is still in step
        r = c.roundtrip("GET", "/bytes?n=1000")
        assert r.status == 200 and r.body == payload(1000)
