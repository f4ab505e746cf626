"""End-to-end error behaviour of a real proxy process (fixtures: tests/integration/conftest.py).

For every refused request the tests check three things: the status the client gets, that
the proxy closes the connection when the framing of what follows can no longer be trusted,
and that nothing reached the origin (no TCP connection was even opened to it: the proxy
refuses before it picks a server).  After each error the same process must still serve a
normal request.

Also covered: local answers (no route, `return`, `redirect`), path normalisation for
routing versus the exact target forwarded, absolute-form targets, per-route header rules,
X-Forwarded-For trust, hop-by-hop fields, upstream failures (refused, read timeout,
connect timeout) and the client header timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import re
import socket
import time
from collections.abc import Iterator

import pytest
from support import free_port

from fastproxy.config import Config, ConfigError

# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------


def parse(raw: bytes) -> tuple[int, dict[str, list[str]], bytes]:
    """Status, headers (lower-case names) and body of ONE raw response."""
    head, sep, body = raw.partition(b"\r\n\r\n")
    assert sep, f"no complete response head in {raw[:500]!r}"
    lines = head.split(b"\r\n")
    m = re.fullmatch(rb"HTTP/1\.1 (\d{3}) (.*)", lines[0])
    assert m, f"bad status line {lines[0]!r}"
    headers: dict[str, list[str]] = {}
    for line in lines[1:]:
        k, _, v = line.decode("latin-1").partition(":")
        headers.setdefault(k.strip().lower(), []).append(v.strip())
    return int(m.group(1)), headers, body


def expect_refusal(raw: bytes, status: int) -> dict[str, list[str]]:
    """`raw` was read until the proxy closed: exactly one response, with `status`, whose
    body is complete."""
    assert raw.count(b"HTTP/1.1 ") == 1, f"expected exactly one response, got {raw!r}"
    got, headers, body = parse(raw)
    assert got == status, raw
    assert headers.get("content-length") == [str(len(body))], raw
    assert headers.get("connection") == ["close"], raw
    return headers


def settle_and_check_origin_untouched(origin) -> None:
    time.sleep(0.3)  # > the origin's accept poll (0.2 s): a connection would be counted
    assert origin.connections == 0, "the proxy opened a connection to the origin"
    assert origin.requests == []


def assert_still_serving(proxy, http_conn, origin, path: str = "/after-error") -> None:
    """A fresh connection gets a normal proxied answer from the same process."""
    assert proxy.alive(), proxy.stderr_text()
    before = len(origin.requests)
    c = http_conn(proxy.port)
    r = c.roundtrip("GET", path)
    assert r.status == 200, r
    assert r.body == f"GET {path}".encode()
    assert len(origin.wait_requests(before + 1)) == before + 1


GOOD_HEAD = b"GET /x HTTP/1.1\r\nHost: h\r\n"


# ---------------------------------------------------------------------------------------------
# malformed requests: 400, close, nothing upstream
# ---------------------------------------------------------------------------------------------

MALFORMED = {
    # request smuggling vectors (RFC 9112 6.1, 6.3, 11.2)
    "cl-and-te": b"POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 6\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: h\r\n\r\n",
    "te-and-cl": b"POST /echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n"
    b"Content-Length: 4\r\n\r\n5c\r\nGPOST / HTTP/1.1\r\n\r\n0\r\n\r\n",
    "two-differing-cl": b"POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n"
    b"Content-Length: 30\r\n\r\nhelloGET /smuggled HTTP/1.1\r\nHost: h\r\n\r\n",
    "cl-list-differing": b"POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 5, 6\r\n\r\nhello!",
    "cl-plus-sign": b"POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: +5\r\n\r\nhello",
    "te-chunked-not-last": b"POST /echo HTTP/1.1\r\nHost: h\r\n"
    b"Transfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n",
    "te-chunked-twice": b"POST /echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "te-in-http10": b"POST /echo HTTP/1.0\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"0\r\n\r\n",
    "obs-fold": b"GET /x HTTP/1.1\r\nHost: h\r\nX-A: 1\r\n  folded\r\n\r\n",
    "obs-fold-te": b"POST /echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding:\r\n chunked\r\n\r\n"
    b"0\r\n\r\n",
    "space-before-colon": b"GET /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding : chunked\r\n\r\n",
    "space-before-colon-host": b"GET /x HTTP/1.1\r\nHost : h\r\n\r\n",
    "bare-cr-in-value": b"GET /x HTTP/1.1\r\nHost: h\r\nX-A: 1\rX-B: 2\r\n\r\n",
    "bare-cr-line-end": b"GET /x HTTP/1.1\rHost: h\r\n\r\n",
    "nul-in-value": b"GET /x HTTP/1.1\r\nHost: h\r\nX-A: a\x00b\r\n\r\n",
    "missing-host": b"GET /x HTTP/1.1\r\nX-A: 1\r\n\r\n",
    "two-hosts": b"GET /x HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    "invalid-host": b"GET /x HTTP/1.1\r\nHost: a/b\r\n\r\n",
    "bad-method": b"G(ET /x HTTP/1.1\r\nHost: h\r\n\r\n",
    "bad-version": b"GET /x HTTP/1.x\r\nHost: h\r\n\r\n",
    "lower-case-version": b"GET /x http/1.1\r\nHost: h\r\n\r\n",
    "junk-after-version": b"GET /x HTTP/1.1 junk\r\nHost: h\r\n\r\n",
    "no-colon": b"GET /x HTTP/1.1\r\nHost: h\r\nnocolon\r\n\r\n",
    "header-name-bad-char": b"GET /x HTTP/1.1\r\nHost: h\r\nX(A): 1\r\n\r\n",
    "bad-chunk-size": b"POST /echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"zz\r\nhello\r\n0\r\n\r\n",
    "dot-dot-above-root": b"GET /../etc/passwd HTTP/1.1\r\nHost: h\r\n\r\n",
    "encoded-nul-in-path": b"GET /a%00b HTTP/1.1\r\nHost: h\r\n\r\n",
    "bad-escape-in-path": b"GET /a%zz HTTP/1.1\r\nHost: h\r\n\r\n",
    "asterisk-with-get": b"GET * HTTP/1.1\r\nHost: h\r\n\r\n",
    "relative-target": b"GET x/y HTTP/1.1\r\nHost: h\r\n\r\n",
    "userinfo-in-absolute-form": b"GET http://user@h/x HTTP/1.1\r\nHost: h\r\n\r\n",
}


@pytest.mark.parametrize("data", list(MALFORMED.values()), ids=list(MALFORMED))
def test_malformed_request_is_400_closed_and_never_forwarded(
    data, origin, proxy, raw_request, http_conn
):
    raw = raw_request(proxy.port, data)
    expect_refusal(raw, 400)
    settle_and_check_origin_untouched(origin)
    assert_still_serving(proxy, http_conn, origin)


def test_smuggled_request_after_cl_te_is_never_answered(origin, proxy, http_conn):
    # The prefix `GET /smuggled` must not be parsed as a second request on any side.
    c = http_conn(proxy.port)
    c.send(MALFORMED["cl-and-te"])
    r = c.read_response()
    assert r.status == 400
    assert c.at_eof(), "the proxy kept the connection open after a 400"
    settle_and_check_origin_untouched(origin)


def test_malformed_request_after_a_good_one_on_the_same_connection(origin, proxy, http_conn):
    c = http_conn(proxy.port)
    assert c.roundtrip("GET", "/first").status == 200
    c.send(b"GET /x HTTP/1.1\r\nHost: h\r\nX-A : 1\r\n\r\n")
    r = c.read_response()
    assert r.status == 400
    assert r.header("connection") == "close"
    assert c.at_eof()
    time.sleep(0.2)
    assert [q.target for q in origin.requests] == ["/first"]
    assert_still_serving(proxy, http_conn, origin)


def test_pipelined_malformed_request_after_a_proxied_one_gets_400(origin, proxy, http_conn):
    c = http_conn(proxy.port)
    c.send(b"GET /first HTTP/1.1\r\nHost: h\r\n\r\nGET /x HTTP/1.1\r\nHost : h\r\n\r\n")
    assert c.read_response().status == 200
    r = c.read_response()
    assert r.status == 400
    assert c.at_eof()


def test_error_after_a_head_request_still_has_its_body(origin, proxy, http_conn):
    # The 400 answers a request that could not be parsed, not the earlier HEAD:
    # its body (announced by Content-Length) must be sent (RFC 9110 9.3.2 only
    # exempts responses to HEAD).
    c = http_conn(proxy.port)
    r = c.roundtrip("HEAD", "/head")
    assert r.status == 200
    c.send(b"GET /x HTTP/1.1\r\nHost: h\r\nX-A : 1\r\n\r\n")
    r = c.read_response("GET")
    assert r.status == 400
    assert r.body == b"400 Bad Request\n"


def test_head_request_error_has_no_body(origin, proxy, raw_request):
    raw = raw_request(proxy.port, b"HEAD /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n")
    status, headers, body = parse(raw)
    assert status == 400
    assert body == b""


# ---------------------------------------------------------------------------------------------
# limits and unsupported features
# ---------------------------------------------------------------------------------------------


def test_request_line_over_max_request_line_is_414(make_proxy, origin, raw_request, http_conn):
    proxy = make_proxy({"server": {"max_request_line": "1KiB"}})
    ok = raw_request(proxy.port, b"GET /" + b"a" * 900 + b" HTTP/1.1\r\nHost: h\r\n\r\n",
                     read_until_close=False)  # fmt: skip
    assert parse(ok)[0] == 200
    origin.reset()
    raw = raw_request(proxy.port, b"GET /" + b"a" * 2000 + b" HTTP/1.1\r\nHost: h\r\n\r\n")
    expect_refusal(raw, 414)
    time.sleep(0.3)
    assert origin.requests == []
    assert_still_serving(proxy, http_conn, origin)


def test_request_line_over_limit_is_414_before_its_end_arrives(make_proxy, origin, http_conn):
    proxy = make_proxy({"server": {"max_request_line": "1KiB"}})
    c = http_conn(proxy.port)
    c.send(b"GET /" + b"a" * 4000)  # no CRLF yet: the line is already too long
    r = c.read_response(timeout=3)
    assert r.status == 414
    assert c.at_eof()
    settle_and_check_origin_untouched(origin)


def test_huge_header_is_431(make_proxy, origin, raw_request, http_conn):
    proxy = make_proxy({"server": {"max_header_size": "4KiB"}})
    raw = raw_request(proxy.port, GOOD_HEAD + b"X-Big: " + b"v" * 8000 + b"\r\n\r\n")
    expect_refusal(raw, 431)
    settle_and_check_origin_untouched(origin)
    assert_still_serving(proxy, http_conn, origin)


def test_huge_head_without_end_is_431(make_proxy, origin, http_conn):
    proxy = make_proxy({"server": {"max_header_size": "4KiB"}})
    c = http_conn(proxy.port)
    c.send(GOOD_HEAD + b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 60) for i in range(100)))
    r = c.read_response(timeout=3)
    assert r.status == 431
    assert c.at_eof()
    settle_and_check_origin_untouched(origin)


def test_too_many_headers_is_431(make_proxy, origin, raw_request, http_conn):
    proxy = make_proxy({"server": {"max_headers": 10}})
    fields = b"".join(b"X-H%d: v\r\n" % i for i in range(9))  # + Host = 10: fine
    ok = raw_request(proxy.port, b"GET /ten HTTP/1.1\r\nHost: h\r\n" + fields + b"\r\n",
                     read_until_close=False)  # fmt: skip
    assert parse(ok)[0] == 200
    origin.reset()
    fields = b"".join(b"X-H%d: v\r\n" % i for i in range(20))
    raw = raw_request(proxy.port, GOOD_HEAD + fields + b"\r\n")
    expect_refusal(raw, 431)
    time.sleep(0.3)
    assert origin.requests == []
    assert_still_serving(proxy, http_conn, origin)


def test_body_over_max_body_size_is_413_before_the_body_is_sent(make_proxy, origin, http_conn):
    proxy = make_proxy({"server": {"max_body_size": "1KiB"}})
    c = http_conn(proxy.port)
    # Only the head: the proxy must answer from Content-Length, without waiting.
    c.send(b"POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 5000\r\n\r\n")
    t0 = time.monotonic()
    r = c.read_response(timeout=3)
    assert r.status == 413
    assert time.monotonic() - t0 < 2
    assert r.header("connection") == "close"
    assert c.at_eof()
    settle_and_check_origin_untouched(origin)
    assert_still_serving(proxy, http_conn, origin)


def test_body_at_max_body_size_is_accepted(make_proxy, origin, http_conn):
    proxy = make_proxy({"server": {"max_body_size": "1KiB"}})
    c = http_conn(proxy.port)
    r = c.roundtrip("POST", "/echo", body=b"z" * 1024)
    assert r.status == 200
    assert r.body == b"z" * 1024


def test_chunked_body_over_max_body_size_is_413(make_proxy, origin, raw_request, http_conn):
    proxy = make_proxy({"server": {"max_body_size": "1KiB"}})
    body = b"400\r\n" + b"a" * 1024 + b"\r\n10\r\n" + b"b" * 16 + b"\r\n0\r\n\r\n"
    raw = raw_request(
        proxy.port, b"POST /echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n" + body
    )
    expect_refusal(raw, 413)
    settle_and_check_origin_untouched(origin)
    assert_still_serving(proxy, http_conn, origin)


@pytest.mark.parametrize("te", [b"gzip, chunked", b"deflate, chunked", b"x-custom, chunked"])
def test_unknown_transfer_coding_is_501(te, origin, proxy, raw_request, http_conn):
    raw = raw_request(
        proxy.port,
        b"POST /echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: " + te + b"\r\n\r\n0\r\n\r\n",
    )
    expect_refusal(raw, 501)
    settle_and_check_origin_untouched(origin)
    assert_still_serving(proxy, http_conn, origin)


@pytest.mark.parametrize("version", [b"HTTP/2.0", b"HTTP/3.0", b"HTTP/0.9"])
def test_unsupported_http_version_is_505(version, origin, proxy, raw_request, http_conn):
    raw = raw_request(proxy.port, b"GET /x " + version + b"\r\nHost: h\r\n\r\n")
    expect_refusal(raw, 505)
    settle_and_check_origin_untouched(origin)
    assert_still_serving(proxy, http_conn, origin)


def test_connect_is_405(origin, proxy, raw_request, http_conn):
    raw = raw_request(
        proxy.port, b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"
    )
    expect_refusal(raw, 405)
    settle_and_check_origin_untouched(origin)
    assert_still_serving(proxy, http_conn, origin)


def test_405_names_the_allowed_methods(origin, proxy, raw_request):
    # RFC 9110 15.5.6: "The origin server MUST generate an Allow header field in
    # a 405 response containing a list of the target resource's currently
    # supported methods."  The proxy is the server the client talks to.
    raw = raw_request(
        proxy.port, b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"
    )
    status, headers, _ = parse(raw)
    assert status == 405
    assert "allow" in headers, raw


# ---------------------------------------------------------------------------------------------
# upstream failures
# ---------------------------------------------------------------------------------------------


def two_upstreams(origin, other: dict, prefix: str = "/bad/") -> dict:
    """`app` (the origin) on "/", and `bad` (configured by `other`) on `prefix`."""
    return {
        "upstreams": {"bad": other},
        "routes": [
            {"path_prefix": prefix, "upstream": "bad"},
            {"path_prefix": "/", "upstream": "app"},
        ],
    }


def test_backend_down_is_502(make_proxy, origin, raw_request, http_conn):
    port = free_port()
    proxy = make_proxy(two_upstreams(origin, {"servers": [f"127.0.0.1:{port}"]}))
    t0 = time.monotonic()
    raw = raw_request(proxy.port, b"GET /bad/x HTTP/1.1\r\nHost: h\r\n\r\n")
    assert time.monotonic() - t0 < 3
    expect_refusal(raw, 502)
    assert_still_serving(proxy, http_conn, origin)
    # and again, on a keep-alive connection that just served a good request
    c = http_conn(proxy.port)
    assert c.roundtrip("GET", "/ok").status == 200
    r = c.roundtrip("GET", "/bad/again")
    assert r.status == 502
    assert_still_serving(proxy, http_conn, origin)


def test_slow_backend_read_timeout_is_504(make_proxy, origin, http_conn):
    proxy = make_proxy(
        {
            "upstreams": {"app": {"read_timeout": "1s"}},
            "routes": [{"path_prefix": "/", "upstream": "app"}],
        }
    )
    c = http_conn(proxy.port, timeout=10)
    c.request("GET", "/slow?delay=5")
    t0 = time.monotonic()
    r = c.read_response(timeout=8)
    elapsed = time.monotonic() - t0
    assert r.status == 504
    assert 0.8 < elapsed < 3, elapsed
    assert r.header("connection") == "close"
    assert c.at_eof()
    assert_still_serving(proxy, http_conn, origin, "/fast")


def test_fast_enough_backend_is_not_timed_out(make_proxy, origin, http_conn):
    proxy = make_proxy({"upstreams": {"app": {"read_timeout": "2s"}}})
    c = http_conn(proxy.port, timeout=10)
    r = c.roundtrip("GET", "/slow?delay=0.5")
    assert (r.status, r.body) == (200, b"slow")


@contextlib.contextmanager
def blackhole_listener() -> Iterator[int]:
    """A listening socket whose accept queue is full, so further SYNs are dropped and a
    connect() to it hangs.  Yields the port; skips the test if the kernel still completes
    handshakes."""
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(0)
    port = lsock.getsockname()[1]
    fillers: list[socket.socket] = []
    try:
        for _ in range(8):
            s = socket.socket()
            s.setblocking(False)
            err = s.connect_ex(("127.0.0.1", port))
            fillers.append(s)
            if err not in (0, errno.EINPROGRESS):
                pytest.skip(f"filling the accept queue failed: {errno.errorcode.get(err)}")
        time.sleep(0.2)
        probe = socket.socket()
        probe.settimeout(0.7)
        try:
            probe.connect(("127.0.0.1", port))
        except (TimeoutError, OSError):
            pass
        else:
            pytest.skip("the kernel completed a handshake on a full accept queue")
        finally:
            probe.close()
        yield port
    finally:
        for s in fillers:
            s.close()
        lsock.close()


def test_connect_timeout_is_504(make_proxy, origin, http_conn):
    with blackhole_listener() as port:
        proxy = make_proxy(
            two_upstreams(origin, {"servers": [f"127.0.0.1:{port}"], "connect_timeout": "1s"})
        )
        c = http_conn(proxy.port, timeout=10)
        c.request("GET", "/bad/x")
        t0 = time.monotonic()
        r = c.read_response(timeout=8)
        elapsed = time.monotonic() - t0
        assert r.status == 504
        assert 0.8 < elapsed < 3, elapsed
        assert_still_serving(proxy, http_conn, origin)


# ---------------------------------------------------------------------------------------------
# client timeouts
# ---------------------------------------------------------------------------------------------


def test_client_stalling_mid_head_gets_408_and_close(make_proxy, origin, http_conn):
    proxy = make_proxy({"server": {"client_header_timeout": "1s"}})
    c = http_conn(proxy.port, timeout=10)
    c.send(b"GET /x HTTP/1.1\r\nHost: h\r\nX-Part")
    t0 = time.monotonic()
    r = c.read_response(timeout=8)
    elapsed = time.monotonic() - t0
    assert r.status == 408
    assert 0.8 < elapsed < 3, elapsed
    assert r.header("connection") == "close"
    assert c.at_eof()
    settle_and_check_origin_untouched(origin)
    assert_still_serving(proxy, http_conn, origin)


def test_408_on_a_keep_alive_connection_after_a_proxied_response(make_proxy, origin, http_conn):
    proxy = make_proxy({"server": {"client_header_timeout": "1s"}})
    c = http_conn(proxy.port, timeout=10)
    assert c.roundtrip("GET", "/first").status == 200
    c.send(b"GET /second HTTP/1.1\r\nHost: h\r\n")
    r = c.read_response(timeout=8)
    assert r.status == 408
    assert c.at_eof()
    assert [q.target for q in origin.requests] == ["/first"]


def test_trickling_head_does_not_extend_the_header_timeout(make_proxy, origin, http_conn):
    # Slowloris: one byte every 0.3 s must not keep the head alive past the timeout.
    proxy = make_proxy({"server": {"client_header_timeout": "1s"}})
    c = http_conn(proxy.port, timeout=10)
    t0 = time.monotonic()
    c.send(b"GET /x HTTP/1.1\r\nHost: h\r\n")
    got = None
    for ch in b"X-Slow: " + b"a" * 30:
        try:
            c.send(bytes([ch]))
        except OSError:
            break
        time.sleep(0.3)
        if time.monotonic() - t0 > 4:
            break
        c.sock.setblocking(False)
        try:
            got = c.sock.recv(65536, socket.MSG_PEEK)
        except BlockingIOError:
            got = None
        finally:
            c.sock.setblocking(True)
        if got:
            break
    elapsed = time.monotonic() - t0
    r = c.read_response(timeout=5)
    assert r.status == 408
    assert elapsed < 3, elapsed
    settle_and_check_origin_untouched(origin)


def test_idle_connection_without_bytes_is_closed_quietly(make_proxy, http_conn):
    proxy = make_proxy({"server": {"client_header_timeout": "1s"}})
    c = http_conn(proxy.port, timeout=10)
    t0 = time.monotonic()
    assert c.at_eof(timeout=4)
    assert time.monotonic() - t0 < 3


# ---------------------------------------------------------------------------------------------
# local answers: no route, return, redirect
# ---------------------------------------------------------------------------------------------

LOCAL_ROUTES = {
    "routes": [
        {"path_prefix": "/admin", "return": 403, "body": "forbidden\n"},
        {"path_prefix": "/old", "redirect": {"to": "https://example.com/new", "status": 308}},
        {"path_prefix": "/drop-q", "redirect": {"to": "/landing", "keep_query": False}},
        {"path_prefix": "/with-q", "redirect": {"to": "https://example.com/n?x=1"}},
        {"path_prefix": "/public/", "upstream": "app"},
        {"host": "h.example", "path_prefix": "/", "upstream": "app"},
    ]
}


@pytest.fixture
def local_proxy(make_proxy):
    return make_proxy(LOCAL_ROUTES)


def test_no_matching_route_is_404_and_keeps_the_connection(local_proxy, origin, http_conn):
    c = http_conn(local_proxy.port)
    r = c.roundtrip("GET", "/nowhere", host="other.example")
    assert r.status == 404
    assert r.header("connection") is None
    r = c.roundtrip("GET", "/public/after-404", host="other.example")
    assert r.status == 200
    assert [q.target for q in origin.requests] == ["/public/after-404"]


def test_return_route_answers_with_its_body(local_proxy, origin, http_conn):
    c = http_conn(local_proxy.port)
    r = c.roundtrip("GET", "/admin/panel")
    assert r.status == 403
    assert r.reason == "Forbidden"
    assert r.body == b"forbidden\n"
    assert r.header("content-length") == "10"
    assert (
        r.header(
            "content-type",
        )
        == "text/plain; charset=utf-8"
    )
    r = c.roundtrip("HEAD", "/admin")
    assert (r.status, r.body, r.header("content-length")) == (403, b"", "10")
    time.sleep(0.3)
    assert origin.requests == [] and origin.connections == 0


def test_return_route_with_a_request_body_closes(local_proxy, origin, http_conn):
    # The unread body would otherwise be parsed as the next request.
    c = http_conn(local_proxy.port)
    c.request("POST", "/admin", body=b"GET /public/smuggled HTTP/1.1\r\nHost: h\r\n\r\n")
    r = c.read_response()
    assert r.status == 403
    assert c.at_eof()
    time.sleep(0.3)
    assert origin.requests == []


@pytest.mark.parametrize("status", [204, 304])
def test_return_without_content_keeps_the_connection_in_sync(status, make_proxy, http_conn):
    # 204 and 304 responses end at the blank line whatever their fields say
    # (RFC 9112 6.3 rule 1), and a 204 MUST NOT carry Content-Length (RFC 9110
    # 8.6).  A `body` on such a route must be refused when loading the config or
    # not be sent; sending it desynchronises every later response on the
    # connection.
    routes = [
        {"path_prefix": "/nc", "return": status, "body": "xyz"},
        {"path_prefix": "/", "upstream": "app"},
    ]
    try:
        Config.from_dict({"upstreams": {"app": {"servers": "127.0.0.1:9"}}, "routes": routes})
    except ConfigError:
        return  # refused at load time: fine
    proxy = make_proxy({"routes": routes})
    c = http_conn(proxy.port)
    c.send(b"GET /nc HTTP/1.1\r\nHost: h\r\n\r\nGET /next HTTP/1.1\r\nHost: h\r\n\r\n")
    r = c.read_response()
    assert r.status == status
    if status == 204:
        assert r.header("content-length") is None, r
    nxt = c.read_response()
    assert (nxt.status, nxt.body) == (200, b"GET /next")


def test_redirect_308_keeps_the_query(local_proxy, origin, http_conn):
    c = http_conn(local_proxy.port)
    r = c.roundtrip("GET", "/old/page?a=1&b=%20x")
    assert r.status == 308
    assert r.reason == "Permanent Redirect"
    assert r.header("location") == "https://example.com/new?a=1&b=%20x"
    r = c.roundtrip("GET", "/old")
    assert r.header("location") == "https://example.com/new"
    time.sleep(0.3)
    assert origin.requests == []


def test_redirect_default_302_without_query(local_proxy, http_conn):
    c = http_conn(local_proxy.port)
    r = c.roundtrip("GET", "/drop-q/x?secret=1")
    assert r.status == 302
    assert r.header("location") == "/landing"


def test_redirect_target_with_its_own_query_joins_with_ampersand(local_proxy, http_conn):
    # `to` already has a query: appending "?a=2" would make the client see the
    # single parameter x="1?a=2" (RFC 3986 3.4: '?' is data inside a query).
    c = http_conn(local_proxy.port)
    r = c.roundtrip("GET", "/with-q?a=2")
    assert r.status == 302
    assert r.header("location") == "https://example.com/n?x=1&a=2"


def test_normalised_path_meets_the_local_route(local_proxy, origin, http_conn):
    c = http_conn(local_proxy.port)
    for target in ("/%61dmin", "/public/../admin", "//admin/x", "/./admin", "/public/%2e%2e/admin",
                   "/%2561dmin/../admin"):  # fmt: skip
        r = c.roundtrip("GET", target)
        assert r.status == 403, target
        assert r.body == b"forbidden\n"
    time.sleep(0.3)
    assert origin.requests == [] and origin.connections == 0


def test_proxied_route_receives_the_original_target_bytes(local_proxy, origin, http_conn):
    # Routing uses the normalised path; the origin gets the client's exact bytes
    # (RFC 9110 7.7: a proxy must not rewrite the target's path).
    c = http_conn(local_proxy.port)
    targets = ["/public/../public/x", "/public//a/./b/%7e%2F?q=%41&r=..", "/public/%70ath"]
    for t in targets:
        assert c.roundtrip("GET", t).status == 200
    assert [q.target for q in origin.wait_requests(3)] == targets


def test_absolute_form_target_uses_its_authority_as_host(local_proxy, origin, http_conn):
    c = http_conn(local_proxy.port)
    c.send(b"GET http://h.example/only-on-h?z=1 HTTP/1.1\r\nHost: other.example\r\n\r\n")
    r = c.read_response()
    assert r.status == 200
    [req] = origin.wait_requests(1)
    assert req.target == "/only-on-h?z=1"
    assert req.header_all("host") == ["h.example"]
    # without the absolute form the same path on other.example has no route
    assert c.roundtrip("GET", "/only-on-h", host="other.example").status == 404


def test_absolute_form_authority_with_port_and_case(local_proxy, origin, http_conn):
    c = http_conn(local_proxy.port)
    c.send(b"GET HTTP://H.Example:8080 HTTP/1.1\r\nHost: x\r\n\r\n")
    r = c.read_response()
    assert r.status == 200
    [req] = origin.wait_requests(1)
    assert req.target == "/"
    assert req.header("host") == "H.Example:8080"


def test_absolute_form_with_empty_path_and_a_query(local_proxy, origin, http_conn):
    # "http://h.example?z=1" is a valid absolute-URI (RFC 3986 3: path-abempty
    # may be empty); its origin-form is "/?z=1" (RFC 9112 3.2.1: an empty path
    # is sent as "/").
    c = http_conn(local_proxy.port)
    c.send(b"GET http://h.example?z=1 HTTP/1.1\r\nHost: h.example\r\n\r\n")
    r = c.read_response()
    assert r.status == 200
    [req] = origin.wait_requests(1)
    assert req.target == "/?z=1"


@pytest.mark.parametrize("authority", [b'a"b', b"a{b}", b"a\\b", b"a<b>"])
def test_absolute_form_with_an_invalid_authority_is_400(authority, make_proxy, origin, raw_request):
    # RFC 9112 3.2.2: the target's authority replaces Host, so it must be a
    # valid uri-host[:port] (RFC 3986 3.2.2) like a Host field value must be
    # (RFC 9112 3.2: 400 for an invalid Host).  Otherwise the origin receives
    # a Host the proxy would have refused in a Host header.
    proxy = make_proxy()
    raw = raw_request(
        proxy.port,
        b"GET http://" + authority + b"/x HTTP/1.1\r\nHost: ok.example\r\n\r\n",
        read_until_close=False,
    )
    assert parse(raw)[0] == 400, raw
    settle_and_check_origin_untouched(origin)


def test_pipelined_requests_across_local_answers(local_proxy, origin, http_conn):
    c = http_conn(local_proxy.port)
    c.send(
        b"GET /admin HTTP/1.1\r\nHost: a\r\n\r\n"
        b"GET /public/one HTTP/1.1\r\nHost: a\r\n\r\n"
        b"GET /nowhere HTTP/1.1\r\nHost: a\r\n\r\n"
        b"GET /old?q HTTP/1.1\r\nHost: a\r\n\r\n"
        b"GET /public/two HTTP/1.1\r\nHost: a\r\n\r\n"
    )
    got = [c.read_response() for _ in range(5)]
    assert [r.status for r in got] == [403, 200, 404, 308, 200]
    assert got[1].body == b"GET /public/one"
    assert got[4].body == b"GET /public/two"


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
    assert parse(raw)[0] == 200
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
