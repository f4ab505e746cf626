"""Hostile HTTP/1.1 requests against a real proxy process, from the outside (RFC 9112,
RFC 9110).  For every case: the status the client gets, whether the proxy closes the client
connection where the framing can no longer be trusted, what bytes the origin received (never
a second, smuggled request) and whether the same worker is still serving afterwards.  Also
pipelines, upgrades and Expect seen from the request side, and the route bypass a fragment
in the target would be.  Hostile *responses* are in test_hostile_responses.py."""

from __future__ import annotations

import contextlib
import posixpath
import re

import pytest
from raw_origin import (
    STRAY,
    assert_healthy,
    by_target,
    ok,
    proxy_to,
    recv_until_close,
    serve_check,
    worker_pids,
)
from support import (
    check_origin_untouched,
    expect_refusal,
    one_response,
    origin_barrier,
    wait_for,
)

# ---------------------------------------------------------------------------------------------
# Request framing and syntax: refused, closed, never forwarded
# ---------------------------------------------------------------------------------------------

P = b"POST /echo HTTP/1.1\r\nHost: h\r\n"
CHUNKED = P + b"Transfer-Encoding: chunked\r\n\r\n"
SMUGGLE = b"GET /smuggled HTTP/1.1\r\nHost: h\r\n\r\n"

REFUSED = {
    # Content-Length = 1*DIGIT (RFC 9110 8.6; RFC 9112 6.3 rule 5: invalid -> 400 + close)
    "cl-negative": (P + b"Content-Length: -5\r\n\r\nhello", 400),
    "cl-hex": (P + b"Content-Length: 0x5\r\n\r\nhello", 400),
    "cl-decimal-point": (P + b"Content-Length: 5.0\r\n\r\nhello", 400),
    "cl-inner-space": (P + b"Content-Length: 1 5\r\n\r\nhello", 400),
    "cl-empty": (P + b"Content-Length:\r\n\r\n" + SMUGGLE, 400),
    "cl-trailing-comma": (P + b"Content-Length: 5,\r\n\r\nhello", 400),
    "cl-overflow": (P + b"Content-Length: 99999999999999999999999\r\n\r\nhello", 400),
    "cl-2^63": (P + b"Content-Length: 9223372036854775808\r\n\r\nhello", 400),
    "cl-differing-lines-case": (
        P + b"content-length: 5\r\nCONTENT-LENGTH: 40\r\n\r\nhello" + SMUGGLE,
        400,
    ),
    # Transfer-Encoding (RFC 9112 6.1, 6.3 rules 3-4)
    "te-cl-lowercase": (
        P + b"content-length: 0\r\ntransfer-encoding: CHUNKED\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        400,
    ),
    "te-chunked-then-gzip-lines": (
        P + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n0\r\n\r\n",
        400,
    ),
    "te-chunked-param": (P + b"Transfer-Encoding: chunked;x=1\r\n\r\n0\r\n\r\n", 400),
    "te-quoted": (P + b'Transfer-Encoding: "chunked"\r\n\r\n0\r\n\r\n', 400),
    "te-xchunked": (P + b"Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n", 400),
    "te-empty": (P + b"Transfer-Encoding:\r\n\r\n0\r\n\r\n", 400),
    "te-identity": (P + b"Transfer-Encoding: identity\r\nContent-Length: 5\r\n\r\nhello", 400),
    "te-vertical-tab": (P + b"Transfer-Encoding: \x0bchunked\r\n\r\n0\r\n\r\n", 400),
    "te-tab-before-colon": (P + b"Transfer-Encoding\t: chunked\r\n\r\n0\r\n\r\n", 400),
    "te-nul-in-name": (P + b"Transfer-Encoding\x00: chunked\r\n\r\n0\r\n\r\n", 400),
    "te-obs-text-in-name": (P + b"Transfer-Encoding\xff: chunked\r\n\r\n0\r\n\r\n", 400),
    "te-http10-with-cl": (
        b"POST /echo HTTP/1.0\r\nHost: h\r\nContent-Length: 5\r\n"
        b"Transfer-Encoding: chunked\r\n\r\nhello",
        400,
    ),
    # chunked body syntax (RFC 9112 7.1)
    "chunk-size-negative": (CHUNKED + b"-5\r\nhello\r\n0\r\n\r\n", 400),
    "chunk-size-0x": (CHUNKED + b"0x5\r\nhello\r\n0\r\n\r\n", 400),
    "chunk-size-leading-space": (CHUNKED + b" 5\r\nhello\r\n0\r\n\r\n", 400),
    "chunk-size-inner-space": (CHUNKED + b"5 5\r\nhello\r\n0\r\n\r\n", 400),
    "chunk-size-2^64": (CHUNKED + b"10000000000000000\r\nhello\r\n0\r\n\r\n", 400),
    "chunk-size-2^63": (CHUNKED + b"8000000000000000\r\nhello\r\n0\r\n\r\n", 400),
    "chunk-size-bare-lf": (CHUNKED + b"5\nhello\r\n0\r\n\r\n", 400),
    "chunk-ext-bare-cr": (CHUNKED + b"5;a=b\rX\r\nhello\r\n0\r\n\r\n", 400),
    "chunk-ext-nul": (CHUNKED + b"5;a=\x00\r\nhello\r\n0\r\n\r\n", 400),
    "chunk-data-too-long": (CHUNKED + b"3\r\nhello\r\n0\r\n\r\n", 400),
    "chunk-data-bare-lf": (CHUNKED + b"5\r\nhello\n0\r\n\r\n", 400),
    "last-chunk-bare-lf": (CHUNKED + b"5\r\nhello\r\n0\n\n" + SMUGGLE, 400),
    "trailer-obs-fold": (CHUNKED + b"0\r\nX-T: a\r\n b\r\n\r\n", 400),
    "trailer-space-before-colon": (CHUNKED + b"0\r\nX-T : a\r\n\r\n", 400),
    "trailer-bare-lf": (CHUNKED + b"0\r\nX-T: a\n\r\n", 400),
    "trailer-nul": (CHUNKED + b"0\r\nX-T: a\x00b\r\n\r\n", 400),
    # request line (RFC 9112 3)
    "nul-in-method": (b"GE\x00T /x HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    "nul-in-target": (b"GET /x\x00y HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    "bare-cr-in-target": (b"GET /x\ry HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    "obs-text-in-target": (b"GET /x\xffy HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    "tab-separator": (b"GET\t/x HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    "double-space": (b"GET  /x HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    "leading-space": (b" GET /x HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    "space-in-target": (b"GET /x y HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    "http09-simple-request": (b"GET /x\r\n\r\n", 400),
    "version-two-digit-minor": (b"GET /x HTTP/1.10\r\nHost: h\r\n\r\n", 400),
    "version-leading-zero": (b"GET /x HTTP/01.1\r\nHost: h\r\n\r\n", 400),
    "authority-form-for-get": (b"GET h:80 HTTP/1.1\r\nHost: h:80\r\n\r\n", 400),
    "asterisk-form-for-post": (P.replace(b"/echo", b"*") + b"Content-Length: 0\r\n\r\n", 400),
    "too-many-leading-crlf": (b"\r\n" * 20 + b"GET /x HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    "leading-bare-cr": (b"\rGET /x HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    # Host (RFC 9112 3.2: 400 for a missing, repeated or invalid Host)
    "host-userinfo": (b"GET /x HTTP/1.1\r\nHost: user@h\r\n\r\n", 400),
    "host-space": (b"GET /x HTTP/1.1\r\nHost: a b\r\n\r\n", 400),
    "host-twice-case": (b"GET /x HTTP/1.1\r\nHost: h\r\nhOST: h\r\n\r\n", 400),
    "host-empty-then-real": (b"GET /x HTTP/1.1\r\nHost:\r\nHost: h\r\n\r\n", 400),
    "host-slash-absolute-form": (b"GET http://a/b/x HTTP/1.1\r\nHost: a/b\r\n\r\n", 400),
    # field lines (RFC 9112 5, 2.2; RFC 9110 5.5)
    "del-in-value": (b"GET /x HTTP/1.1\r\nHost: h\r\nX-A: a\x7fb\r\n\r\n", 400),
    "empty-name": (b"GET /x HTTP/1.1\r\nHost: h\r\n: v\r\n\r\n", 400),
    "obs-fold-first-field": (b"GET /x HTTP/1.1\r\n Host: h\r\n\r\n", 400),
    "bare-cr-before-blank-line": (b"GET /x HTTP/1.1\r\nHost: h\r\n\r\r\n" + SMUGGLE, 400),
}


@pytest.mark.parametrize("data,status", list(REFUSED.values()), ids=list(REFUSED))
def test_hostile_request_is_refused_closed_and_never_forwarded(
    data, status, origin, proxy, raw_request, http_conn
):
    workers = worker_pids(proxy)
    raw = raw_request(proxy.port, data)
    expect_refusal(raw, status)
    check_origin_untouched(proxy, origin)
    serve_check(proxy, http_conn, origin)
    assert_healthy(proxy, workers)


# ---------------------------------------------------------------------------------------------
# Accepted requests: what reaches the origin is canonical, and nothing more
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cl",
    [
        b"Content-Length: 005",
        b"Content-Length: 5, 5",
        b"Content-Length: 5\r\nContent-Length: 5",
        b"Content-Length:\t5\t",
    ],
    ids=["leading-zeros", "identical-list", "identical-lines", "tabs"],
)
def test_tolerated_content_length_is_forwarded_as_one_canonical_field(cl, origin, proxy, http_conn):
    # RFC 9112 6.3 rule 5 / RFC 9110 8.6: identical values may be accepted; what goes on
    # must then be a single valid Content-Length, and the pipelined request stays separate.
    c = http_conn(proxy.port)
    c.send(P + cl + b"\r\n\r\nhello" + SMUGGLE)
    r1 = c.read_response("POST")
    r2 = c.read_response()
    assert (r1.status, r1.body) == (200, b"hello")
    assert (r2.status, r2.body) == (200, b"GET /smuggled")
    reqs = origin.wait_requests(2)
    assert reqs[0].header_all("content-length") == ["5"], reqs[0].raw_head
    assert [q.target for q in reqs] == ["/echo", "/smuggled"]


@pytest.mark.parametrize("named", ["Content-Length", "Transfer-Encoding", "Host"])
def test_connection_naming_a_framing_field_does_not_strip_it(named, origin, proxy, http_conn):
    # RFC 9110 7.6.1: Connection options name hop-by-hop fields; a proxy that honoured
    # "Connection: Content-Length" by dropping the field would forward a body without
    # framing, which the next hop reads as a second request.
    c = http_conn(proxy.port)
    if named == "Transfer-Encoding":
        body = b"5\r\nhello\r\n0\r\n\r\n"
        head = CHUNKED.replace(b"\r\n\r\n", b"\r\nConnection: Transfer-Encoding\r\n\r\n")
    else:
        body = b"hello"
        head = P + f"Connection: {named}\r\nContent-Length: 5\r\n\r\n".encode()
    c.send(head + body + SMUGGLE)
    r1 = c.read_response("POST")
    r2 = c.read_response()
    assert (r1.status, r1.body) == (200, b"hello")
    assert (r2.status, r2.body) == (200, b"GET /smuggled")
    reqs = origin.wait_requests(2)
    assert len(reqs) == 2
    assert reqs[0].body == b"hello"
    assert len(reqs[0].header_all("host")) == 1, reqs[0].raw_head
    assert reqs[0].header("content-length") == "5" or reqs[0].chunked, reqs[0].raw_head


def test_trailers_naming_framing_fields_are_not_forwarded(raw_origin, make_proxy, http_conn):
    # RFC 9110 6.5.1: framing fields are not allowed in trailers; the proxy re-frames the
    # body (RFC 9112 7.1.2), so nothing of the trailer section may reach the origin.
    ro = raw_origin(lambda req: [ok(req.body)])
    proxy = proxy_to(make_proxy, ro)
    c = http_conn(proxy.port)
    c.send(
        CHUNKED + b'5;ext="q;x"\r\nhello\r\n0\r\nContent-Length: 40\r\n'
        b"Transfer-Encoding: chunked\r\nHost: evil\r\n\r\n" + SMUGGLE
    )
    r1 = c.read_response("POST")
    r2 = c.read_response()
    assert r1.status == 200 and r2.status == 200
    wait_for(lambda: len(ro.requests) == 2, 5, "two requests at the origin")
    raw = bytes(ro.received[0])
    assert b"evil" not in raw and b"Content-Length: 40" not in raw, raw
    assert b"ext=" not in raw, raw
    assert ro.requests[0].body == b"5\r\nhello\r\n0\r\n\r\n", raw
    assert [q.target for q in ro.requests] == ["/echo", "/smuggled"]


def test_chunk_size_with_many_leading_zeros_is_accepted(origin, proxy, http_conn):
    # chunk-size = 1*HEXDIG: leading zeros are valid and do not count toward overflow.
    c = http_conn(proxy.port)
    c.send(CHUNKED + b"0" * 40 + b"5\r\nhello\r\n" + b"0" * 40 + b"\r\n\r\n" + SMUGGLE)
    r1 = c.read_response("POST")
    r2 = c.read_response()
    assert (r1.status, r1.body) == (200, b"hello")
    assert (r2.status, r2.body) == (200, b"GET /smuggled")


def test_bare_lf_request_is_reserialised_with_crlf(raw_origin, make_proxy, http_conn):
    # RFC 9112 2.2: a recipient MAY accept a bare LF as a line terminator; what goes on
    # must then be CRLF-only, and two pipelined bare-LF requests stay two requests.
    ro = raw_origin(lambda req: [ok(req.target.encode())])
    proxy = proxy_to(make_proxy, ro)
    c = http_conn(proxy.port)
    c.send(
        b"POST /a HTTP/1.1\nHost: h\nContent-Length: 3\nX-A: 1\n\nabcGET /b HTTP/1.1\nHost: h\n\n"
    )
    assert c.read_response("POST").body == b"/a"
    assert c.read_response().body == b"/b"
    wait_for(lambda: len(ro.requests) == 2, 5, "two requests")
    raw = bytes(ro.received[0])
    assert re.search(rb"(?<!\r)\n", raw) is None, raw
    assert ro.requests[0].body == b"abc"


def test_http_1_2_is_handled_as_1_1_and_forwarded_as_1_1(origin, proxy, http_conn):
    # RFC 9110 2.5 / RFC 9112 2.3: a higher minor version is processed as the highest
    # minor version the recipient implements.
    c = http_conn(proxy.port)
    c.send(b"GET /v HTTP/1.2\r\nHost: h\r\n\r\n")
    r = c.read_response()
    assert r.status == 200 and r.version == "HTTP/1.1"
    [req] = origin.wait_requests(1)
    assert req.version == "HTTP/1.1"


def test_options_asterisk_is_forwarded_as_asterisk(raw_origin, make_proxy, http_conn):
    ro = raw_origin(lambda req: [ok(b"x")])
    proxy = proxy_to(make_proxy, ro)
    c = http_conn(proxy.port)
    r = c.roundtrip("OPTIONS", "*")
    assert r.status == 200
    wait_for(lambda: ro.requests, 5, "the request")
    assert ro.requests[0].target == "*"


def test_absolute_form_authority_wins_over_a_conflicting_host(raw_origin, make_proxy, http_conn):
    # RFC 9112 3.2.2: the proxy MUST generate a new Host from the target's authority.
    ro = raw_origin(lambda req: [ok(b"x")])
    proxy = proxy_to(make_proxy, ro)
    c = http_conn(proxy.port)
    c.send(b"GET http://good.example/x HTTP/1.1\r\nHost: evil.example\r\n\r\n")
    assert c.read_response().status == 200
    wait_for(lambda: ro.requests, 5, "the request")
    assert ro.requests[0].header_all("host") == ["good.example"], ro.requests[0].head
    assert ro.requests[0].target == "/x"
    assert b"evil" not in bytes(ro.received[0])


@pytest.mark.parametrize("host", [b"h:abc", b"h:80:80", b"[::1", b"a]b", b"h:-1"])
def test_host_that_is_not_uri_host_port_is_400(host, origin, proxy, raw_request, http_conn):
    # RFC 9112 3.2: "A server MUST respond with a 400 (Bad Request) status code to any
    # HTTP/1.1 request message that ... contains ... a Host header field with an invalid
    # field value."  Host = uri-host [ ":" port ], port = *DIGIT (RFC 3986 3.2.3).
    raw = raw_request(proxy.port, b"GET /x HTTP/1.1\r\nHost: " + host + b"\r\n\r\n")
    expect_refusal(raw, 400)
    check_origin_untouched(proxy, origin)


def test_expect_100_rejected_by_origin_closes_and_drops_what_follows(
    raw_origin, make_proxy, http_conn
):
    # RFC 9110 10.1.1: the origin may answer with a final status instead of 100; the
    # client may then still send the body (or not).  The proxy sent the request on with
    # Content-Length: 5, so that connection is unusable, and the client connection must
    # be closed after the final response: the body bytes and anything pipelined behind
    # them must never turn into a request at the origin.
    ro = raw_origin(
        lambda req: [b"HTTP/1.1 417 Expectation Failed\r\nContent-Length: 0\r\n\r\n"],
        read_bodies=False,
    )
    proxy = proxy_to(make_proxy, ro)
    c = http_conn(proxy.port)
    c.send(P + b"Expect: 100-continue\r\nContent-Length: 5\r\n\r\n")
    r = c.read_response("POST")
    assert r.status == 417
    with contextlib.suppress(OSError):
        c.send(b"hello" + SMUGGLE)
    raw, _ = recv_until_close(c.sock)
    assert raw == b"", raw
    # (a wrongly forwarded request on another connection: see origin_barrier)
    origin_barrier(proxy.port, ro)
    assert [q.target for q in ro.requests] == ["/echo", "/barrier"], [q.head for q in ro.requests]
    assert r.header("connection") == "close", r


def test_connection_close_request_stops_the_pipeline(origin, proxy, http_conn):
    # RFC 9112 9.6: after a request with "close" the server MUST NOT process further
    # requests on that connection.
    c = http_conn(proxy.port)
    c.send(b"GET /a HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n" + SMUGGLE)
    r = c.read_response()
    assert r.body == b"GET /a"
    assert c.at_eof()
    # (a wrongly forwarded request on another connection: see origin_barrier)
    origin_barrier(proxy.port, origin)
    assert [q.target for q in origin.requests] == ["/a", "/barrier"]


def test_http10_request_without_keep_alive_stops_the_pipeline(origin, proxy, http_conn):
    c = http_conn(proxy.port)
    c.send(b"GET /a HTTP/1.0\r\nHost: h\r\n\r\n" + SMUGGLE)
    raw, _ = recv_until_close(c.sock)
    assert raw.count(b"HTTP/1.1 ") == 1, raw
    # (a wrongly forwarded request on another connection: see origin_barrier)
    origin_barrier(proxy.port, origin)
    assert [q.target for q in origin.requests] == ["/a", "/barrier"]


def test_declined_upgrade_with_connection_close_stops_the_pipeline(
    raw_origin, make_proxy, http_conn
):
    # "Connection: close, Upgrade": the origin declines the upgrade with a 200; the
    # bytes behind the request are neither a tunnel nor a next request.
    ro = raw_origin(by_target({}))
    proxy = proxy_to(make_proxy, ro)
    c = http_conn(proxy.port)
    c.send(
        b"GET /up HTTP/1.1\r\nHost: h\r\nConnection: close, Upgrade\r\nUpgrade: websocket\r\n\r\n"
        + SMUGGLE
    )
    raw, _ = recv_until_close(c.sock)
    assert raw.count(b"HTTP/1.1 ") == 1 and b"GET /up" in raw, raw
    # (a wrongly forwarded request on another connection: see origin_barrier)
    origin_barrier(proxy.port, ro)
    assert [q.target for q in ro.requests] == ["/up", "/barrier"]
    assert b"smuggled" not in b"".join(bytes(x) for x in ro.received)


def test_accepted_upgrade_passes_pipelined_bytes_as_tunnel_data(raw_origin, make_proxy, http_conn):
    # After a 101 every byte the client sent behind the request belongs to the new
    # protocol (RFC 9110 7.8): it reaches the origin verbatim, not as a parsed request.
    ro = raw_origin(
        by_target(
            {
                "/up": [
                    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                    b"Connection: Upgrade\r\n\r\n",
                    1.0,
                ]
            }
        )
    )
    proxy = proxy_to(make_proxy, ro)
    c = http_conn(proxy.port)
    c.send(
        b"GET /up HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
        + SMUGGLE
    )
    assert c.read_response().status == 101
    wait_for(lambda: bytes(ro.received[0]).endswith(SMUGGLE), 5, "tunnel bytes at the origin")
    assert ro.connections == 1


def test_upgrade_on_a_route_without_websocket_is_a_plain_request(raw_origin, make_proxy, http_conn):
    # websocket = false: Upgrade (e.g. h2c) is hop-by-hop and dropped, so a 101 from the
    # origin answers a request that did not ask to upgrade: 502, never a tunnel.
    ro = raw_origin(
        by_target(
            {
                "/up": [
                    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n"
                    b"Connection: Upgrade\r\n\r\n" + STRAY,
                    "close",
                ]
            }
        )
    )
    proxy = make_proxy(
        {
            "upstreams": {"app": {"servers": [ro.address]}},
            "routes": [{"path_prefix": "/", "upstream": "app", "websocket": False}],
        }
    )
    c = http_conn(proxy.port)
    c.send(
        b"GET /up HTTP/1.1\r\nHost: h\r\nConnection: Upgrade, HTTP2-Settings\r\n"
        b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n"
    )
    raw, _ = recv_until_close(c.sock)
    assert one_response(raw)[0] == 502, raw
    assert b"smuggled" not in raw
    wait_for(lambda: ro.requests, 5, "the request")
    head = ro.requests[0].head.lower()
    assert b"upgrade:" not in head and b"http2-settings" not in head, head


def test_pipelined_requests_after_a_local_404_are_served_in_order(make_proxy, origin, http_conn):
    proxy = make_proxy({"routes": [{"host": "known", "path_prefix": "/", "upstream": "app"}]})
    c = http_conn(proxy.port)
    c.send(b"GET /a HTTP/1.1\r\nHost: unknown\r\n\r\nGET /b HTTP/1.1\r\nHost: known\r\n\r\n")
    assert c.read_response().status == 404
    assert c.read_response().body == b"GET /b"
    # /a would have gone upstream before /b; on another connection its thread records it
    # almost surely before /barrier (sent a round trip after /b's answer)
    origin_barrier(proxy.port, origin, host="known")
    assert [q.target for q in origin.requests] == ["/b", "/barrier"]


def test_pipelined_request_behind_a_refused_connect_is_never_forwarded(origin, proxy, http_conn):
    c = http_conn(proxy.port)
    c.send(b"CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n" + SMUGGLE)
    raw, _ = recv_until_close(c.sock)
    assert one_response(raw)[0] == 405 and raw.count(b"HTTP/1.1 ") == 1, raw
    check_origin_untouched(proxy, origin)


@pytest.mark.parametrize(
    "data",
    [
        b"GET /x HTTP/1.1\r\nHost: h\r\nX-A : 1\r\n\r\n",
        b"GET /x HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        b"GET /x HTTP/1.1\r\nHost: h\r\nX-A: 1\r\n folded\r\n\r\n",
        b"GET /x HTTP/1.1\r\nHost: h\r\nX-A: 1\rX-B: 2\r\n\r\n",
        P + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + SMUGGLE,
    ],
    ids=["ws-before-colon", "two-hosts", "obs-fold", "bare-cr", "cl-te"],
)
def test_hostile_head_sent_one_byte_at_a_time_is_still_refused(data, origin, proxy, http_conn):
    # The incremental path (resume hint, the head end searched before the exact parse)
    # must reach the same verdict as the one-shot path.
    c = http_conn(proxy.port)
    for i in range(len(data)):
        try:
            c.send(data[i : i + 1])
        except OSError:
            break
    raw, _ = recv_until_close(c.sock)
    expect_refusal(raw, 400)
    check_origin_untouched(proxy, origin)


# ---------------------------------------------------------------------------------------------
# Request-target: the proxy must route on the same path the origin will serve
# ---------------------------------------------------------------------------------------------

ACL_ROUTES = {
    "routes": [
        {"path_prefix": "/admin", "return": 403, "body": "forbidden\n"},
        {"path_prefix": "/public/", "upstream": "app"},
    ]
}


@pytest.mark.parametrize(
    "target",
    ["/admin#/../public/x", "/admin%23/../public/x"],
    ids=["raw-hash", "encoded-hash-control"],
)
def test_fragment_in_request_target_does_not_bypass_a_route(target, make_proxy, origin, http_conn):
    # RFC 9112 3.2.1: origin-form = absolute-path [ "?" query ] -- no "#".  RFC 9112 3:
    # an invalid request-line SHOULD get a 400.  Routing on "/admin#/../public/x" as if
    # "#" were a path character sends the request to the /public/ upstream, whose
    # server, parsing the target as a URI reference (RFC 3986 3.5), serves /admin.
    proxy = make_proxy(ACL_ROUTES)
    c = http_conn(proxy.port)
    r = c.roundtrip("GET", target)
    if r.status == 200:
        [req] = origin.wait_requests(1)
        # what the origin's URI parser makes of it: urlsplit (conftest), then
        # dot-segment removal (RFC 3986 5.2.4)
        served = posixpath.normpath(req.path)
        assert served.startswith("/public/"), (req.target, served)
    else:
        assert r.status in (400, 403), r
