"""uvloop's transports -- every TLS listener, and plain TCP with
FASTPROXY_UVLOOP_ACCEPT=1 -- report a failed write to the client only in
connection_lost, a loop turn later: a request the client pipelined and then
reset must not be started meanwhile, after the answer before it was written into
the dead connection, and reach a server.  ClientProtocol.write_failed() asks
before any request after a connection's first: is_closing() on the plain
transport, the socket under the TLS layer (fp_sock_tcp_gone) on the TLS one.
The engine is embedded, its loop frozen while the client pipelines and resets
(test_sock_transport_races.py has the twin for fastproxy's own transport)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from embedded_proxy import Embedded, config_for, connect, pipeline_then_reset, read_response
from support import wait_for

from fastproxy import proxy as proxy_module


def _check_served_on(e: Embedded, origin: Any, get: Callable[[bytes], tuple[bytes, bytes]]):
    """The proxy serves on, over the pooled connection /warm left: nothing was
    sent on it, nor was it aborted."""
    head, body = get(b"GET /after HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and body == b"GET /after"
    wait_for(lambda: any(r.target == "/after" for r in origin.requests), 5, "/after upstream")
    assert [r.target for r in origin.requests] == ["/warm", "/after"]
    assert origin.requests[1].conn_id == origin.requests[0].conn_id
    assert not e.loop_errors, e.loop_errors


def _tls_config(origin: Any, tls_files: Any) -> dict[str, Any]:
    cert, key = tls_files.issue("app.example")
    conf = config_for(origin.address)
    conf["server"]["listen"] = [{"address": "127.0.0.1:0", "tls": {"cert": cert, "key": key}}]
    return conf


def test_tls_a_request_pipelined_before_a_reset_never_reaches_the_server(embed, origin, tls_files):
    e = embed(_tls_config(origin, tls_files))
    [(_, port)] = e.proxy.addresses
    before, after = pipeline_then_reset(e, tls_files.connect(port, "app.example"), port)
    # Neither request started: the connection was seen gone before the first of
    # them (had /second started, it would be counted, as a 499 at least).
    assert sum(after["requests"]) == sum(before["requests"]), (before, after)
    assert after["upstream_requests"] == before["upstream_requests"], (before, after)

    def get(request: bytes) -> tuple[bytes, bytes]:
        with tls_files.connect(port, "app.example") as s2:
            s2.sendall(request)
            return read_response(s2)

    _check_served_on(e, origin, get)


def test_uvloop_tcp_a_request_pipelined_behind_a_failed_write_never_reaches_the_server(
    embed, origin, monkeypatch
):
    monkeypatch.setattr(proxy_module, "UVLOOP_ACCEPT", True)  # read when the Proxy starts
    e = embed(config_for(origin.address))
    [(_, port)] = e.proxy.addresses
    before, after = pipeline_then_reset(e, connect(port), port)
    # /local was read and answered (its write failed, a 2xx counted); /second
    # never started: it would be counted too (a 499), and sent upstream.
    assert sum(after["requests"]) - sum(before["requests"]) == 1, (before, after)
    assert after["requests"][2] - before["requests"][2] == 1, (before, after)
    assert after["upstream_requests"] == before["upstream_requests"], (before, after)

    def get(request: bytes) -> tuple[bytes, bytes]:
        with connect(port) as s2:
            s2.sendall(request)
            return read_response(s2)

    _check_served_on(e, origin, get)


@pytest.mark.parametrize("transport", ["tls", "uvloop-tcp"])
def test_pipelined_requests_on_a_live_connection_are_all_answered(
    transport, embed, origin, tls_files, monkeypatch
):
    """The check must not stop a healthy connection: three requests pipelined
    in one write, the last two for the origin, are answered in order."""
    if transport == "tls":
        e = embed(_tls_config(origin, tls_files))
        [(_, port)] = e.proxy.addresses
        s = tls_files.connect(port, "app.example")
    else:
        monkeypatch.setattr(proxy_module, "UVLOOP_ACCEPT", True)
        e = embed(config_for(origin.address))
        [(_, port)] = e.proxy.addresses
        s = connect(port)
    with s:
        s.sendall(
            b"GET /local HTTP/1.1\r\nHost: t\r\n\r\n"
            b"GET /one HTTP/1.1\r\nHost: t\r\n\r\n"
            b"GET /two HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
        )
        got = b""
        while chunk := s.recv(65536):
            got += chunk
    assert got.count(b"HTTP/1.1 200") == 3, got
    assert got.index(b"answered here") < got.index(b"GET /one") < got.index(b"GET /two"), got
    assert [r.target for r in origin.requests] == ["/one", "/two"]
