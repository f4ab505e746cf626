"""Stale entries in the shared cache against real origins: when they may be served, how they
are validated and how they are refreshed.

- RFC 9111 4.2.4, 5.2.2.8 (proxy-revalidate) and 5.2.2.10 (s-maxage): a shared cache must
  not serve a stale response carrying either directive without validating it first, whether
  the client asks for staleness (5.2.1.2 max-stale) or an extension allows it (RFC 5861
  stale-while-revalidate, stale-if-error).
- RFC 9111 4.3.1, 4.3.3, 4.3.4 (and RFC 9110 13.1.3): a stale entry with Last-Modified and
  no ETag is validated with If-Modified-Since; a 304 refreshes the stored header fields and
  the stored content is served.
- RFC 5861 3: within stale-while-revalidate the stale response is served at once and one
  background refresh runs, however many requests (and workers) see the entry stale.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
from collections.abc import Callable
from email.utils import formatdate
from pathlib import Path
from typing import Any

import pytest
from scripted_origin import Answer, Req, Script, ScriptedOrigin
from support import wait_for


def _cfg(upstream: str, workers: int = 1, **cache: Any) -> dict[str, Any]:
    return {
        "server": {"workers": workers},
        "cache": {"size": "4MiB", "max_entry_size": "1MiB", **cache},
        # no retries: a refused connection is an origin failure at once (stale-if-error)
        "upstreams": {"app": {"servers": [upstream], "retries": 0}},
        "routes": [{"path_prefix": "/", "upstream": "app", "cache": True}],
    }


# ---- 1. proxy-revalidate and s-maxage forbid serving stale (4.2.4) -------------------------

# way of serving a stale entry: (response directives added, request header fields)
WAYS: dict[str, tuple[str, list[tuple[str, str]]]] = {
    "max-stale": ("", [("Cache-Control", "max-stale")]),  # 5.2.1.2: any staleness
    "stale-while-revalidate": (", stale-while-revalidate=600", []),  # RFC 5861 3
    "stale-if-error-5xx": (", stale-if-error=600", []),  # RFC 5861 4: an origin 503
    "stale-if-error-refused": (", stale-if-error=600", []),  # ... the origin is gone
}
# the directive under test; the control response has plain max-age=1 instead
DIRECTIVES = {"proxy-revalidate": "max-age=1, proxy-revalidate", "s-maxage": "s-maxage=1"}


@pytest.mark.parametrize("way", list(WAYS))
@pytest.mark.parametrize("directive", list(DIRECTIVES))
def test_shared_cache_does_not_serve_stale(
    make_proxy: Any, origin: Any, http_conn: Any, directive: str, way: str
) -> None:
    extra, req_fields = WAYS[way]
    p = make_proxy(_cfg(origin.address))
    c = http_conn(p.port)

    def target(name: str, cc: str) -> str:
        # Age: 5 against 1 s of freshness: stored stale, 4 s past its lifetime
        return f"/cache/{name}?hdr=Cache-Control:" + urllib.parse.quote(cc + extra) + "&hdr=Age:5"

    control = target("control", "max-age=1")
    subject = target("subject", DIRECTIVES[directive])
    for t in (control, subject):
        r = c.roundtrip("GET", t)
        assert r.status == 200 and r.header("X-Cache") == "MISS"
    if way == "stale-if-error-5xx":
        origin.cache_status = 503
    elif way == "stale-if-error-refused":
        origin.stop()  # connections refused from now on
    # the control proves the entry would be served stale this way ...
    r = c.roundtrip("GET", control, headers=req_fields)
    assert (r.status, r.header("X-Cache"), r.body) == (200, "STALE", b"/cache/control #1\n")
    # ... but the directive makes the shared cache go to the origin (and pass its failure on)
    r = c.roundtrip("GET", subject, headers=req_fields)
    assert r.header("X-Cache") != "STALE" and b"#1" not in r.body
    if way == "stale-if-error-refused":
        assert 500 <= r.status <= 504
    else:
        assert origin.cache_hits["/cache/subject"] == 2
        assert r.status == (503 if way == "stale-if-error-5xx" else 200)
        assert r.header("X-Cache") == "MISS" and r.body == b"/cache/subject #2\n"


# ---- 2. validation with If-Modified-Since (4.3.1) ------------------------------------------


def test_stale_entry_revalidated_with_if_modified_since(
    make_proxy: Any, scripted: Callable[[Script], ScriptedOrigin], http_conn: Any
) -> None:
    lm = formatdate(time.time() - 3600, usegmt=True)

    def script(n: int, req: Req) -> Answer:
        if req.get("If-Modified-Since") == lm:  # not modified: new freshness, a new field
            return 304, [("Cache-Control", "max-age=60"), ("X-Version", "2")], b""
        fields = [("Cache-Control", "max-age=1"), ("Last-Modified", lm), ("X-Version", str(n))]
        return 200, fields + [("Content-Type", "text/plain")], f"document {n}\n".encode()

    o = scripted(script)
    p = make_proxy(_cfg(o.address))
    c = http_conn(p.port)
    r1 = c.roundtrip("GET", "/doc")
    assert r1.status == 200 and r1.header("X-Cache") == "MISS" and r1.body == b"document 1\n"
    # only-if-cached answers from the cache or 504 (5.2.1.7), never asking the origin: the
    # first 504 says the proxy holds the entry as stale
    probe = http_conn(p.port)
    oic = [("Cache-Control", "only-if-cached")]
    wait_for(
        lambda: probe.roundtrip("GET", "/doc", headers=oic).status == 504,
        5,
        "the proxy to find the entry stale",
        interval=0.05,
    )
    assert len(o.seen) == 1
    r2 = c.roundtrip("GET", "/doc")
    assert len(o.seen) == 2
    assert o.seen[0].get("If-Modified-Since") is None
    assert o.seen[1].get("If-Modified-Since") == lm  # the stored Last-Modified, as it was
    assert o.seen[1].get("If-None-Match") is None  # no ETag stored: nothing to match
    # 4.3.4: the stored response with the 304's fields, in full
    assert r2.status == 200 and r2.header("X-Cache") == "REVALIDATED"
    assert r2.body == r1.body and r2.header("Content-Length") == str(len(r1.body))
    assert r2.header("X-Version") == "2" and r2.header("Cache-Control") == "max-age=60"
    assert r2.header("Last-Modified") == lm
    # refreshed: fresh for 60 s now, with the new fields
    r3 = c.roundtrip("GET", "/doc")
    assert r3.status == 200 and r3.header("X-Cache") == "HIT" and r3.body == r1.body
    assert r3.header("X-Version") == "2" and r3.header("Cache-Control") == "max-age=60"
    assert len(o.seen) == 2


# ---- 3. stale-while-revalidate: one refresh (RFC 5861 3) -----------------------------------


@pytest.mark.parametrize("workers", [1, 2])
def test_stale_while_revalidate_refreshes_once(
    make_proxy: Any,
    scripted: Callable[[Script], ScriptedOrigin],
    http_conn: Any,
    tmp_path: Path,
    workers: int,
) -> None:
    gate = threading.Event()  # holds the refresh at the origin until the test opens it
    refreshing = threading.Event()

    def script(n: int, req: Req) -> Answer:
        if n == 1:  # 5 s old with 1 s of freshness: stale at once, well within the window
            cc = "max-age=1, stale-while-revalidate=600"
            return 200, [("Cache-Control", cc), ("Age", "5")], b"version 1\n"
        refreshing.set()
        gate.wait(10)
        return 200, [("Cache-Control", "max-age=600")], f"version {n}\n".encode()

    o = scripted(script)
    access = tmp_path / "access.log"
    # a fill claim outlives the test's window (its ttl is lock_timeout), so a slow run
    # cannot let another worker take the refresh over
    cfg = _cfg(o.address, workers=workers, lock_timeout="30s")
    cfg["log"] = {"access": str(access), "format": "json"}
    p = make_proxy(cfg)
    burst_ua = [("User-Agent", "burst")]
    try:
        c = http_conn(p.port)
        assert c.roundtrip("GET", "/swr").header("X-Cache") == "MISS"
        r = c.roundtrip("GET", "/swr", headers=[("User-Agent", "trigger")])
        assert r.header("X-Cache") == "STALE" and r.body == b"version 1\n"
        assert refreshing.wait(5), "no refresh reached the origin"
        # 16 at once on their own connections (spread over the workers), 3 on the first
        # one: a request waiting for the held refresh would time out (3 s)
        conns = [http_conn(p.port, timeout=3) for _ in range(16)]
        for b in conns:
            b.request("GET", "/swr", headers=burst_ua)
        answers = [b.read_response() for b in conns]
        answers += [c.roundtrip("GET", "/swr", headers=burst_ua, timeout=3) for _ in range(3)]
        for a in answers:
            assert (a.status, a.header("X-Cache"), a.body) == (200, "STALE", b"version 1\n")
        assert len(o.seen) == 2  # the fill and one refresh, still held
    finally:
        gate.set()

    def hit() -> Any:
        a = c.roundtrip("GET", "/swr")
        return a if a.header("X-Cache") == "HIT" else None

    r = wait_for(hit, 5, "a HIT once the refresh is stored", interval=0.05)
    assert r.body == b"version 2\n" and r.header("Cache-Control") == "max-age=600"
    assert len(o.seen) == 2
    assert o.seen[1].get("User-Agent") == "trigger"  # the refresh is the stale request's
    assert p.stop() == 0
    assert len(o.seen) == 2  # nothing more was started before the proxy exited
    # the refresh's own connection ended without an error (it has no socket)
    assert "Error" not in p.stderr_text(), p.stderr_text()
    recs = [json.loads(line) for line in access.read_text().splitlines() if line]
    served = [rec for rec in recs if rec["user_agent"] == "burst"]
    assert len(served) == 19
    assert len({rec["worker"] for rec in served}) == workers
