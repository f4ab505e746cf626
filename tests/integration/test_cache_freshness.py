"""The shared cache's freshness and what it stores (RFC 9111 3, 4.1, 4.2, 5.2; RFC 9110
6.6.1): Date and Age, response and request directives, heuristics, stale-if-error, HEAD
and Range, Vary, purge; with a real fastproxy process, real sockets on 127.0.0.1 and a
scripted, recording origin (scripted_origin.py). Section numbers are RFC 9111's unless
said otherwise.

Time is controlled through the origin's Date / Age / Expires values (an entry is stored
stale at once with ``Age: 5`` against ``max-age=1``, or with a Date in the past), never
by sleeping until an entry expires."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from email.utils import parsedate_to_datetime
from typing import Any

import pytest
from scripted_origin import (
    Answer,
    Req,
    Script,
    ScriptedOrigin,
    cache_config,
    http_date,
    xc,
)
from support import admin_call, free_port

# ==== Date and Age (RFC 9110 6.6.1; 4.2.3) ==============================================


def test_stored_response_without_date_gets_one(
    make_proxy: Any, scripted: Callable[[Script], ScriptedOrigin], http_conn: Any
) -> None:
    # RFC 9110 6.6.1: "A recipient with a clock that receives a response message without a
    # Date header field MUST record the time it was received and append a corresponding
    # Date header field to the message's header section if it is cached or forwarded
    # downstream."
    o = scripted(lambda n, req: (200, [("Cache-Control", "max-age=60")], b"no date\n"))
    p = make_proxy(cache_config(o.address))
    c = http_conn(p.port)
    r1 = c.roundtrip("GET", "/nd")
    r2 = c.roundtrip("GET", "/nd")
    assert xc(r1) == "MISS" and xc(r2) == "HIT"
    assert r1.header("Date") is not None, r1.headers
    # the hit carries the Date the miss was given (the time it was received), once
    assert r2.header_all("Date") == [r1.header("Date")], r2.headers
    assert abs(parsedate_to_datetime(r1.header("Date")).timestamp() - time.time()) < 5


def test_local_answers_and_dated_responses_carry_one_date(
    make_proxy: Any, scripted: Callable[[Script], ScriptedOrigin], http_conn: Any
) -> None:
    # RFC 9110 6.6.1: the proxy answering itself is an origin with a clock (Date on 2xx-4xx);
    # a response that has a Date keeps it, alone
    o = scripted(lambda n, req: (200, [("Date", "Mon, 01 Jan 2024 00:00:00 GMT")], b"d\n"))
    cfg = cache_config(o.address)
    cfg["routes"] = [
        {"path_prefix": "/gone", "return": 410, "body": "gone\n"},
        {"path_prefix": "/", "upstream": "app"},
    ]
    p = make_proxy(cfg)
    c = http_conn(p.port)
    r = c.roundtrip("GET", "/gone")
    assert r.status == 410 and len(r.header_all("Date")) == 1
    assert abs(parsedate_to_datetime(r.header("Date")).timestamp() - time.time()) < 5
    r = c.roundtrip("GET", "/dated")
    assert r.header_all("Date") == ["Mon, 01 Jan 2024 00:00:00 GMT"]


def test_apparent_age_from_an_old_date_makes_the_entry_stale(
    make_proxy: Any, scripted: Callable[[Script], ScriptedOrigin], http_conn: Any
) -> None:
    # 4.2.3 apparent_age = max(0, response_time - date_value): a response dated 100 s ago
    # with max-age=60 arrives stale, and Age counts the 100 s when it is served.
    def script(n: int, req: Req) -> Answer:
        f = [("Cache-Control", "max-age=60"), ("Date", http_date(time.time() - 100))]
        return 200, f, f"old {n}\n".encode()

    def script2(n: int, req: Req) -> Answer:
        f = [("Cache-Control", "max-age=600"), ("Date", http_date(time.time() - 100))]
        return 200, f, b"fresh\n"

    o = scripted(script)
    p = make_proxy(cache_config(o.address))
    c = http_conn(p.port)
    c.roundtrip("GET", "/old")
    r = c.roundtrip("GET", "/old")
    assert xc(r) == "MISS" and r.body == b"old 2\n"
    o2 = scripted(script2)
    p2 = make_proxy(cache_config(o2.address))
    c2 = http_conn(p2.port)
    c2.roundtrip("GET", "/f")
    r = c2.roundtrip("GET", "/f")
    assert xc(r) == "HIT" and 100 <= int(r.header("Age")) < 110


def test_response_delay_is_added_to_the_received_age(
    make_proxy: Any, scripted: Callable[[Script], ScriptedOrigin], http_conn: Any
) -> None:
    # 4.2.3 corrected_age_value = age_value + response_delay (response_time - request_time)
    def script(n: int, req: Req) -> Answer:
        time.sleep(2.1)
        return 200, [("Cache-Control", "max-age=600"), ("Age", "10")], b"slow\n"

    o = scripted(script)
    p = make_proxy(cache_config(o.address))
    c = http_conn(p.port)
    c.roundtrip("GET", "/slowage", timeout=10)
    r = c.roundtrip("GET", "/slowage")
    assert xc(r) == "HIT" and 12 <= int(r.header("Age")) < 20, r.header("Age")


# ==== Freshness and directives (4.2, 5.2) ===============================================


@pytest.mark.parametrize(
    "cc, second",
    [
        ("max-age=0, s-maxage=60", "HIT"),  # 5.2.2.10: s-maxage overrides max-age
        ('private="X-Secret", max-age=60', "MISS"),  # qualified private: documented strict
        ('no-cache="Set-Cookie, X-A", max-age=60', "MISS"),  # qualified: documented strict
        ("max-age=0", "MISS"),  # stale at once, no validator: fetched again
    ],
)
def test_more_response_directives(
    make_proxy: Any,
    scripted: Callable[[Script], ScriptedOrigin],
    http_conn: Any,
    cc: str,
    second: str,
) -> None:
    o = scripted(lambda n, req: (200, [("Cache-Control", cc)], f"#{n}".encode()))
    p = make_proxy(cache_config(o.address))
    c = http_conn(p.port)
    c.roundtrip("GET", "/dir")
    r = c.roundtrip("GET", "/dir")
    assert xc(r) == second
    assert len(o.seen) == (1 if second == "HIT" else 2)


def test_quoted_no_cache_list_does_not_hide_max_age(
    make_proxy: Any, scripted: Callable[[Script], ScriptedOrigin], http_conn: Any
) -> None:
    # 5.2: a quoted-string argument with commas is one directive; the max-age after it is
    # still read (validated each time because of no-cache, documented as unqualified)
    def script(n: int, req: Req) -> Answer:
        if req.header("If-None-Match") == '"q"':
            return 304, [("ETag", '"q"')], b""
        return 200, [("Cache-Control", 'no-cache="A, B", max-age=60'), ("ETag", '"q"')], b"q"

    o = scripted(script)
    p = make_proxy(cache_config(o.address))
    c = http_conn(p.port)
    c.roundtrip("GET", "/q")
    r = c.roundtrip("GET", "/q")
    assert xc(r) == "REVALIDATED" and r.body == b"q"


def test_heuristic_freshness_statuses(
    make_proxy: Any, scripted: Callable[[Script], ScriptedOrigin], http_conn: Any
) -> None:
    # 4.2.2: heuristic freshness only for heuristically cacheable statuses; 302 and 307
    # without explicit freshness are not reused; 404 and 301 are.
    lm = http_date(time.time() - 86400)

    def script(n: int, req: Req) -> Answer:
        status = int(req.path.strip("/").split("?")[0])
        f = [("Last-Modified", lm), ("Date", http_date(time.time()))]
        if status in (301, 302, 307):
            f.append(("Location", "/elsewhere"))
        return status, f, f"{status} #{n}".encode()

    o = scripted(script)
    p = make_proxy(cache_config(o.address))
    c = http_conn(p.port)
    for status, want in (
        (404, "HIT"),
        (301, "HIT"),
        (410, "HIT"),
        (302, "MISS"),
        (307, "MISS"),
        (403, "MISS"),
    ):
        c.roundtrip("GET", f"/{status}")
        r = c.roundtrip("GET", f"/{status}")
        assert r.status == status and xc(r) == want, (status, xc(r))


def test_must_revalidate_forbids_stale_if_error_and_stale_while_revalidate(
    make_proxy: Any, scripted: Callable[[Script], ScriptedOrigin], http_conn: Any
) -> None:
    # 5.2.2.2 / 4.2.4: must-revalidate: a stale response MUST NOT be served without
    # validation, also on an origin error (RFC 5861 extensions do not override it)
    fail = threading.Event()

    def script(n: int, req: Req) -> Answer:
        if fail.is_set():
            return 503, [], b"origin down\n"
        cc = "max-age=1, must-revalidate, stale-if-error=600, stale-while-revalidate=600"
        return 200, [("Cache-Control", cc), ("Age", "5")], f"v{n}\n".encode()

    o = scripted(script)
    p = make_proxy(cache_config(o.address))
    c = http_conn(p.port)
    c.roundtrip("GET", "/mr")
    r = c.roundtrip("GET", "/mr")  # stale-while-revalidate would serve v1
    assert xc(r) == "MISS" and r.body == b"v2\n"
    fail.set()
    r = c.roundtrip("GET", "/mr")
    assert r.status == 503 and xc(r) != "STALE"


def test_no_cache_response_is_not_served_on_origin_error(
    make_proxy: Any, scripted: Callable[[Script], ScriptedOrigin], http_conn: Any
) -> None:
    # 5.2.2.4: an (unqualified) no-cache response "MUST NOT be used to satisfy any other
    # request without forwarding it for validation and receiving a successful response";
    # stale-if-error does not lift that (4.2.4: a stale response MUST NOT be generated when
    # an explicit directive such as no-cache prohibits it).
    fail = threading.Event()

    def script(n: int, req: Req) -> Answer:
        if fail.is_set():
            return 503, [], b"origin down\n"
        cc = "no-cache, max-age=60, stale-if-error=600"
        return 200, [("Cache-Control", cc), ("ETag", '"nc"')], b"private-ish\n"

    o = scripted(script)
    p = make_proxy(cache_config(o.address))
    c = http_conn(p.port)
    c.roundtrip("GET", "/nc")
    fail.set()
    r = c.roundtrip("GET", "/nc")
    assert o.seen[-1].header("If-None-Match") == '"nc"'
    assert r.status == 503 and xc(r) != "STALE", (r.status, xc(r), r.body)


def test_request_max_stale_with_a_bound(
    make_proxy: Any, scripted: Callable[[Script], ScriptedOrigin], http_conn: Any
) -> None:
    # 5.2.1.2: max-stale=N accepts at most N seconds of staleness (stored 4 s stale here)
    o = scripted(lambda n, req: (200, [("Cache-Control", "max-age=1"), ("Age", "5")], b"%d" % n))
    p = make_proxy(cache_config(o.address))
    c = http_conn(p.port)
    c.roundtrip("GET", "/ms")
    r = c.roundtrip("GET", "/ms", headers=[("Cache-Control", "max-stale=2")])
    assert xc(r) == "MISS" and r.body == b"2"
    r = c.roundtrip("GET", "/ms", headers=[("Cache-Control", "max-stale=30")])
    assert xc(r) == "STALE" and r.body == b"2"


def test_request_no_cache_validates_a_fresh_entry(
    make_proxy: Any, scripted: Callable[[Script], ScriptedOrigin], http_conn: Any
) -> None:
    # 5.2.1.4: request no-cache: the fresh entry is validated (conditionally) first
    def script(n: int, req: Req) -> Answer:
        if req.header("If-None-Match") == '"f"':
            return 304, [("ETag", '"f"'), ("Cache-Control", "max-age=60")], b""
        return 200, [("ETag", '"f"'), ("Cache-Control", "max-age=60")], b"fresh"

    o = scripted(script)
    p = make_proxy(cache_config(o.address))
    c = http_conn(p.port)
    c.roundtrip("GET", "/rnc")
    r = c.roundtrip("GET", "/rnc", headers=[("Cache-Control", "no-cache")])
    assert xc(r) == "REVALIDATED" and r.status == 200 and r.body == b"fresh"
    assert o.seen[1].header("If-None-Match") == '"f"'


def test_authorization_with_must_revalidate_is_stored(
    make_proxy: Any, scripted: Callable[[Script], ScriptedOrigin], http_conn: Any
) -> None:
    # 3.5: must-revalidate allows a shared cache to store a response to an authorized
    # request; proxy-revalidate or max-age alone do not
    def script(n: int, req: Req) -> Answer:
        cc = "max-age=60, must-revalidate" if "mr" in req.path else "max-age=60, proxy-revalidate"
        return 200, [("Cache-Control", cc)], f"{req.path} {n}".encode()

    o = scripted(script)
    p = make_proxy(cache_config(o.address))
    c = http_conn(p.port)
    auth = [("Authorization", "Bearer x")]
    c.roundtrip("GET", "/mr", headers=auth)
    assert xc(c.roundtrip("GET", "/mr", headers=auth)) == "HIT"
    c.roundtrip("GET", "/pr", headers=auth)
    assert xc(c.roundtrip("GET", "/pr", headers=auth)) == "MISS"


def test_post_response_with_freshness_is_not_served_for_get(
    make_proxy: Any, scripted: Callable[[Script], ScriptedOrigin], http_conn: Any
) -> None:
    # 4: a POST response is only reusable for a GET when Content-Location names the target
    # (and storing it is optional): fastproxy stores GET responses only.  The POST's
    # success also invalidates the URI (4.4).
    def script(n: int, req: Req) -> Answer:
        f = [("Cache-Control", "max-age=60"), ("Content-Location", "/p")]
        return 200, f, f"{req.method} {n}".encode()

    o = scripted(script)
    p = make_proxy(cache_config(o.address))
    c = http_conn(p.port)
    assert c.roundtrip("POST", "/p", body=b"x").body == b"POST 1"
    r = c.roundtrip("GET", "/p")
    assert r.body == b"GET 2" and xc(r) == "MISS"
    assert xc(c.roundtrip("GET", "/p")) == "HIT"
    # PATCH with a 3xx (not an error) removes it; a 404 to DELETE does not
    o.script = lambda n, req: (
        (404, [], b"no") if req.method == "DELETE" else (303, [("Location", "/z")], b"")
    )
    c.roundtrip("DELETE", "/p")
    assert xc(c.roundtrip("GET", "/p")) == "HIT"
    assert c.roundtrip("PATCH", "/p", body=b"y").status == 303
    o.script = script
    assert xc(c.roundtrip("GET", "/p")) == "MISS"


# ==== HEAD and Range (RFC 9110 9.3.2, 14) ===============================================


def test_range_answer_is_never_stored_as_the_full_response(
    make_proxy: Any, scripted: Callable[[Script], ScriptedOrigin], http_conn: Any
) -> None:
    full = b"0123456789abcdef"

    def script(n: int, req: Req) -> Answer:
        cc = [("Cache-Control", "max-age=60"), ("ETag", '"r"'), ("Accept-Ranges", "bytes")]
        if req.header("Range") == "bytes=0-3":
            return 206, cc + [("Content-Range", f"bytes 0-3/{len(full)}")], full[:4]
        return 200, cc, full

    o = scripted(script)
    p = make_proxy(cache_config(o.address))
    c = http_conn(p.port)
    r = c.roundtrip("GET", "/rng", headers=[("Range", "bytes=0-3")])
    assert r.status == 206 and r.body == b"0123"
    r = c.roundtrip("GET", "/rng")
    assert r.status == 200 and r.body == full and xc(r) == "MISS"
    r = c.roundtrip("GET", "/rng")
    assert r.status == 200 and r.body == full and xc(r) == "HIT"
    # a range request on the stored 200: a correct 206, or the whole 200 (Range ignored)
    r = c.roundtrip("GET", "/rng", headers=[("Range", "bytes=0-3")])
    if r.status == 206:
        assert r.body == b"0123" and r.header("Content-Range") == "bytes 0-3/16"
    else:
        assert r.status == 200 and r.body == full and r.header("Content-Range") is None


def test_head_answer_never_replaces_the_stored_get(
    make_proxy: Any, scripted: Callable[[Script], ScriptedOrigin], http_conn: Any
) -> None:
    # a HEAD validating a stale entry gets a changed 200 (no body): the GET entry is not
    # replaced by an empty one
    def script(n: int, req: Req) -> Answer:
        if n == 1:
            return 200, [("Cache-Control", "max-age=1"), ("Age", "5"), ("ETag", '"h1"')], b"get1"
        cc = [("Cache-Control", "max-age=60"), ("ETag", f'"h{n}"')]
        return 200, cc, f"get{n}".encode()

    o = scripted(script)
    p = make_proxy(cache_config(o.address))
    c = http_conn(p.port)
    c.roundtrip("GET", "/hd")
    r = c.roundtrip("HEAD", "/hd")
    assert r.status == 200 and r.body == b"" and o.seen[1].method == "HEAD"
    r = c.roundtrip("GET", "/hd")
    assert r.status == 200 and len(r.body) == int(r.header("Content-Length")) > 0
    assert r.body.startswith(b"get")


# ==== Vary (4.1) ========================================================================


def test_vary_on_two_fields_with_normalised_values(
    make_proxy: Any, scripted: Callable[[Script], ScriptedOrigin], http_conn: Any
) -> None:
    def script(n: int, req: Req) -> Answer:
        f = [("Cache-Control", "max-age=60"), ("Vary", "Accept-Language, X-Dev")]
        return 200, f, f"{req.header('Accept-Language')}/{req.header('X-Dev')} #{n}".encode()

    o = scripted(script)
    p = make_proxy(cache_config(o.address))
    c = http_conn(p.port)
    a = [("Accept-Language", "en, fr"), ("X-Dev", "1")]
    assert c.roundtrip("GET", "/v", headers=a).body == b"en, fr/1 #1"
    # same values, other whitespace and field order: the same variant
    r = c.roundtrip("GET", "/v", headers=[("X-Dev", "1"), ("Accept-Language", "en,fr")])
    assert xc(r) == "HIT" and r.body == b"en, fr/1 #1"
    # one field differs, or is absent: another variant
    r = c.roundtrip("GET", "/v", headers=[("Accept-Language", "en, fr"), ("X-Dev", "2")])
    assert xc(r) == "MISS"
    r = c.roundtrip("GET", "/v", headers=[("Accept-Language", "en, fr")])
    assert xc(r) == "MISS"
    # the value's case is significant by default
    r = c.roundtrip("GET", "/v", headers=[("Accept-Language", "EN, FR"), ("X-Dev", "1")])
    assert xc(r) == "MISS"
    assert xc(c.roundtrip("GET", "/v", headers=a)) == "HIT"


def test_a_changed_vary_is_honoured(
    make_proxy: Any, scripted: Callable[[Script], ScriptedOrigin], http_conn: Any
) -> None:
    # the origin stops varying on X-A and varies on X-B: the newest response's Vary is used
    def script(n: int, req: Req) -> Answer:
        vary = "X-A" if n == 1 else "X-B"
        f = [("Cache-Control", "max-age=60"), ("Vary", vary)]
        return 200, f, f"{vary} a={req.header('X-A')} b={req.header('X-B')} #{n}".encode()

    o = scripted(script)
    p = make_proxy(cache_config(o.address))
    c = http_conn(p.port)
    c.roundtrip("GET", "/vc", headers=[("X-A", "1"), ("X-B", "1")])
    r = c.roundtrip("GET", "/vc", headers=[("X-A", "2"), ("X-B", "1")])
    assert xc(r) == "MISS" and r.body.startswith(b"X-B")
    # same X-B, another X-A: the newest (Vary: X-B) response matches
    r = c.roundtrip("GET", "/vc", headers=[("X-A", "3"), ("X-B", "1")])
    assert xc(r) == "HIT" and r.body.endswith(b"#2")
    r = c.roundtrip("GET", "/vc", headers=[("X-A", "2"), ("X-B", "9")])
    assert xc(r) == "MISS"


# ==== Purge ============================================================================


def test_purge_by_url_removes_every_variant(
    make_proxy: Any, scripted: Callable[[Script], ScriptedOrigin], http_conn: Any
) -> None:
    def script(n: int, req: Req) -> Answer:
        return 200, [("Cache-Control", "max-age=60"), ("Vary", "X-L")], f"#{n}".encode()

    o = scripted(script)
    aport = free_port()
    p = make_proxy(cache_config(o.address, admin_port=aport))
    p.wait_log(r"admin endpoint on", timeout=10)
    c = http_conn(p.port)
    for v in ("a", "b"):
        c.roundtrip("GET", "/pv?q=1", headers=[("X-L", v)])
        assert xc(c.roundtrip("GET", "/pv?q=1", headers=[("X-L", v)])) == "HIT"
    c.roundtrip("GET", "/pv?q=2", headers=[("X-L", "a")])
    body = json.dumps({"url": "http://test.local/pv?q=1"}).encode()
    status, payload = admin_call(aport, "POST", "/cache/purge", body)
    assert status == 200 and json.loads(payload) == {"removed": 2}
    for v in ("a", "b"):
        assert xc(c.roundtrip("GET", "/pv?q=1", headers=[("X-L", v)])) == "MISS"
    assert xc(c.roundtrip("GET", "/pv?q=2", headers=[("X-L", "a")])) == "HIT"
    status, payload = admin_call(
        aport, "POST", "/cache/purge", json.dumps({"prefix": "http://test.local/pv?"}).encode()
    )
    # left: q=1 a and b (fetched again) and q=2 a
    assert status == 200 and json.loads(payload)["removed"] == 3
    assert xc(c.roundtrip("GET", "/pv?q=2", headers=[("X-L", "a")])) == "MISS"


def test_absolute_form_requests_share_the_entry_and_invalidate_it(
    make_proxy: Any, scripted: Callable[[Script], ScriptedOrigin], http_conn: Any
) -> None:
    # RFC 9112 3.2.2: the absolute-form target names the same URI as origin-form + Host;
    # 4.4: a successful unsafe request in absolute form invalidates that URI too
    o = scripted(
        lambda n, req: (200, [("Cache-Control", "max-age=60")], f"{req.method} {n}".encode())
    )
    p = make_proxy(cache_config(o.address))
    c = http_conn(p.port)
    assert xc(c.roundtrip("GET", "/abs", host="Test.Local")) == "MISS"
    assert xc(c.roundtrip("GET", "http://test.local/abs")) == "HIT"
    c.roundtrip("PUT", "http://TEST.local/abs", body=b"new")
    r = c.roundtrip("GET", "/abs", host="test.local")
    assert xc(r) == "MISS" and r.body == b"GET 3"
