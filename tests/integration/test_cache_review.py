"""Review of the response cache as a SHARED cache (RFC 9111; RFC 9110 sections 6.6.1,
13, 14, 15.4.5) with a real fastproxy process, real sockets on 127.0.0.1 and a scripted,
recording origin.  Section numbers are RFC 9111's unless said otherwise.

Time is controlled through the origin's Date / Age / Expires values (an entry is stored
stale at once with ``Age: 5`` against ``max-age=1``, or with a Date in the past), never by
sleeping until an entry expires."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from email.utils import formatdate, parsedate_to_datetime
from typing import Any

import pytest
from support import QuietHandler, ThreadedOrigin, admin_call, free_port, wait_for

Fields = list[tuple[str, str]]
Answer = tuple[int, Fields, bytes]


class Req:
    """One request as the origin got it."""

    def __init__(self, method: str, path: str, headers: Any) -> None:
        self.method = method
        self.path = path
        self.fields = [(k, v) for k, v in headers.items()]

    def header(self, name: str) -> str | None:
        for k, v in self.fields:
            if k.lower() == name.lower():
                return v
        return None


Script = Callable[[int, Req], Answer]


class Origin(ThreadedOrigin):
    """An HTTP/1.1 origin (a thread per connection, keep-alive) that records every request
    (``seen``) and answers ``script(n, req)`` (n: 1-based number of the request).  It sends
    exactly the fields the script gives (no automatic Date or Server); Content-Length is
    added unless the status is 1xx/204/304 or the script sets it."""

    def __init__(self, script: Script) -> None:
        self.seen: list[Req] = []
        self.script = script
        lock = threading.Lock()
        origin = self

        class Handler(QuietHandler):
            def _any(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                if n:
                    self.rfile.read(n)
                req = Req(self.command, self.path, self.headers)
                with lock:
                    origin.seen.append(req)
                    k = len(origin.seen)
                status, fields, body = origin.script(k, req)
                self.send_response_only(status)
                for name, value in fields:
                    self.send_header(name, value)
                no_body = status in (204, 304) or status < 200
                if not no_body and not any(f[0].lower() == "content-length" for f in fields):
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if not no_body and self.command != "HEAD":
                    self.wfile.write(body)

            do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = _any  # noqa: N815

        self.serve(Handler)

    def count(self, method: str = "GET") -> int:
        return sum(1 for r in self.seen if r.method == method)


@pytest.fixture
def scripted() -> Iterator[Callable[[Script], Origin]]:
    made: list[Origin] = []

    def make(script: Script) -> Origin:
        made.append(Origin(script))
        return made[-1]

    yield make
    for o in made:
        o.close()


def _cfg(upstream: str, admin_port: int | None = None, **cache: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "cache": {"size": "4MiB", "max_entry_size": "1MiB", **cache},
        "upstreams": {"app": {"servers": [upstream], "retries": 0}},
        "routes": [{"path_prefix": "/", "upstream": "app", "cache": True}],
    }
    if admin_port is not None:
        cfg["admin"] = {"listen": f"127.0.0.1:{admin_port}"}
    return cfg


def http_date(t: float) -> str:
    return formatdate(t, usegmt=True)


def xc(r: Any) -> str | None:
    return r.header("X-Cache")


# ==== 1. Freshening with a 304 (4.3.3, 4.3.4, 3.2) =========================================


def test_304_with_another_strong_validator_does_not_refresh_the_entry(
    make_proxy: Any, scripted: Callable[[Script], Origin], http_conn: Any
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
    p = make_proxy(_cfg(o.address))
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
    make_proxy: Any, scripted: Callable[[Script], Origin], http_conn: Any
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
    p = make_proxy(_cfg(o.address))
    c = http_conn(p.port)
    assert xc(c.roundtrip("GET", "/x")) == "MISS"
    r2 = c.roundtrip("GET", "/x")
    assert xc(r2) == "REVALIDATED" and r2.header("Expires") == http_date(now - 90)
    # the stored response now says Date: now, Expires: 90 s ago: it is stale
    r3 = c.roundtrip("GET", "/x")
    assert xc(r3) != "HIT", (r3.header("Date"), r3.header("Expires"), r3.header("Age"))
    assert len(o.seen) == 3


def test_304_with_expires_only_keeps_the_stored_max_age(
    make_proxy: Any, scripted: Callable[[Script], Origin], http_conn: Any
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
    p = make_proxy(_cfg(o.address))
    c = http_conn(p.port)
    c.roundtrip("GET", "/m")
    r2 = c.roundtrip("GET", "/m")
    assert xc(r2) == "REVALIDATED" and r2.header("Cache-Control") == "max-age=1"
    r3 = c.roundtrip("GET", "/m")
    assert xc(r3) != "HIT", (r3.header("Cache-Control"), r3.header("Age"))


def test_304_without_cache_control_keeps_must_revalidate(
    make_proxy: Any, scripted: Callable[[Script], Origin], http_conn: Any
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
    p = make_proxy(_cfg(o.address))
    c = http_conn(p.port)
    c.roundtrip("GET", "/w")
    r2 = c.roundtrip("GET", "/w")
    assert xc(r2) == "REVALIDATED"
    assert r2.header("Cache-Control") == "max-age=1, must-revalidate"
    r3 = c.roundtrip("GET", "/w", headers=[("Cache-Control", "max-stale")])
    assert xc(r3) != "STALE", r3
    assert len(o.seen) == 3


def test_304_set_cookie_is_not_replayed_to_other_clients(
    make_proxy: Any, scripted: Callable[[Script], Origin], http_conn: Any
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
    p = make_proxy(_cfg(o.address))
    alice = http_conn(p.port)
    alice.roundtrip("GET", "/c")
    r = alice.roundtrip("GET", "/c")
    assert xc(r) == "REVALIDATED" and r.header("Set-Cookie") == "sid=alice"
    bob = http_conn(p.port).roundtrip("GET", "/c")
    assert bob.status == 200 and bob.body == b"c\n" and xc(bob) == "HIT"
    assert bob.header("Set-Cookie") is None, bob.headers


def test_304_set_cookie_is_kept_when_store_set_cookie_is_on(
    make_proxy: Any, scripted: Callable[[Script], Origin], http_conn: Any
) -> None:
    # store_set_cookie = true: the refreshed head keeps the 304's Set-Cookie (3.2), once
    def script(n: int, req: Req) -> Answer:
        if n == 1:
            f = [("Cache-Control", "max-age=1"), ("Age", "5"), ("ETag", '"k"')]
            return 200, f + [("Set-Cookie", "v=1")], b"k\n"
        f = [("ETag", '"k"'), ("Cache-Control", "max-age=600"), ("Set-Cookie", "v=2")]
        return 304, f, b""

    o = scripted(script)
    p = make_proxy(_cfg(o.address, store_set_cookie=True))
    c = http_conn(p.port)
    c.roundtrip("GET", "/k")
    r = c.roundtrip("GET", "/k")
    assert xc(r) == "REVALIDATED" and r.header_all("Set-Cookie") == ["v=2"]
    r = http_conn(p.port).roundtrip("GET", "/k")
    assert xc(r) == "HIT" and r.header_all("Set-Cookie") == ["v=2"], r.headers


def test_304_that_forbids_storing_is_served_once_and_not_kept(
    make_proxy: Any, scripted: Callable[[Script], Origin], http_conn: Any
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
    p = make_proxy(_cfg(o.address))
    c = http_conn(p.port)
    c.roundtrip("GET", "/n")
    r = c.roundtrip("GET", "/n")
    assert (xc(r), r.body, r.header("Cache-Control")) == ("REVALIDATED", b"n\n", "no-store")
    r = c.roundtrip("GET", "/n")
    assert (xc(r), r.body) == ("MISS", b"fresh n\n") and o.seen[2].header("If-None-Match") is None


def test_304_refresh_updates_age_and_keeps_content_length(
    make_proxy: Any, scripted: Callable[[Script], Origin], http_conn: Any
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
    p = make_proxy(_cfg(o.address))
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
    make_proxy: Any, scripted: Callable[[Script], Origin], http_conn: Any
) -> None:
    # 4.3.3: a full response to the validation is used, and (storable) replaces the entry
    def script(n: int, req: Req) -> Answer:
        if n == 1:
            return 200, [("Cache-Control", "max-age=1"), ("Age", "5"), ("ETag", '"1"')], b"one"
        return 200, [("Cache-Control", "max-age=600"), ("ETag", '"2"')], b"two!"

    o = scripted(script)
    p = make_proxy(_cfg(o.address))
    c = http_conn(p.port)
    c.roundtrip("GET", "/rep")
    r2 = c.roundtrip("GET", "/rep")
    assert o.seen[1].header("If-None-Match") == '"1"'
    assert r2.status == 200 and r2.body == b"two!" and xc(r2) == "MISS"
    r3 = c.roundtrip("GET", "/rep")
    assert xc(r3) == "HIT" and r3.body == b"two!" and r3.header("ETag") == '"2"'
    assert len(o.seen) == 2


def test_unconditional_client_never_gets_the_caches_own_304_with_request_no_store(
    make_proxy: Any, scripted: Callable[[Script], Origin], http_conn: Any
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
    p = make_proxy(_cfg(o.address))
    c = http_conn(p.port)
    assert c.roundtrip("GET", "/ns").body == b"data\n"
    r = c.roundtrip("GET", "/ns", headers=[("Cache-Control", "no-store")])
    assert o.seen[-1].header("If-None-Match") is None or r.status != 304, (
        f"client got {r.status} {r.headers} for an unconditional GET"
    )
    assert r.status == 200 and r.body == b"data\n"


def test_unconditional_client_never_gets_a_304_when_the_entry_went_away(
    make_proxy: Any, scripted: Callable[[Script], Origin], http_conn: Any
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
    p = make_proxy(_cfg(o.address, admin_port=aport))
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


# ==== 2. Date and Age (RFC 9110 6.6.1; 4.2.3) ==============================================


def test_stored_response_without_date_gets_one(
    make_proxy: Any, scripted: Callable[[Script], Origin], http_conn: Any
) -> None:
    # RFC 9110 6.6.1: "A recipient with a clock that receives a response message without a
    # Date header field MUST record the time it was received and append a corresponding
    # Date header field to the message's header section if it is cached or forwarded
    # downstream."
    o = scripted(lambda n, req: (200, [("Cache-Control", "max-age=60")], b"no date\n"))
    p = make_proxy(_cfg(o.address))
    c = http_conn(p.port)
    r1 = c.roundtrip("GET", "/nd")
    r2 = c.roundtrip("GET", "/nd")
    assert xc(r1) == "MISS" and xc(r2) == "HIT"
    assert r1.header("Date") is not None, r1.headers
    # the hit carries the Date the miss was given (the time it was received), once
    assert r2.header_all("Date") == [r1.header("Date")], r2.headers
    assert abs(parsedate_to_datetime(r1.header("Date")).timestamp() - time.time()) < 5


def test_local_answers_and_dated_responses_carry_one_date(
    make_proxy: Any, scripted: Callable[[Script], Origin], http_conn: Any
) -> None:
    # RFC 9110 6.6.1: the proxy answering itself is an origin with a clock (Date on 2xx-4xx);
    # a response that has a Date keeps it, alone
    o = scripted(lambda n, req: (200, [("Date", "Mon, 01 Jan 2024 00:00:00 GMT")], b"d\n"))
    cfg = _cfg(o.address)
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


def test_entry_refreshed_by_a_304_without_date_is_fresh_again(
    make_proxy: Any, scripted: Callable[[Script], Origin], http_conn: Any
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
    p = make_proxy(_cfg(o.address))
    c = http_conn(p.port)
    assert xc(c.roundtrip("GET", "/d")) == "MISS"
    assert xc(c.roundtrip("GET", "/d")) == "REVALIDATED"
    r3 = c.roundtrip("GET", "/d")
    assert xc(r3) == "HIT", (xc(r3), r3.header("Age"), r3.header("Date"), len(o.seen))


def test_apparent_age_from_an_old_date_makes_the_entry_stale(
    make_proxy: Any, scripted: Callable[[Script], Origin], http_conn: Any
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
    p = make_proxy(_cfg(o.address))
    c = http_conn(p.port)
    c.roundtrip("GET", "/old")
    r = c.roundtrip("GET", "/old")
    assert xc(r) == "MISS" and r.body == b"old 2\n"
    o2 = scripted(script2)
    p2 = make_proxy(_cfg(o2.address))
    c2 = http_conn(p2.port)
    c2.roundtrip("GET", "/f")
    r = c2.roundtrip("GET", "/f")
    assert xc(r) == "HIT" and 100 <= int(r.header("Age")) < 110


def test_response_delay_is_added_to_the_received_age(
    make_proxy: Any, scripted: Callable[[Script], Origin], http_conn: Any
) -> None:
    # 4.2.3 corrected_age_value = age_value + response_delay (response_time - request_time)
    def script(n: int, req: Req) -> Answer:
        time.sleep(2.1)
        return 200, [("Cache-Control", "max-age=600"), ("Age", "10")], b"slow\n"

    o = scripted(script)
    p = make_proxy(_cfg(o.address))
    c = http_conn(p.port)
    c.roundtrip("GET", "/slowage", timeout=10)
    r = c.roundtrip("GET", "/slowage")
    assert xc(r) == "HIT" and 12 <= int(r.header("Age")) < 20, r.header("Age")


# ==== 3. Freshness and directives (4.2, 5.2) ===============================================


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
    make_proxy: Any, scripted: Callable[[Script], Origin], http_conn: Any, cc: str, second: str
) -> None:
    o = scripted(lambda n, req: (200, [("Cache-Control", cc)], f"#{n}".encode()))
    p = make_proxy(_cfg(o.address))
    c = http_conn(p.port)
    c.roundtrip("GET", "/dir")
    r = c.roundtrip("GET", "/dir")
    assert xc(r) == second
    assert len(o.seen) == (1 if second == "HIT" else 2)


def test_quoted_no_cache_list_does_not_hide_max_age(
    make_proxy: Any, scripted: Callable[[Script], Origin], http_conn: Any
) -> None:
    # 5.2: a quoted-string argument with commas is one directive; the max-age after it is
    # still read (validated each time because of no-cache, documented as unqualified)
    def script(n: int, req: Req) -> Answer:
        if req.header("If-None-Match") == '"q"':
            return 304, [("ETag", '"q"')], b""
        return 200, [("Cache-Control", 'no-cache="A, B", max-age=60'), ("ETag", '"q"')], b"q"

    o = scripted(script)
    p = make_proxy(_cfg(o.address))
    c = http_conn(p.port)
    c.roundtrip("GET", "/q")
    r = c.roundtrip("GET", "/q")
    assert xc(r) == "REVALIDATED" and r.body == b"q"


def test_heuristic_freshness_statuses(
    make_proxy: Any, scripted: Callable[[Script], Origin], http_conn: Any
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
    p = make_proxy(_cfg(o.address))
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
    make_proxy: Any, scripted: Callable[[Script], Origin], http_conn: Any
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
    p = make_proxy(_cfg(o.address))
    c = http_conn(p.port)
    c.roundtrip("GET", "/mr")
    r = c.roundtrip("GET", "/mr")  # stale-while-revalidate would serve v1
    assert xc(r) == "MISS" and r.body == b"v2\n"
    fail.set()
    r = c.roundtrip("GET", "/mr")
    assert r.status == 503 and xc(r) != "STALE"


def test_no_cache_response_is_not_served_on_origin_error(
    make_proxy: Any, scripted: Callable[[Script], Origin], http_conn: Any
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
    p = make_proxy(_cfg(o.address))
    c = http_conn(p.port)
    c.roundtrip("GET", "/nc")
    fail.set()
    r = c.roundtrip("GET", "/nc")
    assert o.seen[-1].header("If-None-Match") == '"nc"'
    assert r.status == 503 and xc(r) != "STALE", (r.status, xc(r), r.body)


def test_request_max_stale_with_a_bound(
    make_proxy: Any, scripted: Callable[[Script], Origin], http_conn: Any
) -> None:
    # 5.2.1.2: max-stale=N accepts at most N seconds of staleness (stored 4 s stale here)
    o = scripted(lambda n, req: (200, [("Cache-Control", "max-age=1"), ("Age", "5")], b"%d" % n))
    p = make_proxy(_cfg(o.address))
    c = http_conn(p.port)
    c.roundtrip("GET", "/ms")
    r = c.roundtrip("GET", "/ms", headers=[("Cache-Control", "max-stale=2")])
    assert xc(r) == "MISS" and r.body == b"2"
    r = c.roundtrip("GET", "/ms", headers=[("Cache-Control", "max-stale=30")])
    assert xc(r) == "STALE" and r.body == b"2"


def test_request_no_cache_validates_a_fresh_entry(
    make_proxy: Any, scripted: Callable[[Script], Origin], http_conn: Any
) -> None:
    # 5.2.1.4: request no-cache: the fresh entry is validated (conditionally) first
    def script(n: int, req: Req) -> Answer:
        if req.header("If-None-Match") == '"f"':
            return 304, [("ETag", '"f"'), ("Cache-Control", "max-age=60")], b""
        return 200, [("ETag", '"f"'), ("Cache-Control", "max-age=60")], b"fresh"

    o = scripted(script)
    p = make_proxy(_cfg(o.address))
    c = http_conn(p.port)
    c.roundtrip("GET", "/rnc")
    r = c.roundtrip("GET", "/rnc", headers=[("Cache-Control", "no-cache")])
    assert xc(r) == "REVALIDATED" and r.status == 200 and r.body == b"fresh"
    assert o.seen[1].header("If-None-Match") == '"f"'


def test_authorization_with_must_revalidate_is_stored(
    make_proxy: Any, scripted: Callable[[Script], Origin], http_conn: Any
) -> None:
    # 3.5: must-revalidate allows a shared cache to store a response to an authorized
    # request; proxy-revalidate or max-age alone do not
    def script(n: int, req: Req) -> Answer:
        cc = "max-age=60, must-revalidate" if "mr" in req.path else "max-age=60, proxy-revalidate"
        return 200, [("Cache-Control", cc)], f"{req.path} {n}".encode()

    o = scripted(script)
    p = make_proxy(_cfg(o.address))
    c = http_conn(p.port)
    auth = [("Authorization", "Bearer x")]
    c.roundtrip("GET", "/mr", headers=auth)
    assert xc(c.roundtrip("GET", "/mr", headers=auth)) == "HIT"
    c.roundtrip("GET", "/pr", headers=auth)
    assert xc(c.roundtrip("GET", "/pr", headers=auth)) == "MISS"


def test_post_response_with_freshness_is_not_served_for_get(
    make_proxy: Any, scripted: Callable[[Script], Origin], http_conn: Any
) -> None:
    # 4: a POST response is only reusable for a GET when Content-Location names the target
    # (and storing it is optional): fastproxy stores GET responses only.  The POST's
    # success also invalidates the URI (4.4).
    def script(n: int, req: Req) -> Answer:
        f = [("Cache-Control", "max-age=60"), ("Content-Location", "/p")]
        return 200, f, f"{req.method} {n}".encode()

    o = scripted(script)
    p = make_proxy(_cfg(o.address))
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


# ==== 4. Conditional requests from the client (RFC 9110 13; 4.3.2) =========================


def test_if_none_match_star_on_an_entry_without_etag(
    make_proxy: Any, scripted: Callable[[Script], Origin], http_conn: Any
) -> None:
    # RFC 9110 13.2.1: a cache MUST evaluate received preconditions; 13.1.2: "If-None-Match:
    # *" is false when a current representation exists, so a GET gets 304.
    o = scripted(lambda n, req: (200, [("Cache-Control", "max-age=60")], b"no etag\n"))
    p = make_proxy(_cfg(o.address))
    c = http_conn(p.port)
    c.roundtrip("GET", "/star")
    r = c.roundtrip("GET", "/star", headers=[("If-None-Match", "*")])
    assert len(o.seen) == 1 and xc(r) == "HIT"
    assert r.status == 304, (r.status, r.body)


def test_if_none_match_weak_and_list_forms(
    make_proxy: Any, scripted: Callable[[Script], Origin], http_conn: Any
) -> None:
    # RFC 9110 13.1.2: weak comparison for If-None-Match; a list; "*"; precedence over
    # If-Modified-Since (13.1.3: IMS ignored when INM is present)
    lm = http_date(time.time() - 3600)
    f = [("Cache-Control", "max-age=60"), ("ETag", 'W/"w1"'), ("Last-Modified", lm)]
    o = scripted(lambda n, req: (200, f, b"weak\n"))
    p = make_proxy(_cfg(o.address))
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
    make_proxy: Any, scripted: Callable[[Script], Origin], http_conn: Any
) -> None:
    # 4.3.2: with neither Last-Modified nor Date in the stored response, the cache SHOULD
    # answer 304 when it received the response at or before the If-Modified-Since time.
    o = scripted(lambda n, req: (200, [("Cache-Control", "max-age=60")], b"undated\n"))
    p = make_proxy(_cfg(o.address))
    c = http_conn(p.port)
    c.roundtrip("GET", "/ims")
    later = http_date(time.time() + 60)
    r = c.roundtrip("GET", "/ims", headers=[("If-Modified-Since", later)])
    assert xc(r) == "HIT" and r.status == 304, (r.status, r.headers)


def test_if_modified_since_falls_back_to_date(
    make_proxy: Any, scripted: Callable[[Script], Origin], http_conn: Any
) -> None:
    # 4.3.2: no Last-Modified: the stored Date is compared
    d = time.time() - 50
    o = scripted(
        lambda n, req: (200, [("Cache-Control", "max-age=600"), ("Date", http_date(d))], b"x")
    )
    p = make_proxy(_cfg(o.address))
    c = http_conn(p.port)
    c.roundtrip("GET", "/imsd")
    r = c.roundtrip("GET", "/imsd", headers=[("If-Modified-Since", http_date(d + 10))])
    assert r.status == 304
    r = c.roundtrip("GET", "/imsd", headers=[("If-Modified-Since", http_date(d - 10))])
    assert r.status == 200 and r.body == b"x"


def test_conditional_client_on_a_stale_entry_keeps_its_own_precondition(
    make_proxy: Any, scripted: Callable[[Script], Origin], http_conn: Any
) -> None:
    # 4.3.2: the client's If-None-Match goes to the origin; its 304 is the client's answer
    def script(n: int, req: Req) -> Answer:
        if req.header("If-None-Match") == '"mine"':
            return 304, [("ETag", '"mine"')], b""
        return 200, [("Cache-Control", "max-age=1"), ("Age", "5"), ("ETag", '"k"')], b"k"

    o = scripted(script)
    p = make_proxy(_cfg(o.address))
    c = http_conn(p.port)
    c.roundtrip("GET", "/cc")
    r = c.roundtrip("GET", "/cc", headers=[("If-None-Match", '"mine"')])
    assert o.seen[1].header("If-None-Match") == '"mine"'
    assert r.status == 304 and r.body == b""
    # the 304 was not stored as the response
    r = c.roundtrip("GET", "/cc")
    assert r.status == 200 and r.body == b"k"


# ==== 5. HEAD and Range (RFC 9110 9.3.2, 14) ===============================================


def test_range_answer_is_never_stored_as_the_full_response(
    make_proxy: Any, scripted: Callable[[Script], Origin], http_conn: Any
) -> None:
    full = b"0123456789abcdef"

    def script(n: int, req: Req) -> Answer:
        cc = [("Cache-Control", "max-age=60"), ("ETag", '"r"'), ("Accept-Ranges", "bytes")]
        if req.header("Range") == "bytes=0-3":
            return 206, cc + [("Content-Range", f"bytes 0-3/{len(full)}")], full[:4]
        return 200, cc, full

    o = scripted(script)
    p = make_proxy(_cfg(o.address))
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
    make_proxy: Any, scripted: Callable[[Script], Origin], http_conn: Any
) -> None:
    # a HEAD validating a stale entry gets a changed 200 (no body): the GET entry is not
    # replaced by an empty one
    def script(n: int, req: Req) -> Answer:
        if n == 1:
            return 200, [("Cache-Control", "max-age=1"), ("Age", "5"), ("ETag", '"h1"')], b"get1"
        cc = [("Cache-Control", "max-age=60"), ("ETag", f'"h{n}"')]
        return 200, cc, f"get{n}".encode()

    o = scripted(script)
    p = make_proxy(_cfg(o.address))
    c = http_conn(p.port)
    c.roundtrip("GET", "/hd")
    r = c.roundtrip("HEAD", "/hd")
    assert r.status == 200 and r.body == b"" and o.seen[1].method == "HEAD"
    r = c.roundtrip("GET", "/hd")
    assert r.status == 200 and len(r.body) == int(r.header("Content-Length")) > 0
    assert r.body.startswith(b"get")


# ==== 6. Vary (4.1) ========================================================================


def test_vary_on_two_fields_with_normalised_values(
    make_proxy: Any, scripted: Callable[[Script], Origin], http_conn: Any
) -> None:
    def script(n: int, req: Req) -> Answer:
        f = [("Cache-Control", "max-age=60"), ("Vary", "Accept-Language, X-Dev")]
        return 200, f, f"{req.header('Accept-Language')}/{req.header('X-Dev')} #{n}".encode()

    o = scripted(script)
    p = make_proxy(_cfg(o.address))
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
    make_proxy: Any, scripted: Callable[[Script], Origin], http_conn: Any
) -> None:
    # the origin stops varying on X-A and varies on X-B: the newest response's Vary is used
    def script(n: int, req: Req) -> Answer:
        vary = "X-A" if n == 1 else "X-B"
        f = [("Cache-Control", "max-age=60"), ("Vary", vary)]
        return 200, f, f"{vary} a={req.header('X-A')} b={req.header('X-B')} #{n}".encode()

    o = scripted(script)
    p = make_proxy(_cfg(o.address))
    c = http_conn(p.port)
    c.roundtrip("GET", "/vc", headers=[("X-A", "1"), ("X-B", "1")])
    r = c.roundtrip("GET", "/vc", headers=[("X-A", "2"), ("X-B", "1")])
    assert xc(r) == "MISS" and r.body.startswith(b"X-B")
    # same X-B, another X-A: the newest (Vary: X-B) response matches
    r = c.roundtrip("GET", "/vc", headers=[("X-A", "3"), ("X-B", "1")])
    assert xc(r) == "HIT" and r.body.endswith(b"#2")
    r = c.roundtrip("GET", "/vc", headers=[("X-A", "2"), ("X-B", "9")])
    assert xc(r) == "MISS"


# ==== 7. Purge ============================================================================


def test_purge_by_url_removes_every_variant(
    make_proxy: Any, scripted: Callable[[Script], Origin], http_conn: Any
) -> None:
    def script(n: int, req: Req) -> Answer:
        return 200, [("Cache-Control", "max-age=60"), ("Vary", "X-L")], f"#{n}".encode()

    o = scripted(script)
    aport = free_port()
    p = make_proxy(_cfg(o.address, admin_port=aport))
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
    make_proxy: Any, scripted: Callable[[Script], Origin], http_conn: Any
) -> None:
    # RFC 9112 3.2.2: the absolute-form target names the same URI as origin-form + Host;
    # 4.4: a successful unsafe request in absolute form invalidates that URI too
    o = scripted(
        lambda n, req: (200, [("Cache-Control", "max-age=60")], f"{req.method} {n}".encode())
    )
    p = make_proxy(_cfg(o.address))
    c = http_conn(p.port)
    assert xc(c.roundtrip("GET", "/abs", host="Test.Local")) == "MISS"
    assert xc(c.roundtrip("GET", "http://test.local/abs")) == "HIT"
    c.roundtrip("PUT", "http://TEST.local/abs", body=b"new")
    r = c.roundtrip("GET", "/abs", host="test.local")
    assert xc(r) == "MISS" and r.body == b"GET 3"


@pytest.mark.parametrize(
    "client_fields",
    [[("If-None-Match", '"w"')], [("Cache-Control", "only-if-cached")], [("Range", "bytes=0-1")]],
    ids=["own-precondition", "only-if-cached", "range"],
)
def test_stale_while_revalidate_refresh_is_the_plain_request(
    make_proxy: Any, scripted: Callable[[Script], Origin], http_conn: Any, client_fields: Fields
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
    p = make_proxy(_cfg(o.address))
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
