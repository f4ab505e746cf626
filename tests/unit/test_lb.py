"""Load-balancing policies (csrc/fp_lb*.c) through Upstream.pick_for_test/key_for_test.

Upstreams are built from real configs; server load is the requests in flight to each server
(fp_peer.inflight, shared by all workers), set with Upstream.set_inflight_for_test.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from fastproxy._tables import Router

from fastproxy.config import Config


def toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return f'"{v}"' if isinstance(v, str) else str(v)


def upstream(servers: list[dict[str, Any] | str], balance: str, hash_key: str | None = None) -> Any:
    items = []
    for s in servers:
        if isinstance(s, str):
            items.append(f'"{s}"')
        else:
            fields = ", ".join(f"{k} = {toml_value(v)}" for k, v in s.items())
            items.append("{ " + fields + " }")
    text = f'[upstreams.app]\nservers = [{", ".join(items)}]\nbalance = "{balance}"\n'
    if hash_key is not None:
        text += f'hash_key = "{hash_key}"\n'
    return Router(Config.from_toml(text)).upstreams["app"]


def head(target: str = "/", headers: tuple[tuple[str, str], ...] = ()) -> bytes:
    lines = [f"GET {target} HTTP/1.1", "Host: test.local"]
    lines += [f"{k}: {v}" for k, v in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


GET = head()
IP = b"127.0.0.1"


def picks(u: Any, n: int, ip: bytes = IP, h: bytes = GET) -> list[str | None]:
    return [u.pick_for_test(ip, h) for _ in range(n)]


def by_address(u: Any) -> dict[str, Any]:
    return {s.address: s for s in u.unique_servers()}


WEIGHTED = [
    {"address": "10.0.0.1:80", "weight": 1},
    {"address": "10.0.0.2:80", "weight": 2},
    {"address": "10.0.0.3:80", "weight": 3},
]


# ---- round robin ---------------------------------------------------------------------------


def test_smooth_weighted_round_robin_proportions() -> None:
    u = upstream(WEIGHTED, "round_robin")
    counts = Counter(picks(u, 6000))
    for addr, w in (("10.0.0.1:80", 1), ("10.0.0.2:80", 2), ("10.0.0.3:80", 3)):
        assert abs(counts[addr] - 1000 * w) <= 0.02 * 1000 * w


def test_smooth_weighted_round_robin_is_interleaved() -> None:
    u = upstream(WEIGHTED, "round_robin")
    seq = [a[7] if a else "-" for a in picks(u, 600)]
    # nginx's smooth WRR for 1:2:3 repeats "3 2 1 3 2 3"
    assert "".join(seq[:6]) == "321323"
    longest: dict[str, int] = {}
    run = 0
    for i, s in enumerate(seq):
        run = run + 1 if i and seq[i - 1] == s else 1
        longest[s] = max(longest.get(s, 0), run)
    assert longest["3"] <= 2 and longest["2"] == 1 and longest["1"] == 1
    # every window of 6 picks holds exactly the weights
    for i in range(0, 600, 6):
        assert Counter(seq[i : i + 6]) == {"1": 1, "2": 2, "3": 3}


def test_plain_round_robin_cycles() -> None:
    u = upstream(["10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"], "round_robin")
    seq = picks(u, 9)
    assert seq[:3] == seq[3:6] == seq[6:9]
    assert len(set(seq[:3])) == 3


def test_unique_servers_lists_backups_once() -> None:
    u = upstream(
        [{"address": "10.0.0.1:80", "weight": 3}, {"address": "10.0.0.9:80", "backup": True}],
        "round_robin",
    )
    servers = u.unique_servers()
    assert [s.address for s in servers] == ["10.0.0.1:80", "10.0.0.9:80"]
    assert [s.backup for s in servers] == [False, True]
    assert servers[0].weight == 3


# ---- max_conns and backup ------------------------------------------------------------------


@pytest.mark.parametrize("balance", ["round_robin", "least_conn", "ip_hash", "random", "hash"])
def test_backup_only_when_every_primary_is_full(balance: str) -> None:
    servers = [
        {"address": "10.0.0.1:80", "max_conns": 2},
        {"address": "10.0.0.2:80", "max_conns": 1},
        {"address": "10.0.0.9:80", "backup": True},
    ]
    u = upstream(servers, balance, "path" if balance == "hash" else None)
    assert "10.0.0.9:80" not in picks(u, 50)
    u.set_inflight_for_test("10.0.0.1:80", 2)
    assert set(picks(u, 20)) == {"10.0.0.2:80"}
    u.set_inflight_for_test("10.0.0.2:80", 1)
    assert set(picks(u, 20)) == {"10.0.0.9:80"}
    u.set_inflight_for_test("10.0.0.2:80", 0)
    assert set(picks(u, 20)) == {"10.0.0.2:80"}


@pytest.mark.parametrize("balance", ["round_robin", "least_conn", "ip_hash", "random", "hash"])
def test_every_server_full_gives_none(balance: str) -> None:
    servers = [
        {"address": "10.0.0.1:80", "max_conns": 1},
        {"address": "10.0.0.2:80", "max_conns": 3},
        {"address": "10.0.0.9:80", "backup": True, "max_conns": 1},
    ]
    u = upstream(servers, balance, "header:X-User" if balance == "hash" else None)
    for s, n in zip(u.unique_servers(), (1, 3, 1), strict=True):
        u.set_inflight_for_test(s.address, n)
    h = head(headers=(("X-User", "alice"),))
    assert picks(u, 10, h=h) == [None] * 10
    u.set_inflight_for_test("10.0.0.9:80", 0)
    assert set(picks(u, 10, h=h)) == {"10.0.0.9:80"}


def test_max_conns_counts_requests_in_flight_not_pooled_connections() -> None:
    u = upstream([{"address": "10.0.0.1:80", "max_conns": 1}], "round_robin")
    (s,) = u.unique_servers()
    s.active = 1  # one open connection, idle in the pool: reusable
    assert u.pick_for_test(IP, GET) == "10.0.0.1:80"
    u.acquire_for_test("10.0.0.1:80")  # a request in flight (in any worker)
    assert u.pick_for_test(IP, GET) is None
    u.release_for_test("10.0.0.1:80", 0, "ok")
    assert u.pick_for_test(IP, GET) == "10.0.0.1:80"


def test_max_conns_zero_is_unlimited() -> None:
    u = upstream([{"address": "10.0.0.1:80", "max_conns": 0}], "round_robin")
    u.set_inflight_for_test("10.0.0.1:80", 10**6)
    assert u.pick_for_test(IP, GET) == "10.0.0.1:80"


# ---- least_conn ----------------------------------------------------------------------------


def test_least_conn_picks_fewest_relative_to_weight() -> None:
    u = upstream(
        ["10.0.0.1:80", {"address": "10.0.0.2:80", "weight": 4}, "10.0.0.3:80"], "least_conn"
    )
    u.set_inflight_for_test("10.0.0.1:80", 2)
    u.set_inflight_for_test("10.0.0.2:80", 4)  # 4/4 = 1 < 2
    u.set_inflight_for_test("10.0.0.3:80", 3)
    assert set(picks(u, 10)) == {"10.0.0.2:80"}
    u.set_inflight_for_test("10.0.0.2:80", 12)  # 3 > 2
    assert set(picks(u, 10)) == {"10.0.0.1:80"}


def test_least_conn_ties_go_round_robin() -> None:
    u = upstream(["10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"], "least_conn")
    assert Counter(picks(u, 300)) == {a: 100 for a in by_address(u)}


# ---- random (power of two choices) ---------------------------------------------------------


def test_random_follows_weights_when_idle() -> None:
    u = upstream(["10.0.0.1:80", {"address": "10.0.0.2:80", "weight": 3}], "random")
    counts = Counter(picks(u, 8000))
    # two weighted draws; with equal loads the first draw wins, so P(light) = 1/4
    assert 0.2 < counts["10.0.0.1:80"] / 8000 < 0.3


def test_random_avoids_the_loaded_server() -> None:
    u = upstream(["10.0.0.1:80", "10.0.0.2:80"], "random")
    u.set_inflight_for_test("10.0.0.1:80", 5)
    counts = Counter(picks(u, 4000))
    # the loaded server wins only when both draws hit it: ~1/4
    assert 0.2 < counts["10.0.0.1:80"] / 4000 < 0.3


# ---- consistent hashing --------------------------------------------------------------------


def test_ip_hash_is_sticky_and_spreads() -> None:
    u = upstream(["10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80", "10.0.0.4:80"], "ip_hash")
    seen = Counter()
    for i in range(400):
        ip = f"10.{i // 256}.{i % 256}.7".encode()
        got = set(picks(u, 5, ip=ip))
        assert len(got) == 1
        seen[got.pop()] += 1
    assert len(seen) == 4 and min(seen.values()) > 50


def test_ip_hash_uses_the_whole_address() -> None:
    u = upstream(["10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80", "10.0.0.4:80"], "ip_hash")
    # same /24 (and same /64 for v6) still spreads over the servers
    v4 = {u.pick_for_test(f"192.168.1.{i}".encode(), GET) for i in range(1, 60)}
    v6 = {u.pick_for_test(f"2001:db8::{i:x}".encode(), GET) for i in range(1, 60)}
    assert len(v4) == 4 and len(v6) == 4


def key_owner(u: Any, key: str) -> str:
    return u.pick_for_test(IP, head(headers=(("X-User", key),)))


def test_removing_one_of_four_servers_remaps_about_a_quarter() -> None:
    four = ["10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80", "10.0.0.4:80"]
    a = upstream(four, "hash", "header:X-User")
    b = upstream(four[:2] + four[3:], "hash", "header:X-User")
    keys = [f"user-{i}" for i in range(10_000)]
    before = [key_owner(a, k) for k in keys]
    after = [key_owner(b, k) for k in keys]
    moved = sum(x != y for x, y in zip(before, after, strict=True))
    assert moved <= 10_000 * (0.25 + 0.05)
    # only the removed server's keys move
    assert all(x == y for x, y in zip(before, after, strict=True) if x != "10.0.0.3:80")
    share = Counter(before)
    assert all(abs(n - 2500) < 2500 * 0.2 for n in share.values())


def test_hash_ring_respects_weight() -> None:
    u = upstream(["10.0.0.1:80", {"address": "10.0.0.2:80", "weight": 3}], "hash", "path")
    counts = Counter(u.pick_for_test(IP, head(f"/item/{i}")) for i in range(8000))
    assert 0.2 < counts["10.0.0.1:80"] / 8000 < 0.3


def test_full_server_passes_its_keys_along_the_ring() -> None:
    u = upstream(
        [{"address": f"10.0.0.{i}:80", "max_conns": 1} for i in range(1, 5)], "hash", "path"
    )
    owners = {i: u.pick_for_test(IP, head(f"/k/{i}")) for i in range(200)}
    u.set_inflight_for_test("10.0.0.2:80", 1)
    for i, owner in owners.items():
        now = u.pick_for_test(IP, head(f"/k/{i}"))
        assert now != "10.0.0.2:80"
        if owner != "10.0.0.2:80":
            assert now == owner


# ---- hash keys -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "hash_key, request_head, key",
    [
        ("header:X-User", head(headers=(("X-User", "alice"),)), b"alice"),
        ("header:X-User", head(headers=(("x-user", "bob"), ("X-User", "eve"))), b"bob"),
        ("header:X-User", head(headers=(("X-Users", "bob"),)), None),
        ("header:X-User", head(), None),
        ("cookie:session", head(headers=(("Cookie", "a=1; session=s3cr3t; b=2"),)), b"s3cr3t"),
        ("cookie:session", head(headers=(("Cookie", "session=x"),)), b"x"),
        ("cookie:session", head(headers=(("Cookie", 'session="q"'),)), b"q"),
        ("cookie:session", head(headers=(("Cookie", "a=1"), ("cookie", "session=two"))), b"two"),
        ("cookie:session", head(headers=(("Cookie", "xsession=1; sessionx=2"),)), None),
        ("cookie:session", head(headers=(("X-Session", "session=1"),)), None),
        ("cookie:session", head(), None),
        ("query:user", head("/p?user=42"), b"42"),
        ("query:user", head("/p?a=1&user=42&user=43"), b"42"),
        ("query:user", head("/p?xuser=1&user_=2"), None),
        ("query:user", head("/p?user"), b""),
        ("query:user", head("/p?a=1&user=7&b=2"), b"7"),
        ("query:user", head("/p"), None),
        ("query:user", head("http://h.example/p?user=9"), b"9"),
        ("path", head("/a/b?user=1"), b"/a/b"),
        ("path", head("/a/b"), b"/a/b"),
        ("path", head("http://h.example/a?x"), b"/a"),
        ("path", head("http://h.example"), b""),
    ],
)
def test_hash_key_extraction(hash_key: str, request_head: bytes, key: bytes | None) -> None:
    u = upstream(["10.0.0.1:80", "10.0.0.2:80"], "hash", hash_key)
    assert u.key_for_test(request_head) == key


def test_hash_routes_by_key_not_by_rest_of_request() -> None:
    u = upstream([f"10.0.0.{i}:80" for i in range(1, 6)], "hash", "cookie:session")
    for i in range(100):
        cookie = ("Cookie", f"theme=dark; session=s{i}")
        first = u.pick_for_test(b"10.1.1.1", head("/x", (cookie,)))
        assert u.pick_for_test(b"10.2.2.2", head(f"/y/{i}?q=1", (cookie,))) == first


def test_missing_hash_key_falls_back_to_round_robin() -> None:
    u = upstream(["10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"], "hash", "header:X-User")
    assert Counter(picks(u, 300)) == {a: 100 for a in by_address(u)}


def test_hash_spreads_keys() -> None:
    u = upstream([f"10.0.0.{i}:80" for i in range(1, 9)], "hash", "query:id")
    counts = Counter(u.pick_for_test(IP, head(f"/?id={i}")) for i in range(8000))
    assert len(counts) == 8
    assert max(counts.values()) < 1000 * 1.35 and min(counts.values()) > 1000 * 0.65


def test_empty_and_single_server() -> None:
    u = upstream(["10.0.0.1:80"], "ip_hash")
    assert {u.pick_for_test(f"10.0.0.{i}".encode(), GET) for i in range(20)} == {"10.0.0.1:80"}
