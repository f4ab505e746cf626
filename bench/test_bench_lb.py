"""Load-balancer pick micro-benchmarks, each policy beside a reference.

Run:  python3 -m pytest bench -k lb --benchmark-only -p no:cacheprovider

`_rewrite.time_pick` calls Upstream.pick 1,000 times in a C loop on an
already-parsed head (what the data plane does per request).  References,
also 1,000 picks: smooth weighted round-robin and a consistent-hash ring
lookup (bisect) written in plain Python."""

import bisect
import hashlib

import pytest
from fastproxy._rewrite import time_pick
from fastproxy._tables import Upstream

from fastproxy.config import Config

HEAD = b"GET /a?user=42 HTTP/1.1\r\nHost: h\r\nX-User: u42\r\nCookie: s=abc\r\n\r\n"
GROUP = "lb-pick"


def upstream(balance: str, **extra: object) -> Upstream:
    cfg = Config.from_dict(
        {
            "upstreams": {
                "app": {
                    "servers": [
                        {"address": f"127.0.0.1:{9000 + i}", "weight": i + 1} for i in range(4)
                    ],
                    "balance": balance,
                    **extra,
                }
            }
        }
    )
    from fastproxy._stats import StatsIndex

    return Upstream(cfg.upstreams["app"], StatsIndex())


@pytest.mark.parametrize(
    "balance, extra",
    [
        ("round_robin", {}),
        ("least_conn", {}),
        ("ip_hash", {}),
        ("hash", {"hash_key": "header:X-User"}),
        ("random", {}),
    ],
)
@pytest.mark.benchmark(group=GROUP)
def test_lb_pick_x1000_fastproxy(benchmark, balance: str, extra: dict) -> None:
    u = upstream(balance, **extra)
    assert u.pick_for_test(b"127.0.0.9", HEAD) is not None
    assert benchmark(time_pick, u, b"127.0.0.9", HEAD, 1000) > 0


class PythonSmoothWRR:
    def __init__(self, weights: list[int]) -> None:
        self.w = weights
        self.cur = [0] * len(weights)
        self.total = sum(weights)

    def pick(self) -> int:
        best = 0
        for i, w in enumerate(self.w):
            self.cur[i] += w
            if self.cur[i] > self.cur[best]:
                best = i
        self.cur[best] -= self.total
        return best


@pytest.mark.benchmark(group=GROUP)
def test_lb_round_robin_x1000_python_reference(benchmark) -> None:
    rr = PythonSmoothWRR([1, 2, 3, 4])

    def loop() -> int:
        for _ in range(1000):
            i = rr.pick()
        return i

    assert benchmark(loop) in range(4)


@pytest.mark.benchmark(group=GROUP)
def test_lb_hash_x1000_python_reference(benchmark) -> None:
    points = sorted(
        (int.from_bytes(hashlib.blake2b(f"s{i}-{v}".encode(), digest_size=8).digest()), i)
        for i in range(4)
        for v in range(160 * (i + 1))
    )
    keys = [p for p, _ in points]

    def pick(key: bytes) -> int:
        h = int.from_bytes(hashlib.blake2b(key, digest_size=8).digest())
        return points[bisect.bisect(keys, h) % len(points)][1]

    def loop() -> int:
        for _ in range(1000):
            i = pick(b"u42")
        return i

    assert benchmark(loop) in range(4)
