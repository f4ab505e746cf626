"""End-to-end HTTP/1.1 behaviour of the proxy process: framing, keep-alive, pipelining,
HTTP/1.0, HEAD, bodiless statuses, Expect: 100-continue, the demo, and embedding."""

from __future__ import annotations

import asyncio
import os
import re
import time
from typing import Any

import pytest
from support import get_until_close


def _status_line(raw: bytes) -> bytes:
    return raw.split(b"\r\n", 1)[0]


def _split_response(raw: bytes) -> tuple[bytes, list[tuple[str, str]], bytes]:
    head, sep, body = raw.partition(b"\r\n\r\n")
    assert sep, f"no end of head in {raw[:500]!r}"
    lines = head.split(b"\r\n")
    headers = []
    for line in lines[1:]:
        k, _, v = line.decode("latin-1").partition(":")
        headers.append((k.strip().lower(), v.strip()))
    return lines[0], headers, body


# ---------------------------------------------------------------------------------------------
# Plain requests and bodies
# ---------------------------------------------------------------------------------------------


def test_get_reaches_origin_and_body_is_exact(origin, proxy, http_conn, payload):
    c = http_conn(proxy.port)
    r = c.roundtrip("GET", "/bytes?n=100000", host="app.example")
    assert r.status == 200
    assert r.body == payload(100000)
    [req] = origin.requests
    assert (req.method, req.target, req.version) == ("GET", "/bytes?n=100000", "HTTP/1.1")
    assert req.header("host") == "app.example"
    assert req.body == b""


def test_post_body_reaches_origin_byte_exact(origin, proxy, http_conn):
    data = os.urandom(3 * 1024 * 1024 + 17)
    c = http_conn(proxy.port, timeout=15)
    r = c.roundtrip("POST", "/echo", body=data, headers=[("Content-Type", "x/y")])
    assert r.status == 200
    assert r.body == data
    [req] = origin.requests
    assert req.method == "POST"
    assert req.body == data
    assert req.header("content-type") == "x/y"


def test_large_bodies_while_upstream_connects(origin, make_proxy, http_conn):
    """Every request opens a new upstream connection (keepalive = 0) and the whole request,
    head and a 1 MiB body, is sent in one write, so the body arrives while the proxy is still
    connecting.  The proxy may hold the client's reading while it connects, but must resume
    it once connected."""
    p = make_proxy(
        {"server": {"client_body_timeout": "3s"}, "upstreams": {"app": {"keepalive": 0}}}
    )
    for i in range(5):
        data = os.urandom(1 << 20)
        c = http_conn(p.port, timeout=10)
        r = c.roundtrip("POST", f"/echo?i={i}", body=data)
        assert r.status == 200, (i, r, p.stderr_text()[-2000:])
        assert r.body == data
        c.close()
    assert origin.connections == 5


def test_post_bodies_on_warm_connection_byte_exact(origin, proxy, http_conn):
    c = http_conn(proxy.port, timeout=15)
    assert c.roundtrip("GET", "/warm").status == 200
    for n in (1, 1000, 65535, 65536, 65537, 1 << 20, 3 * 1024 * 1024 + 17):
        data = os.urandom(n)
        r = c.roundtrip("POST", "/echo", body=data)
        assert (r.status, r.body == data) == (200, True), n
        assert origin.requests[-1].body == data


def test_post_empty_body(origin, proxy, http_conn):
    c = http_conn(proxy.port)
    r = c.roundtrip("POST", "/echo", body=b"")
    assert (r.status, r.body) == (200, b"")
    assert origin.requests[0].body_len == 0
    r = c.roundtrip("GET", "/after")
    assert r.body == b"GET /after"


def test_chunked_upload_reaches_origin(origin, proxy, http_conn):
    chunks = [os.urandom(n) for n in (1, 10, 4096, 70000, 3, 65536)]
    c = http_conn(proxy.port)
    r = c.roundtrip("POST", "/echo", chunked=chunks)
    assert r.status == 200
    assert r.body == b"".join(chunks)
    [req] = origin.requests
    assert req.body == b"".join(chunks)
    # The proxy may forward chunked or with a Content-Length, but never both (RFC 9112 6.1).
    assert not (req.chunked and req.header("content-length") is not None), req.raw_head


def test_chunked_upload_in_tiny_fragments(origin, proxy, http_conn):
    """The request head and a chunked body arrive split at awkward places."""
    body_chunks = [b"hello ", b"chunked ", b"world" * 300]
    c = http_conn(proxy.port)
    wire = c.build("POST", "/echo", chunked=body_chunks, headers=[("X-A", "1")])
    cuts = [3, 17, 18, 40, len(wire) - 1500, len(wire) - 7, len(wire) - 3, len(wire) - 1]
    prev = 0
    for cut in [*cuts, len(wire)]:
        c.send(wire[prev:cut])
        prev = cut
        time.sleep(0.02)
    r = c.read_response()
    assert r.status == 200
    assert r.body == b"".join(body_chunks)
    assert origin.requests[0].body == b"".join(body_chunks)


def test_chunked_download(origin, proxy, http_conn, payload):
    c = http_conn(proxy.port)
    r = c.roundtrip("GET", "/chunked?n=300000&parts=7")
    assert r.status == 200
    assert r.framing in ("chunked", "length"), r
    assert r.body == payload(300000)
    # the connection is still usable afterwards
    r2 = c.roundtrip("GET", "/chunked?n=5&parts=5")
    assert r2.body == payload(5)


def test_chunked_download_with_trailer(origin, proxy, http_conn, payload):
    c = http_conn(proxy.port)
    r = c.roundtrip("GET", "/chunked?n=1000&parts=3&trailer=X-Checksum:abc")
    assert r.status == 200
    assert r.body == payload(1000)
    r2 = c.roundtrip("GET", "/next")
    assert r2.body == b"GET /next"


def test_close_delimited_body_rechunked_for_http11_client(origin, proxy, http_conn, payload):
    c = http_conn(proxy.port)
    r = c.roundtrip("GET", "/close?n=200000")
    assert r.status == 200
    assert r.framing == "chunked", r
    assert r.body == payload(200000)
    # the client connection survives the origin's close
    r2 = c.roundtrip("GET", "/again")
    assert (r2.status, r2.body) == (200, b"GET /again")


def test_close_delimited_body_to_http10_client(origin, proxy, raw_request, payload):
    raw = raw_request(proxy.port, b"GET /close?n=50000 HTTP/1.0\r\nHost: a\r\n\r\n")
    status, headers, body = _split_response(raw)
    assert re.fullmatch(rb"HTTP/1\.[01] 200 .*", status), raw[:200]
    names = dict(headers)
    # HTTP/1.0 has no chunked coding (RFC 9112 7.1): the body must end with the close.
    assert "chunked" not in names.get("transfer-encoding", ""), raw[:300]
    assert body == payload(50000)


# ---------------------------------------------------------------------------------------------
# Connections: keep-alive, pipelining
# ---------------------------------------------------------------------------------------------


def test_200_sequential_requests_reuse_upstream_connections(origin, proxy, http_conn):
    c = http_conn(proxy.port)
    for i in range(200):
        r = c.roundtrip("GET", f"/seq/{i}")
        assert (r.status, r.body) == (200, f"GET /seq/{i}".encode()), i
    assert len(origin.requests) == 200
    assert [q.target for q in origin.requests] == [f"/seq/{i}" for i in range(200)]
    assert origin.connections <= 2, origin.connections
    assert len({q.client_port for q in origin.requests}) <= 2


def test_pipelined_requests_answered_in_order(origin, proxy, http_conn):
    c = http_conn(proxy.port)
    wire = b"".join(c.build("GET", f"/pipe/{i}") for i in range(10))
    c.send(wire)
    for i in range(10):
        r = c.read_response()
        assert (r.status, r.body) == (200, f"GET /pipe/{i}".encode()), (i, r)
    assert [q.target for q in origin.requests] == [f"/pipe/{i}" for i in range(10)]


def test_pipelined_requests_with_bodies_answered_in_order(origin, proxy, http_conn):
    c = http_conn(proxy.port)
    parts = []
    for i in range(10):
        if i % 2:
            parts.append(c.build("POST", f"/echo?i={i}", body=f"body-{i}".encode() * (i * 50)))
        else:
            parts.append(c.build("GET", f"/pipe/{i}"))
    c.send(b"".join(parts))
    for i in range(10):
        r = c.read_response()
        want = f"body-{i}".encode() * (i * 50) if i % 2 else f"GET /pipe/{i}".encode()
        assert (r.status, r.body) == (200, want), i


def test_pipelined_mixed_framings_answered_in_order(origin, proxy, http_conn, payload):
    """HEAD, 204, 304, chunked and close-delimited responses interleaved in one pipeline."""
    c = http_conn(proxy.port)
    plan = [
        ("GET", "/bytes?n=10"),
        ("HEAD", "/bytes?n=999"),
        ("GET", "/status/204"),
        ("GET", "/chunked?n=3000&parts=4"),
        ("GET", "/status/304"),
        ("GET", "/close?n=2000"),
        ("HEAD", "/chunked?n=10&parts=2"),
        ("GET", "/bytes?n=20"),
    ]
    c.send(b"".join(c.build(m, t) for m, t in plan))
    got = []
    for method, target in plan:
        r = c.read_response(method=method)
        got.append((method, target, r.status, r.body))
    want = [
        ("GET", "/bytes?n=10", 200, payload(10)),
        ("HEAD", "/bytes?n=999", 200, b""),
        ("GET", "/status/204", 204, b""),
        ("GET", "/chunked?n=3000&parts=4", 200, payload(3000)),
        ("GET", "/status/304", 304, b""),
        ("GET", "/close?n=2000", 200, payload(2000)),
        ("HEAD", "/chunked?n=10&parts=2", 200, b""),
        ("GET", "/bytes?n=20", 200, payload(20)),
    ]
    assert got == want


def test_upstream_connection_close_is_honoured(origin, proxy, http_conn):
    origin.close_after_response = True
    c = http_conn(proxy.port)
    for i in range(5):
        r = c.roundtrip("GET", f"/cc/{i}")
        assert (r.status, r.body) == (200, f"GET /cc/{i}".encode())
        # the origin's Connection: close is hop-by-hop: the client connection stays open
        assert "close" not in (r.header("connection") or "").lower(), r
    assert origin.connections == 5


def test_idempotent_request_retried_when_pooled_connection_was_closed(origin, proxy, http_conn):
    """The origin closes each keep-alive connection right after its response without saying
    so (its keep-alive timeout racing the next request).  GETs must still succeed: the proxy
    either notices the close before reusing the connection, or retries the idempotent
    request on a new one (RFC 9110 9.2.2)."""
    origin.drop_after_response = True
    c = http_conn(proxy.port)
    for i in range(30):
        r = c.roundtrip("GET", f"/drop/{i}")
        assert (r.status, r.body) == (200, f"GET /drop/{i}".encode()), (i, r)


def test_client_connection_close_is_honoured(origin, proxy, http_conn):
    c = http_conn(proxy.port)
    r = c.roundtrip("GET", "/x", headers=[("Connection", "close")])
    assert r.status == 200
    assert "close" in (r.header("connection") or "").lower()
    assert c.at_eof(timeout=3)


# ---------------------------------------------------------------------------------------------
# HTTP/1.0 clients
# ---------------------------------------------------------------------------------------------


def test_http10_client_gets_response_and_close(origin, proxy, http_conn):
    c = http_conn(proxy.port)
    c.send(b"GET /head HTTP/1.0\r\nHost: a\r\n\r\n")
    r = c.read_response()
    assert r.status == 200
    assert r.body == b"hello head\n"
    assert c.at_eof(timeout=3), "HTTP/1.0 without keep-alive: the proxy must close"


def test_http10_client_without_host(origin, proxy, raw_request):
    raw = raw_request(proxy.port, b"GET /head HTTP/1.0\r\n\r\n")
    status, _, body = _split_response(raw)
    assert b" 200 " in status + b" ", raw[:300]
    assert body == b"hello head\n"


def test_http10_keepalive_when_asked(origin, proxy, http_conn):
    c = http_conn(proxy.port)
    for i in range(3):
        c.send(f"GET /ka/{i} HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n\r\n".encode())
        r = c.read_response()
        assert (r.status, r.body) == (200, f"GET /ka/{i}".encode())
        assert r.framing == "length", r
        assert "keep-alive" in (r.header("connection") or "").lower(), r
    c.send(b"GET /last HTTP/1.0\r\nHost: a\r\n\r\n")
    assert c.read_response().body == b"GET /last"
    assert c.at_eof(timeout=3)


def test_http10_client_gets_chunked_origin_response_dechunked(origin, proxy, raw_request, payload):
    # RFC 9112 7.1: chunked must not be sent to an HTTP/1.0 recipient.
    raw = raw_request(proxy.port, b"GET /chunked?n=5000&parts=3 HTTP/1.0\r\nHost: a\r\n\r\n")
    status, headers, body = _split_response(raw)
    assert b" 200 " in status + b" ", raw[:300]
    assert "transfer-encoding" not in dict(headers), raw[:300]
    assert body == payload(5000)


def test_http10_keepalive_with_chunked_origin(origin, proxy, http_conn, payload):
    c = http_conn(proxy.port)
    c.send(b"GET /chunked?n=5000&parts=3 HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n\r\n")
    r = c.read_response()
    assert r.status == 200
    assert r.header("transfer-encoding") is None, r
    assert r.body == payload(5000)
    if r.framing == "length":
        c.send(b"GET /next HTTP/1.0\r\nHost: a\r\n\r\n")
        assert c.read_response().body == b"GET /next"


# ---------------------------------------------------------------------------------------------
# Responses without a body
# ---------------------------------------------------------------------------------------------


def test_head_has_no_body_and_keeps_content_length(origin, proxy, http_conn):
    c = http_conn(proxy.port)
    r = c.roundtrip("HEAD", "/head")
    assert r.status == 200
    assert r.header("content-length") == "11"
    assert r.body == b""
    r = c.roundtrip("HEAD", "/bytes?n=123456")
    assert r.header("content-length") == "123456"
    # nothing was left on the connection: the next response parses cleanly
    r = c.roundtrip("GET", "/head")
    assert (r.status, r.body) == (200, b"hello head\n")
    assert [q.method for q in origin.requests] == ["HEAD", "HEAD", "GET"]


def test_head_of_chunked_resource(origin, proxy, http_conn):
    c = http_conn(proxy.port)
    r = c.roundtrip("HEAD", "/chunked?n=100&parts=2")
    assert r.status == 200
    assert r.body == b""
    r = c.roundtrip("GET", "/after-head")
    assert (r.status, r.body) == (200, b"GET /after-head")


@pytest.mark.parametrize("target", ["/status/204", "/status/304", "/status/304?cl=5"])
def test_bodiless_statuses(origin, proxy, http_conn, target):
    c = http_conn(proxy.port)
    status = int(target.split("/")[2][:3])
    r = c.roundtrip("GET", target)
    assert r.status == status
    assert r.body == b""
    assert r.header("transfer-encoding") is None, r
    if target.endswith("cl=5"):
        # RFC 9110 8.6: a 304 may carry the Content-Length of the selected representation
        assert r.header("content-length") in (None, "5"), r
    r = c.roundtrip("GET", "/after")
    assert (r.status, r.body) == (200, b"GET /after")


# ---------------------------------------------------------------------------------------------
# Expect: 100-continue
# ---------------------------------------------------------------------------------------------


def test_expect_100_continue(origin, proxy, http_conn):
    body = os.urandom(20000)
    c = http_conn(proxy.port)
    c.request(
        "POST",
        "/continue",
        headers=[("Expect", "100-continue"), ("Content-Length", str(len(body)))],
    )
    first = c.read_response(method="POST", interim=True, timeout=5)
    assert first.status == 100, first
    c.send(body)
    r = c.read_response(method="POST")
    assert r.status == 200
    assert r.body == body
    assert origin.requests[0].body == body


def test_expect_100_continue_origin_ignores_it(origin, proxy, http_conn):
    """The origin never sends 100; the client sends the body after waiting a bit (RFC 9110
    10.1.1), and the proxy must still deliver it and relay the final response."""
    body = b"late body" * 100
    c = http_conn(proxy.port)
    c.request(
        "POST",
        "/echo",
        headers=[("Expect", "100-continue"), ("Content-Length", str(len(body)))],
    )
    c.sock.settimeout(1.0)
    interim = b""
    try:
        interim = c.sock.recv(100)
    except TimeoutError:
        pass
    c.send(body)
    if interim:
        c.reader.buf += interim
    r = c.read_response(method="POST")
    assert r.status == 200
    assert r.body == body


# ---------------------------------------------------------------------------------------------
# The built-in demo and embedding
# ---------------------------------------------------------------------------------------------


def test_demo_without_config_round_robins(make_proxy, tmp_path, raw_request):
    empty = tmp_path / "empty"
    empty.mkdir()
    p = make_proxy(argv=["run", "--listen", "127.0.0.1:0"], cwd=empty)
    names = []
    for _ in range(4):
        raw = raw_request(p.port, b"GET / HTTP/1.1\r\nHost: demo\r\nConnection: close\r\n\r\n")
        assert _status_line(raw).startswith(b"HTTP/1.1 200"), raw[:300]
        m = re.search(rb"Hello from (demo-backend-[12])", raw)
        assert m, raw[:500]
        names.append(m.group(1).decode())
    assert set(names) == {"demo-backend-1", "demo-backend-2"}
    assert all(a != b for a, b in zip(names, names[1:], strict=False)), names


def test_embedded_proxy_and_reload(origin):
    uvloop = pytest.importorskip("uvloop")
    import fastproxy

    def cfg(routes):
        return fastproxy.Config.from_dict(
            {
                "server": {"listen": ["127.0.0.1:0"], "pid_file": False},
                "log": {"access": "off"},
                "upstreams": {"app": {"servers": [origin.address]}},
                "routes": routes,
            }
        )

    async def main() -> tuple[bytes, bytes, int]:
        loop = asyncio.get_running_loop()
        async with fastproxy.Proxy(cfg([{"path_prefix": "/", "upstream": "app"}])) as proxy:
            [(host, port)] = proxy.addresses
            assert host == "127.0.0.1" and port != 0
            first = await asyncio.wait_for(
                loop.run_in_executor(None, get_until_close, port, "/emb"), 10
            )
            await proxy.reload(cfg([{"path_prefix": "/", "return": 418, "body": "teapot"}]))
            second = await asyncio.wait_for(
                loop.run_in_executor(None, get_until_close, port, "/emb"), 10
            )
            [(_, port2)] = proxy.addresses
            return first, second, port2 - port

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        first, second, moved = runner.run(main())
    assert _status_line(first).startswith(b"HTTP/1.1 200"), first
    assert first.endswith(b"GET /emb")
    assert _status_line(second).startswith(b"HTTP/1.1 418"), second
    assert second.endswith(b"teapot")
    assert moved == 0
    assert len(origin.requests) == 1


def test_reload_raising_max_request_line_on_an_open_connection(origin, http_conn):
    """A reload that raises max_request_line applies to connections opened
    before it: a keep-alive connection then sends a request whose path is
    far longer than the old limit, and it is normalised, routed and proxied
    whole (the buffer the path is normalised into grows with the limit)."""
    uvloop = pytest.importorskip("uvloop")
    import fastproxy

    def cfg(max_line: str) -> Any:
        return fastproxy.Config.from_dict(
            {
                "server": {
                    "listen": ["127.0.0.1:0"],
                    "pid_file": False,
                    "max_request_line": max_line,
                    "max_header_size": "128KiB",
                },
                "log": {"access": "off"},
                "upstreams": {"app": {"servers": [origin.address]}},
                "routes": [{"path_prefix": "/", "upstream": "app"}],
            }
        )

    long_path = "/" + "p" * 60000

    async def main() -> tuple[Any, Any, Any]:
        loop = asyncio.get_running_loop()

        def call(fn: Any, *args: Any) -> Any:
            return asyncio.wait_for(loop.run_in_executor(None, fn, *args), 15)

        async with fastproxy.Proxy(cfg("1KiB")) as proxy:
            [(_, port)] = proxy.addresses
            conn = http_conn(port, timeout=15)
            short = await call(conn.roundtrip, "GET", "/short")
            refused = await call(http_conn(port, timeout=15).roundtrip, "GET", long_path)
            await proxy.reload(cfg("64KiB"))
            long = await call(conn.roundtrip, "GET", long_path)
            conn.close()
            return short, refused, long

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        short, refused, long = runner.run(main())
    assert short.status == 200 and short.body.endswith(b"GET /short")
    assert refused.status == 414, refused
    assert long.status == 200, long
    assert long.body == f"GET {long_path}".encode()
    assert origin.requests[-1].target == long_path


def test_embedded_proxy_has_its_own_cache(origin):
    """[cache] without a master: the Proxy makes and owns a region; the next
    Proxy in the process starts with an empty one."""
    uvloop = pytest.importorskip("uvloop")
    import fastproxy

    cfg = fastproxy.Config.from_dict(
        {
            "server": {"listen": ["127.0.0.1:0"], "pid_file": False},
            "log": {"access": "off"},
            "cache": {"size": "4MiB", "max_entry_size": "1MiB"},
            "upstreams": {"app": {"servers": [origin.address]}},
            "routes": [{"path_prefix": "/", "upstream": "app", "cache": True}],
        }
    )
    target = "/cache/emb?hdr=Cache-Control:max-age=60"

    async def twice() -> list[bytes]:
        loop = asyncio.get_running_loop()
        async with fastproxy.Proxy(cfg) as proxy:
            [(_, port)] = proxy.addresses
            return [
                await asyncio.wait_for(
                    loop.run_in_executor(None, get_until_close, port, target), 10
                )
                for _ in "ab"
            ]

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        first = runner.run(twice())
        second = runner.run(twice())
    assert [b"X-Cache: MISS" in r for r in first] == [True, False]
    assert b"X-Cache: HIT" in first[1] and first[1].endswith(b"/cache/emb #1\n")
    assert b"X-Cache: MISS" in second[0] and second[0].endswith(b"/cache/emb #2\n")
    assert b"X-Cache: HIT" in second[1]
    assert origin.cache_hits["/cache/emb"] == 2
