"""Answers the proxy gives itself, end to end with a real proxy process: no route (404),
`return` and `redirect` routes, path normalisation for routing versus the exact target
forwarded, and absolute-form request targets."""

from __future__ import annotations

import pytest
from support import check_origin_untouched, one_response

from fastproxy.config import Config, ConfigError

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
    check_origin_untouched(local_proxy, origin, "/public/barrier")


def test_return_route_with_a_request_body_closes(local_proxy, origin, http_conn):
    # The unread body would otherwise be parsed as the next request.
    c = http_conn(local_proxy.port)
    c.request("POST", "/admin", body=b"GET /public/smuggled HTTP/1.1\r\nHost: h\r\n\r\n")
    r = c.read_response()
    assert r.status == 403
    assert c.at_eof()
    check_origin_untouched(local_proxy, origin, "/public/barrier")


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
    check_origin_untouched(local_proxy, origin, "/public/barrier")


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
    check_origin_untouched(local_proxy, origin, "/public/barrier")


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
    assert one_response(raw)[0] == 400, raw
    check_origin_untouched(proxy, origin)


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
