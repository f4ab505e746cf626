# cython: language_level=3
"""The shared-memory response cache region (csrc/fp_cache.h).

The master creates one CacheRegion before forking: a memfd mapped MAP_SHARED
(MAP_SHARED | MAP_ANONYMOUS where memfd_create is missing), so every worker
inherits the same memory, and the data plane can sendfile(2) large bodies from
the memfd instead of copying them (docs/cache.md, "Sending hits"); each process that pins entries
claims a slot with attach() (done lazily by the Python methods after a fork).
The Python methods here are for tests, the admin API and the control plane;
the data plane uses the cdef inline functions in _cache.pxd.

Keys are bytes; fastproxy's request path uses "GET " + absolute URL (see
docs/cache.md), but the store does not care.
"""

import fcntl
import os
import signal
import time

from libc.stdint cimport int64_t, uint8_t, uint64_t
from posix.mman cimport MAP_ANONYMOUS, MAP_FAILED, MAP_SHARED, PROT_READ, PROT_WRITE
from posix.unistd cimport close
from posix.mman cimport madvise, mmap, munmap

cdef extern from "sys/mman.h" nogil:
    int MADV_NOHUGEPAGE

from fastproxy.fp_cache cimport (
    FP_CACHE_ANY_VARIANT,
    FP_CACHE_EBUSY,
    FP_CACHE_ENOPIN,
    FP_CACHE_ENOSPC,
    FP_CACHE_ETOOBIG,
    FP_CACHE_HIT,
    FP_CACHE_NOCOUNT,
    FP_CACHE_NOTOUCH,
    FP_CACHE_OK,
    FP_CACHE_PAGED_MIN,
    FP_CACHE_READY_EXTRA,
    FP_CACHE_SENDFILE_MIN,
    FP_CACHE_VARY_STAR,
    FP_FILL_OWNER,
    FP_FILL_WAIT,
    fp_cache_check,
    fp_cache_delete,
    fp_cache_detach,
    fp_cache_fill_claim,
    fp_cache_fill_done,
    fp_cache_fill_pending,
    fp_cache_get_stats,
    fp_cache_hash,
    fp_cache_init,
    fp_cache_lru_keys,
    fp_cache_min_size,
    fp_cache_purge_prefix,
    fp_cache_put_all,
    fp_cache_reap,
    fp_cache_stats,
    fp_cache_attach,
    fp_cache_test_crash_after,
    fp_cache_test_dead_body,
    fp_cache_test_die_in_lock,
    fp_cache_update_head,
)

VARY_STAR = FP_CACHE_VARY_STAR
SENDFILE_MIN = FP_CACHE_SENDFILE_MIN
PAGED_MIN = FP_CACHE_PAGED_MIN
READY_EXTRA = FP_CACHE_READY_EXTRA
_ERRORS = {FP_CACHE_EBUSY: "busy", FP_CACHE_ENOSPC: "no space", FP_CACHE_ETOOBIG: "too big",
           FP_CACHE_ENOPIN: "no pin slot"}
_META_KEYS = ("request_time", "response_time", "date", "expires", "last_modified",
              "age_value", "freshness", "swr", "sie", "status", "flags")


def _shmem_huge_forced():
    """True when the kernel puts shared memory on huge pages whatever we ask
    (transparent_hugepage/shmem_enabled "force"): then no page-laid bodies."""
    try:
        with open("/sys/kernel/mm/transparent_hugepage/shmem_enabled") as f:
            return "[force]" in f.read()
    except OSError:
        return False


_current = None


def set_current(region):
    """The worker's region (or None), for the request path to find."""
    global _current
    _current = region


def current():
    return _current


def min_size():
    return fp_cache_min_size()


cdef fp_cache_meta _meta_from(dict meta, uint64_t vary):
    cdef fp_cache_meta m
    m.request_time = m.response_time = m.date = m.expires = m.last_modified = -1
    m.age_value = 0
    m.freshness = 0
    m.swr = m.sie = -1
    m.status = 200
    m.flags = 0
    if meta:
        for k, v in meta.items():
            if k == "request_time":
                m.request_time = v
            elif k == "response_time":
                m.response_time = v
            elif k == "date":
                m.date = v
            elif k == "expires":
                m.expires = v
            elif k == "last_modified":
                m.last_modified = v
            elif k == "age_value":
                m.age_value = v
            elif k == "freshness":
                m.freshness = v
            elif k == "swr":
                m.swr = v
            elif k == "sie":
                m.sie = v
            elif k == "status":
                m.status = v
            elif k == "flags":
                m.flags = v
            else:
                raise KeyError(k)
    m.vary_hash = vary
    return m


cdef dict _meta_dict(fp_cache_meta *m):
    return {"request_time": m.request_time, "response_time": m.response_time,
            "date": m.date, "expires": m.expires, "last_modified": m.last_modified,
            "age_value": m.age_value, "freshness": m.freshness, "swr": m.swr,
            "sie": m.sie, "status": m.status, "flags": m.flags, "vary": m.vary_hash}


cdef class CacheRegion:
    def __cinit__(self):
        self.c = NULL
        self.slot = -1
        self.pid = 0
        self.fd = -1

    def __init__(self, size_t size, size_t max_entry_size, size_t max_entries=0, *,
                 bint sendfile=True):
        if size < fp_cache_min_size():
            raise ValueError(f"cache size {size} is below the minimum {fp_cache_min_size()}")
        if max_entry_size == 0:
            raise ValueError("max_entry_size must be > 0")
        cdef int fd = -1
        if sendfile and not _shmem_huge_forced():
            try:                # a file the kernel can splice from: sendfile works on it
                fd = os.memfd_create("fastproxy-cache", os.MFD_CLOEXEC)
                os.ftruncate(fd, size)
            except (AttributeError, OSError):
                if fd >= 0:
                    os.close(fd)
                fd = -1
        if fd >= 0:             # else every sendfile updates its atime (~1.5 % of a hit)
            try:
                fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_NOATIME)
            except OSError:
                pass
        cdef void *p = mmap(NULL, size, PROT_READ | PROT_WRITE,
                            MAP_SHARED | (0 if fd >= 0 else MAP_ANONYMOUS), fd, 0)
        if p == MAP_FAILED:
            if fd >= 0:
                close(fd)
            raise MemoryError(f"mmap of {size} bytes for the cache failed")
        if fd >= 0:
            # Sockets keep sendfile'd pages; dropping one (MADV_REMOVE) must
            # detach it, which a huge page would instead zero in place.
            madvise(p, size, MADV_NOHUGEPAGE)
        if fp_cache_init(p, size, max_entry_size, max_entries,
                         FP_CACHE_PAGED_MIN if fd >= 0 else 0) != FP_CACHE_OK:
            munmap(p, size)
            if fd >= 0:
                close(fd)
            raise ValueError("cache region layout does not fit (size too small?)")
        self.c = <fp_cache *>p
        self.size = size
        self.fd = fd

    @classmethod
    def create(cls, size, max_entry_size, max_entries=0, *, sendfile=True):
        """Map and initialise a new region (the master, before fork)."""
        return cls(size, max_entry_size, max_entries, sendfile=sendfile)

    def __dealloc__(self):
        if self.c != NULL:
            munmap(self.c, self.size)
        if self.fd >= 0:
            close(self.fd)

    cdef int _ensure_slot(self) except -1:
        cdef int pid = os.getpid()
        if self.pid == pid and self.slot >= 0:
            return 0
        r = fp_cache_attach(self.c, pid)
        if r < 0:
            raise RuntimeError(f"no free cache process slot ({_ERRORS.get(r, r)})")
        self.slot = r
        self.pid = pid
        return 0

    def attach(self):
        """Claim this process's pin slot (a forked worker calls it once)."""
        self._ensure_slot()
        return self.slot

    def detach(self):
        if self.slot >= 0 and self.pid == os.getpid():
            fp_cache_detach(self.c, self.slot)
        self.slot = -1

    def reap(self, int pid):
        """A process exited: drop its pins, its unfinished stores and its fill claims."""
        return fp_cache_reap(self.c, pid)

    def put(self, bytes key, bytes head, bytes body, *, uint64_t vary=0, dict meta=None,
            chunk=0, hint=None):
        """Store a response; False when it was not stored (too big, no space, busy).
        With chunk > 0 the body goes in through begin/append/commit, chunk bytes at
        a time, starting from a reservation of `hint` bytes (grows as needed)."""
        self._ensure_slot()
        cdef fp_cache_meta m = _meta_from(meta, vary)
        if not chunk:
            return fp_cache_put_all(self.c, self.slot, <const char *>key, len(key),
                                    <const char *>head, len(head), <const char *>body,
                                    len(body), &m) == FP_CACHE_OK
        cdef fp_cache_put p
        cdef const char *b = body
        cdef size_t n = len(body), at = 0, step
        if cache_begin(self, key, len(key), head, len(head), &m,
                       n if hint is None else hint, &p) != FP_CACHE_OK:
            return False
        while at < n:
            step = min(<size_t>chunk, n - at)
            if cache_append(self, &p, b + at, step) != FP_CACHE_OK:
                cache_abort(self, &p)
                return False
            at += step
        return cache_commit(self, &p) == FP_CACHE_OK

    def get(self, bytes key, *, uint64_t vary=0, bint any_variant=False, bint count=True,
            bint touch=True):
        """(head, body, meta) copied out of the region, or None.  Looks up
        as the request path does: a small entry copied under the lock, a
        larger one pinned while it is copied."""
        self._ensure_slot()
        cdef fp_cache_hit hit
        cdef unsigned flags = ((FP_CACHE_ANY_VARIANT if any_variant else 0) |
                               (0 if count else FP_CACHE_NOCOUNT) |
                               (0 if touch else FP_CACHE_NOTOUCH))
        r = cache_lookup_copy(self, key, len(key), vary, flags, &hit)
        if r != FP_CACHE_HIT:
            return None
        try:
            head = (<const char *>hit.head)[:hit.head_len]
            body = (<const char *>hit.body)[:hit.body_len]
            meta = _meta_dict(&hit.meta)
        finally:
            cache_release(self, hit.pin)
        return head, body, meta

    def update_head(self, bytes key, bytes head, *, uint64_t vary=0, dict meta=None):
        """304 refresh: new head (and meta) for a stored response, same body."""
        self._ensure_slot()
        cdef fp_cache_meta m = _meta_from(meta, vary)
        return fp_cache_update_head(self.c, self.slot, <const char *>key, len(key), vary,
                                    <const char *>head, len(head),
                                    &m if meta is not None else NULL) == FP_CACHE_OK

    def delete(self, bytes key):
        """Remove every variant of key; the number removed."""
        return fp_cache_delete(self.c, <const char *>key, len(key))

    def purge_prefix(self, bytes prefix):
        """Remove every entry whose key starts with prefix; the number removed."""
        return fp_cache_purge_prefix(self.c, <const char *>prefix, len(prefix))

    def stats(self):
        cdef fp_cache_stats s
        fp_cache_get_stats(self.c, &s)
        return {"hits": s.hits, "misses": s.misses, "stores": s.stores,
                "evictions": s.evictions, "bytes": s.bytes, "entries": s.entries,
                "capacity": s.capacity, "recoveries": s.recoveries, "rebuilds": s.rebuilds,
                "resets": s.resets}

    def check(self):
        """Raise RuntimeError if any invariant of the region does not hold."""
        cdef char err[256]
        err[0] = 0
        if fp_cache_check(self.c, err, sizeof(err)) != 0:
            raise RuntimeError("cache region inconsistent: " + err.decode("utf-8", "replace"))

    def lru_keys(self):
        """Keys from the most to the least recently used."""
        cdef long count = 0
        cdef long need = fp_cache_lru_keys(self.c, NULL, 0, &count)
        if need < 0:
            raise RuntimeError("cache busy")
        buf = bytearray(need + 4096)
        cdef uint8_t *p = buf
        need = fp_cache_lru_keys(self.c, p, len(buf), &count)
        if need > len(buf):
            return self.lru_keys()  # it grew meanwhile
        return bytes(buf[:need]).split(b"\0")[:count]

    # -- request coalescing --------------------------------------------------------------
    def fill_claim(self, bytes key, double ttl=10.0):
        """'owner' (fetch it, then fill_done), 'wait' (another live process fetches)
        or 'noslot' (table full: fetch without coalescing)."""
        cdef int64_t deadline = 0
        r = fp_cache_fill_claim(self.c, fp_cache_hash(<const char *>key, len(key)),
                                os.getpid(), int(time.monotonic() * 1000),
                                int(ttl * 1000), &deadline)
        return "owner" if r == FP_FILL_OWNER else "wait" if r == FP_FILL_WAIT else "noslot"

    def fill_pending(self, bytes key):
        return fp_cache_fill_pending(self.c, fp_cache_hash(<const char *>key, len(key)),
                                     int(time.monotonic() * 1000)) != 0

    def fill_done(self, bytes key):
        fp_cache_fill_done(self.c, fp_cache_hash(<const char *>key, len(key)), os.getpid())

    def _pin_for_test(self, bytes key):
        """Tests only: look key up and keep the pin (a reader mid-send); the pin
        number, or -1 on a miss."""
        self._ensure_slot()
        cdef fp_cache_hit hit
        if cache_lookup(self, key, len(key), 0, FP_CACHE_NOCOUNT, &hit) != FP_CACHE_HIT:
            return -1
        return hit.pin

    def _body_file_offset(self, bytes key, *, uint64_t vary=0):
        """(offset of the body in the memfd or -1 when it is not page-laid, body)."""
        self._ensure_slot()
        cdef fp_cache_hit hit
        if cache_lookup(self, key, len(key), vary, FP_CACHE_NOCOUNT | FP_CACHE_NOTOUCH,
                        &hit) != FP_CACHE_HIT:
            return None
        out = (hit.file_off, (<const char *>hit.body)[:hit.body_len])
        cache_release(self, hit.pin)
        return out

    def _sendfile_for_test(self, bytes key, int sock, bytes head=None, long long now=0):
        """Tests only: sendfile key's body to sock as a hit does (mark, send,
        release); with head, the ready head + body in one sendfile, when
        fp_cache_ready_head agrees that head is (or may become) the ready
        head at second now.  The bytes sent, or -1 when the body is not
        page-laid or the ready head could not be head."""
        self._ensure_slot()
        cdef fp_cache_hit hit
        cdef size_t hlen = 0 if head is None else len(head)
        if cache_lookup(self, key, len(key), 0, FP_CACHE_NOCOUNT, &hit) != FP_CACHE_HIT:
            return -1
        try:
            if hit.file_off < 0 or self.fd < 0:
                return -1
            if hlen and not cache_ready_head(self, &hit, head, hlen, now):
                return -1
            cache_note_sendfile(self, &hit)
            return os.sendfile(sock, self.fd, hit.file_off - hlen, hlen + hit.body_len)
        finally:
            cache_release(self, hit.pin)

    def _release_for_test(self, int pin):
        cache_release(self, pin)

    def _dead_pinned_bodies(self):
        """Tests only: bodies of entries removed from the cache but still pinned."""
        cdef const uint8_t *body
        cdef size_t n
        out = []
        while fp_cache_test_dead_body(self.c, len(out), &body, &n):
            out.append((<const char *>body)[:n])
        return out

    def time_hits(self, bytes key, int n):
        """Benchmarks: n lookups + releases of key in a C loop (the data plane's hit
        cost, no Python per hit); the number of hits."""
        self._ensure_slot()
        cdef fp_cache_hit hit
        cdef const char *k = key
        cdef size_t klen = len(key)
        cdef int _i, hits = 0
        for _i in range(n):
            if cache_lookup(self, k, klen, 0, 0, &hit) == FP_CACHE_HIT:
                hits += 1
                cache_release(self, hit.pin)
        return hits

    def _die_holding_lock(self):
        """Tests only: leave the region mid-mutation with the lock held, and die."""
        fp_cache_test_die_in_lock(self.c)
        os.kill(os.getpid(), signal.SIGKILL)


def _crash_after(long n):
    """Tests only: this process SIGKILLs itself at the n-th crash point inside
    the store (0 = never)."""
    fp_cache_test_crash_after(n)


def key_hash(bytes key):
    return fp_cache_hash(<const char *>key, len(key))
