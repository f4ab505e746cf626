"""RFC 9111 policy functions (csrc/fp_cache_policy.c), table by table, with the
section each row comes from."""

from __future__ import annotations

import calendar

import pytest

from fastproxy._cache import VARY_STAR
from fastproxy._cache_policy import (
    current_age,
    freshness_lifetime,
    heuristically_cacheable,
    parse_cache_control,
    parse_http_date,
    storable,
    vary_key,
)

T_1994 = calendar.timegm((1994, 11, 6, 8, 49, 37))  # RFC 9110 5.6.7's example instant
NOW_2026 = calendar.timegm((2026, 11, 27, 0, 0, 0))

# ----------------------------------------------------------------------------- Cache-Control


@pytest.mark.parametrize(
    ("value", "want"),
    [
        # 5.2.2.1 max-age, 5.2.2.10 s-maxage; delta-seconds (1.2.2)
        ("max-age=60", {"max-age": 60}),
        ("s-maxage=10, max-age=60", {"s-maxage": 10, "max-age": 60}),
        ("MAX-AGE=5", {"max-age": 5}),  # 5.2: directive names are case-insensitive
        ('max-age="30"', {"max-age": 30}),  # 5.2: recipients accept the quoted form
        ("max-age=99999999999999999999", {"max-age": 2147483648}),  # 1.2.2: 2^31 cap
        ("max-age=1, max-age=2", {"max-age": 1}),  # 4.2.1: the first occurrence
        ("max-age=abc", {"invalid": True}),  # not a delta-seconds
        ("max-age", {"invalid": True}),
        # 5.2.2.5 no-store, 5.2.2.4 no-cache, 5.2.2.7 private, 5.2.2.9 public
        ("no-store", {"no-store": True}),
        ("no-cache", {"no-cache": True}),
        ('no-cache="Set-Cookie"', {"no-cache": True}),  # qualified taken as unqualified
        ("private", {"private": True}),
        ('private="X-Secret"', {"private": True}),
        ("public, max-age=1", {"public": True, "max-age": 1}),
        # 5.2.2.2 must-revalidate, 5.2.2.8 proxy-revalidate, 5.2.2.6 no-transform
        ("must-revalidate", {"must-revalidate": True}),
        ("proxy-revalidate", {"proxy-revalidate": True}),
        ("no-transform", {"no-transform": True}),
        ("must-understand, no-store", {"must-understand": True, "no-store": True}),
        # RFC 5861 extensions
        ("stale-while-revalidate=30", {"stale-while-revalidate": 30}),
        ("stale-if-error=600", {"stale-if-error": 600}),
        # request directives 5.2.1.x
        ("only-if-cached", {"only-if-cached": True}),
        ("max-stale", {"max-stale": None}),  # 5.2.1.2: any staleness
        ("max-stale=5", {"max-stale": 5}),
        ("min-fresh=7", {"min-fresh": 7}),
        # 5.2.3: unknown extensions are ignored; odd spacing and empty members too
        ("community=UCI, , max-age = 3 ,", {"max-age": 3}),
        ('ext="a,b", no-store', {"no-store": True}),
        ("", {}),
    ],
)
def test_cache_control(value: str, want: dict[str, object]) -> None:
    assert parse_cache_control(value) == want


def test_cache_control_several_field_lines() -> None:
    # RFC 9110 5.3: several field lines form one comma-separated list
    assert parse_cache_control(["max-age=5", "no-cache"]) == {"max-age": 5, "no-cache": True}


# ----------------------------------------------------------------------------- dates


@pytest.mark.parametrize(
    "value",
    [
        "Sun, 06 Nov 1994 08:49:37 GMT",  # IMF-fixdate
        "Sunday, 06-Nov-94 08:49:37 GMT",  # obsolete RFC 850
        "Sun Nov  6 08:49:37 1994",  # ANSI C asctime()
        "  Sun, 06 Nov 1994 08:49:37 GMT ",  # OWS around the field value
    ],
)
def test_http_date_formats(value: str) -> None:
    # RFC 9110 5.6.7: recipients accept all three formats
    assert parse_http_date(value, now=NOW_2026) == T_1994


def test_rfc850_two_digit_year_is_recent_past() -> None:
    # RFC 9110 5.6.7: a year more than 50 years in the future is the most recent
    # past year with the same two digits (now = 2026)
    def year(yy: int) -> int | None:
        t = parse_http_date(f"Friday, 01-Jan-{yy:02d} 00:00:00 GMT", now=NOW_2026)
        return None if t is None else 1970 + round(t / (365.2425 * 86400))

    assert year(26) == 2026
    assert year(76) == 2076  # exactly 50 years ahead: not "more than"
    assert year(77) == 1977
    assert year(99) == 1999


@pytest.mark.parametrize(
    "value",
    [
        "0",
        "-1",
        "Sun, 06 Nov 1994 08:49:37 UTC",  # must be "GMT"
        "Sun, 31 Feb 1994 08:49:37 GMT",
        "Sun, 06 Nov 1994 25:49:37 GMT",
        "Sun, 6 Nov 1994 08:49:37 GMT",
        "yesterday",
        "",
    ],
)
def test_invalid_dates(value: str) -> None:
    assert parse_http_date(value, now=NOW_2026) is None


def test_date_edges() -> None:
    assert parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT") == 0
    assert parse_http_date("Tue, 29 Feb 2000 12:00:00 GMT") == calendar.timegm(
        (2000, 2, 29, 12, 0, 0)
    )


# ----------------------------------------------------------------------------- storability


@pytest.mark.parametrize(
    ("status", "heuristic"),
    [(200, True), (203, True), (204, True), (206, True), (300, True), (301, True)]
    + [(308, True), (404, True), (405, True), (410, True), (414, True), (501, True)]
    + [(201, False), (302, False), (303, False), (307, False), (400, False), (500, False)]
    + [(503, False)],
)
def test_heuristically_cacheable_statuses(status: int, heuristic: bool) -> None:
    # RFC 9110 15.1 lists the status codes cacheable by default
    assert heuristically_cacheable(status) is heuristic


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"status": 200}, ""),  # 3: heuristically cacheable status
        ({"status": 200, "method": "POST"}, "method"),  # 3: only GET is stored here
        ({"status": 200, "method": "HEAD"}, "method"),
        ({"status": 100}, "status"),  # 3: final responses only
        ({"status": 206}, "status"),  # partial content is not combined
        ({"status": 304}, "status"),
        ({"status": 200, "response_cc": "no-store"}, "no-store"),  # 5.2.2.5
        ({"status": 200, "request_cc": "no-store"}, "no-store"),  # 5.2.1.5
        ({"status": 200, "response_cc": "private, max-age=60"}, "private"),  # 5.2.2.7
        ({"status": 302}, "no-freshness"),  # 3: nothing says it may be stored
        ({"status": 302, "response_cc": "max-age=60"}, ""),
        ({"status": 302, "response_cc": "s-maxage=60"}, ""),
        ({"status": 302, "expires": True}, ""),
        ({"status": 500, "response_cc": "public"}, ""),
        # 3.5: Authorization needs must-revalidate, public or s-maxage
        ({"status": 200, "authorization": True}, "authorization"),
        ({"status": 200, "authorization": True, "response_cc": "max-age=60"}, "authorization"),
        ({"status": 200, "authorization": True, "response_cc": "public"}, ""),
        ({"status": 200, "authorization": True, "response_cc": "must-revalidate"}, ""),
        ({"status": 200, "authorization": True, "response_cc": "s-maxage=5"}, ""),
        # Set-Cookie is refused unless store_set_cookie is on (issue 7)
        ({"status": 200, "set_cookie": True}, "set-cookie"),
        ({"status": 200, "set_cookie": True, "allow_set_cookie": True}, ""),
        ({"status": 200, "vary_star": True}, "vary-star"),  # 4.1: can never be reused
        # no-cache still allows storing (5.2.2.4): it is reused only after validation
        ({"status": 200, "response_cc": "no-cache"}, ""),
    ],
)
def test_storable(kwargs: dict[str, object], reason: str) -> None:
    assert storable(**kwargs) == reason  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- freshness


D = 1_700_000_000


@pytest.mark.parametrize(
    ("kwargs", "want"),
    [
        # 4.2.1: s-maxage (shared caches) > max-age > Expires
        ({"response_cc": "s-maxage=10, max-age=60", "date": D, "expires": D + 999}, 10),
        ({"response_cc": "max-age=60", "date": D, "expires": D + 999}, 60),
        ({"date": D, "expires": D + 999}, 999),
        ({"date": D, "expires": D - 5}, 0),  # already expired
        ({"expires": D + 30, "response_time": D}, 30),  # no Date: the receipt time
        ({"date": D, "expires_invalid": True}, 0),  # 5.3: invalid Expires = expired
        ({"response_cc": "max-age=x", "date": D, "expires": D + 60}, 0),  # malformed: stale
        # 4.2.2: heuristic 10% of Date - Last-Modified, capped (default one day)
        ({"date": D, "last_modified": D - 1000}, 100),
        ({"date": D, "last_modified": D - 100 * 86400}, 86400),
        ({"date": D, "last_modified": D - 1000, "heuristic_cap": 50}, 50),
        ({"date": D}, 0),  # no Last-Modified: nothing to go on
        ({"date": D, "last_modified": D + 10}, 0),  # in the future: nothing either
    ],
)
def test_freshness_lifetime(kwargs: dict[str, object], want: int) -> None:
    assert freshness_lifetime(200, **kwargs) == want  # type: ignore[arg-type]


def test_heuristics_only_for_cacheable_statuses() -> None:
    # 4.2.2: heuristic freshness only for statuses cacheable by default, or `public`
    assert freshness_lifetime(302, date=D, last_modified=D - 1000) == 0
    assert freshness_lifetime(302, "public", date=D, last_modified=D - 1000) == 100
    assert freshness_lifetime(404, date=D, last_modified=D - 1000) == 100


# ----------------------------------------------------------------------------- age


def test_current_age_example() -> None:
    # 4.2.3: apparent_age = max(0, response_time - date_value)
    #        corrected_age_value = age_value + response_delay
    #        corrected_initial_age = max(apparent_age, corrected_age_value)
    #        current_age = corrected_initial_age + resident_time
    age = current_age(D + 100, response_time=D + 10, request_time=D + 8, date=D + 5, age_value=1)
    assert age == max(5, 1 + 2) + 90


def test_current_age_upstream_age_wins() -> None:
    age = current_age(D + 10, response_time=D, request_time=D, date=D, age_value=300)
    assert age == 310


def test_current_age_clock_skew_never_negative() -> None:
    # a Date from the future gives no negative apparent age
    assert current_age(D, response_time=D, request_time=D, date=D + 500) == 0
    assert current_age(D, response_time=D, request_time=D) == 0  # no Date at all


# ----------------------------------------------------------------------------- Vary


def head(*fields: str) -> bytes:
    return ("GET / HTTP/1.1\r\n" + "".join(f + "\r\n" for f in fields) + "\r\n").encode()


def test_vary_none_and_star() -> None:
    assert vary_key("", head("Accept-Encoding: gzip")) == 0  # no Vary: no secondary key
    # 4.1: "*" always fails to match
    assert vary_key("*", head()) == VARY_STAR
    assert vary_key("Accept, *", head()) == VARY_STAR


def test_vary_selects_on_listed_fields_only() -> None:
    a = vary_key("Accept-Encoding", head("Accept-Encoding: gzip", "User-Agent: a"))
    b = vary_key("Accept-Encoding", head("Accept-Encoding: gzip", "User-Agent: b"))
    c = vary_key("Accept-Encoding", head("Accept-Encoding: br"))
    assert a == b != c


def test_vary_normalisation() -> None:
    # 4.1: values may be normalised: whitespace around list members, name case,
    # the order of names in Vary, several field lines forming one list.
    base = vary_key("Accept-Encoding, Accept", head("Accept: a/b", "Accept-Encoding: gzip, br"))
    assert base == vary_key(
        "accept ,ACCEPT-ENCODING", head("accept-encoding:gzip,br", "ACCEPT:   a/b  ")
    )
    assert base == vary_key(
        ["Accept", "Accept-Encoding"],
        head("Accept: a/b", "Accept-Encoding: gzip", "Accept-Encoding: br"),
    )
    assert base != vary_key("Accept-Encoding, Accept", head("Accept: a/b", "Accept-Encoding: br"))


def test_vary_absent_differs_from_empty() -> None:
    absent = vary_key("X-Mode", head())
    empty = vary_key("X-Mode", head("X-Mode:"))
    value = vary_key("X-Mode", head("X-Mode: 1"))
    assert len({absent, empty, value}) == 3
    assert 0 not in {absent, empty, value}
