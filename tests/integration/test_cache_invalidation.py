"""Invalidation by unsafe methods through a real proxy and origin (RFC 9111
section 4.4): a non-error answer to PUT, PATCH, DELETE or POST removes the
stored responses of the target URI and of the URIs its Location /
Content-Location name on the same origin (RFC 9110 section 4.3.1: scheme,
host, port); an error answer (RFC 9110 section 15.5, 15.6) removes nothing.
Every case first shows the entry is a HIT, so a MISS afterwards is the
invalidation's doing.  test_cache_http.py::test_unsafe_method_invalidates
already covers a 200 POST with a relative Content-Location and a 500 DELETE."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

CC = "hdr=Cache-Control:"
HOST = "test.local"  # the Host HTTPConn sends by default


def _cfg(**route: Any) -> dict[str, Any]:
    return {
        "cache": {"size": "4MiB", "max_entry_size": "1MiB"},
        "routes": [{"path_prefix": "/", "upstream": "app", "cache": True, **route}],
    }


@pytest.fixture
def cproxy(make_proxy: Callable[..., Any]) -> Any:
    return make_proxy(_cfg())


def _xc(conn: Any, target: str, host: str = HOST) -> str | None:
    """X-Cache of a GET for target (with the given Host)."""
    return conn.roundtrip("GET", target, host=host).header("X-Cache")


def _stored(conn: Any, target: str, host: str = HOST) -> None:
    """Store target's response and show that it is served from the cache."""
    assert _xc(conn, target, host) == "MISS"
    assert _xc(conn, target, host) == "HIT"


def _unsafe(
    conn: Any,
    origin: Any,
    method: str,
    target: str,
    status: int,
    headers: list[tuple[str, str]] | None = None,
) -> Any:
    """method on target, the origin answering `status` plus `headers`."""
    origin.cache_status = status
    origin.extra_headers = headers or []
    try:
        body = None if method == "DELETE" else b"data"
        return conn.roundtrip(method, target, body=body)
    finally:
        origin.cache_status = 0
        origin.extra_headers = []


@pytest.mark.parametrize("status", [200, 201, 303])
@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE"])
def test_successful_unsafe_method_invalidates_target(
    cproxy: Any, origin: Any, http_conn: Any, method: str, status: int
) -> None:
    # 4.4: "A cache MUST invalidate the target URI ... when it receives a
    # non-error status code in response to an unsafe request method"
    c = http_conn(cproxy.port)
    t = f"/cache/u?{CC}max-age=60"
    bystander = f"/cache/u-other?{CC}max-age=60"
    _stored(c, t)
    _stored(c, bystander)
    r = _unsafe(c, origin, method, t, status)
    assert r.status == status and r.header("X-Cache") == "BYPASS"
    assert origin.requests[-1].method == method
    r = c.roundtrip("GET", t)
    assert r.header("X-Cache") == "MISS" and r.body == b"/cache/u #3\n"
    assert origin.cache_hits["/cache/u"] == 3  # GET, the unsafe request, GET
    assert _xc(c, t) == "HIT"  # stored again
    assert _xc(c, bystander) == "HIT"  # only the target URI went


def test_every_stored_response_of_the_uri_goes(
    make_proxy: Callable[..., Any], origin: Any, http_conn: Any
) -> None:
    # 4.4 invalidates the URI: every response stored for it, i.e. every Vary
    # variant (4.1) and every cache_key.headers variant of the key
    p = make_proxy(_cfg(cache_key={"headers": ["X-Tenant"]}))
    c = http_conn(p.port)
    t = f"/cache/var?{CC}max-age=60&hdr=Vary:Accept-Language"
    variants = [
        [("Accept-Language", "en")],
        [("Accept-Language", "fr")],
        [("Accept-Language", "en"), ("X-Tenant", "a")],
        [("X-Tenant", "b")],
    ]
    for h in variants:
        assert c.roundtrip("GET", t, headers=h).header("X-Cache") == "MISS"
    for h in variants:
        assert c.roundtrip("GET", t, headers=h).header("X-Cache") == "HIT"
    assert _unsafe(c, origin, "DELETE", t, 200).status == 200
    for h in variants:
        assert c.roundtrip("GET", t, headers=h).header("X-Cache") == "MISS", h
    assert origin.cache_hits["/cache/var"] == 9


@pytest.mark.parametrize(
    "field, value",
    [
        ("Location", "/cache/loc?{cc}max-age=60"),
        ("Location", "http://test.local/cache/loc?{cc}max-age=60"),
        ("Location", "http://TEST.Local/cache/loc?{cc}max-age=60"),  # host: no case
        ("Content-Location", "http://test.local/cache/loc?{cc}max-age=60"),
        ("Location", "//test.local/cache/loc?{cc}max-age=60"),  # scheme-relative
        ("Content-Location", "/cache/loc?{cc}max-age=60#part"),  # no fragment in keys
    ],
)
def test_location_on_same_host_invalidates(
    cproxy: Any, origin: Any, http_conn: Any, field: str, value: str
) -> None:
    # 4.4: the URIs in Location and Content-Location are invalidated too
    c = http_conn(cproxy.port)
    loc = f"/cache/loc?{CC}max-age=60"
    _stored(c, loc)
    r = _unsafe(c, origin, "POST", "/cache/create", 201, [(field, value.format(cc=CC))])
    assert r.status == 201 and r.header(field) == value.format(cc=CC)
    assert _xc(c, loc) == "MISS"
    assert origin.cache_hits["/cache/loc"] == 2


@pytest.mark.parametrize(
    "other_origin",
    [
        "http://other.example",  # another host
        "http://test.local.example",  # a host this one is a prefix of
        "http://test.local:8080",  # another port
        "https://test.local",  # another scheme
        "//other.example",  # scheme-relative, another host
    ],
)
def test_location_on_other_origin_does_not_invalidate(
    cproxy: Any, origin: Any, http_conn: Any, other_origin: str
) -> None:
    # 4.4: "a cache MUST NOT trigger an invalidation under these conditions
    # if the origin ... of the URI to be invalidated differs from that of
    # the target URI".  The foreign URL names the same path as an entry of
    # this host, so a check that looked at the path alone would remove it.
    c = http_conn(cproxy.port)
    path = f"/cache/loc?{CC}max-age=60"
    _stored(c, path)
    _stored(c, path, host="other.example")  # the other host's own entry
    for field in ("Location", "Content-Location"):
        r = _unsafe(c, origin, "POST", "/cache/create", 201, [(field, other_origin + path)])
        assert r.status == 201 and r.header(field) == other_origin + path
    assert _xc(c, path) == "HIT"
    assert _xc(c, path, host="other.example") == "HIT"
    # control: the same answer naming this origin does invalidate
    _unsafe(c, origin, "POST", "/cache/create", 201, [("Location", f"http://{HOST}{path}")])
    assert _xc(c, path) == "MISS"
    assert _xc(c, path, host="other.example") == "HIT"


@pytest.mark.parametrize("method, status", [("POST", 404), ("PUT", 400)])
def test_error_answer_does_not_invalidate(
    cproxy: Any, origin: Any, http_conn: Any, method: str, status: int
) -> None:
    # 4.4 invalidates on a non-error status only; a 4xx (here with a
    # Location that would otherwise count too) leaves everything stored
    c = http_conn(cproxy.port)
    t = f"/cache/err?{CC}max-age=60"
    loc = f"/cache/err-loc?{CC}max-age=60"
    _stored(c, t)
    _stored(c, loc)
    r = _unsafe(c, origin, method, t, status, [("Location", loc)])
    assert r.status == status
    assert origin.cache_hits["/cache/err"] == 2  # the origin did answer it
    assert _xc(c, t) == "HIT" and _xc(c, loc) == "HIT"
    # control: the same request answered 200 invalidates both
    assert _unsafe(c, origin, method, t, 200, [("Location", loc)]).status == 200
    assert _xc(c, t) == "MISS" and _xc(c, loc) == "MISS"


def test_unknown_method_invalidates(cproxy: Any, origin: Any, http_conn: Any) -> None:
    # 4.4: "an unsafe request method (including methods whose safety is unknown)"
    c = http_conn(cproxy.port)
    t = f"/cache/unk?{CC}max-age=60"
    _stored(c, t)
    r = _unsafe(c, origin, "FROB", t, 200)
    assert r.status == 200 and origin.requests[-1].method == "FROB"
    assert _xc(c, t) == "MISS"


def test_location_with_query_on_route_keyed_without_query(
    make_proxy: Callable[..., Any], origin: Any, http_conn: Any
) -> None:
    # with cache_key.query = false, /cache/q?x is served the entry of /cache/q,
    # so a Location naming /cache/q?x must remove that entry, as an unsafe
    # request to /cache/q?x itself does (the control below)
    p = make_proxy(_cfg(cache_key={"query": False}))
    c = http_conn(p.port)
    t = f"/cache/q?{CC}max-age=60"
    _stored(c, t)
    assert _xc(c, "/cache/q?other=1") == "HIT"  # the query is not in the key
    # control: an unsafe request to /cache/q?id=7 removes the entry of /cache/q
    assert _unsafe(c, origin, "PUT", "/cache/q?id=7", 200).status == 200
    _stored(c, t)
    r = _unsafe(c, origin, "POST", "/cache/new", 201, [("Location", "/cache/q?id=7")])
    assert r.status == 201
    assert _xc(c, t) == "MISS"


def test_location_without_a_path_is_the_root(cproxy: Any, origin: Any, http_conn: Any) -> None:
    # http://host?q names /?q (RFC 9110 4.2.3: an empty path is "/")
    c = http_conn(cproxy.port)
    root = f"/?{CC}max-age=60"
    _stored(c, root)
    r = _unsafe(c, origin, "POST", "/cache/new", 201, [("Location", f"http://{HOST}{root[1:]}")])
    assert r.status == 201
    assert _xc(c, root) == "MISS"


def test_location_on_a_route_keyed_without_query(
    make_proxy: Callable[..., Any], origin: Any, http_conn: Any
) -> None:
    # The unsafe request's own route keeps the query; the Location names a
    # path whose route drops it: the entry stored there (without the query)
    # must go, whichever route the unsafe request came through.
    p = make_proxy(
        {
            "cache": {"size": "4MiB", "max_entry_size": "1MiB"},
            "routes": [
                {
                    "path_prefix": "/cache/static/",
                    "upstream": "app",
                    "cache": True,
                    "cache_key": {"query": False},
                },
                {"path_prefix": "/", "upstream": "app", "cache": True},
            ],
        }
    )
    c = http_conn(p.port)
    t = f"/cache/static/app.js?{CC}max-age=60"
    _stored(c, t)
    assert _xc(c, "/cache/static/app.js?v=2") == "HIT"  # keyed without the query
    r = _unsafe(c, origin, "POST", "/cache/upload", 201, [("Location", "/cache/static/app.js?v=3")])
    assert r.status == 201
    assert _xc(c, t) == "MISS"
