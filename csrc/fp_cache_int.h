/* fp_cache_int.h - layout of the cache region, shared by fp_cache.c (index,
 * LRU, operations), fp_cache_heap.c (allocator, rebuild), fp_cache_check.c
 * and fp_cache_fill.c (fill claims).
 * Not part of the API: Cython sees only fp_cache.h. */
#ifndef FP_CACHE_INT_H
#define FP_CACHE_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "fp_cache.h"

#define FP_CACHE_MAGIC UINT64_C(0x6670636163686531)  /* "fpcache1" */
#define FP_ALIGN 64u            /* chunk size granule (a cache line)           */
#define FP_MIN_CHUNK 128u       /* smallest free chunk worth keeping           */
#define FP_BINS 64              /* free lists by floor(log2(size))             */
#define FP_NFILL 256            /* in-flight fill claims                       */
#define FP_PAGE 4096u           /* what a socket holds on to after sendfile    */

/* Chunk header word: size | flags.  The walk uses the size only, and every
 * size change is one 8-byte store, so a heap walk always succeeds even after
 * a process died in the middle of a split or a merge. */
#define FP_CH_FREE UINT64_C(1)
#define FP_CH_PREV_FREE UINT64_C(2)
#define FP_CH_FLAGS UINT64_C(63)

/* Entry states (first word after the chunk header). */
#define FP_ENT_PENDING 0x50454e44u  /* being written by its owner slot        */
#define FP_ENT_LIVE 0x4c495645u     /* in the index and the LRU list          */
#define FP_ENT_DEAD 0x44454144u     /* unlinked, waiting for its last pin     */

typedef struct {
    uint32_t magic;
    uint32_t refs;
    uint64_t id;
    uint64_t hash;
    uint64_t hnext;              /* next in the hash chain (chunk offset)     */
    uint64_t prev, next;         /* LRU neighbours; prev = more recent        */
    uint32_t owner;              /* writer's slot while PENDING               */
    uint32_t key_len;
    uint32_t head_len;
    uint16_t body_gap;           /* bytes between the head and the body       */
    uint8_t paged;               /* 1: the body starts on a page and every page
                                    it touches is this chunk's (sendfile-safe) */
    uint8_t sent;                /* 1: a socket got the body by sendfile: drop
                                    its pages when the chunk is freed        */
    uint16_t ready_cap;          /* paged: room kept right before the body, on
                                    its first page, for a ready head (0 = none) */
    uint16_t ready_len;          /* the ready head there now, 0 = none        */
    uint32_t ready_busy;         /* 1 while a rewrite has that page dropped   */
    int64_t ready_time;          /* second of the last rewrite                */
    uint64_t body_len;
    uint64_t body_cap;
    fp_cache_meta meta;
} fp_entry;

#define FP_ENT_OFF 8u            /* entry starts after the chunk header       */
#define FP_DATA_OFF (FP_ENT_OFF + sizeof(fp_entry))

typedef struct {
    uint64_t off;                /* chunk offset of the pinned entry, 0 = free */
    uint64_t id;
} fp_pin;

typedef struct {
    int32_t pid;                 /* 0 = free slot                             */
    uint32_t used;               /* pins in use (a hint for the scan)         */
    fp_pin pins[];               /* npins of them                             */
} fp_proc;

typedef struct {
    uint64_t hash;               /* 0 = free                                  */
    int32_t pid;
    uint32_t pad;
    int64_t deadline_ms;
} fp_fill;

struct fp_cache {
    uint64_t magic;
    uint64_t version;
    uint64_t size;
    pthread_mutex_t lock;
    volatile uint32_t dirty;     /* set around every mutation                 */
    uint32_t nprocs;
    uint32_t npins;
    uint32_t proc_stride;
    uint64_t nbuckets;           /* a power of two                            */
    uint64_t max_entry, max_entries;
    uint64_t paged_min;          /* bodies of at least this many bytes are laid
                                    out on pages (0 = never)                 */
    uint64_t procs_off, fill_off, buckets_off, heap_start, heap_end;
    uint64_t lru_head, lru_tail; /* chunk offsets, 0 = none                   */
    uint64_t bins[FP_BINS];
    uint64_t next_id;
    uint64_t epoch;              /* bumped when the heap had to be emptied    */
    fp_cache_stats st;
};

#define FP_AT(c, off) ((uint8_t *)(c) + (off))
#define FP_HDR(c, off) ((uint64_t *)FP_AT(c, off))
#define FP_ENT(c, off) ((fp_entry *)FP_AT(c, (off) + FP_ENT_OFF))
#define FP_CSIZE(c, off) (*FP_HDR(c, off) & ~FP_CH_FLAGS)

/* Tests: a process-local countdown; the process SIGKILLs itself at the n-th
 * crash point (fp_cache_test_crash_after), i.e. in the middle of a mutation.
 * Off (0) in production: one predictable branch per point. */
extern long fp_cache_crash_countdown;
void fp_cache_crash_now(void);
#define FP_CRASH_POINT()                                                                  \
    do {                                                                                   \
        if (__builtin_expect(fp_cache_crash_countdown > 0, 0) && --fp_cache_crash_countdown == 0) \
            fp_cache_crash_now();                                                          \
    } while (0)

/* Order stores against a SIGKILL between them (instruction boundaries). */
#define FP_BARRIER()                                 \
    do {                                             \
        atomic_signal_fence(memory_order_seq_cst);   \
        FP_CRASH_POINT();                            \
    } while (0)

/* A mutation of the region under the lock: dirty while it runs, so that the
 * next holder after a crash inside it repairs (fp_lock). */
static inline void fp_mut_begin(fp_cache *c) { c->dirty = 1; FP_BARRIER(); }
static inline void fp_mut_end(fp_cache *c) { FP_BARRIER(); c->dirty = 0; }

static inline uint64_t *fp_buckets(fp_cache *c) { return (uint64_t *)FP_AT(c, c->buckets_off); }
static inline fp_fill *fp_fills(fp_cache *c) { return (fp_fill *)FP_AT(c, c->fill_off); }
static inline fp_proc *fp_proc_at(fp_cache *c, uint32_t i)
{
    return (fp_proc *)FP_AT(c, c->procs_off + (uint64_t)i * c->proc_stride);
}
static inline uint8_t *fp_ent_data(fp_cache *c, uint64_t off) { return FP_AT(c, off + FP_DATA_OFF); }
static inline uint64_t fp_need(uint64_t payload)
{
    uint64_t n = (FP_DATA_OFF + payload + FP_ALIGN - 1) & ~(uint64_t)(FP_ALIGN - 1);
    return n < FP_MIN_CHUNK ? FP_MIN_CHUNK : n;
}
static inline uint64_t fp_page_up(uint64_t n) { return (n + FP_PAGE - 1) & ~(uint64_t)(FP_PAGE - 1); }
/* Region offset of an entry's body (after key, head and the page gap). */
static inline uint64_t fp_body_off(fp_cache *c, uint64_t off)
{
    fp_entry *e = FP_ENT(c, off);
    return off + FP_DATA_OFF + e->key_len + e->head_len + e->body_gap;
}
static inline uint8_t *fp_ent_body(fp_cache *c, uint64_t off) { return FP_AT(c, fp_body_off(c, off)); }
/* Region offset of a paged entry's first body page: where its ready head
 * room starts; that page and every later one belong to this entry alone. */
static inline uint64_t fp_body_page(fp_cache *c, uint64_t off)
{
    return fp_body_off(c, off) - FP_ENT(c, off)->ready_cap;
}
/* The first body page of a paged entry lies on a page boundary, after its
 * head and inside its chunk of `size` bytes (what the check and a rebuild
 * must see before trusting the header). */
static inline int fp_body_page_ok(fp_cache *c, uint64_t off, uint64_t size)
{
    fp_entry *e = FP_ENT(c, off);
    uint64_t page = fp_body_page(c, off);
    return page % FP_PAGE == 0 && page >= off + FP_DATA_OFF + e->key_len + e->head_len &&
           page < off + size;
}
/* Chunk bytes the entry at off needs for a body of body_len bytes.  A paged
 * body keeps whole pages, so the next chunk starts on a page of its own. */
static inline uint64_t fp_entry_need(fp_cache *c, uint64_t off, uint64_t body_len)
{
    fp_entry *e = FP_ENT(c, off);
    if (e->paged) return fp_page_up(fp_body_off(c, off) + body_len) - off;
    return fp_need((uint64_t)e->key_len + e->head_len + body_len);
}

/* fp_cache_heap.c */
void fp_heap_init(fp_cache *c);
uint64_t fp_heap_alloc(fp_cache *c, uint64_t need);
uint64_t fp_heap_free(fp_cache *c, uint64_t off);  /* -> start of the merged free chunk */
void fp_heap_shrink(fp_cache *c, uint64_t off, uint64_t need);
/* Give the whole pages inside [start, end) back to the kernel (MADV_REMOVE):
 * a socket still sending them keeps the old pages, later writes get new ones. */
void fp_heap_drop_pages(fp_cache *c, uint64_t start, uint64_t end);
void fp_cache_rebuild(fp_cache *c);
int fp_pid_alive(int32_t pid);

/* fp_cache.c: the lock (repairs after EOWNERDEAD; 0 = held), index and LRU */
int fp_lock(fp_cache *c);
void fp_unlock(fp_cache *c);
void fp_index_insert(fp_cache *c, uint64_t off);
uint64_t fp_index_find(fp_cache *c, uint64_t hash, const void *key, size_t klen, uint64_t vary,
                       unsigned flags);
void fp_lru_push_front(fp_cache *c, uint64_t off);
void fp_unlink(fp_cache *c, uint64_t off);  /* from the index and the LRU list */

#endif
