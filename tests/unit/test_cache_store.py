"""The shared-memory cache store (csrc/fp_cache.c) against a Python model.

The model is an ordered dict, most recently used first.  The store may evict
(its allocator decides when space runs out), but only from the least
recently used end: after every step the store's LRU list must be exactly the
model's list cut short, and every counter must agree.  fp_cache_check runs
after every step.
"""

from __future__ import annotations

import os
import signal

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from fastproxy._cache import VARY_STAR, CacheRegion, min_size

SMALL = 256 << 10  # a region where a few dozen entries fill the heap
MAX_ENTRY = 24 << 10

KEYS = st.sampled_from([b"GET http://a/%d" % i for i in range(12)] + [b"GET http://b/x", b"k"])
VARY = st.sampled_from([0, 1, 2])


def body_for(key: bytes, n: int, salt: int) -> bytes:
    unit = key + b"|%d|" % salt
    return (unit * (n // len(unit) + 1))[:n]


class StoreVsModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.r = CacheRegion(SMALL, MAX_ENTRY, 0)
        self.model: dict[tuple[bytes, int], tuple[bytes, bytes]] = {}  # MRU first
        self.salt = 0
        self.removed = 0  # by delete/purge: not evictions

    def touch(self, ident: tuple[bytes, int], value: tuple[bytes, bytes]) -> None:
        self.model.pop(ident, None)
        self.model = {ident: value, **self.model}

    def sync(self) -> None:
        """Whatever the store lost since the last step must be the model's LRU tail."""
        keys = self.r.lru_keys()
        mine = [k for k, _ in self.model]
        assert keys == mine[: len(keys)], (keys, mine)
        self.model = dict(list(self.model.items())[: len(keys)])

    @rule(key=KEYS, vary=VARY, n=st.integers(0, 30000), chunk=st.sampled_from([0, 0, 777]))
    def put(self, key: bytes, vary: int, n: int, chunk: int) -> None:
        self.salt += 1
        head = b"HTTP/1.1 200 OK\r\nX-Salt: %d\r\n\r\n" % self.salt
        body = body_for(key, n, self.salt)
        before, evictions = set(self.model), self.r.stats()["evictions"]
        ok = self.r.put(key, head, body, vary=vary, chunk=chunk, hint=100 if chunk else None)
        too_big = len(key) + len(head) + len(body) > MAX_ENTRY
        assert ok == (not too_big)
        if ok:
            self.touch((key, vary), (head, body))
        self.sync()
        # Every entry lost is an eviction; the replaced one may or may not be.
        lost = len(before - set(self.model) - {(key, vary)})
        assert lost <= self.r.stats()["evictions"] - evictions <= lost + 1

    @rule(key=KEYS, vary=VARY)
    def get(self, key: bytes, vary: int) -> None:
        got = self.r.get(key, vary=vary)
        want = self.model.get((key, vary))
        if want is None:
            assert got is None
        else:
            assert got is not None and (got[0], got[1]) == want
            self.touch((key, vary), want)
        self.sync()

    @rule(key=KEYS)
    def any_variant(self, key: bytes) -> None:
        got = self.r.get(key, any_variant=True, count=False, touch=False)
        variants = [v for (k, _), v in self.model.items() if k == key]
        assert (got is None) == (not variants)
        if got is not None:
            assert (got[0], got[1]) in variants

    @rule(key=KEYS)
    def delete(self, key: bytes) -> None:
        gone = [ident for ident in self.model if ident[0] == key]
        assert self.r.delete(key) == len(gone)
        for ident in gone:
            del self.model[ident]
        self.removed += len(gone)
        self.sync()

    @rule(prefix=st.sampled_from([b"GET http://a/1", b"GET http://", b"zzz", b"k"]))
    def purge(self, prefix: bytes) -> None:
        gone = [ident for ident in self.model if ident[0].startswith(prefix)]
        assert self.r.purge_prefix(prefix) == len(gone)
        for ident in gone:
            del self.model[ident]
        self.removed += len(gone)
        self.sync()

    @precondition(lambda self: bool(self.model))
    @rule(data=st.data())
    def refresh(self, data: st.DataObject) -> None:
        key, vary = data.draw(st.sampled_from(sorted(self.model)))
        self.salt += 1
        head = b"HTTP/1.1 200 OK\r\nX-Refreshed: %d\r\n\r\n" % self.salt
        assert self.r.update_head(key, head, vary=vary)
        body = self.model[(key, vary)][1]
        self.touch((key, vary), (head, body))
        self.sync()
        if (key, vary) in self.model:
            assert self.r.get(key, vary=vary, count=False, touch=False)[:2] == (head, body)

    @invariant()
    def consistent(self) -> None:
        self.r.check()
        assert self.r.stats()["entries"] == len(self.model)


StoreVsModel.TestCase.settings = settings(
    max_examples=60,
    stateful_step_count=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestStoreVsModel = StoreVsModel.TestCase


# ----------------------------------------------------------------------------- directed tests


@pytest.fixture
def region() -> CacheRegion:
    return CacheRegion(1 << 20, 64 << 10, 0)


def test_lru_evicts_least_recently_used_first(region: CacheRegion) -> None:
    for i in range(10):
        assert region.put(b"k%d" % i, b"h", b"x" * 1000)
    assert region.get(b"k0") is not None  # k0 is now the most recent
    assert region.lru_keys()[:2] == [b"k0", b"k9"]
    i = 10
    while region.stats()["evictions"] == 0:
        assert region.put(b"k%d" % i, b"h", b"y" * 1000)
        i += 1
    assert region.get(b"k1", count=False) is None  # the oldest went first
    assert region.get(b"k0", count=False) is not None
    region.check()


def test_max_entries_evicts_by_count() -> None:
    r = CacheRegion(1 << 20, 64 << 10, 5)
    for i in range(8):
        r.put(b"k%d" % i, b"h", b"b")
    assert r.lru_keys() == [b"k7", b"k6", b"k5", b"k4", b"k3"]
    assert r.stats()["evictions"] == 3
    r.check()


def test_counters(region: CacheRegion) -> None:
    region.put(b"a", b"h", b"body")
    region.get(b"a")
    region.get(b"b")
    region.get(b"a", count=False)
    s = region.stats()
    assert (s["hits"], s["misses"], s["stores"], s["entries"]) == (1, 1, 1, 1)
    assert s["bytes"] >= 4 and s["bytes"] % 64 == 0


def test_too_big_is_refused_and_old_entry_kept(region: CacheRegion) -> None:
    assert region.put(b"a", b"h", b"old")
    assert not region.put(b"a", b"h", b"x" * (64 << 10))
    assert not region.put(b"a", b"h", b"x" * (64 << 10), chunk=4096, hint=10)
    assert region.get(b"a")[1] == b"old"
    region.check()


def test_vary_variants_and_star(region: CacheRegion) -> None:
    region.put(b"k", b"h1", b"gzip", vary=11)
    region.put(b"k", b"h2", b"br", vary=22)
    assert region.get(b"k", vary=11)[1] == b"gzip"
    assert region.get(b"k", vary=22)[1] == b"br"
    assert region.get(b"k", vary=33) is None
    assert region.get(b"k", vary=VARY_STAR) is None  # RFC 9111 4.1: never matches
    assert not region.put(b"k", b"h", b"b", vary=VARY_STAR)  # and is never stored
    assert region.delete(b"k") == 2


def test_meta_round_trip(region: CacheRegion) -> None:
    meta = {"date": 1_700_000_000, "freshness": 60, "status": 404, "flags": 5, "swr": 30}
    region.put(b"k", b"h", b"b", meta=meta, vary=7)
    got = region.get(b"k", vary=7)[2]
    assert {k: got[k] for k in meta} == meta and got["vary"] == 7 and got["expires"] == -1


def test_chunked_store_grows_past_its_hint(region: CacheRegion) -> None:
    body = os.urandom(50000)
    assert region.put(b"k", b"head", body, chunk=1000, hint=10)
    assert region.get(b"k")[1] == body
    region.check()


def test_fill_claims(region: CacheRegion) -> None:
    assert region.fill_claim(b"k") == "owner"
    assert region.fill_claim(b"k") == "owner"  # ours already
    assert region.fill_pending(b"k")
    region.fill_done(b"k")
    assert not region.fill_pending(b"k")
    assert region.fill_claim(b"k2", ttl=0.0) == "owner"
    assert not region.fill_pending(b"k2")  # expired at once


def test_min_size() -> None:
    with pytest.raises(ValueError):
        CacheRegion(min_size() - 1, 1024)
    CacheRegion(min_size() + (64 << 10), 1024).check()


def test_pin_survives_delete_and_reuse(region: CacheRegion) -> None:
    """An entry a reader pinned is never freed under it: a child pins an entry
    (a lookup without release) and dies; its pin keeps the bytes until reaped."""
    body = b"P" * 20000
    region.put(b"pinned", b"h", body)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        try:
            assert region._pin_for_test(b"pinned") >= 0
            os.kill(os.getpid(), signal.SIGSTOP)
        finally:
            os._exit(0)
    try:
        os.waitpid(pid, os.WUNTRACED)
        assert region.delete(b"pinned") == 1
        for i in range(200):  # churn the heap: the pinned chunk must not be reused
            region.put(b"churn%d" % (i % 20), b"h", bytes([i % 256]) * 30000)
        region.check()  # refcount 1, entry DEAD, chunk intact
        assert region._dead_pinned_bodies() == [body]
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    assert region.reap(pid) == 1
    region.check()
    assert region._dead_pinned_bodies() == []


# ----------------------------------------------------------------------------- pins vs eviction

VICTIM = (bytes(range(251)) * 200)[:40000]  # page-laid (>= 16 KiB), a prime-period pattern


def _pin_in_child(region: CacheRegion, key: bytes, body: bytes) -> tuple[int, int]:
    """Fork a reader that pins key (a lookup without release, as a worker
    sending the entry holds it) and stops itself.  Returns (pid, offset of the
    pinned body in the region's memfd).  Continued, the reader reads the bytes
    its pin points at again, releases the pin and exits 0 if they were still
    exactly body (3 if not)."""
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        code = 2
        try:
            os.close(rfd)
            pin = region._pin_for_test(key)
            got = region._body_file_offset(key)
            assert pin >= 0 and got is not None and got[1] == body
            os.write(wfd, b"%d" % got[0])
            os.close(wfd)
            os.kill(os.getpid(), signal.SIGSTOP)
            # Evicted meanwhile: what this reader would send is what it pinned.
            code = 0 if os.pread(region.fd, len(body), got[0]) == body else 3
            region._release_for_test(pin)
        finally:
            os._exit(code)
    os.close(wfd)
    with os.fdopen(rfd, "rb") as r:
        off = int(r.read() or b"-1")
    _, status = os.waitpid(pid, os.WUNTRACED)
    assert os.WIFSTOPPED(status), f"the reader failed before stopping: {status:#x}"
    return pid, off


def _finish_child(pid: int) -> int:
    os.kill(pid, signal.SIGCONT)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def _overlaps(region: CacheRegion, key: bytes, start: int, n: int) -> bool:
    """Whether key's stored body lies (partly) in [start, start + n) of the memfd."""
    got = region._body_file_offset(key)
    assert got is not None and got[0] >= 0, key
    return got[0] < start + n and start < got[0] + len(got[1])


def test_pin_survives_lru_eviction(region: CacheRegion) -> None:
    """An entry a reader holds, evicted from the LRU tail because the heap is
    full (not deleted), keeps its chunk until the pin goes: the reader's bytes
    stay exactly the original while the whole region is refilled many times
    with other patterns, and the space is reused once the pin is released."""
    assert region.fd >= 0, "needs the memfd (page-laid bodies) to read the pinned bytes"
    assert region.put(b"victim", b"h", VICTIM)
    pid, off = _pin_in_child(region, b"victim", VICTIM)
    try:
        assert off >= 0
        evictions = region.stats()["evictions"]
        i = 0
        while region.get(b"victim", count=False, touch=False) is not None:
            assert region.put(b"fill%d" % i, b"h", bytes([0x80 + i % 64]) * 30000)
            assert not _overlaps(region, b"fill%d" % i, off, len(VICTIM))
            i += 1
            assert i < 100, "the victim was never evicted"
        assert region.stats()["evictions"] > evictions  # evicted, nothing was deleted
        assert b"victim" not in region.lru_keys()
        for j in range(i, i + 150):  # ~4.5 MB through a 1 MiB region
            assert region.put(b"fill%d" % (j % 40), b"h", bytes([0x80 + j % 64]) * 30000)
            assert not _overlaps(region, b"fill%d" % (j % 40), off, len(VICTIM)), j
        region.check()  # the DEAD entry's refcount is the reader's pin
        assert region._dead_pinned_bodies() == [VICTIM]
        assert os.pread(region.fd, len(VICTIM), off) == VICTIM
        assert region.get(b"victim", count=False) is None
    finally:
        code = _finish_child(pid)
    assert code == 0, "the reader's bytes changed under its pin"
    assert region.reap(pid) == 1  # its slot; no pin left to drop
    region.check()
    assert region._dead_pinned_bodies() == []
    reused = False
    for j in range(100):  # the freed chunk is allocatable again
        assert region.put(b"again%d" % (j % 40), b"h", bytes([j % 64]) * 30000)
        if _overlaps(region, b"again%d" % (j % 40), off, len(VICTIM)):
            reused = True
            break
    assert reused and os.pread(region.fd, len(VICTIM), off) != VICTIM
    region.check()


def test_pin_survives_max_entries_eviction() -> None:
    """The same when the entry is evicted because max_entries is reached (the
    heap is nearly empty): equal-size stores, which would take the chunk back
    first, never land on it while it is pinned, and do once it is released."""
    r = CacheRegion(1 << 20, 64 << 10, 4)
    assert r.fd >= 0, "needs the memfd (page-laid bodies) to read the pinned bytes"
    assert r.put(b"victim", b"h", VICTIM)
    pid, off = _pin_in_child(r, b"victim", VICTIM)
    try:
        assert off >= 0
        for i in range(4):
            assert r.put(b"fill%d" % i, b"h", bytes([0x80 + i]) * len(VICTIM))
        assert r.lru_keys() == [b"fill3", b"fill2", b"fill1", b"fill0"]
        s = r.stats()
        assert s["evictions"] == 1 and s["entries"] == 4
        assert s["bytes"] + 2 * len(VICTIM) < s["capacity"] // 2  # not for space
        for j in range(4, 200):  # each store evicts one by count, and frees its chunk
            assert r.put(b"fill%d" % j, b"h", bytes([0x80 + j % 64]) * len(VICTIM))
            assert not _overlaps(r, b"fill%d" % j, off, len(VICTIM)), j
        assert r.stats()["evictions"] == 197 and r.get(b"victim", count=False) is None
        r.check()
        assert r._dead_pinned_bodies() == [VICTIM]
        assert os.pread(r.fd, len(VICTIM), off) == VICTIM
    finally:
        code = _finish_child(pid)
    assert code == 0, "the reader's bytes changed under its pin"
    r.reap(pid)
    r.check()
    assert r._dead_pinned_bodies() == []
    reused = False
    for j in range(200, 220):
        assert r.put(b"fill%d" % j, b"h", bytes([j % 64]) * len(VICTIM))
        if _overlaps(r, b"fill%d" % j, off, len(VICTIM)):
            reused = True
            break
    assert reused and os.pread(r.fd, len(VICTIM), off) != VICTIM
    r.check()
