"""[cache] settings seen end to end, from the config file to the request path
of a real proxy process (docs/config.md "[cache]", docs/cache.md "Request
path"): store_set_cookie (RFC 9111 section 3, 7.3 on cookies), max_entries
with LRU eviction and the /status and /metrics counters, heuristic_max
(RFC 9111 section 4.2.2), lock_timeout (request coalescing) and a GET with a
body (RFC 9110 section 9.3.1), which bypasses the cache."""

from __future__ import annotations

import json
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

import pytest
from support import admin_call, free_port, wait_for

CC = "hdr=Cache-Control:"


def _cfg(route: dict[str, Any] | None = None, **cache: Any) -> dict[str, Any]:
    r: dict[str, Any] = {"path_prefix": "/", "upstream": "app", "cache": True}
    r.update(route or {})
    return {"cache": {"size": "4MiB", "max_entry_size": "1MiB", **cache}, "routes": [r]}


def _status(port: int) -> dict[str, int]:
    status, body = admin_call(port, "GET", "/status")
    assert status == 200
    cache: dict[str, int] = json.loads(body)["cache"]
    return cache


def _metrics(port: int) -> dict[str, int]:
    status, text = admin_call(port, "GET", "/metrics")
    assert status == 200
    lines = text.decode().splitlines()
    pairs = (ln.split(" ", 1) for ln in lines if ln.startswith("fastproxy_cache"))
    return {k: int(float(v)) for k, v in pairs}


def _xc(conn: Any, target: str) -> str | None:
    return conn.roundtrip("GET", target).header("X-Cache")


def _http_date(offset: float) -> str:
    return time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + offset))


# ------------------------------------------------------------------- store_set_cookie


@pytest.mark.parametrize("store_set_cookie", [False, True])
def test_store_set_cookie(
    make_proxy: Callable[..., Any], origin: Any, http_conn: Any, store_set_cookie: bool
) -> None:
    p = make_proxy(_cfg(store_set_cookie=store_set_cookie))
    c = http_conn(p.port)
    t = f"/cache/sc?{CC}max-age=60&hdr=Set-Cookie:a=1&hdr=Set-Cookie:b=2"
    r1 = c.roundtrip("GET", t)
    assert r1.header("X-Cache") == "MISS" and r1.header_all("Set-Cookie") == ["a=1", "b=2"]
    r2 = c.roundtrip("GET", t)
    # a stored response is served with the head as sent (docs/cache.md
    # "Storing"): its cookies are replayed, which is why the default is off
    # (docs/config.md store_set_cookie)
    assert r2.header_all("Set-Cookie") == ["a=1", "b=2"]
    if store_set_cookie:
        assert r2.header("X-Cache") == "HIT" and r2.body == b"/cache/sc #1\n"
        assert origin.cache_hits["/cache/sc"] == 1
    else:
        assert r2.header("X-Cache") == "MISS" and r2.body == b"/cache/sc #2\n"
        assert origin.cache_hits["/cache/sc"] == 2
    # the same response without Set-Cookie is stored either way
    t2 = f"/cache/nsc?{CC}max-age=60"
    c.roundtrip("GET", t2)
    assert _xc(c, t2) == "HIT"


# ------------------------------------------------------------------- max_entries, /status


def test_max_entries_evicts_least_recently_used(
    make_proxy: Callable[..., Any], origin: Any, http_conn: Any
) -> None:
    port = free_port()
    cfg = _cfg(max_entries=3)
    cfg["admin"] = {"listen": f"127.0.0.1:{port}"}
    p = make_proxy(cfg)
    p.wait_log(r"admin endpoint on", timeout=10)
    c = http_conn(p.port)
    k = [f"/cache/e{i}?{CC}max-age=60" for i in range(5)]
    st = _status(port)
    assert (st["entries"], st["bytes"], st["evictions"]) == (0, 0, 0)
    for t in k[:3]:
        assert _xc(c, t) == "MISS"
    st = _status(port)
    assert (st["entries"], st["evictions"]) == (3, 0) and st["bytes"] > 0
    assert _xc(c, k[0]) == "HIT"  # k0 is now the most recently used: k1 is the LRU tail
    for t in k[3:]:
        assert _xc(c, t) == "MISS"
    st = _status(port)
    assert (st["entries"], st["evictions"], st["stores"]) == (3, 2, 5)
    m = _metrics(port)
    assert m["fastproxy_cache_entries"] == 3 and m["fastproxy_cache_evictions_total"] == 2
    assert m["fastproxy_cache_bytes"] == st["bytes"] > 0
    # the survivors are the recently used ones (not the first stored: not FIFO)
    for t in (k[4], k[3], k[0]):
        assert _xc(c, t) == "HIT"
    for i in (1, 2):  # evicted: the origin is asked again
        r = c.roundtrip("GET", k[i])
        assert r.header("X-Cache") == "MISS" and r.body == f"/cache/e{i} #2\n".encode()
    assert [origin.cache_hits[f"/cache/e{i}"] for i in range(5)] == [1, 2, 2, 1, 1]
    st = _status(port)
    assert (st["entries"], st["evictions"]) == (3, 4)
    full = st["bytes"]
    # a purge frees the bytes
    status, body = admin_call(port, "POST", "/cache/purge", b'{"prefix": "http://test.local/"}')
    assert (status, json.loads(body)) == (200, {"removed": 3})
    st = _status(port)
    assert (st["entries"], st["bytes"]) == (0, 0) and full > 0
    assert st["evictions"] == 4  # a purge is not an eviction


# ------------------------------------------------------------------- heuristic_max


def test_heuristic_max_caps_heuristic_freshness(
    make_proxy: Callable[..., Any], origin: Any, http_conn: Any
) -> None:
    # 4.2.2: a 200 with Last-Modified a day ago and no explicit freshness is
    # fresh for 10% of a day by default; heuristic_max = "2s" caps that.
    # (heuristic_max is whole seconds on the request path, _tables.pyx; ages
    # are whole seconds too, so 2 s is the smallest cap a prompt second
    # request is sure to find fresh.)
    default = make_proxy(_cfg())
    capped = make_proxy(_cfg(heuristic_max="2s"))
    lm = "hdr=" + urllib.parse.quote("Last-Modified:" + _http_date(-86400))
    cd, cc = http_conn(default.port), http_conn(capped.port)
    t_def, t_cap = f"/cache/lm-def?{lm}", f"/cache/lm-cap?{lm}"
    assert _xc(cd, t_def) == "MISS"  # stored first: at least as old as the capped one
    assert _xc(cc, t_cap) == "MISS"
    stored = time.monotonic()
    assert _xc(cc, t_cap) == "HIT" and _xc(cd, t_def) == "HIT"
    r = wait_for(
        lambda: (x := cc.roundtrip("GET", t_cap)).header("X-Cache") != "HIT" and x,
        6,
        "the capped heuristic freshness to run out",
        interval=0.1,
    )
    elapsed = time.monotonic() - stored
    assert r.header("X-Cache") == "MISS" and r.body == b"/cache/lm-cap #2\n"
    assert 1.0 <= elapsed <= 4.0, elapsed
    # control: without the cap the older entry is still fresh, at an age the
    # cap would not allow
    r = cd.roundtrip("GET", t_def)
    assert r.header("X-Cache") == "HIT" and int(r.header("Age") or 0) >= 2
    assert origin.cache_hits["/cache/lm-def"] == 1


def test_heuristic_max_documented_default_spelling(make_proxy: Callable[..., Any]) -> None:
    p = make_proxy(_cfg(heuristic_max="1d"), ready_timeout=10)
    assert p.alive()


# ------------------------------------------------------------------- lock_timeout


def _coalesce_pair(
    p: Any, origin: Any, http_conn: Any, slow_delay: float
) -> tuple[Any, float, Any, float]:
    """A GET of /cache/co held slow_delay s by the origin, then, once the origin
    has it, a second GET of the same key (the query is not in the key) that
    the origin would answer at once: (first, its seconds, second, its seconds)."""
    c1, c2 = http_conn(p.port, timeout=15), http_conn(p.port, timeout=15)
    t0 = time.monotonic()
    c1.request("GET", f"/cache/co?{CC}max-age=60&delay={slow_delay}")
    wait_for(lambda: origin.cache_hits.get("/cache/co") == 1, 5, "the first request upstream")
    t1 = time.monotonic()
    c2.request("GET", f"/cache/co?{CC}max-age=60")
    r2 = c2.read_response()
    e2 = time.monotonic() - t1
    r1 = c1.read_response()
    return r1, time.monotonic() - t0, r2, e2


def test_coalesced_miss_waits_for_the_fill_within_lock_timeout(
    make_proxy: Callable[..., Any], origin: Any, http_conn: Any
) -> None:
    p = make_proxy(_cfg({"cache_key": {"query": False}}, lock_timeout="5s"))
    r1, e1, r2, e2 = _coalesce_pair(p, origin, http_conn, 1.5)
    assert r1.header("X-Cache") == "MISS" and r1.body == b"/cache/co #1\n"
    # the second waited for the first's response and got it from the cache
    assert r2.header("X-Cache") == "HIT" and r2.body == b"/cache/co #1\n"
    assert origin.cache_hits["/cache/co"] == 1
    assert e2 >= 1.0 and e1 >= 1.4, (e1, e2)


def test_coalesced_miss_goes_upstream_after_lock_timeout(
    make_proxy: Callable[..., Any], origin: Any, http_conn: Any
) -> None:
    p = make_proxy(_cfg({"cache_key": {"query": False}}, lock_timeout="500ms"))
    r1, e1, r2, e2 = _coalesce_pair(p, origin, http_conn, 3)
    # the second waited lock_timeout, then fetched the key itself
    assert r2.header("X-Cache") == "MISS" and r2.body == b"/cache/co #2\n"
    assert 0.4 <= e2 < 2.0, e2
    assert r1.header("X-Cache") == "MISS" and r1.body == b"/cache/co #1\n"
    assert e1 >= 2.9 and e2 < e1 - 1, (e1, e2)
    assert origin.cache_hits["/cache/co"] == 2


# ------------------------------------------------------------------- GET with a body


@pytest.mark.parametrize("chunked", [False, True])
def test_get_with_body_bypasses(
    make_proxy: Callable[..., Any], origin: Any, http_conn: Any, chunked: bool
) -> None:
    p = make_proxy(_cfg())
    c = http_conn(p.port)
    t = f"/cache/gb?{CC}max-age=60"

    def with_body() -> Any:
        r = c.roundtrip("GET", t, body=b"hello", chunked=chunked)
        assert origin.requests[-1].body == b"hello"
        return r

    r = with_body()
    assert r.status == 200 and r.header("X-Cache") == "BYPASS"
    assert with_body().header("X-Cache") == "BYPASS"  # not stored: the origin answers again
    assert origin.cache_hits["/cache/gb"] == 2
    assert _xc(c, t) == "MISS"  # nothing was stored by the two
    assert _xc(c, t) == "HIT"
    # a stored entry is not served to a GET with a body either, nor replaced by its answer
    r = with_body()
    assert r.header("X-Cache") == "BYPASS" and r.body == b"/cache/gb #4\n"
    r = c.roundtrip("GET", t, body=b"")  # Content-Length: 0 is no body
    assert r.header("X-Cache") == "HIT" and r.body == b"/cache/gb #3\n"
    assert origin.cache_hits["/cache/gb"] == 4
