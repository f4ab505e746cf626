"""Route selection: fastproxy._tables.Router built from a Config.

Router(config).match_py(host, normalised_path) returns (label, prefix, host)
of the route a request meets, or None.  A route's label is its upstream name,
or "route<i>" (its index in the file) for `return` / `redirect` routes; the
tests below mostly use `return` routes so that every route has its own label.

Selection (the way nginx picks a server block, then a location):
  1. host tier: the exact host, else the longest matching "*.suffix"
     wildcard, else the routes without a host;
  2. inside the tier, the longest path_prefix; ties go to the first listed.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from fastproxy import _rewrite, _tables
from fastproxy.config import Config

normalize_path = _rewrite.normalize_path
Router = _tables.Router


def ret(host: str | None = None, prefix: str | None = None, status: int = 200) -> dict[str, Any]:
    r: dict[str, Any] = {"return": status}
    if host is not None:
        r["host"] = host
    if prefix is not None:
        r["path_prefix"] = prefix
    return r


def make_router(*routes: dict[str, Any]) -> Router:
    cfg = Config.from_dict(
        {
            "upstreams": {
                "app": {"servers": ["127.0.0.1:9001"]},
                "api": {"servers": ["127.0.0.1:9002"]},
            },
            "routes": list(routes),
        }
    )
    return Router(cfg)


def label(router: Router, host: bytes, path: bytes) -> str | None:
    m = router.match_py(host, path)
    return None if m is None else m[0]


# ------------------------------------------------------------------ host tiers


def test_exact_host_beats_wildcard_beats_hostless() -> None:
    r = make_router(
        ret(),  # route0: any host
        ret(host="*.example.com"),  # route1
        ret(host="www.example.com"),  # route2
    )
    assert label(r, b"www.example.com", b"/") == "route2"
    assert label(r, b"img.example.com", b"/") == "route1"
    assert label(r, b"other.org", b"/") == "route0"
    assert label(r, b"example.com", b"/") == "route0"


def test_exact_host_beats_wildcard_regardless_of_file_order() -> None:
    r = make_router(ret(host="www.example.com"), ret(host="*.example.com"), ret())
    assert label(r, b"www.example.com", b"/") == "route0"
    assert label(r, b"a.example.com", b"/") == "route1"
    assert label(r, b"x.org", b"/") == "route2"


def test_exact_host_even_with_a_shorter_prefix_than_the_hostless_route() -> None:
    # The host tier is chosen first; a longer prefix in another tier does not win.
    r = make_router(ret(prefix="/api/v1/"), ret(host="example.com", prefix="/"))
    assert label(r, b"example.com", b"/api/v1/x") == "route1"
    assert label(r, b"other", b"/api/v1/x") == "route0"


@pytest.mark.parametrize(
    "host",
    [
        b"example.com",
        b"Example.COM",
        b"EXAMPLE.COM",
        b"example.com:8080",
        b"Example.COM:8080",
        b"example.com:80",
        b"EXAMPLE.com:",
    ],
)
def test_host_is_case_insensitive_and_port_is_stripped(host: bytes) -> None:
    r = make_router(ret(host="example.com"), ret())
    assert label(r, host, b"/") == "route0"


def test_configured_host_is_case_insensitive_too() -> None:
    r = make_router(ret(host="Example.COM"), ret())
    assert label(r, b"example.com", b"/") == "route0"
    assert label(r, b"EXAMPLE.COM:443", b"/") == "route0"


def test_host_that_only_contains_the_name_is_not_a_match() -> None:
    r = make_router(ret(host="example.com"), ret())
    assert label(r, b"example.com.evil", b"/") == "route1"
    assert label(r, b"xexample.com", b"/") == "route1"
    assert label(r, b"www.example.com", b"/") == "route1"


def test_fqdn_trailing_dot_matches_the_same_host() -> None:
    # "example.com." is the same DNS name as "example.com" (RFC 1034 3.1);
    # the config already strips the dot from route hosts, and nginx strips it
    # from the request Host.  Without this a host-specific route (say, one that
    # blocks /admin) is bypassed by adding a dot to the Host header.
    r = make_router(ret(host="example.com", status=403), ret())
    assert label(r, b"example.com.", b"/") == "route0"
    assert label(r, b"Example.Com.:8080", b"/") == "route0"


def test_no_host_uses_hostless_routes() -> None:
    # HTTP/1.0 requests may come without Host: only host-less routes apply.
    r = make_router(ret(host="example.com"), ret(prefix="/x"))
    assert label(r, b"", b"/x/y") == "route1"
    assert label(r, b"", b"/") is None


def test_host_ignored_when_no_route_names_a_host() -> None:
    r = make_router(ret(prefix="/a"), ret(prefix="/"))
    assert label(r, b"anything:1", b"/a") == "route0"
    assert label(r, b"", b"/b") == "route1"


# ------------------------------------------------------------------ wildcards


@pytest.mark.parametrize(
    ("host", "want"),
    [
        (b"a.example.com", "route0"),
        (b"A.Example.Com", "route0"),
        (b"a.example.com:8443", "route0"),
        (b"a.b.example.com", "route0"),
        (b"x-y.example.com", "route0"),
        (b"example.com", "route1"),  # "*." needs at least one more label
        (b"aexample.com", "route1"),
        (b".example.com", "route1"),  # an empty label is not a label
        (b"example.com.org", "route1"),
        (b"a.example.org", "route1"),
    ],
)
def test_wildcard(host: bytes, want: str) -> None:
    r = make_router(ret(host="*.example.com"), ret())
    assert label(r, host, b"/") == want


def test_wildcard_route_reports_its_suffix() -> None:
    r = make_router(ret(host="*.example.com"))
    assert r.match_py(b"a.example.com", b"/") == ("route0", "/", ".example.com")


def test_longest_wildcard_suffix_wins() -> None:
    r = make_router(ret(host="*.example.com"), ret(host="*.b.example.com"))
    assert label(r, b"a.b.example.com", b"/") == "route1"
    assert label(r, b"b.example.com", b"/") == "route0"
    assert label(r, b"a.c.example.com", b"/") == "route0"


def test_idn_host_is_matched_in_punycode() -> None:
    r = make_router(ret(host="bücher.example"), ret())
    assert r.match_py(b"xn--bcher-kva.example", b"/") == ("route0", "/", "xn--bcher-kva.example")
    assert label(r, b"XN--BCHER-KVA.example:80", b"/") == "route0"


# ------------------------------------------------------------------ path prefixes


def test_longest_prefix_wins_regardless_of_order() -> None:
    r = make_router(ret(prefix="/"), ret(prefix="/api/"), ret(prefix="/api/v2/"), ret(prefix="/a"))
    assert label(r, b"h", b"/api/v2/users") == "route2"
    assert label(r, b"h", b"/api/v1/users") == "route1"
    assert label(r, b"h", b"/api") == "route3"  # "/api/" does not match "/api"
    assert label(r, b"h", b"/about") == "route3"
    assert label(r, b"h", b"/") == "route0"
    assert label(r, b"h", b"/zzz") == "route0"


def test_prefix_is_a_byte_prefix_not_a_segment_prefix() -> None:
    # Like nginx `location /admin`: "/administrator" starts with "/admin".
    r = make_router(ret(prefix="/admin", status=403), ret(prefix="/"))
    assert label(r, b"h", b"/admin") == "route0"
    assert label(r, b"h", b"/admin/x") == "route0"
    assert label(r, b"h", b"/administrator") == "route0"
    assert label(r, b"h", b"/Admin") == "route1"  # paths are case-sensitive
    assert label(r, b"h", b"/adm") == "route1"


def test_equal_prefixes_first_listed_wins() -> None:
    r = make_router(
        {"path_prefix": "/x", "upstream": "api"},
        {"path_prefix": "/x", "upstream": "app"},
        ret(prefix="/x"),
    )
    assert r.match_py(b"h", b"/x/1") == ("api", "/x", "")


def test_equal_prefixes_first_listed_wins_in_host_tiers() -> None:
    r = make_router(
        ret(host="h.example", prefix="/p"),
        ret(host="h.example", prefix="/p"),
        ret(host="*.example", prefix="/p"),
        ret(host="*.example", prefix="/p"),
    )
    assert label(r, b"h.example", b"/p") == "route0"
    assert label(r, b"w.example", b"/p") == "route2"


def test_no_match_is_none() -> None:
    r = make_router(ret(prefix="/api/"), ret(host="example.com", prefix="/"))
    assert r.match_py(b"other.org", b"/") is None
    assert r.match_py(b"other.org", b"/ap") is None
    assert r.match_py(b"", b"/static") is None


def test_host_tier_is_final_even_when_no_path_matches() -> None:
    # Once a host tier is chosen the host-less routes are not consulted, even
    # when no prefix in the tier matches: this mirrors nginx, where the
    # server_name picks one server block and only its locations are tried.
    r = make_router(
        ret(host="example.com", prefix="/only/"),
        ret(host="*.example.com", prefix="/only/"),
        ret(prefix="/"),
    )
    assert label(r, b"example.com", b"/only/x") == "route0"
    assert r.match_py(b"example.com", b"/elsewhere") is None
    assert r.match_py(b"a.example.com", b"/elsewhere") is None
    assert label(r, b"other.org", b"/elsewhere") == "route2"


def test_exact_host_tier_does_not_fall_back_to_a_wildcard() -> None:
    r = make_router(ret(host="www.example.com", prefix="/a"), ret(host="*.example.com"))
    assert r.match_py(b"www.example.com", b"/b") is None


def test_match_uses_the_normalised_path() -> None:
    # The data plane matches on normalize_path(target path); so do we here.
    r = make_router(ret(prefix="/admin", status=403), {"upstream": "app"})
    for raw in (b"/%61dmin", b"/public/../admin", b"//admin", b"/./admin/x", b"/%61%64min"):
        assert label(r, b"h", normalize_path(raw)) == "route0", raw
    assert label(r, b"h", normalize_path(b"/public/x")) == "app"


def test_prefix_with_percent_escapes_matches_the_same_request_path() -> None:
    # path_prefix is compared with the normalised path, whose escapes are
    # upper-cased and whose unreserved characters are decoded (RFC 3986
    # 6.2.2.1-2).  A prefix written with lower-case escapes, or with an
    # escaped unreserved character, must still match a request for exactly
    # the same bytes.
    r = make_router(ret(prefix="/caf%c3%a9", status=403), ret(prefix="/%7Euser", status=404), ret())
    assert label(r, b"h", normalize_path(b"/caf%c3%a9")) == "route0"
    assert label(r, b"h", normalize_path(b"/%7Euser/x")) == "route1"


def test_upstream_route_label_and_prefix() -> None:
    r = make_router(
        {"upstream": "api", "path_prefix": "/api/", "host": "Example.com"},
        {"upstream": "app"},
    )
    assert r.match_py(b"example.com", b"/api/x") == ("api", "/api/", "example.com")
    assert r.match_py(b"x", b"/") == ("app", "/", "")


def test_default_route_for_a_single_upstream() -> None:
    cfg = Config.from_dict({"upstreams": {"only": {"servers": "127.0.0.1:9000"}}})
    r = Router(cfg)
    assert r.match_py(b"anything", b"/") == ("only", "/", "")
    assert r.match_py(b"", b"/deep/path") == ("only", "/", "")


def test_very_long_host_does_not_crash() -> None:
    r = make_router(ret(host="example.com"), ret())
    assert label(r, b"a" * 5000 + b".example.com", b"/") == "route1"
    assert label(r, b"a" * 5000, b"/") == "route1"


@pytest.mark.parametrize("bad", [("SPDY/3",), ("*", "h2c"), ("a b",)])
def test_a_route_built_in_python_has_its_upgrade_protocols_checked_too(bad) -> None:
    # an embedding program may build its RouteConfig without Config's checks
    cfg = Config.from_dict(
        {
            "upstreams": {"app": {"servers": ["127.0.0.1:9001"]}},
            "routes": [{"upstream": "app"}],
        }
    )
    route = dataclasses.replace(cfg.routes[0], upgrade_protocols=bad)
    with pytest.raises(ValueError):
        Router(dataclasses.replace(cfg, routes=(route,)))
