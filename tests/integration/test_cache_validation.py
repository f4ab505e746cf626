"""The shared cache validating what it stores (RFC 9111 4.3) and answering conditional
requests (RFC 9110 13): which 304 refreshes which entry and what the refreshed entry
says, a 304 never reaching a client that asked unconditionally, the stale-while-
revalidate refresh, If-None-Match / If-Modified-Since against stored entries; with a
real fastproxy process, real sockets on 127.0.0.1 and a scripted, recording origin
(scripted_origin.py). Section numbers are RFC 9111's unless said otherwise.

Time is controlled through the origin's Date / Age / Expires values (an entry is stored
stale at once with ``Age: 5`` against ``max-age=1``, or with a Date in the past), never
by sleeping until an entry expires."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from scripted_origin import (
    Answer,
    Fields,
    Req,
    Script,
    ScriptedOrigin,
    cache_config,
    http_date,
    xc,
)
from support import admin_call, free_port, wait_for

# ==== Freshening with a 304 (4.3.3, 4.3.4, 3.2) =========================================


def test_304_with_another_strong_validator_does_not_refresh_the_entry(
    make_proxy: Any, scripted: Callable[[Script], ScriptedOrigin], http_conn: Any
) -> None:
    # 4.3.4: "If none of the stored responses contain at least one of the same strong
    # validators, then the cache MUST NOT use the new response to update any stored
    # responses."  The stored response has ETag "v1"; the origin's 304 names "v2".
    def script(n: int, req: Req) -> Answer:
        if n == 1:
            cc = [("Cache-Control", "max-age=1"), ("Age", "5"), ("ETag", '"v1"')]
            return 200, cc, b"body of v1\n"
        if req.header("If-None-Match"):
            return 304, [("ETag", '"v2"'), ("Cache-Control", "max-age=600")], b""
        return 200, [("ETag", '"v2"'), ("Cache-Control", "max-age=600")], b"body of v2\n"

    o = scripted(script)
    p = make_proxy(cache_config(o.address))
    c = http_conn(p.port)
    assert c.roundtrip("GET", "/r").body == b"body of v1\n"
    r2 = c.roundtrip("GET", "/r")
    assert o.seen[1].header("If-None-Match") == '"v1"'
    # never the v1 content labelled as v2: the request again, unconditionally, and v2
    # whole, stored as a miss is
    assert o.seen[2].header("If-None-Match") is None and len(o.seen) == 3
    assert (r2.status, r2.body, r2.header("ETag"), xc(r2)) == (200, b"body of v2\n", '"v2"', "MISS")
    r3 = c.roundtrip("GET", "/r")
    assert (xc(r3), r3.body) == ("HIT", b"body of v2\n") and len(o.seen) == 3


def test_304_without_expires_recomputes_freshness_from_the_updated_head(
    make_proxy: Any, scripted: Callable[[Script], ScriptedOrigin], http_conn: Any
) -> None:
    # 4.3.4 + 4.2.1: the 304's Date replaces the stored one, the stored Expires stays; the
    # freshness lifetime of the updated response is Expires - Date, here negative: stale.
    # Serving it as fresh breaks 4.2.4 ("MUST NOT generate a stale response ...").
    now = time.time()

    def script(n: int, req: Req) -> Answer:
        if n == 1:  # 10 s of freshness (Expires - Date), 100 s old: stored stale
            f = [("Date", http_date(now - 100)), ("Expires", http_date(now - 90))]
            return 200, f + [("ETag", '"e"')], b"expiring\n"
        return 304, [("Date", http_date(time.time())), ("ETag", '"e"')], b""

    o = scripted(script)
    p = make_proxy(cache_config(o.address))
    c = http_conn(p.port)
    assert xc(c.roundtrip("GET", "/x")) == "MISS"
    r2 = c.roundtrip("GET", "/x")
    assert xc(r2) == "REVALIDATED" and r2.header("Expires") == http_date(now - 90)
    # the stored response now says Date: now, Expires: 90 s ago: it is stale
    r3 = c.roundtrip("GET", "/x")
    assert xc(r3) != "HIT", (r3.header("Date"), r3.header("Expires"), r3.header("Age"))
    assert len(o.seen) == 3


def test_304_with_expires_only_keeps_the_stored_max_age(
    make_proxy: Any, scripted: Callable[[Script], ScriptedOrigin], http_conn: Any
) -> None:
    # 4.3.4: the 304 adds Expires; the stored Cache-Control: max-age=1 stays in the head,
    # and max-age takes precedence over Expires (4.2.1).  With the 304's Date 10 s in the
    # past the updated response is 10 s old: stale after 1 s of freshness.
    def script(n: int, req: Req) -> Answer:
        if n == 1:
            return 200, [("Cache-Control", "max-age=1"), ("Age", "5"), ("ETag", '"m"')], b"m\n"
        t = time.time()
        f = [("Date", http_date(t - 10)), ("Expires", http_date(t + 3600)), ("ETag", '"m"')]
        return 304, f, b""

    o = scripted(script)
    p = make_proxy(cache_config(o.address))
    c = http_conn(p.port)
    c.roundtrip("GET", "/m")
    r2 = c.roundtrip("GET", "/m")
    assert xc(r2) == "REVALIDATED" and r2.header("Cache-Control") == "max-age=1"
    r3 = c.roundtrip("GET", "/m")
    assert xc(r3) != "HIT", (r3.header("Cache-Control"), r3.header("Age"))


def test_304_without_cache_control_keeps_must_revalidate(
    make_proxy: Any, scripted: Callable[[Script], ScriptedOrigin], http_conn: Any
) -> None:
    # The stored "Cache-Control: max-age=1, must-revalidate" is still in the head after a
    # 304 that only brings Date/Expires; 4.2.4 / 5.2.2.2: once stale, a must-revalidate
    # response MUST NOT be served without validation, max-stale or not.
    def script(n: int, req: Req) -> Answer:
        if n == 1:
            cc = [("Cache-Control", "max-age=1, must-revalidate"), ("Age", "5")]
            return 200, cc + [("ETag", '"w"')], b"w\n"
        t = time.time()  # freshness 1 s (Expires - Date), 100 s old: stale again at once
        f = [("Date", http_date(t - 100)), ("Expires", http_date(t - 99)), ("ETag", '"w"')]
        return 304, f, b""

    o = scripted(script)
    p = make_proxy(cache_config(o.address))
    c = http_conn(p.port)
    c.roundtrip("GET", "/w")
    r2 = c.roundtrip("GET", "/w")
    assert xc(r2) == "REVALIDATED"
    assert r2.header("Cache-Control") == "max-age=1, must-revalidate"
    r3 = c.roundtrip("GET", "/w", headers=[("Cache-Control", "max-stale")])
    assert xc(r3) != "STALE", r3
    assert len(o.seen) == 3


def test_304_set_cookie_is_not_replayed_to_other_clients(
    make_proxy: Any, scripted: Callable[[Script], ScriptedOrigin], http_conn: Any
) -> None:
    # config.md store_set_cookie = false (default): "one user's cookie is never replayed to
    # another".  A Set-Cookie on the 304 that refreshed an entry is merged into the shared
    # entry (3.2 also excepts no field, so the policy has to be applied here).
    def script(n: int, req: Req) -> Answer:
        if n == 1:
            return 200, [("Cache-Control", "max-age=1"), ("Age", "5"), ("ETag", '"c"')], b"c\n"
        f = [("ETag", '"c"'), ("Cache-Control", "max-age=600"), ("Set-Cookie", "sid=alice")]
        return 304, f, b""

    o = scripted(script)
    p = make_proxy(cache_config(o.address))
    alice = http_conn(p.port)
    alice.roundtrip("GET", "/c")
    r = alice.roundtrip("GET", "/c")
    assert xc(r) == "REVALIDATED" and r.header("Set-Cookie") == "sid=alice"
    bob = http_conn(p.port).roundtrip("GET", "/c")
    assert bob.status == 200 and bob.body == b"c\n" and xc(bob) == "HIT"
    assert bob.header("Set-Cookie") is None, bob.headers


def test_304_set_cookie_is_kept_when_store_set_cookie_is_on(
    make_proxy: Any, scripted: Callable[[Script], ScriptedOrigin], http_conn: Any
) -> None:
    # store_set_cookie = true: the refreshed head keeps the 304's Set-Cookie (3.2), once
    def script(n: int, req: Req) -> Answer:
        if n == 1:
            f = [("Cache-Control", "max-age=1"), ("Age", "5"), ("ETag", '"k"')]
            return 200, f + [("Set-Cookie", "v=1")], b"k\n"
        f = [("ETag", '"k"'), ("Cache-Control", "max-age=600"), ("Set-Cookie", "v=2")]
        return 304, f, b""

    o = scripted(script)
    p = make_proxy(cache_config(o.address, store_set_cookie=True))
    c = http_conn(p.port)
    c.roundtrip("GET", "/k")
    r = c.roundtrip("GET", "/k")
    assert xc(r) == "REVALIDATED" and r.header_all("Set-Cookie") == ["v=2"]
    r = http_conn(p.port).roundtrip("GET", "/k")
    assert xc(r) == "HIT" and r.header_all("Set-Cookie") == ["v=2"], r.headers


def test_304_that_forbids_storing_is_served_once_and_not_kept(
    make_proxy: Any, scripted: Callable[[Script], ScriptedOrigin], http_conn: Any
) -> None:
    # 3 / 4.3.4: the refreshed response says no-store: this client gets it, the cache
    # keeps nothing, the next request goes to the origin
    def script(n: int, req: Req) -> Answer:
        if n == 1:
            return 200, [("Cache-Control", "max-age=1"), ("Age", "5"), ("ETag", '"n"')], b"n\n"
        if req.header("If-None-Match"):
            return 304, [("ETag", '"n"'), ("Cache-Control", "no-store")], b""
        return 200, [("Cache-Control", "no-store")], b"fresh n\n"

    o = scripted(script)
    p = make_proxy(cache_config(o.address))
    c = http_conn(p.port)
    c.roundtrip("GET", "/n")
    r = c.roundtrip("GET", "/n")
    assert (xc(r), r.body, r.header("Cache-Control")) == ("REVALIDATED", b"n\n", "no-store")
    r = c.roundtrip("GET", "/n")
    assert (xc(r), r.body) == ("MISS", b"fresh n\n") and o.seen[2].header("If-None-Match") is None


def test_304_refresh_updates_age_and_keeps_content_length(
    make_proxy: Any, scripted: Callable[[Script], ScriptedOrigin], http_conn: Any
) -> None:
    # 4.2.3 on a refreshed entry: the 304's Age and Date count, the old age does not;
    # 3.2: the 304's Content-Length (of no content) never replaces the stored one.
    def script(n: int, req: Req) -> Answer:
        if n == 1:
            cc = [("Cache-Control", "max-age=100"), ("Age", "150"), ("ETag", '"a"')]
            return 200, cc, b"0123456789"
        f = [("ETag", '"a"'), ("Cache-Control", "max-age=100"), ("Age", "40")]
        return 304, f + [("Content-Length", "0"), ("Date", http_date(time.time()))], b""

    o = scripted(script)
    p = make_proxy(cache_config(o.address))
    c = http_conn(p.port)
    c.roundtrip("GET", "/age")
    r2 = c.roundtrip("GET", "/age")
    assert xc(r2) == "REVALIDATED" and r2.body == b"0123456789"
    assert r2.header("Content-Length") == "10" and r2.header_all("Content-Length") == ["10"]
    assert 40 <= int(r2.header("Age")) < 100
    r3 = c.roundtrip("GET", "/age")
    assert xc(r3) == "HIT" and 40 <= int(r3.header("Age")) < 100
    assert r3.body == b"0123456789" and r3.header("Content-Length") == "10"


def test_200_to_revalidation_replaces_the_entry(
    make_proxy: Any, scripted: Callable[[Script], ScriptedOrigin], http_conn: Any
) -> None:
    # 4.3.3: a full response to the validation is used, and (storable) replaces the entry
    def script(n: int, req: Req) -> Answer:
        if n == 1:
            return 200, [("Cache-Control", "max-age=1"), ("Age", "5"), ("ETag", '"1"')], b"one"
        return 200, [("Cache-Control", "max-age=600"), ("ETag", '"2"')], b"two!"

    o = scripted(script)
    p = make_proxy(cache_config(o.address))
    c = http_conn(p.port)
    c.roundtrip("GET", "/rep")
    r2 = c.roundtrip("GET", "/rep")
    assert o.seen[1].header("If-None-Match") == '"1"'
    assert r2.status == 200 and r2.body == b"two!" and xc(r2) == "MISS"
    r3 = c.roundtrip("GET", "/rep")
    assert xc(r3) == "HIT" and r3.body == b"two!" and r3.header("ETag") == '"2"'
    assert len(o.seen) == 2


def test_unconditional_client_never_gets_the_caches_own_304_with_request_no_store(
    make_proxy: Any, scripted: Callable[[Script], ScriptedOrigin], http_conn: Any
) -> None:
    # The cache validates a stale entry with its own If-None-Match (4.3.1).  The client
    # sent no precondition, so a 304 means nothing to it (RFC 9110 15.4.5: a 304 answers a
    # conditional request); the cache must use the 304 to serve the stored response
    # (4.3.3, 4.3.4) or fetch it in full.  Request "no-store" (5.2.1.5) only forbids storing.
    def script(n: int, req: Req) -> Answer:
        if req.header("If-None-Match") == '"s"':
            return 304, [("ETag", '"s"'), ("Cache-Control", "max-age=600")], b""
        return 200, [("Cache-Control", "max-age=1"), ("Age", "5"), ("ETag", '"s"')], b"data\n"

    o = scripted(script)
    p = make_proxy(cache_config(o.address))
    c = http_conn(p.port)
    assert c.roundtrip("GET", "/ns").body == b"data\n"
    r = c.roundtrip("GET", "/ns", headers=[("Cache-Control", "no-store")])
    assert o.seen[-1].header("If-None-Match") is None or r.status != 304, (
        f"client got {r.status} {r.headers} for an unconditional GET"
    )
    assert r.status == 200 and r.body == b"data\n"


def test_unconditional_client_never_gets_a_304_when_the_entry_went_away(
    make_proxy: Any, scripted: Callable[[Script], ScriptedOrigin], http_conn: Any
) -> None:
    # Same as above, the stored entry purged while the validation is in flight: the 304
    # cannot refresh anything, and the client (no precondition) must not get it.
    gate = threading.Event()
    held = threading.Event()

    def script(n: int, req: Req) -> Answer:
        if req.header("If-None-Match") == '"g"':
            held.set()
            gate.wait(5)
            return 304, [("ETag", '"g"'), ("Cache-Control", "max-age=600")], b""
        return 200, [("Cache-Control", "max-age=1"), ("Age", "5"), ("ETag", '"g"')], b"gone\n"

    o = scripted(script)
    aport = free_port()
    p = make_proxy(cache_config(o.address, admin_port=aport))
    p.wait_log(r"admin endpoint on", timeout=10)
    c = http_conn(p.port)
    assert c.roundtrip("GET", "/g").body == b"gone\n"
    try:
        c.request("GET", "/g")
        assert held.wait(5)
        body = json.dumps({"url": "http://test.local/g"}).encode()
        status, payload = admin_call(aport, "POST", "/cache/purge", body)
        assert status == 200 and json.loads(payload) == {"removed": 1}
    finally:
        gate.set()
    r = c.read_response()
    assert r.status != 304, f"unconditional GET answered {r.status} {r.headers}"
    # fetched again whole, without the validator, and stored anew
    assert (r.status, r.body, xc(r)) == (200, b"gone\n", "MISS")
    assert o.seen[-1].header("If-None-Match") is None and len(o.seen) == 3
    # (stored: stale on arrival, like the first, it is validated next time)
    assert xc(c.roundtrip("GET", "/g")) == "REVALIDATED" and len(o.seen) == 4


def test_entry_refreshed_by_a_304_without_date_is_fresh_again(
    make_proxy: Any, scripted: Callable[[Script], ScriptedOrigin], http_conn: Any
) -> None:
    # The stored response's Date is 100 s old (apparent_age 100 > max-age 60: stale).  A
    # 304 without Date is, per RFC 9110 6.6.1, dated when received, so the refreshed entry
    # is about 0 s old and fresh for 60 s (4.3.4, 4.2.3).  Keeping the old Date makes it
    # look 100 s old again: it is never fresh and every request goes to the origin.
    def script(n: int, req: Req) -> Answer:
        if n == 1:
            f = [("Cache-Control", "max-age=60"), ("Date", http_date(time.time() - 100))]
            return 200, f + [("ETag", '"d"')], b"dated\n"
        return 304, [("ETag", '"d"'), ("Cache-Control", "max-age=60")], b""

    o = scripted(script)
    p = make_proxy(cache_config(o.address))
    c = http_conn(p.port)
    assert xc(c.roundtrip("GET", "/d")) == "MISS"
    assert xc(c.roundtrip("GET", "/d")) == "REVALIDATED"
    r3 = c.roundtrip("GET", "/d")
    assert xc(r3) == "HIT", (xc(r3), r3.header("Age"), r3.header("Date"), len(o.seen))


# ==== Conditional requests from the client (RFC 9110 13; 4.3.2) =========================


def test_if_none_match_star_on_an_entry_without_etag(
    make_proxy: Any, scripted: Callable[[Script], ScriptedOrigin], http_conn: Any
) -> None:
    # RFC 9110 13.2.1: a cache MUST evaluate received preconditions; 13.1.2: "If-None-Match:
    # *" is false when a current representation exists, so a GET gets 304.
    o = scripted(lambda n, req: (200, [("Cache-Control", "max-age=60")], b"no etag\n"))
    p = make_proxy(cache_config(o.address))
    c = http_conn(p.port)
    c.roundtrip("GET", "/star")
    r = c.roundtrip("GET", "/star", headers=[("If-None-Match", "*")])
    assert len(o.seen) == 1 and xc(r) == "HIT"
    assert r.status == 304, (r.status, r.body)


def test_if_none_match_weak_and_list_forms(
    make_proxy: Any, scripted: Callable[[Script], ScriptedOrigin], http_conn: Any
) -> None:
    # RFC 9110 13.1.2: weak comparison for If-None-Match; a list; "*"; precedence over
    # If-Modified-Since (13.1.3: IMS ignored when INM is present)
    lm = http_date(time.time() - 3600)
    f = [("Cache-Control", "max-age=60"), ("ETag", 'W/"w1"'), ("Last-Modified", lm)]
    o = scripted(lambda n, req: (200, f, b"weak\n"))
    p = make_proxy(cache_config(o.address))
    c = http_conn(p.port)
    c.roundtrip("GET", "/wk")
    now = http_date(time.time())
    cases = [
        ([("If-None-Match", '"w1"')], 304),
        ([("If-None-Match", 'W/"w1"')], 304),
        ([("If-None-Match", '"a", W/"w1" , "b"')], 304),
        ([("If-None-Match", "*")], 304),
        ([("If-None-Match", '"zz"')], 200),
        ([("If-None-Match", '"zz"'), ("If-Modified-Since", now)], 200),  # INM wins
        ([("If-Modified-Since", now)], 304),
        ([("If-Modified-Since", http_date(time.time() - 7200))], 200),
        ([("If-Modified-Since", "not a date")], 200),
    ]
    for hdrs, want in cases:
        r = c.roundtrip("GET", "/wk", headers=hdrs)
        assert (r.status, xc(r)) == (want, "HIT"), hdrs
        if want == 304:
            assert r.body == b"" and r.header("ETag") == 'W/"w1"'
            assert r.header("Content-Length") is None
    r = c.roundtrip("HEAD", "/wk", headers=[("If-None-Match", 'W/"w1"')])
    assert r.status == 304
    assert len(o.seen) == 1


def test_if_modified_since_without_last_modified_or_date(
    make_proxy: Any, scripted: Callable[[Script], ScriptedOrigin], http_conn: Any
) -> None:
    # 4.3.2: with neither Last-Modified nor Date in the stored response, the cache SHOULD
    # answer 304 when it received the response at or before the If-Modified-Since time.
    o = scripted(lambda n, req: (200, [("Cache-Control", "max-age=60")], b"undated\n"))
    p = make_proxy(cache_config(o.address))
    c = http_conn(p.port)
    c.roundtrip("GET", "/ims")
    later = http_date(time.time() + 60)
    r = c.roundtrip("GET", "/ims", headers=[("If-Modified-Since", later)])
    assert xc(r) == "HIT" and r.status == 304, (r.status, r.headers)


def test_if_modified_since_falls_back_to_date(
    make_proxy: Any, scripted: Callable[[Script], ScriptedOrigin], http_conn: Any
) -> None:
    # 4.3.2: no Last-Modified: the stored Date is compared
    d = time.time() - 50
    o = scripted(
        lambda n, req: (200, [("Cache-Control", "max-age=600"), ("Date", http_date(d))], b"x")
    )
    p = make_proxy(cache_config(o.address))
    c = http_conn(p.port)
    c.roundtrip("GET", "/imsd")
    r = c.roundtrip("GET", "/imsd", headers=[("If-Modified-Since", http_date(d + 10))])
    assert r.status == 304
    r = c.roundtrip("GET", "/imsd", headers=[("If-Modified-Since", http_date(d - 10))])
    assert r.status == 200 and r.body == b"x"


def test_conditional_client_on_a_stale_entry_keeps_its_own_precondition(
    make_proxy: Any, scripted: Callable[[Script], ScriptedOrigin], http_conn: Any
) -> None:
    # 4.3.2: the client's If-None-Match goes to the origin; its 304 is the client's answer
    def script(n: int, req: Req) -> Answer:
        if req.header("If-None-Match") == '"mine"':
            return 304, [("ETag", '"mine"')], b""
        return 200, [("Cache-Control", "max-age=1"), ("Age", "5"), ("ETag", '"k"')], b"k"

    o = scripted(script)
    p = make_proxy(cache_config(o.address))
    c = http_conn(p.port)
    c.roundtrip("GET", "/cc")
    r = c.roundtrip("GET", "/cc", headers=[("If-None-Match", '"mine"')])
    assert o.seen[1].header("If-None-Match") == '"mine"'
    assert r.status == 304 and r.body == b""
    # the 304 was not stored as the response
    r = c.roundtrip("GET", "/cc")
    assert r.status == 200 and r.body == b"k"


@pytest.mark.parametrize(
    "client_fields",
    [[("If-None-Match", '"w"')], [("Cache-Control", "only-if-cached")], [("Range", "bytes=0-1")]],
    ids=["own-precondition", "only-if-cached", "range"],
)
def test_stale_while_revalidate_refresh_is_the_plain_request(
    make_proxy: Any,
    scripted: Callable[[Script], ScriptedOrigin],
    http_conn: Any,
    client_fields: Fields,
) -> None:
    # RFC 5861 3: the background refresh validates the stored response.  It is built from the
    # request that found the entry stale; that request's own precondition (the origin's 304
    # would be that client's, never stored), only-if-cached (a local 504) or Range must not
    # come along, or the entry is never refreshed.
    def script(n: int, req: Req) -> Answer:
        if n == 1:
            f = [("Cache-Control", "max-age=1, stale-while-revalidate=600"), ("Age", "5")]
            return 200, f + [("ETag", '"w"')], b"swr body\n"
        return 304, [("ETag", '"w"'), ("Cache-Control", "max-age=600")], b""

    o = scripted(script)
    p = make_proxy(cache_config(o.address))
    c = http_conn(p.port)
    assert xc(c.roundtrip("GET", "/swr")) == "MISS"
    r = c.roundtrip("GET", "/swr", headers=client_fields)
    assert xc(r) == "STALE" and r.body == b"swr body\n"
    wait_for(lambda: len(o.seen) == 2, 5, "the background refresh")
    refresh = o.seen[1]
    assert refresh.header("If-None-Match") == '"w"'  # the cache's own validator
    assert refresh.header("Range") is None and "only-if-cached" not in (
        refresh.header("Cache-Control") or ""
    )
    # refreshed: fresh again, from the cache
    r = wait_for(
        lambda: (x := c.roundtrip("GET", "/swr")) and xc(x) == "HIT" and x, 5, "a fresh entry"
    )
    assert r.body == b"swr body\n" and len(o.seen) == 2
