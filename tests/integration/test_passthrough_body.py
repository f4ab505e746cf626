"""Bodies passed through as they are.  Toward the client, a body goes from the
upstream connection's receive buffer, behind the head, without a copy; toward
the server, a request goes straight to its socket.  In both directions what a
socket does not take goes through the transport.  Byte for byte and in order,
however little the receiving socket takes at a time."""

from __future__ import annotations

from typing import Any

import pytest

N = 3 << 20  # many reads from the origin, many short sends to the client


@pytest.mark.parametrize(
    "target, version",
    [
        ("/bytes?n=%d", "HTTP/1.1"),  # framed by length
        ("/close?n=%d", "HTTP/1.0"),  # by the close, to a client that takes it so
        ("/chunked?n=%d&parts=3000", "HTTP/1.0"),  # de-chunked: many pieces per read
    ],
)
def test_body_arrives_whole_and_in_order_at_a_small_window(
    proxy: Any, http_conn: Any, payload: Any, target: str, version: str
) -> None:
    c = http_conn(proxy.port, timeout=30, rcvbuf=4096)
    c.request("GET", target % N, version=version)
    r = c.read_response()
    assert r.status == 200
    assert len(r.body) == N
    assert r.body == payload(N)
    if version == "HTTP/1.1":  # framed by length: the connection is still in step
        r = c.roundtrip("GET", "/bytes?n=1000")
        assert r.status == 200 and r.body == payload(1000)


def test_upload_reaches_the_server_whole_and_in_order(
    proxy: Any, http_conn: Any, payload: Any
) -> None:
    """The head goes by send(), the body behind it as it arrives; once the
    server's socket is full the rest queues in the transport, and later pieces
    must wait behind it.  /echo sends the body back."""
    c = http_conn(proxy.port, timeout=30, rcvbuf=4096)
    r = c.roundtrip("POST", "/echo", body=payload(N))
    assert r.status == 200
    assert r.body == payload(N)
