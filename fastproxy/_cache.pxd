# The shared-memory response cache region (csrc/fp_cache.h) and the entry
# points the data plane calls without building Python objects: a hit is a
# pinned entry (pointers + lengths into shared memory) until cache_release.
from libc.stdint cimport int32_t, int64_t, uint64_t

from fastproxy.fp_cache cimport (
    fp_cache,
    fp_cache_append,
    fp_cache_abort,
    fp_cache_begin,
    fp_cache_commit,
    fp_cache_hit,
    fp_cache_lookup,
    fp_cache_lookup_copy,
    fp_cache_meta,
    fp_cache_note_sendfile,
    fp_cache_put,
    fp_cache_ready_head,
    fp_cache_release,
)


cdef enum:
    COPY_MAX = 2048     # bytes of head + body: copying them costs less than a second lock


cdef class CacheRegion:
    cdef fp_cache *c
    cdef readonly size_t size
    cdef readonly int slot          # this process's pin slot, -1 = not attached
    cdef readonly int fd            # the region's memfd (sendfile source), -1 = none
    cdef int pid                    # the process `slot` belongs to
    # small hits are copied here rather than pinned (cache_lookup_copy)
    cdef unsigned char copy_buf[COPY_MAX]
    cdef int _ensure_slot(self) except -1


cdef inline int cache_lookup(CacheRegion r, const char *key, size_t klen, uint64_t vary,
                             unsigned flags, fp_cache_hit *out) noexcept:
    """FP_CACHE_HIT (out pinned), FP_CACHE_MISS, or < 0 (treat as a miss)."""
    return fp_cache_lookup(r.c, r.slot, key, klen, vary, flags, out)


cdef inline int cache_lookup_copy(CacheRegion r, const char *key, size_t klen, uint64_t vary,
                                  unsigned flags, fp_cache_hit *out) noexcept:
    """cache_lookup, except that a small entry comes as a copy in the
    region's buffer (valid until the next lookup in this process) instead of
    pinned.  For the request path, which is done with a hit before it looks
    up another."""
    return fp_cache_lookup_copy(r.c, r.slot, key, klen, vary, flags, r.copy_buf, COPY_MAX, out)


cdef inline void cache_release(CacheRegion r, int32_t pin) noexcept:
    fp_cache_release(r.c, r.slot, pin)


cdef inline void cache_note_sendfile(CacheRegion r, const fp_cache_hit *hit) noexcept:
    fp_cache_note_sendfile(r.c, hit)


cdef inline bint cache_ready_head(CacheRegion r, const fp_cache_hit *hit, const char *head,
                                  size_t hlen, int64_t now) noexcept:
    """True: the hlen bytes before the hit's body in the memfd are head."""
    return fp_cache_ready_head(r.c, hit, head, hlen, now)


cdef inline int cache_begin(CacheRegion r, const char *key, size_t klen, const char *head,
                            size_t hlen, const fp_cache_meta *meta, uint64_t body_hint,
                            fp_cache_put *p) noexcept:
    return fp_cache_begin(r.c, r.slot, key, klen, head, hlen, meta, body_hint, p)


cdef inline int cache_append(CacheRegion r, fp_cache_put *p, const char *data,
                             size_t n) noexcept:
    return fp_cache_append(r.c, p, data, n)


cdef inline int cache_commit(CacheRegion r, fp_cache_put *p) noexcept:
    return fp_cache_commit(r.c, p)


cdef inline void cache_abort(CacheRegion r, fp_cache_put *p) noexcept:
    fp_cache_abort(r.c, p)
