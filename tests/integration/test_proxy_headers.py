"""Header handling seen end to end with a real proxy process: per-route header rules,
X-Forwarded-For trust, the client address from any source and over IPv6, Forwarded and
Via, hop-by-hop and Connection-named fields in both directions, Host for HTTP/1.0, and
Upgrade passing through."""

from __future__ import annotations

import asyncio
import socket

import pytest
from support import one_response

# ---------------------------------------------------------------------------------------------
# header handling seen end to end
# ---------------------------------------------------------------------------------------------


def test_route_header_rules(make_proxy, origin, http_conn):
    proxy = make_proxy(
        {
            "routes": [
                {
                    "path_prefix": "/",
                    "upstream": "app",
                    "request_headers": {
                        "set": {"X-Env": "prod"},
                        "add": {"X-Tag": "proxy"},
                        "remove": ["X-Debug"],
                    },
                    "response_headers": {
                        "set": {"X-Frame-Options": "DENY"},
                        "remove": ["X-Powered-By"],
                    },
                }
            ]
        }
    )
    c = http_conn(proxy.port)
    r = c.roundtrip(
        "GET",
        "/r?hdr=X-Frame-Options:SAMEORIGIN&hdr=X-Powered-By:php&hdr=X-Origin:1",
        headers=[("x-env", "dev"), ("X-ENV", "test"), ("X-Debug", "1"), ("X-Tag", "client")],
    )
    assert r.status == 200
    assert r.header_all("x-frame-options") == ["DENY"]
    assert r.header_all("x-powered-by") == []
    assert r.header_all("x-origin") == ["1"]
    [req] = origin.wait_requests(1)
    assert req.header_all("x-env") == ["prod"]
    assert req.header_all("x-debug") == []
    assert req.header_all("x-tag") == ["client", "proxy"]


def test_xff_appended_for_a_trusted_peer(make_proxy, origin, http_conn):
    proxy = make_proxy({"server": {"trusted_proxies": ["127.0.0.0/8"]}})
    c = http_conn(proxy.port)
    c.roundtrip(
        "GET",
        "/x",
        host="www.example",
        headers=[
            ("X-Forwarded-For", "203.0.113.1, 198.51.100.2"),
            ("X-Forwarded-Proto", "https"),
            ("X-Real-IP", "203.0.113.1"),
        ],
    )
    [req] = origin.wait_requests(1)
    assert req.header_all("x-forwarded-for") == ["203.0.113.1, 198.51.100.2, 127.0.0.1"]
    assert req.header_all("x-forwarded-proto") == ["https"]
    assert req.header_all("x-real-ip") == ["203.0.113.1"]


def test_xff_replaced_for_an_untrusted_peer(make_proxy, origin, http_conn):
    proxy = make_proxy({"server": {"trusted_proxies": ["10.0.0.0/8"]}})
    c = http_conn(proxy.port)
    c.roundtrip(
        "GET",
        "/x",
        host="www.example",
        headers=[
            ("X-Forwarded-For", "203.0.113.1"),
            ("x-forwarded-for", "6.6.6.6"),
            ("X-Forwarded-Proto", "https"),
            ("X-Real-IP", "6.6.6.6"),
            ("X-Forwarded-Host", "evil.example"),
        ],
    )
    [req] = origin.wait_requests(1)
    assert req.header_all("x-forwarded-for") == ["127.0.0.1"]
    assert req.header_all("x-forwarded-proto") == ["http"]
    assert req.header_all("x-real-ip") == ["127.0.0.1"]
    assert req.header_all("x-forwarded-host") == ["www.example"]


def test_xff_replace_mode_for_a_trusted_peer(make_proxy, origin, http_conn):
    proxy = make_proxy({"server": {"trusted_proxies": ["127.0.0.1"], "x_forwarded_for": "replace"}})
    c = http_conn(proxy.port)
    c.roundtrip("GET", "/x", headers=[("X-Forwarded-For", "203.0.113.1")])
    [req] = origin.wait_requests(1)
    assert req.header_all("x-forwarded-for") == ["127.0.0.1"]


def _get_from(source: str, port: int, host: str = "127.0.0.1", family: int = 0) -> bytes:
    """One GET to the proxy from a socket bound to `source`; the answer."""
    fam = family or socket.AF_INET
    with socket.socket(fam, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.bind((source, 0))
        s.connect((host, port))
        s.sendall(
            b"GET /x HTTP/1.1\r\nHost: t\r\nX-Forwarded-For: 203.0.113.9\r\n"
            b"Connection: close\r\n\r\n"
        )
        got = b""
        while more := s.recv(65536):
            got += more
        return got


def test_client_address_from_any_source(make_proxy, origin):
    """The client's address as the origin sees it (X-Forwarded-For,
    X-Real-IP) and as trusted_proxies matches it, for loopback sources whose
    octets have one, two and three digits and zeros; only the trusted
    source's own X-Forwarded-For is kept."""
    proxy = make_proxy({"server": {"trusted_proxies": ["127.100.0.0/16"]}})
    sources = ["127.1.2.3", "127.255.0.10", "127.100.20.0", "127.0.0.1"]
    for src in sources:
        assert _get_from(src, proxy.port).startswith(b"HTTP/1.1 200"), src
    reqs = origin.wait_requests(len(sources))
    assert [r.header_all("x-forwarded-for") for r in reqs] == [
        ["127.1.2.3"],
        ["127.255.0.10"],
        ["203.0.113.9, 127.100.20.0"],
        ["127.0.0.1"],
    ]
    assert [r.header("x-real-ip") for r in reqs] == [*sources[:2], "127.100.20.0", "127.0.0.1"]


def test_client_address_over_ipv6(origin):
    """An IPv6 listener: the client's address is ::1 in X-Forwarded-For."""
    uvloop = pytest.importorskip("uvloop")
    import fastproxy

    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    cfg = fastproxy.Config.from_dict(
        {
            "server": {"listen": ["[::1]:0"], "pid_file": False},
            "log": {"access": "off"},
            "upstreams": {"app": {"servers": [origin.address]}},
            "routes": [{"path_prefix": "/", "upstream": "app"}],
        }
    )

    async def main() -> bytes:
        async with fastproxy.Proxy(cfg) as proxy:
            [(_, port)] = proxy.addresses
            loop = asyncio.get_running_loop()
            call = loop.run_in_executor(None, _get_from, "::1", port, "::1", socket.AF_INET6)
            return await asyncio.wait_for(call, 15)

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        answer = runner.run(main())
    assert answer.startswith(b"HTTP/1.1 200"), answer
    [req] = origin.wait_requests(1)
    assert req.header_all("x-forwarded-for") == ["::1"]


def test_spoofed_forwarded_header_is_dropped_for_an_untrusted_peer(make_proxy, origin, http_conn):
    # docs/config.md trusted_proxies: incoming X-Forwarded-* and Forwarded
    # headers from any other peer are dropped; `forwarded` is false by default.
    proxy = make_proxy()
    c = http_conn(proxy.port)
    c.roundtrip("GET", "/x", headers=[("Forwarded", "for=6.6.6.6;proto=https")])
    [req] = origin.wait_requests(1)
    assert req.header_all("forwarded") == []


def test_forwarded_and_via_when_enabled(make_proxy, origin, http_conn):
    proxy = make_proxy({"server": {"forwarded": True, "via": True, "via_name": "edge"}})
    c = http_conn(proxy.port)
    r = c.roundtrip(
        "GET", "/x", host="www.example", headers=[("Forwarded", "for=6.6.6.6"), ("Via", "1.0 a")]
    )
    [req] = origin.wait_requests(1)
    assert req.header_all("forwarded") == ['for=127.0.0.1;host="www.example";proto=http']
    assert req.header_all("via") == ["1.0 a, 1.1 edge"]
    assert r.header_all("via") == ["1.1 edge"]


def test_hop_by_hop_and_connection_named_fields_never_reach_the_origin(origin, proxy, http_conn):
    c = http_conn(proxy.port)
    r = c.roundtrip(
        "GET",
        "/x",
        headers=[
            ("Connection", "keep-alive, X-Hop, x-other"),
            ("Keep-Alive", "timeout=5"),
            ("Proxy-Connection", "keep-alive"),
            ("TE", "trailers"),
            ("Trailer", "X-Sum"),
            ("Upgrade", "h2c"),
            ("X-Hop", "secret"),
            ("X-Other", "secret2"),
            ("X-End", "kept"),
        ],
    )
    assert r.status == 200
    [req] = origin.wait_requests(1)
    names = {k.lower() for k, _ in req.headers}
    for hop in ("keep-alive", "proxy-connection", "te", "trailer", "upgrade", "x-hop", "x-other"):
        assert hop not in names, req.raw_head
    # the proxy may say how it wants *its* connection handled, but nothing more
    assert all(v.lower() in ("keep-alive", "close") for v in req.header_all("connection"))
    assert req.header_all("x-end") == ["kept"]


def test_hop_by_hop_response_fields_never_reach_the_client(origin, proxy, http_conn):
    c = http_conn(proxy.port)
    r = c.roundtrip(
        "GET",
        "/x?hdr=Connection:X-Internal&hdr=X-Internal:1&hdr=Keep-Alive:timeout%3D9"
        "&hdr=Proxy-Connection:x&hdr=Trailer:X-Sum&hdr=X-Kept:1",
    )
    assert r.status == 200
    names = {k.lower() for k, _ in r.headers}
    for hop in ("x-internal", "keep-alive", "proxy-connection", "trailer"):
        assert hop not in names, r.raw
    assert r.header_all("x-kept") == ["1"]


def test_http10_request_without_host_reaches_origin_with_a_host(origin, proxy, raw_request):
    # Forwarded as HTTP/1.1, which requires a Host field (RFC 9112 3.2).
    raw = raw_request(proxy.port, b"GET /x HTTP/1.0\r\n\r\n")
    assert one_response(raw)[0] == 200
    [req] = origin.wait_requests(1)
    assert req.version == "HTTP/1.1"
    assert len(req.header_all("host")) == 1, req.raw_head


def test_upgrade_survives_an_upgrade_request_both_ways(origin, proxy, http_conn):
    # The counterpart of hop-by-hop removal: Upgrade is named by Connection
    # (RFC 9110 7.8), yet when the proxy forwards an upgrade it must keep the
    # Upgrade field in the request and in the 101 (RFC 6455 4.1, 4.2.2).
    c = http_conn(proxy.port)
    r = c.roundtrip(
        "GET",
        "/ws",
        headers=[
            ("Connection", "Upgrade"),
            ("Upgrade", "websocket"),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ("Sec-WebSocket-Version", "13"),
        ],
    )
    [req] = origin.wait_requests(1)
    assert req.header_all("upgrade") == ["websocket"], req.raw_head
    assert r.status == 101, r
    assert (r.header("upgrade") or "").lower() == "websocket", r
    assert r.header("sec-websocket-accept") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
