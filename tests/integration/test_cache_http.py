"""The cache's request path against a real origin (RFC 9111, shared cache):
storing, fresh hits with Age, X-Cache, HEAD from a stored GET, Vary, the
cache key options, purge of real entries, cross-worker hits.  Section
numbers are RFC 9111's unless said otherwise."""

from __future__ import annotations

import json
import socket
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

import pytest
from support import admin_call, free_port

CC = "hdr=Cache-Control:"


def _cfg(origin: Any, route: dict[str, Any] | None = None, **cache: Any) -> dict[str, Any]:
    r = {"path_prefix": "/", "upstream": "app", "cache": True}
    r.update(route or {})
    return {"cache": {"size": "4MiB", "max_entry_size": "1MiB", **cache}, "routes": [r]}


@pytest.fixture
def cproxy(make_proxy: Callable[..., Any], origin: Any) -> Any:
    return make_proxy(_cfg(origin))


def get(conn: Any, target: str, method: str = "GET", **kw: Any) -> Any:
    return conn.roundtrip(method, target, **kw)


def test_fresh_hit_with_age_and_x_cache(cproxy: Any, origin: Any, http_conn: Any) -> None:
    c = http_conn(cproxy.port)
    t = f"/cache/a?{CC}max-age=60"
    r1 = get(c, t)
    assert r1.status == 200 and r1.header("X-Cache") == "MISS"
    r2 = get(c, t)
    assert r2.status == 200 and r2.header("X-Cache") == "HIT"
    assert r2.body == r1.body == b"/cache/a #1\n"
    assert origin.cache_hits["/cache/a"] == 1
    # 4.2.3 / 5.1: Age sent on a hit, a non-negative integer
    assert r2.header("Age") is not None and int(r2.header("Age")) >= 0
    assert r2.header("Content-Length") == str(len(r2.body))
    assert r2.header("Cache-Control") == "max-age=60"


def test_age_grows_and_entry_expires(cproxy: Any, origin: Any, http_conn: Any) -> None:
    c = http_conn(cproxy.port)
    t = f"/cache/exp?{CC}max-age=1"
    assert get(c, t).header("X-Cache") == "MISS"
    assert get(c, t).header("X-Cache") == "HIT"
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # 4.2: stale once age >= max-age
        r = get(c, t)
        if r.header("X-Cache") != "HIT":
            break
        time.sleep(0.1)
    assert r.header("X-Cache") == "MISS" and r.body == b"/cache/exp #2\n"


def test_received_age_counts(cproxy: Any, origin: Any, http_conn: Any) -> None:
    # 4.2.3: the Age the origin sent is part of the current age
    c = http_conn(cproxy.port)
    t = f"/cache/agev?{CC}max-age=100&hdr=Age:95"
    get(c, t)
    r = get(c, t)
    assert r.header("X-Cache") == "HIT" and int(r.header("Age")) >= 95


def test_head_served_from_stored_get(cproxy: Any, origin: Any, http_conn: Any) -> None:
    c = http_conn(cproxy.port)
    t = f"/cache/h?{CC}max-age=60&n=100"
    get(c, t)
    r = c.roundtrip("HEAD", t)
    assert r.status == 200 and r.body == b"" and r.header("X-Cache") == "HIT"
    assert r.header("Content-Length") == "100"
    assert origin.cache_hits["/cache/h"] == 1
    # a HEAD miss is forwarded and not stored
    r = c.roundtrip("HEAD", f"/cache/h2?{CC}max-age=60")
    assert r.header("X-Cache") == "MISS"
    assert get(c, f"/cache/h2?{CC}max-age=60").header("X-Cache") == "MISS"


@pytest.mark.parametrize(
    "headers, req_headers",
    [
        (["Cache-Control:no-store"], []),  # 5.2.2.5
        (["Cache-Control:private, max-age=60"], []),  # 5.2.2.7
        (["Cache-Control:max-age=60", "Set-Cookie:a=1"], []),  # store_set_cookie = false
        (["Cache-Control:max-age=60"], [("Authorization", "Basic eDp5")]),  # 3.5
        (["Cache-Control:max-age=60"], [("Cache-Control", "no-store")]),  # 5.2.1.5
        (["Cache-Control:max-age=60", "Vary:*"], []),  # 4.1
    ],
)
def test_not_stored(
    cproxy: Any, origin: Any, http_conn: Any, headers: list[str], req_headers: list[Any]
) -> None:
    c = http_conn(cproxy.port)
    t = "/cache/ns?" + "&".join("hdr=" + urllib.parse.quote(h) for h in headers)
    get(c, t, headers=req_headers)
    r = get(c, t, headers=req_headers)
    assert r.header("X-Cache") == "MISS" and origin.cache_hits["/cache/ns"] == 2


def test_authorization_with_public_or_s_maxage_is_stored(cproxy: Any, http_conn: Any) -> None:
    c = http_conn(cproxy.port)
    auth = [("Authorization", "Basic eDp5")]
    for cc in ("public, max-age=60", "s-maxage=60"):
        t = f"/cache/auth-{cc[0]}?{CC}" + urllib.parse.quote(cc)
        get(c, t, headers=auth)
        assert get(c, t, headers=auth).header("X-Cache") == "HIT"


def test_expires_and_heuristic(cproxy: Any, origin: Any, http_conn: Any) -> None:
    c = http_conn(cproxy.port)
    later = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 60))
    t = "/cache/expires?hdr=" + urllib.parse.quote("Expires:" + later)
    get(c, t)
    assert get(c, t).header("X-Cache") == "HIT"
    # 5.3: an invalid Expires means already expired
    t = "/cache/badexp?hdr=Expires:soon"
    get(c, t)
    assert get(c, t).header("X-Cache") == "MISS"
    # 4.2.2: heuristic freshness from Last-Modified for a 200
    old = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() - 86400))
    t = "/cache/lm?hdr=" + urllib.parse.quote("Last-Modified:" + old)
    get(c, t)
    assert get(c, t).header("X-Cache") == "HIT"
    # ... but not for a status that is not heuristically cacheable
    t = "/cache/lm2?status=201&hdr=" + urllib.parse.quote("Last-Modified:" + old)
    get(c, t)
    assert get(c, t).header("X-Cache") == "MISS"


def test_request_directives(cproxy: Any, origin: Any, http_conn: Any) -> None:
    c = http_conn(cproxy.port)
    t = f"/cache/rd?{CC}max-age=60&hdr=Age:30"
    get(c, t)
    # 5.2.1.1 max-age: too old for this client
    r = get(c, t, headers=[("Cache-Control", "max-age=10")])
    assert r.header("X-Cache") == "MISS"
    # 5.2.1.3 min-fresh: fewer seconds of freshness left than asked
    assert get(c, t, headers=[("Cache-Control", "min-fresh=50")]).header("X-Cache") == "MISS"
    assert get(c, t, headers=[("Cache-Control", "min-fresh=5")]).header("X-Cache") == "HIT"
    # 5.2.1.4 no-cache and 5.4 Pragma: no-cache go to the origin
    assert get(c, t, headers=[("Cache-Control", "no-cache")]).header("X-Cache") == "MISS"
    assert get(c, t, headers=[("Pragma", "no-cache")]).header("X-Cache") == "MISS"
    # Pragma is ignored when Cache-Control is present (5.4)
    r = get(c, t, headers=[("Pragma", "no-cache"), ("Cache-Control", "max-stale=1")])
    assert r.header("X-Cache") == "HIT"


def test_max_stale_and_only_if_cached(cproxy: Any, origin: Any, http_conn: Any) -> None:
    c = http_conn(cproxy.port)
    t = f"/cache/st?{CC}max-age=1&hdr=Age:5"  # stored already stale
    get(c, t)
    # 5.2.1.2: max-stale accepts it
    r = get(c, t, headers=[("Cache-Control", "max-stale=100")])
    assert r.header("X-Cache") == "STALE" and r.body == b"/cache/st #1\n"
    r = get(c, t, headers=[("Cache-Control", "max-stale")])
    assert r.header("X-Cache") == "STALE"
    # 5.2.1.7: only-if-cached with nothing usable: 504
    r = get(c, "/cache/none?x", headers=[("Cache-Control", "only-if-cached")])
    assert r.status == 504 and "/cache/none" not in origin.cache_hits
    t2 = f"/cache/oic?{CC}max-age=60"
    get(c, t2)
    assert get(c, t2, headers=[("Cache-Control", "only-if-cached")]).status == 200
    # 4.2.4: must-revalidate forbids serving stale even with max-stale
    t3 = f"/cache/mr?{CC}max-age=1,must-revalidate&hdr=Age:5"
    get(c, t3)
    assert get(c, t3, headers=[("Cache-Control", "max-stale")]).header("X-Cache") == "MISS"


def test_conditional_request_answered_304(cproxy: Any, origin: Any, http_conn: Any) -> None:
    c = http_conn(cproxy.port)
    t = f"/cache/cond?{CC}max-age=60&etag=v1"
    r = get(c, t)
    assert r.header("ETag") == '"v1"'
    r = get(c, t, headers=[("If-None-Match", '"v0", "v1"')])
    assert r.status == 304 and r.body == b"" and r.header("X-Cache") == "HIT"
    assert r.header("ETag") == '"v1"' and r.header("Cache-Control") == "max-age=60"
    r = get(c, t, headers=[("If-None-Match", '"other"')])
    assert r.status == 200 and r.header("X-Cache") == "HIT"
    assert origin.cache_hits["/cache/cond"] == 1
    # If-Modified-Since against Last-Modified
    lm = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() - 3600))
    t = f"/cache/ims?{CC}max-age=60&hdr=" + urllib.parse.quote("Last-Modified:" + lm)
    get(c, t)
    now = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime())
    assert get(c, t, headers=[("If-Modified-Since", now)]).status == 304
    older = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() - 7200))
    assert get(c, t, headers=[("If-Modified-Since", older)]).status == 200


def test_vary_variants(cproxy: Any, origin: Any, http_conn: Any) -> None:
    c = http_conn(cproxy.port)
    t = f"/cache/vary?{CC}max-age=60&hdr=Vary:Accept-Language&echo=Accept-Language"
    en = [("Accept-Language", "en")]
    fr = [("Accept-Language", "fr")]
    assert get(c, t, headers=en).body == b"/cache/vary #1 Accept-Language=en\n"
    assert get(c, t, headers=fr).body == b"/cache/vary #2 Accept-Language=fr\n"
    r = get(c, t, headers=en)
    assert r.header("X-Cache") == "HIT" and r.body.endswith(b"=en\n")
    r = get(c, t, headers=fr)
    assert r.header("X-Cache") == "HIT" and r.body.endswith(b"=fr\n")
    # absent differs from every value (4.1)
    r = get(c, t)
    assert r.header("X-Cache") == "MISS" and r.body.endswith(b"=None\n")
    assert get(c, t).header("X-Cache") == "HIT"
    assert origin.cache_hits["/cache/vary"] == 3


def test_cache_key_query_and_headers(make_proxy: Any, origin: Any, http_conn: Any) -> None:
    p = make_proxy(_cfg(origin, {"cache_key": {"query": False, "headers": ["X-Tenant"]}}))
    c = http_conn(p.port)
    cc = "Cache-Control:max-age=60"
    get(c, f"/cache/k?hdr={cc}", headers=[("X-Tenant", "a")])
    r = get(c, f"/cache/k?hdr={cc}&other=1", headers=[("X-Tenant", "a")])
    assert r.header("X-Cache") == "HIT"  # the query is not in the key
    r = get(c, f"/cache/k?hdr={cc}", headers=[("X-Tenant", "b")])
    assert r.header("X-Cache") == "MISS"  # the header value is


def test_x_cache_header_off_and_bypass(make_proxy: Any, origin: Any, http_conn: Any) -> None:
    p = make_proxy(_cfg(origin, x_cache_header=False))
    c = http_conn(p.port)
    t = f"/cache/off?{CC}max-age=60"
    get(c, t)
    r = get(c, t)
    assert r.header("X-Cache") is None and int(r.header("Age")) >= 0
    assert origin.cache_hits["/cache/off"] == 1


def test_bypass_for_other_methods(cproxy: Any, origin: Any, http_conn: Any) -> None:
    c = http_conn(cproxy.port)
    r = get(c, f"/cache/b?{CC}max-age=60", method="OPTIONS")
    assert r.header("X-Cache") == "BYPASS"


def test_unsafe_method_invalidates(cproxy: Any, origin: Any, http_conn: Any) -> None:
    # 4.4: a non-error response to POST/PUT/DELETE/PATCH invalidates the URI
    c = http_conn(cproxy.port)
    t = f"/cache/inv?{CC}max-age=60"
    other = f"/cache/loc?{CC}max-age=60"
    get(c, t)
    get(c, other)
    assert get(c, t).header("X-Cache") == "HIT"
    origin.extra_headers = [("Content-Location", other)]
    r = c.roundtrip("POST", t, body=b"x")
    origin.extra_headers = []
    assert r.status == 200
    assert get(c, t).header("X-Cache") == "MISS"
    assert get(c, other).header("X-Cache") == "MISS"
    # an error response does not invalidate
    # an error response does not invalidate (a 500 stored with explicit freshness)
    t5 = f"/status/500?{CC}max-age=60"
    get(c, t5)
    assert get(c, t5).header("X-Cache") == "HIT"
    assert c.roundtrip("DELETE", t5).status == 500
    assert get(c, t5).header("X-Cache") == "HIT"


def test_keepalive_and_pipelining_across_hits_and_misses(
    cproxy: Any, origin: Any, raw_request: Any
) -> None:
    t = f"/cache/pipe?{CC}max-age=60"
    reqs = b"".join(
        f"GET {x} HTTP/1.1\r\nHost: p\r\n\r\n".encode()
        for x in (t, t, "/plain", t, f"/cache/pipe2?{CC}max-age=60")
    )
    reqs += b"GET /last HTTP/1.1\r\nHost: p\r\nConnection: close\r\n\r\n"
    data = raw_request(cproxy.port, reqs)
    assert data.count(b"HTTP/1.1 200") == 6
    assert data.count(b"X-Cache: HIT") == 2 and data.count(b"X-Cache: MISS") == 4
    assert data.index(b"GET /plain") < data.index(b"GET /last")


def test_http10_client_gets_hit(cproxy: Any, raw_request: Any) -> None:
    t = f"/cache/h10?{CC}max-age=60"
    raw_request(cproxy.port, f"GET {t} HTTP/1.0\r\nHost: p\r\n\r\n".encode())
    data = raw_request(cproxy.port, f"GET {t} HTTP/1.0\r\nHost: p\r\n\r\n".encode())
    assert b"X-Cache: HIT" in data and b"Connection: close" in data
    assert data.endswith(b"/cache/h10 #1\n")


def test_chunked_origin_stored_dechunked(cproxy: Any, origin: Any, http_conn: Any) -> None:
    c = http_conn(cproxy.port)
    t = f"/chunked?n=5000&parts=7&{CC}max-age=60"
    r1 = get(c, t)
    assert r1.framing == "chunked"
    r2 = get(c, t)
    assert r2.header("X-Cache") == "HIT" and r2.framing == "length"
    assert r2.body == r1.body and r2.header("Transfer-Encoding") is None


def test_too_big_not_stored(make_proxy: Any, origin: Any, http_conn: Any) -> None:
    p = make_proxy(_cfg(origin, max_entry_size="64KiB"))
    c = http_conn(p.port)
    t = f"/cache/big?{CC}max-age=60&n=100000"
    assert len(get(c, t).body) == 100000
    r = get(c, t)
    assert r.header("X-Cache") == "MISS" and len(r.body) == 100000


def _admin(port: int, path: str, body: bytes) -> Any:
    status, payload = admin_call(port, "POST", path, body)
    assert status == 200, payload
    return json.loads(payload)


def _with_admin(make_proxy: Callable[..., Any], origin: Any) -> tuple[Any, int]:
    """A cache proxy with the admin endpoint up: (proxy, admin port)."""
    port = free_port()
    cfg = _cfg(origin)
    cfg["admin"] = {"listen": f"127.0.0.1:{port}"}
    p = make_proxy(cfg)
    p.wait_log(r"admin endpoint on", timeout=10)
    return p, port


def test_purge_removes_real_entries(make_proxy: Any, origin: Any, http_conn: Any) -> None:
    p, port = _with_admin(make_proxy, origin)
    c = http_conn(p.port)
    for path in ("/cache/img/a", "/cache/img/b", "/cache/doc"):
        get(c, f"{path}?{CC}max-age=60", host="Example.COM")
        assert get(c, f"{path}?{CC}max-age=60", host="example.com").header("X-Cache") == "HIT"
    url = f"http://example.com/cache/doc?{CC}max-age=60"
    assert _admin(port, "/cache/purge", json.dumps({"url": url}).encode()) == {"removed": 1}
    assert get(c, f"/cache/doc?{CC}max-age=60", host="example.com").header("X-Cache") == "MISS"
    doc = {"prefix": "http://EXAMPLE.com/cache/img/"}
    assert _admin(port, "/cache/purge", json.dumps(doc).encode()) == {"removed": 2}
    assert get(c, f"/cache/img/a?{CC}max-age=60", host="example.com").header("X-Cache") == "MISS"


def test_cross_worker_hit(make_proxy: Any, origin: Any, http_conn: Any, tmp_path: Any) -> None:
    access = tmp_path / "access.log"
    cfg = _cfg(origin)
    cfg["server"] = {"workers": 2}
    cfg["log"] = {"access": str(access), "format": "json"}
    p = make_proxy(cfg)
    t = f"/cache/xw?{CC}max-age=60"
    assert http_conn(p.port).roundtrip("GET", t).header("X-Cache") == "MISS"
    # new connections are spread over both workers (SO_REUSEPORT): every one
    # is a HIT, whichever worker stored the response
    for _ in range(60):
        c = http_conn(p.port)
        r = c.roundtrip("GET", t)
        assert r.header("X-Cache") == "HIT" and r.body == b"/cache/xw #1\n"
        c.close()
    assert origin.cache_hits["/cache/xw"] == 1
    assert p.stop() == 0
    recs = [json.loads(line) for line in access.read_text().splitlines() if line]
    workers = {rec["worker"] for rec in recs if "/cache/xw" in rec["request"]}
    assert len(recs) == 61 and len(workers) == 2


def _burst(port: int, target: str, n: int) -> list[bytes]:
    """n connections send the same request at the same moment; their answers."""
    socks = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(n)]
    req = f"GET {target} HTTP/1.1\r\nHost: p\r\nConnection: close\r\n\r\n".encode()
    for s in socks:
        s.sendall(req)
    out = []
    for s in socks:
        data = b""
        while chunk := s.recv(65536):
            data += chunk
        s.close()
        out.append(data)
    return out


@pytest.mark.parametrize("workers", [1, 2])
def test_coalescing_one_origin_request(make_proxy: Any, origin: Any, workers: int) -> None:
    cfg = _cfg(origin)
    cfg["server"] = {"workers": workers}
    p = make_proxy(cfg)
    t = f"/cache/cold?{CC}max-age=60&delay=0.5"
    answers = _burst(p.port, t, 50)
    assert all(a.startswith(b"HTTP/1.1 200") for a in answers)
    bad = [a[-300:] for a in answers if not a.endswith(b"/cache/cold #1\n")]
    assert not bad, bad[:3]
    assert origin.cache_hits["/cache/cold"] == 1
    assert sum(b"X-Cache: MISS" in a for a in answers) == 1


def test_coalesced_waiters_go_upstream_when_not_storable(make_proxy: Any, origin: Any) -> None:
    p = make_proxy(_cfg(origin))
    t = "/cache/private?hdr=Cache-Control:private&delay=0.3"
    answers = _burst(p.port, t, 10)
    assert all(a.startswith(b"HTTP/1.1 200") for a in answers)
    assert origin.cache_hits["/cache/private"] == 10


def test_stale_entry_revalidated_with_etag(cproxy: Any, origin: Any, http_conn: Any) -> None:
    # 4.3.1: a stale entry is validated with If-None-Match; 4.3.4: a 304
    # refreshes the stored head and the stored body is served
    c = http_conn(cproxy.port)
    t = f"/cache/val?{CC}max-age=1&etag=e1&n=50"
    r1 = get(c, t)
    assert r1.header("X-Cache") == "MISS"
    deadline = time.monotonic() + 5
    while get(c, t).header("X-Cache") == "HIT" and time.monotonic() < deadline:
        time.sleep(0.1)
    last = origin.requests[-1]
    assert last.header("If-None-Match") == '"e1"'
    # the refreshed entry is fresh again: HIT, same body, refreshed count header
    r = get(c, t)
    assert r.header("X-Cache") == "HIT" and r.body == r1.body
    assert r.header("X-Origin-Count") == "2"  # the 304's field replaced the stored one


def test_revalidated_response_is_sent_in_full(cproxy: Any, origin: Any, http_conn: Any) -> None:
    c = http_conn(cproxy.port)
    t = f"/cache/val2?{CC}max-age=1&etag=e2"
    r1 = get(c, t)
    for _ in range(50):
        r = get(c, t)
        if r.header("X-Cache") != "HIT":
            break
        time.sleep(0.1)
    assert r.status == 200 and r.header("X-Cache") == "REVALIDATED"
    assert r.body == r1.body and r.header("Content-Length") == str(len(r1.body))
    assert c.roundtrip("HEAD", t).status == 200  # the connection is still in step


def test_stale_if_error_on_5xx(cproxy: Any, origin: Any, http_conn: Any) -> None:
    # RFC 5861 4: stale-if-error serves the stale entry on an origin 5xx
    c = http_conn(cproxy.port)
    cc = urllib.parse.quote("max-age=1, stale-if-error=60")
    t = f"/cache/sie?hdr=Cache-Control:{cc}&n=3000"
    r1 = get(c, t)
    time.sleep(1.2)
    origin.cache_status = 503
    r = get(c, t)
    assert r.status == 200 and r.header("X-Cache") == "STALE" and r.body == r1.body
    assert origin.cache_hits["/cache/sie"] == 2  # the origin was asked
    r = get(c, "/cache/sie-other")  # nothing stored: the 503 goes through
    assert r.status == 503
    # without stale-if-error the error goes through too
    origin.cache_status = 0
    t2 = f"/cache/nosie?{CC}max-age=1"
    get(c, t2)
    time.sleep(1.2)
    origin.cache_status = 500
    assert get(c, t2).status == 500


def test_stale_if_error_on_connection_failure(make_proxy: Any, origin: Any, http_conn: Any) -> None:
    cfg = _cfg(origin)
    cfg["upstreams"] = {"app": {"servers": [origin.address], "retries": 0}}
    p = make_proxy(cfg)
    c = http_conn(p.port)
    cc = urllib.parse.quote("max-age=1, stale-if-error=60")
    t = f"/cache/sie2?hdr=Cache-Control:{cc}"
    r1 = get(c, t)
    time.sleep(1.3)
    origin.stop()  # connection refused from now on
    r = get(c, t)
    assert r.status == 200 and r.header("X-Cache") == "STALE" and r.body == r1.body


def test_stale_while_revalidate_refreshes_once(cproxy: Any, origin: Any, http_conn: Any) -> None:
    # RFC 5861 3: stale within stale-while-revalidate is served (STALE) and
    # refreshed in the background, once however many requests see it stale
    c = http_conn(cproxy.port)
    cc = urllib.parse.quote("max-age=1, stale-while-revalidate=60")
    t = f"/cache/swr?hdr=Cache-Control:{cc}"
    assert get(c, t).body == b"/cache/swr #1\n"
    time.sleep(1.2)
    answers = [get(c, t) for _ in range(5)]
    assert answers[0].header("X-Cache") == "STALE"
    assert answers[0].body == b"/cache/swr #1\n"
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        r = get(c, t)
        if r.header("X-Cache") == "HIT" and r.body == b"/cache/swr #2\n":
            break
        time.sleep(0.05)
    assert r.body == b"/cache/swr #2\n" and r.header("X-Cache") == "HIT"
    assert origin.cache_hits["/cache/swr"] == 2


def test_compressed_variants_one_per_coding(make_proxy: Any, origin: Any, http_conn: Any) -> None:
    # issue 9 with the cache: each content-coding is its own variant, stored
    # once as the client got it and served without recompressing; an identity
    # client gets the identity variant
    import gzip

    cfg = _cfg(origin)
    cfg["compression"] = {"enabled": True, "algorithms": ["gzip", "br"]}
    p = make_proxy(cfg)
    c = http_conn(p.port)
    t = f"/cache/comp?{CC}max-age=60&n=4000"
    plain = get(c, t, headers=[("Accept-Encoding", "identity")])
    assert plain.header("Content-Encoding") is None and plain.header("X-Cache") == "MISS"
    gz = get(c, t, headers=[("Accept-Encoding", "gzip")])
    assert gz.header("Content-Encoding") == "gzip" and gz.header("X-Cache") == "MISS"
    assert gzip.decompress(gz.body) == plain.body.replace(b"#1", b"#2")
    # another spelling that negotiates gzip too: the same stored variant
    r = get(c, t, headers=[("Accept-Encoding", "deflate, gzip;q=0.9")])
    assert r.header("X-Cache") == "HIT" and r.body == gz.body
    assert r.header("Content-Encoding") == "gzip" and "Accept-Encoding" in r.header("Vary")
    r = get(c, t)  # no Accept-Encoding: identity
    assert r.header("X-Cache") == "HIT" and r.body == plain.body
    assert get(c, t, headers=[("Accept-Encoding", "br")]).header("X-Cache") == "MISS"
    assert get(c, t, headers=[("Accept-Encoding", "br")]).header("X-Cache") == "HIT"
    assert origin.cache_hits["/cache/comp"] == 3


def test_counters_one_per_request(make_proxy: Any, origin: Any, http_conn: Any) -> None:
    # hits: requests answered from the cache (HIT, STALE, 304); misses: requests
    # that went to the origin, whatever number of lookups each took
    p, port = _with_admin(make_proxy, origin)
    c = http_conn(p.port)
    t = f"/cache/cnt?{CC}max-age=60&hdr=Vary:Accept-Language"
    get(c, t, headers=[("Accept-Language", "en")])  # miss
    get(c, t, headers=[("Accept-Language", "en")])  # hit
    get(c, t, headers=[("Accept-Language", "fr")])  # miss (other variant)
    get(c, t, headers=[("Accept-Language", "fr")])  # hit
    c.roundtrip("OPTIONS", t)  # bypass: not counted
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"GET /status HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    doc = json.loads(data.split(b"\r\n\r\n", 1)[1])
    assert doc["cache"]["hits"] == 2 and doc["cache"]["misses"] == 2
    assert doc["cache"]["stores"] == 2


@pytest.mark.parametrize(
    "cc, second",
    [
        ("s-maxage=60, max-age=0", "HIT"),  # 5.2.2.10: s-maxage wins for a shared cache
        ("max-age=60, s-maxage=0", "MISS"),
        ("public", "MISS"),  # public alone: storable, but no freshness for a 200 (4.2.2)
        ("max-age=60, no-transform", "HIT"),
    ],
)
def test_response_freshness_directives(
    cproxy: Any, origin: Any, http_conn: Any, cc: str, second: str
) -> None:
    c = http_conn(cproxy.port)
    t = "/cache/fd?hdr=Cache-Control:" + urllib.parse.quote(cc)
    get(c, t)
    assert get(c, t).header("X-Cache") == second


def test_response_no_cache_is_validated_every_time(
    cproxy: Any, origin: Any, http_conn: Any
) -> None:
    # 5.2.2.4: no-cache may be stored but must be validated before each use
    c = http_conn(cproxy.port)
    t = "/cache/nc?hdr=Cache-Control:no-cache&etag=n1"
    r1 = get(c, t)
    r2 = get(c, t)
    assert r2.header("X-Cache") == "REVALIDATED" and r2.body == r1.body
    assert origin.requests[-1].header("If-None-Match") == '"n1"'
    assert get(c, t).header("X-Cache") == "REVALIDATED"


def test_response_cut_short_is_not_stored(cproxy: Any, origin: Any, http_conn: Any) -> None:
    # the store is committed only when the whole body arrived
    t = f"/cache/cut?{CC}max-age=60&n=20000&cut=5000"
    c = http_conn(cproxy.port)
    c.request("GET", t)
    with pytest.raises(Exception):  # noqa: B017 - the proxy cuts the connection
        c.read_response()
    c2 = http_conn(cproxy.port)
    c2.request("GET", t)
    with pytest.raises(Exception):  # noqa: B017
        c2.read_response()
    assert origin.cache_hits["/cache/cut"] == 2
