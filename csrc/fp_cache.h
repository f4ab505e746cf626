/* fp_cache.h - the shared-memory response store (RFC 9111 policy lives in
 * fp_cache_policy.h; this file only stores and finds bytes).
 *
 * One MAP_SHARED region, created by the master before fork and inherited by
 * every worker.  Everything inside it is addressed by offsets from the
 * region start, never by pointers, so the layout means the same thing in
 * every process.  docs/cache.md describes the design; the short version:
 *
 *   header | process slots (pins) | fill table | hash buckets | heap
 *
 * - The heap is a boundary-tag allocator with segregated free lists
 *   (fp_cache_heap.c): an entry is ONE contiguous chunk (entry header, key,
 *   response head, body), so a hit is one pointer + length per part.
 * - Bodies of at least paged_min bytes (fp_cache_init) start on a page and
 *   own every page they touch, so the data plane can sendfile(2) them from
 *   the region's memfd; when such an entry is freed its pages are dropped
 *   (MADV_REMOVE) before the chunk can be reused, so bytes a socket has not
 *   sent yet keep the old pages and never show another response.
 * - Index: chained hash buckets keyed by a 64-bit hash of the key, then a
 *   full key compare and the Vary secondary-key hash.
 * - LRU: a doubly linked list through the entries; eviction takes the tail.
 * - One robust, process-shared mutex guards all of it.  Critical sections
 *   are short (no body is copied under it); a process killed while holding
 *   it is detected with EOWNERDEAD and the structures are rebuilt from a
 *   walk of the heap (see fp_cache_rebuild) before pthread_mutex_consistent.
 * - A reader pins an entry (refcount + a record in its process slot), reads
 *   it without the lock, then releases it.  Pins of a dead process are
 *   dropped by fp_cache_reap(pid) (the master calls it when a worker exits).
 */
#ifndef FP_CACHE_H
#define FP_CACHE_H

#include <stddef.h>
#include <stdint.h>

#define FP_CACHE_VERSION 3

/* Return codes (negative = error). */
#define FP_CACHE_OK 0
#define FP_CACHE_HIT 1
#define FP_CACHE_MISS 0
#define FP_CACHE_EBUSY (-1)      /* lock not taken within FP_CACHE_LOCK_TIMEOUT */
#define FP_CACHE_ENOSPC (-2)     /* nothing left to evict                        */
#define FP_CACHE_ETOOBIG (-3)    /* over max_entry_size                          */
#define FP_CACHE_ENOPIN (-4)     /* this process has no free pin record          */
#define FP_CACHE_EINVAL (-5)     /* bad handle / slot / argument                 */
#define FP_CACHE_ESTALE (-6)     /* the pending entry is gone (reaped)           */

/* Lookup flags. */
#define FP_CACHE_ANY_VARIANT 1u  /* ignore the Vary hash: newest variant of key  */
#define FP_CACHE_NOCOUNT 2u      /* do not count a hit or a miss                 */
#define FP_CACHE_NOTOUCH 4u      /* do not move the entry to the LRU front       */

/* Vary secondary key for `Vary: *`: stored never, matched never (RFC 9111 4.1). */
#define FP_CACHE_VARY_STAR UINT64_MAX

/* Fill lock answers (request coalescing). */
#define FP_FILL_OWNER 1          /* you fetch from the origin, then fill_done    */
#define FP_FILL_WAIT 2           /* another live process fetches: poll           */
#define FP_FILL_NOSLOT 3         /* table full: fetch without coalescing         */

#define FP_CACHE_LOCK_TIMEOUT_MS 2000

/* Bodies from FP_CACHE_PAGED_MIN on are laid out on pages of their own,
 * with room for a ready head in front (fp_cache_ready_head), so a hit can
 * leave in ONE sendfile of head + body with no copy.  That wins over one
 * sendmsg of head + body (the kernel copying the body into the socket) from
 * about 16 KiB on; below it the per-page splice work costs what the copy
 * saves (bench/c/send_cost.c "onefile", loopback, us per answer: 12 KiB
 * 9.4-9.7 against 9.5, 16 KiB 8.3-8.7 against 8.6-9.9, 24 KiB 9.9-10.2
 * against 11.6-12.3; docs/cache.md "Sending hits").  When the ready head
 * cannot be used, the head goes by send(MSG_MORE) and the body by sendfile
 * only from FP_CACHE_SENDFILE_MIN on, where those two calls beat one sendmsg
 * (24 KiB 10.6-11.1, 64 KiB 14.2 against 18.2; 16 KiB 9.5-10.5 against
 * 8.6-9.9). */
#define FP_CACHE_PAGED_MIN 16384
#define FP_CACHE_SENDFILE_MIN 24576
/* Ready head room beyond the stored head: Age, X-Cache, Connection and
 * Content-Length lines and the blank line (at most 113 bytes). */
#define FP_CACHE_READY_EXTRA 160

typedef struct fp_cache fp_cache;  /* the region header (fp_cache_int.h) */

/* What the HTTP layer stores with a response; the store never interprets it,
 * except vary_hash (part of the identity).  Times are Unix seconds, -1 when
 * absent. */
typedef struct {
    int64_t request_time;        /* when the request went upstream (4.2.3)   */
    int64_t response_time;       /* when the response arrived = store time   */
    int64_t date;                /* Date header                              */
    int64_t expires;             /* Expires header                           */
    int64_t last_modified;       /* Last-Modified header                     */
    int64_t age_value;           /* Age header received, 0 if none           */
    int64_t freshness;           /* freshness lifetime, seconds              */
    int64_t swr;                 /* stale-while-revalidate, seconds, -1      */
    int64_t sie;                 /* stale-if-error, seconds, -1              */
    uint64_t vary_hash;          /* secondary key; 0 = response has no Vary  */
    uint32_t status;
    uint32_t flags;              /* fp_cache_policy.h FP_CC_* bits           */
} fp_cache_meta;

/* A pinned entry: valid until fp_cache_release(c, slot, pin). */
typedef struct {
    const uint8_t *key;
    const uint8_t *head;
    const uint8_t *body;
    size_t key_len, head_len, body_len;
    fp_cache_meta meta;
    uint64_t id;
    int64_t file_off;            /* the body's offset in the region when it
                                    is page-laid (sendfile-safe), else -1   */
    int32_t pin;
} fp_cache_hit;

/* A store in progress (caller memory). */
typedef struct {
    uint64_t off;                /* chunk offset, 0 = none                   */
    uint64_t id;
    uint64_t cap;                /* body capacity                            */
    uint64_t body_len;
    int32_t slot;
} fp_cache_put;

typedef struct {
    uint64_t hits, misses, stores, evictions;
    uint64_t bytes, entries;     /* gauges: chunk bytes of live entries, count */
    uint64_t recoveries;         /* EOWNERDEAD seen                          */
    uint64_t rebuilds;           /* heap walks that rebuilt the structures   */
    uint64_t resets;             /* heap found unwalkable: emptied           */
    uint64_t capacity;           /* heap bytes                               */
} fp_cache_stats;

/* Region set-up (master, before fork).  max_entries 0 = no count limit;
 * paged_min 0 = never lay bodies out on pages (a region that is no memfd). */
size_t fp_cache_min_size(void);
int fp_cache_init(void *mem, size_t size, uint64_t max_entry, uint64_t max_entries,
                  uint64_t paged_min);
int fp_cache_valid(const void *mem, size_t size);  /* 1 if mem holds our region */

/* Process slots (pins live there).  attach: slot index >= 0, or < 0; call it
 * once per process (a slot already naming the pid is taken as a dead
 * process's whose pid was reused, and its pins are dropped). */
int fp_cache_attach(fp_cache *c, int32_t pid);
void fp_cache_detach(fp_cache *c, int slot);
int fp_cache_reap(fp_cache *c, int32_t pid);     /* drop a dead process's pins,
                                                    pending stores, fill claims */

uint64_t fp_cache_hash(const void *key, size_t len);

int fp_cache_lookup(fp_cache *c, int slot, const void *key, size_t klen, uint64_t vary,
                    unsigned flags, fp_cache_hit *out);
/* The same, except that an entry that is not page-laid and whose head and
 * body fit in cap bytes is copied into buf under the lock instead of pinned:
 * out->head and out->body then point into buf, out->key is NULL, out->pin
 * -1 (releasing it does nothing) and out->file_off -1.  A small hit thus
 * takes the lock once instead of twice. */
int fp_cache_lookup_copy(fp_cache *c, int slot, const void *key, size_t klen, uint64_t vary,
                         unsigned flags, void *buf, size_t cap, fp_cache_hit *out);
void fp_cache_release(fp_cache *c, int slot, int32_t pin);
/* The caller is about to sendfile this pinned hit's body (file_off >= 0):
 * from now on freeing the entry drops its pages.  No lock: the pin keeps
 * the entry, and the free that reads the mark takes the lock after unpin. */
void fp_cache_note_sendfile(fp_cache *c, const fp_cache_hit *hit);

/* The ready head of a pinned, page-laid hit (file_off >= 0): the bytes kept
 * right before its body in the region, so that head + body are one file
 * range.  Returns 1 when the hlen bytes before the body now equal head (the
 * caller may sendfile [file_off - hlen, file_off + body_len) after
 * fp_cache_note_sendfile), 0 when not (send the head from memory).  A
 * different head is written in only when no other pin holds the entry and
 * not yet in second `now` (Age changes once a second; clients that differ in
 * Connection handling do not make it flap).  If a socket may still hold the
 * old bytes, their page is dropped first (MADV_REMOVE) and the body's first
 * bytes written back, so what was sent never changes. */
int fp_cache_ready_head(fp_cache *c, const fp_cache_hit *hit, const void *head, size_t hlen,
                        int64_t now);

int fp_cache_begin(fp_cache *c, int slot, const void *key, size_t klen, const void *head,
                   size_t hlen, const fp_cache_meta *meta, uint64_t body_hint,
                   fp_cache_put *p);
int fp_cache_append(fp_cache *c, fp_cache_put *p, const void *data, size_t len);
int fp_cache_commit(fp_cache *c, fp_cache_put *p);
void fp_cache_abort(fp_cache *c, fp_cache_put *p);
int fp_cache_put_all(fp_cache *c, int slot, const void *key, size_t klen, const void *head,
                     size_t hlen, const void *body, size_t blen, const fp_cache_meta *meta);
/* 304 refresh: replace the head (and meta) of key/vary, keeping the body. */
int fp_cache_update_head(fp_cache *c, int slot, const void *key, size_t klen, uint64_t vary,
                         const void *head, size_t hlen, const fp_cache_meta *meta);

long fp_cache_delete(fp_cache *c, const void *key, size_t klen);          /* all variants */
long fp_cache_purge_prefix(fp_cache *c, const void *prefix, size_t plen);

void fp_cache_get_stats(const fp_cache *c, fp_cache_stats *out);
/* The request path's own counting (its lookups use FP_CACHE_NOCOUNT): one hit
 * or miss per request, whatever number of lookups it took.  Atomic, no lock. */
void fp_cache_count(fp_cache *c, uint64_t hits, uint64_t misses);
/* Consistency check: 0 = fine, else -1 with a reason in err. */
int fp_cache_check(fp_cache *c, char *err, size_t errlen);
/* Keys of the LRU list, most recent first, NUL-separated into buf (tests). */
long fp_cache_lru_keys(fp_cache *c, uint8_t *buf, size_t cap, long *count);

/* Request coalescing: a small table of in-flight keys (by key hash).  now_ms
 * and deadlines are CLOCK_MONOTONIC milliseconds (one clock for every
 * process on the host); a claim whose owner died or whose deadline passed is
 * taken over by the next claimant. */
int fp_cache_fill_claim(fp_cache *c, uint64_t key_hash, int32_t pid, int64_t now_ms,
                        int64_t ttl_ms, int64_t *deadline_ms);
int fp_cache_fill_pending(fp_cache *c, uint64_t key_hash, int64_t now_ms);
void fp_cache_fill_done(fp_cache *c, uint64_t key_hash, int32_t pid);

/* Tests only: take the lock, mark the region mid-mutation, scribble on the
 * LRU/index links and return holding the lock (the caller then dies). */
int fp_cache_test_die_in_lock(fp_cache *c);
/* Tests only: SIGKILL this process at the n-th crash point inside the store
 * (0 = never); crash points sit between the stores of every mutation. */
void fp_cache_test_crash_after(long n);
/* Tests only: the index-th DEAD (unlinked, still pinned) entry's body. */
int fp_cache_test_dead_body(fp_cache *c, long index, const uint8_t **body, size_t *len);

#endif
