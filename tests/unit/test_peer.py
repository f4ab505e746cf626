"""Shared per-server state (csrc/fp_peer.c) through the Upstream test hooks: passive checks
(max_fails within fail_timeout), the circuit breaker (consecutive and error-rate trips,
cool-down, half-open trials) and slow start.

Upstreams are built from real configs with Config.from_toml; a request is
acquire_for_test + release_for_test, whose return value is the transition it caused.
The durations are small ("300ms") and every wait for one to pass polls with a deadline.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from fastproxy._tables import Router

from fastproxy.config import Config

A, B, C = "10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"
HEAD = b"GET / HTTP/1.1\r\nHost: test.local\r\n\r\n"
IP = b"127.0.0.1"


def upstream(servers: list[str], weight: int = 1, **keys: str) -> Any:
    """Upstream "app" over `servers` (all of `weight`), `keys` written as TOML values as
    given."""
    items = [f'{{ address = "{s}", weight = {weight} }}' for s in servers]
    text = "[upstreams.app]\nservers = [" + ", ".join(items) + "]\n"
    text += "".join(f"{k} = {v}\n" for k, v in keys.items())
    return Router(Config.from_toml(text)).upstreams["app"]


def picks(u: Any, n: int) -> list[str | None]:
    return [u.pick_for_test(IP, HEAD) for _ in range(n)]


def request(u: Any, address: str, outcome: str) -> str | None:
    """One whole request to `address`: the event its end caused (or None)."""
    trial = u.acquire_for_test(address)
    return u.release_for_test(address, trial, outcome)


def state(u: Any, address: str) -> dict[str, Any]:
    return u._by_address(address).peer_state()


def wait_for(cond: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.01)


# ---- passive checks ------------------------------------------------------------------------


def test_max_fails_within_fail_timeout_take_a_server_out_then_it_returns() -> None:
    u = upstream([A, B, C], max_fails="2", fail_timeout='"300ms"')
    assert u.lb_policy()["max_fails"] == 2
    assert request(u, A, "fail") is None
    assert A in picks(u, 6)  # one failure of two: still in rotation
    t0 = time.monotonic()
    assert request(u, A, "fail") == "passive_out"
    assert state(u, A)["passive_out"] is True
    assert state(u, A)["trips"] == 1
    assert Counter(picks(u, 40)) == {B: 20, C: 20}
    # already out: more failures (in-flight requests ending) change nothing
    assert request(u, A, "fail") is None
    wait_for(lambda: A in picks(u, 3), 3, "A back in rotation")
    elapsed = time.monotonic() - t0
    assert elapsed >= 0.25, elapsed
    assert state(u, A)["passive_out"] is False
    assert Counter(picks(u, 30)) == {A: 10, B: 10, C: 10}


def test_failures_spread_wider_than_fail_timeout_do_not_trip() -> None:
    u = upstream([A, B], max_fails="2", fail_timeout='"200ms"')
    assert request(u, A, "fail") is None
    t0 = time.monotonic()
    wait_for(lambda: time.monotonic() - t0 > 0.25, 1, "the counting window to end")
    assert request(u, A, "fail") is None  # a new window: 1 of 2
    assert state(u, A)["passive_out"] is False
    assert request(u, A, "fail") == "passive_out"


@pytest.mark.parametrize("outcome", ["ok", "neutral"])
def test_successes_and_neutral_ends_are_not_failures(outcome: str) -> None:
    u = upstream([A, B], max_fails="2", fail_timeout='"10s"')
    for _ in range(20):
        assert request(u, A, outcome) is None
    assert request(u, A, "fail") is None
    assert state(u, A) == {
        "inflight": 0,
        "passive_out": False,
        "breaker": "closed",
        "trips": 0,
    }


def test_a_lone_server_is_never_taken_out() -> None:
    u = upstream([A], max_fails="1", fail_timeout='"10s"')
    assert u.lb_policy()["max_fails"] == 0
    for _ in range(10):
        assert request(u, A, "fail") is None
    assert state(u, A)["passive_out"] is False
    assert picks(u, 3) == [A, A, A]


def test_max_fails_zero_turns_passive_checks_off() -> None:
    u = upstream([A, B], max_fails="0")
    for _ in range(50):
        assert request(u, A, "fail") is None
    assert Counter(picks(u, 10)) == {A: 5, B: 5}


def test_every_server_out_gives_none() -> None:
    u = upstream([A, B], max_fails="1", fail_timeout='"10s"')
    assert request(u, A, "fail") == "passive_out"
    assert request(u, B, "fail") == "passive_out"
    assert picks(u, 3) == [None, None, None]


def test_inflight_counts_acquire_and_release() -> None:
    u = upstream([A, B])
    server = u._by_address(A)
    trials = [u.acquire_for_test(A) for _ in range(3)]
    assert trials == [0, 0, 0]  # no breaker: never a trial
    assert server.inflight == 3 and state(u, A)["inflight"] == 3
    u.release_for_test(A, 0, "ok")
    u.release_for_test(A, 0, "neutral")
    assert server.inflight == 1
    u.release_for_test(A, 0, "fail")
    assert server.inflight == 0


# ---- circuit breaker -----------------------------------------------------------------------

BREAKER = '{ consecutive_failures = 3, cooldown = "300ms", half_open_requests = 1 }'


def test_breaker_consecutive_trip_open_half_open_close() -> None:
    u = upstream([A, B], max_fails="0", circuit_breaker=BREAKER)
    assert request(u, A, "fail") is None
    assert request(u, A, "fail") is None
    assert request(u, A, "ok") is None  # a success breaks the run
    assert request(u, A, "fail") is None
    assert request(u, A, "fail") is None
    t0 = time.monotonic()
    assert request(u, A, "fail") == "breaker_open"
    assert state(u, A)["breaker"] == "open"
    assert set(picks(u, 20)) == {B}

    # after the cool-down: half-open, and one trial at a time
    wait_for(lambda: state(u, A)["breaker"] == "half_open", 3, "half-open")
    assert time.monotonic() - t0 >= 0.25
    first = wait_for(lambda: [p for p in picks(u, 2) if p == A], 1, "A picked for a trial")
    assert first == [A]
    assert u.acquire_for_test(A) == 1  # the trial
    assert set(picks(u, 20)) == {B}  # a second concurrent pick avoids A
    assert u.release_for_test(A, 1, "ok") == "breaker_close"
    assert state(u, A)["breaker"] == "closed"
    assert Counter(picks(u, 20)) == {A: 10, B: 10}
    assert state(u, A)["trips"] == 1


def test_breaker_failed_trial_reopens() -> None:
    u = upstream([A, B], max_fails="0", circuit_breaker=BREAKER)
    events = [request(u, A, "fail") for _ in range(3)]
    assert events == [None, None, "breaker_open"]
    wait_for(lambda: state(u, A)["breaker"] == "half_open", 3, "half-open")
    trial = u.acquire_for_test(A)
    assert trial == 1
    t_reopen = time.monotonic()
    assert u.release_for_test(A, trial, "fail") == "breaker_reopen"
    assert state(u, A)["breaker"] == "open"
    assert set(picks(u, 20)) == {B}
    assert state(u, A)["trips"] == 2
    # another full cool-down, then a successful trial closes it
    wait_for(lambda: state(u, A)["breaker"] == "half_open", 3, "half-open again")
    assert time.monotonic() - t_reopen >= 0.25
    trial = u.acquire_for_test(A)
    assert trial == 1
    assert u.release_for_test(A, trial, "ok") == "breaker_close"
    assert state(u, A)["breaker"] == "closed"


def test_half_open_requests_allows_that_many_trials_at_once() -> None:
    cb = '{ consecutive_failures = 1, cooldown = "200ms", half_open_requests = 2 }'
    u = upstream([A, B], max_fails="0", circuit_breaker=cb)
    assert request(u, A, "fail") == "breaker_open"
    wait_for(lambda: state(u, A)["breaker"] == "half_open", 3, "half-open")
    assert u.acquire_for_test(A) == 1
    assert A in picks(u, 4)  # one trial in flight, room for another
    assert u.acquire_for_test(A) == 1
    assert set(picks(u, 10)) == {B}
    # the first trial ends without a verdict (client gone): its slot frees up
    assert u.release_for_test(A, 1, "neutral") is None
    assert A in picks(u, 4)
    assert u.release_for_test(A, 1, "ok") == "breaker_close"
    assert state(u, A)["inflight"] == 0


def test_breaker_error_rate_needs_min_requests() -> None:
    cb = (
        '{ consecutive_failures = 0, error_rate = 0.5, min_requests = 10, window = "10s", '
        'cooldown = "10s" }'
    )
    u = upstream([A, B], max_fails="0", circuit_breaker=cb)
    # 4 failures in 9 outcomes: below min_requests, however many fail in a row
    for i in range(9):
        assert request(u, A, "ok" if i % 2 == 0 else "fail") is None
    assert state(u, A)["breaker"] == "closed"
    # the 10th outcome, a failure: 5 of 10 = 50% -> open
    assert request(u, A, "fail") == "breaker_open"
    assert state(u, A)["breaker"] == "open"
    assert set(picks(u, 10)) == {B}


def test_breaker_error_rate_below_threshold_stays_closed() -> None:
    cb = (
        '{ consecutive_failures = 0, error_rate = 0.5, min_requests = 10, window = "10s", '
        'cooldown = "10s" }'
    )
    u = upstream([A, B], max_fails="0", circuit_breaker=cb)
    for i in range(30):  # 1 failure in 3: 33%
        assert request(u, A, "fail" if i % 3 == 0 else "ok") is None
    assert state(u, A)["breaker"] == "closed"
    # five in a row do not trip without a consecutive limit while the rate stays low
    for _ in range(5):
        assert request(u, A, "fail") is None
    assert state(u, A)["breaker"] == "closed"


def test_breaker_trips_even_for_a_lone_server_and_then_nothing_is_usable() -> None:
    cb = '{ consecutive_failures = 2, cooldown = "10s" }'
    u = upstream([A], circuit_breaker=cb)
    assert [request(u, A, "fail") for _ in range(2)] == [None, "breaker_open"]
    assert picks(u, 2) == [None, None]


# ---- slow start ----------------------------------------------------------------------------


def share(u: Any, address: str, n: int) -> float:
    return Counter(picks(u, n))[address] / n


def test_slow_start_ramps_a_recovered_server_up() -> None:
    # weight 10: slow start begins at 10% = 1 (a weight-1 server has nothing to ramp)
    u = upstream(
        [A, B],
        weight=10,
        max_fails="1",
        fail_timeout='"200ms"',
        slow_start='"1500ms"',
        balance='"round_robin"',
    )
    assert share(u, A, 100) == 0.5  # never recovered: full weight
    assert request(u, A, "fail") == "passive_out"
    assert share(u, A, 20) == 0
    wait_for(lambda: not state(u, A)["passive_out"], 3, "the passive time-out to end")
    back = time.monotonic()
    early = share(u, A, 100)
    assert time.monotonic() - back < 0.3  # measured at the start of the ramp
    assert 0 < early < 0.25, early  # weight 1 -> ~10% .. a little more as it ramps
    wait_for(lambda: time.monotonic() - back > 1.6, 3, "slow_start to pass")
    assert share(u, A, 100) == 0.5


def test_slow_start_after_breaker_close_with_least_conn() -> None:
    cb = '{ consecutive_failures = 1, cooldown = "200ms" }'
    u = upstream(
        [A, B],
        weight=10,
        max_fails="0",
        circuit_breaker=cb,
        slow_start='"1500ms"',
        balance='"least_conn"',
    )
    assert request(u, A, "fail") == "breaker_open"
    wait_for(lambda: state(u, A)["breaker"] == "half_open", 3, "half-open")
    assert u.release_for_test(A, u.acquire_for_test(A), "ok") == "breaker_close"
    back = time.monotonic()
    # with 1 request on each, A's load is 1/1 (weight ~1 early on) vs B's 1/10: B wins
    u.set_inflight_for_test(A, 1)
    u.set_inflight_for_test(B, 1)
    assert set(picks(u, 10)) == {B}
    assert time.monotonic() - back < 0.3
    wait_for(lambda: time.monotonic() - back > 1.6, 3, "slow_start to pass")
    assert Counter(picks(u, 10)) == {A: 5, B: 5}  # equal again: ties go round-robin


def test_per_server_slow_start_overrides_the_upstreams() -> None:
    # A ramps over 1.5 s (its own slow_start); B keeps the upstream's "0s": no ramp
    text = (
        "[upstreams.app]\n"
        f'servers = [{{ address = "{A}", weight = 10, slow_start = "1500ms" }}, '
        f'{{ address = "{B}", weight = 10 }}]\n'
        'max_fails = 1\nfail_timeout = "200ms"\nslow_start = "0s"\n'
    )
    u = Router(Config.from_toml(text)).upstreams["app"]
    for address, ramps in ((B, False), (A, True)):  # B first: A must not be ramping then
        assert request(u, address, "fail") == "passive_out"
        wait_for(lambda a=address: not state(u, a)["passive_out"], 3, "the time-out to end")
        back = time.monotonic()
        early = share(u, address, 100)
        assert time.monotonic() - back < 0.3
        if ramps:
            assert 0 < early < 0.25, early
        else:
            assert early == 0.5, early
