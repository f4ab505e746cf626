"""A TLS listener (always uvloop's transports, never fastproxy's own): a client that
resets must not have a request it pipelined started after the answer before it was
written into the dead connection.  uvloop's TLS transport reports the failed write
only in connection_lost, a loop turn later, and says it is not closing until then;
so ClientProtocol.read_head asks the socket under the TLS layer (fp_sock_tcp_gone)
before any request after a connection's first.  The engine is embedded, its loop
frozen while the client pipelines and resets (test_sock_transport_races.py has the
plain-TCP twin)."""

from __future__ import annotations

from embedded_proxy import config_for, read_response, reset
from support import connection_inode, wait_for


def test_a_request_pipelined_before_a_reset_never_reaches_the_server(embed, origin, tls_files):
    cert, key = tls_files.issue("app.example")
    conf = config_for(origin.address)
    conf["server"]["listen"] = [{"address": "127.0.0.1:0", "tls": {"cert": cert, "key": key}}]
    e = embed(conf)
    [(_, port)] = e.proxy.addresses

    s = tls_files.connect(port, "app.example")
    s.sendall(b"GET /warm HTTP/1.1\r\nHost: t\r\n\r\n")  # keep-alive both ways
    head, body = read_response(s)
    assert head.startswith(b"HTTP/1.1 200") and body == b"GET /warm"
    [warm] = origin.wait_requests(1)
    before = e.stats()

    client_port = s.getsockname()[1]
    with e.frozen():
        # one TLS record, read by the proxy's next turn together with the reset
        s.sendall(
            b"GET /local HTTP/1.1\r\nHost: t\r\n\r\n"  # 1: answered by the proxy, keep-alive
            b"GET /second HTTP/1.1\r\nHost: t\r\n\r\n"  # 2: for the origin, pooled connection
        )
        reset(s)
        wait_for(lambda: connection_inode(port, client_port) is None, 5, "the reset to land")

    wait_for(lambda: e.stats()["connections_active"] == 0, 5, "connection_lost")
    after = e.stats()
    # Neither request started: the connection was seen gone before the first of
    # them (had /second started, it would be counted, as a 499 at least).
    assert sum(after["requests"]) == sum(before["requests"]), (before, after)
    assert after["upstream_requests"] == before["upstream_requests"], (before, after)

    # The proxy serves on, over the pooled connection /warm left: nothing was
    # sent on it.
    with tls_files.connect(port, "app.example") as s2:
        s2.sendall(b"GET /after HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        head, body = read_response(s2)
    assert head.startswith(b"HTTP/1.1 200") and body == b"GET /after"
    wait_for(lambda: any(r.target == "/after" for r in origin.requests), 5, "/after upstream")
    assert [r.target for r in origin.requests] == ["/warm", "/after"]
    assert origin.requests[1].conn_id == warm.conn_id
    assert not e.loop_errors, e.loop_errors


def test_pipelined_requests_on_a_live_tls_connection_are_all_answered(embed, origin, tls_files):
    """The check must not stop a healthy connection: three requests pipelined in
    one record, the last two for the origin, are answered in order."""
    cert, key = tls_files.issue("app.example")
    conf = config_for(origin.address)
    conf["server"]["listen"] = [{"address": "127.0.0.1:0", "tls": {"cert": cert, "key": key}}]
    e = embed(conf)
    [(_, port)] = e.proxy.addresses
    with tls_files.connect(port, "app.example") as s:
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
