"""End-to-end error behaviour of a real proxy process (fixtures: tests/integration/conftest.py).

For every refused request the tests check three things: the status the client gets, that
the proxy closes the connection when the framing of what follows can no longer be trusted,
and that nothing reached the origin (no TCP connection was even opened to it: the proxy
refuses before it picks a server).  After each error the same process must still serve a
normal request.

Also covered: limits (414, 431, 413, 501, 505, 405), upstream failures (refused, read
timeout, connect timeout) and the client header timeout.  Local answers are in
test_local_answers.py, header handling end to end in test_proxy_headers.py.
"""

from __future__ import annotations

import contextlib
import errno
import socket
import time
from collections.abc import Iterator

import pytest
from support import check_origin_untouched, expect_refusal, free_port, one_response

# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------


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
    check_origin_untouched(proxy, origin)
    assert_still_serving(proxy, http_conn, origin)


def test_smuggled_request_after_cl_te_is_never_answered(origin, proxy, http_conn):
    # The prefix `GET /smuggled` must not be parsed as a second request on any side.
    c = http_conn(proxy.port)
    c.send(MALFORMED["cl-and-te"])
    r = c.read_response()
    assert r.status == 400
    assert c.at_eof(), "the proxy kept the connection open after a 400"
    check_origin_untouched(proxy, origin)


def test_malformed_request_after_a_good_one_on_the_same_connection(origin, proxy, http_conn):
    c = http_conn(proxy.port)
    assert c.roundtrip("GET", "/first").status == 200
    c.send(b"GET /x HTTP/1.1\r\nHost: h\r\nX-A : 1\r\n\r\n")
    r = c.read_response()
    assert r.status == 400
    assert r.header("connection") == "close"
    assert c.at_eof()
    # (a wrongly forwarded request on another connection: see origin_barrier)
    assert_still_serving(proxy, http_conn, origin)
    assert [q.target for q in origin.requests] == ["/first", "/after-error"]


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
    status, headers, body = one_response(raw)
    assert status == 400
    assert body == b""


# ---------------------------------------------------------------------------------------------
# limits and unsupported features
# ---------------------------------------------------------------------------------------------


def test_request_line_over_max_request_line_is_414(make_proxy, origin, raw_request, http_conn):
    proxy = make_proxy({"server": {"max_request_line": "1KiB"}})
    ok = raw_request(proxy.port, b"GET /" + b"a" * 900 + b" HTTP/1.1\r\nHost: h\r\n\r\n",
                     read_until_close=False)  # fmt: skip
    assert one_response(ok)[0] == 200
    origin.reset()
    raw = raw_request(proxy.port, b"GET /" + b"a" * 2000 + b" HTTP/1.1\r\nHost: h\r\n\r\n")
    expect_refusal(raw, 414)
    # (a wrongly forwarded request on another connection: see origin_barrier)
    assert_still_serving(proxy, http_conn, origin)
    assert [q.target for q in origin.requests] == ["/after-error"]


def test_request_line_over_limit_is_414_before_its_end_arrives(make_proxy, origin, http_conn):
    proxy = make_proxy({"server": {"max_request_line": "1KiB"}})
    c = http_conn(proxy.port)
    c.send(b"GET /" + b"a" * 4000)  # no CRLF yet: the line is already too long
    r = c.read_response(timeout=3)
    assert r.status == 414
    assert c.at_eof()
    check_origin_untouched(proxy, origin)


def test_huge_header_is_431(make_proxy, origin, raw_request, http_conn):
    proxy = make_proxy({"server": {"max_header_size": "4KiB"}})
    raw = raw_request(proxy.port, GOOD_HEAD + b"X-Big: " + b"v" * 8000 + b"\r\n\r\n")
    expect_refusal(raw, 431)
    check_origin_untouched(proxy, origin)
    assert_still_serving(proxy, http_conn, origin)


def test_huge_head_without_end_is_431(make_proxy, origin, http_conn):
    proxy = make_proxy({"server": {"max_header_size": "4KiB"}})
    c = http_conn(proxy.port)
    c.send(GOOD_HEAD + b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 60) for i in range(100)))
    r = c.read_response(timeout=3)
    assert r.status == 431
    assert c.at_eof()
    check_origin_untouched(proxy, origin)


def test_too_many_headers_is_431(make_proxy, origin, raw_request, http_conn):
    proxy = make_proxy({"server": {"max_headers": 10}})
    fields = b"".join(b"X-H%d: v\r\n" % i for i in range(9))  # + Host = 10: fine
    ok = raw_request(proxy.port, b"GET /ten HTTP/1.1\r\nHost: h\r\n" + fields + b"\r\n",
                     read_until_close=False)  # fmt: skip
    assert one_response(ok)[0] == 200
    origin.reset()
    fields = b"".join(b"X-H%d: v\r\n" % i for i in range(20))
    raw = raw_request(proxy.port, GOOD_HEAD + fields + b"\r\n")
    expect_refusal(raw, 431)
    # (a wrongly forwarded request on another connection: see origin_barrier)
    assert_still_serving(proxy, http_conn, origin)
    assert [q.target for q in origin.requests] == ["/after-error"]


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
    check_origin_untouched(proxy, origin)
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
    check_origin_untouched(proxy, origin)
    assert_still_serving(proxy, http_conn, origin)


@pytest.mark.parametrize("te", [b"gzip, chunked", b"deflate, chunked", b"x-custom, chunked"])
def test_unknown_transfer_coding_is_501(te, origin, proxy, raw_request, http_conn):
    raw = raw_request(
        proxy.port,
        b"POST /echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: " + te + b"\r\n\r\n0\r\n\r\n",
    )
    expect_refusal(raw, 501)
    check_origin_untouched(proxy, origin)
    assert_still_serving(proxy, http_conn, origin)


@pytest.mark.parametrize("version", [b"HTTP/2.0", b"HTTP/3.0", b"HTTP/0.9"])
def test_unsupported_http_version_is_505(version, origin, proxy, raw_request, http_conn):
    raw = raw_request(proxy.port, b"GET /x " + version + b"\r\nHost: h\r\n\r\n")
    expect_refusal(raw, 505)
    check_origin_untouched(proxy, origin)
    assert_still_serving(proxy, http_conn, origin)


def test_connect_is_405(origin, proxy, raw_request, http_conn):
    raw = raw_request(
        proxy.port, b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"
    )
    expect_refusal(raw, 405)
    check_origin_untouched(proxy, origin)
    assert_still_serving(proxy, http_conn, origin)


def test_405_names_the_allowed_methods(origin, proxy, raw_request):
    # RFC 9110 15.5.6: "The origin server MUST generate an Allow header field in
    # a 405 response containing a list of the target resource's currently
    # supported methods."  The proxy is the server the client talks to.
    raw = raw_request(
        proxy.port, b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"
    )
    status, headers, _ = one_response(raw)
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
    check_origin_untouched(proxy, origin)
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
    check_origin_untouched(proxy, origin)


def test_idle_connection_without_bytes_is_closed_quietly(make_proxy, http_conn):
    proxy = make_proxy({"server": {"client_header_timeout": "1s"}})
    c = http_conn(proxy.port, timeout=10)
    t0 = time.monotonic()
    assert c.at_eof(timeout=4)
    assert time.monotonic() - t0 < 3
