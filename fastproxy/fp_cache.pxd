# Mirror of csrc/fp_cache.h: the shared-memory response store.
from libc.stdint cimport int32_t, int64_t, uint8_t, uint32_t, uint64_t


cdef extern from "fp_cache.h" nogil:
    enum:
        FP_CACHE_OK
        FP_CACHE_HIT
        FP_CACHE_MISS
        FP_CACHE_EBUSY
        FP_CACHE_ENOSPC
        FP_CACHE_ETOOBIG
        FP_CACHE_ENOPIN
        FP_CACHE_EINVAL
        FP_CACHE_ESTALE
        FP_CACHE_ANY_VARIANT
        FP_CACHE_NOCOUNT
        FP_CACHE_NOTOUCH
        FP_FILL_OWNER
        FP_FILL_WAIT
        FP_FILL_NOSLOT
        FP_CACHE_SENDFILE_MIN
        FP_CACHE_PAGED_MIN
        FP_CACHE_READY_EXTRA

    uint64_t FP_CACHE_VARY_STAR

    ctypedef struct fp_cache:
        pass

    ctypedef struct fp_cache_meta:
        int64_t request_time
        int64_t response_time
        int64_t date
        int64_t expires
        int64_t last_modified
        int64_t age_value
        int64_t freshness
        int64_t swr
        int64_t sie
        uint64_t vary_hash
        uint32_t status
        uint32_t flags

    ctypedef struct fp_cache_hit:
        const uint8_t *key
        const uint8_t *head
        const uint8_t *body
        size_t key_len
        size_t head_len
        size_t body_len
        fp_cache_meta meta
        uint64_t id
        int64_t file_off
        int32_t pin

    ctypedef struct fp_cache_put:
        uint64_t off
        uint64_t id
        uint64_t cap
        uint64_t body_len
        int32_t slot

    ctypedef struct fp_cache_stats:
        uint64_t hits
        uint64_t misses
        uint64_t stores
        uint64_t evictions
        uint64_t bytes
        uint64_t entries
        uint64_t recoveries
        uint64_t rebuilds
        uint64_t resets
        uint64_t capacity

    size_t fp_cache_min_size()
    int fp_cache_init(void *mem, size_t size, uint64_t max_entry, uint64_t max_entries,
                      uint64_t paged_min)
    int fp_cache_valid(const void *mem, size_t size)
    int fp_cache_attach(fp_cache *c, int32_t pid)
    void fp_cache_detach(fp_cache *c, int slot)
    int fp_cache_reap(fp_cache *c, int32_t pid)
    uint64_t fp_cache_hash(const void *key, size_t len)
    int fp_cache_lookup(fp_cache *c, int slot, const void *key, size_t klen, uint64_t vary,
                        unsigned flags, fp_cache_hit *out)
    int fp_cache_lookup_copy(fp_cache *c, int slot, const void *key, size_t klen,
                             uint64_t vary, unsigned flags, void *buf, size_t cap,
                             fp_cache_hit *out)
    void fp_cache_release(fp_cache *c, int slot, int32_t pin)
    void fp_cache_note_sendfile(fp_cache *c, const fp_cache_hit *hit)
    int fp_cache_ready_head(fp_cache *c, const fp_cache_hit *hit, const void *head, size_t hlen,
                            int64_t now)
    int fp_cache_begin(fp_cache *c, int slot, const void *key, size_t klen, const void *head,
                       size_t hlen, const fp_cache_meta *meta, uint64_t body_hint,
                       fp_cache_put *p)
    int fp_cache_append(fp_cache *c, fp_cache_put *p, const void *data, size_t len)
    int fp_cache_commit(fp_cache *c, fp_cache_put *p)
    void fp_cache_abort(fp_cache *c, fp_cache_put *p)
    int fp_cache_put_all(fp_cache *c, int slot, const void *key, size_t klen, const void *head,
                         size_t hlen, const void *body, size_t blen, const fp_cache_meta *meta)
    int fp_cache_update_head(fp_cache *c, int slot, const void *key, size_t klen, uint64_t vary,
                             const void *head, size_t hlen, const fp_cache_meta *meta)
    long fp_cache_delete(fp_cache *c, const void *key, size_t klen)
    long fp_cache_purge_prefix(fp_cache *c, const void *prefix, size_t plen)
    void fp_cache_get_stats(const fp_cache *c, fp_cache_stats *out)
    void fp_cache_count(fp_cache *c, uint64_t hits, uint64_t misses)
    int fp_cache_check(fp_cache *c, char *err, size_t errlen)
    long fp_cache_lru_keys(fp_cache *c, uint8_t *buf, size_t cap, long *count)
    int fp_cache_fill_claim(fp_cache *c, uint64_t key_hash, int32_t pid, int64_t now_ms,
                            int64_t ttl_ms, int64_t *deadline_ms)
    int fp_cache_fill_pending(fp_cache *c, uint64_t key_hash, int64_t now_ms)
    void fp_cache_fill_done(fp_cache *c, uint64_t key_hash, int32_t pid)
    int fp_cache_test_die_in_lock(fp_cache *c)
    void fp_cache_test_crash_after(long n)
    int fp_cache_test_dead_body(fp_cache *c, long index, const uint8_t **body, size_t *len)
