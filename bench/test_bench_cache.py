"""Cache store micro-benchmarks, each beside a plain-Python LRU reference.

Run:  python3 -m pytest bench -k cache --benchmark-only -p no:cacheprovider

- `hit-c`: 1,000 lookups + releases in a C loop (CacheRegion.time_hits): what a
  hit costs the data plane, which pins the entry and sends from shared memory.
- `get`: 1,000 CacheRegion.get calls from Python (lookup, copy out head and body,
  release), against 1,000 gets on an OrderedDict LRU (move_to_end).
- `put`: 1,000 stores into a region small enough to evict, against the dict LRU
  evicting by byte count.
Bodies of 100 B and 16 KiB, 1,000 keys (the issue's two hit sizes)."""

from __future__ import annotations

from collections import OrderedDict

import pytest

from fastproxy._cache import CacheRegion

N = 1000
SIZES = [100, 16384]
HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 100\r\n\r\n"
KEYS = [b"GET http://bench.local/item/%d?x=1" % i for i in range(N)]


class DictLRU:
    """The reference: an OrderedDict LRU bounded by bytes, like the region."""

    def __init__(self, capacity: int) -> None:
        self.d: OrderedDict[bytes, tuple[bytes, bytes]] = OrderedDict()
        self.capacity = capacity
        self.used = 0

    def get(self, key: bytes) -> tuple[bytes, bytes] | None:
        v = self.d.get(key)
        if v is not None:
            self.d.move_to_end(key)
        return v

    def put(self, key: bytes, head: bytes, body: bytes) -> None:
        old = self.d.pop(key, None)
        if old is not None:
            self.used -= len(old[0]) + len(old[1])
        self.d[key] = (head, body)
        self.used += len(head) + len(body)
        while self.used > self.capacity:
            _, (h, b) = self.d.popitem(last=False)
            self.used -= len(h) + len(b)


def filled(size: int) -> tuple[CacheRegion, DictLRU]:
    region = CacheRegion(64 << 20, 1 << 20)
    ref = DictLRU(64 << 20)
    body = b"b" * size
    for k in KEYS:
        assert region.put(k, HEAD, body)
        ref.put(k, HEAD, body)
    return region, ref


@pytest.mark.parametrize("size", SIZES)
def test_hit_c_loop(benchmark, size: int) -> None:
    benchmark.group = f"cache-hit-{size}"
    region, _ = filled(size)
    assert benchmark(region.time_hits, KEYS[7], N) == N


@pytest.mark.parametrize("size", SIZES)
def test_get_region(benchmark, size: int) -> None:
    benchmark.group = f"cache-get-{size}"
    region, _ = filled(size)

    def run() -> int:
        get = region.get
        return sum(get(k) is not None for k in KEYS)

    assert benchmark(run) == N


@pytest.mark.parametrize("size", SIZES)
def test_get_dict_lru(benchmark, size: int) -> None:
    benchmark.group = f"cache-get-{size}"
    _, ref = filled(size)

    def run() -> int:
        get = ref.get
        return sum(get(k) is not None for k in KEYS)

    assert benchmark(run) == N


@pytest.mark.parametrize("size", SIZES)
def test_put_region(benchmark, size: int) -> None:
    benchmark.group = f"cache-put-{size}"
    region = CacheRegion(4 << 20, 1 << 20)  # evicts: 1,000 x 16 KiB do not fit
    body = b"p" * size

    def run() -> None:
        put = region.put
        for k in KEYS:
            put(k, HEAD, body)

    benchmark(run)
    region.check()


@pytest.mark.parametrize("size", SIZES)
def test_put_dict_lru(benchmark, size: int) -> None:
    benchmark.group = f"cache-put-{size}"
    ref = DictLRU(4 << 20)
    body = b"p" * size

    def run() -> None:
        put = ref.put
        for k in KEYS:
            put(k, HEAD, body)

    benchmark(run)


@pytest.mark.parametrize("size", SIZES)
def test_hit_dict_lru(benchmark, size: int) -> None:
    """The reference for test_hit_c_loop: the same 1,000 hits on one key, each a
    lookup that refreshes the entry's recency (move_to_end) and copies nothing, as
    the C loop's lookup + pin + release copies nothing."""
    benchmark.group = f"cache-hit-{size}"
    _, ref = filled(size)
    key = KEYS[7]

    def run() -> int:
        get = ref.get
        hits = 0
        for _ in range(N):
            if get(key) is not None:
                hits += 1
        return hits

    assert benchmark(run) == N
