/* fp_cache_heap.c - the cache's allocator, and its repair after a crash.
 *
 * Why a boundary-tag allocator with segregated free lists (and not slabs):
 * responses range from a few hundred bytes to max_entry_size, and a hit must
 * be one contiguous span so the data plane can hand it to the socket as is.
 * Size-class slabs would either waste up to half of each entry or chain
 * blocks (several spans per hit).  Here a chunk is exactly the entry rounded
 * up to 64 bytes, neighbours merge when freed (so LRU eviction turns into
 * usable space), and a first fit over 64 power-of-two bins is O(1) in
 * practice.
 *
 * Chunk: [u64 size|flags][payload ...]; a free chunk keeps its free-list
 * links at +8/+16 and its size again in its last 8 bytes (the footer), which
 * the next chunk reads, when its PREV_FREE bit says so, to merge backwards.
 * Crash safety: every size change is one aligned 8-byte store, so walking
 * the heap by sizes from heap_start always lands on chunk headers; bits,
 * footers, free lists, the index and the LRU list are all derived data that
 * fp_cache_rebuild recomputes from that walk.
 */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/mman.h>

#include "fp_cache_int.h"

#define NEXT_FREE(c, off) (((uint64_t *)FP_AT(c, off))[1])
#define PREV_FREE(c, off) (((uint64_t *)FP_AT(c, off))[2])

int fp_pid_alive(int32_t pid)
{
    if (pid <= 0) return 0;
    return kill(pid, 0) == 0 || errno == EPERM;
}

static int bin_of(uint64_t size)
{
    return 63 - __builtin_clzll(size);
}

static void free_push(fp_cache *c, uint64_t off, uint64_t size)
{
    int b = bin_of(size);
    NEXT_FREE(c, off) = c->bins[b];
    PREV_FREE(c, off) = 0;
    if (c->bins[b]) PREV_FREE(c, c->bins[b]) = off;
    FP_CRASH_POINT();
    c->bins[b] = off;
    *(uint64_t *)FP_AT(c, off + size - 8) = size;
}

static void free_unlink(fp_cache *c, uint64_t off)
{
    uint64_t n = NEXT_FREE(c, off), p = PREV_FREE(c, off);
    if (p) NEXT_FREE(c, p) = n;
    else c->bins[bin_of(FP_CSIZE(c, off))] = n;
    FP_CRASH_POINT();
    if (n) PREV_FREE(c, n) = p;
}

static void set_prev_free(fp_cache *c, uint64_t next, int on)
{
    if (next >= c->heap_end) return;
    if (on) *FP_HDR(c, next) |= FP_CH_PREV_FREE;
    else *FP_HDR(c, next) &= ~FP_CH_PREV_FREE;
}

void fp_heap_init(fp_cache *c)
{
    uint64_t size = c->heap_end - c->heap_start;
    memset(c->bins, 0, sizeof c->bins);
    *FP_HDR(c, c->heap_start) = size | FP_CH_FREE;
    free_push(c, c->heap_start, size);
}

/* A used chunk of exactly `need` bytes (a multiple of FP_ALIGN), or 0. */
uint64_t fp_heap_alloc(fp_cache *c, uint64_t need)
{
    uint64_t off = 0;
    int b = bin_of(need);
    int steps = 0;
    for (uint64_t o = c->bins[b]; o && steps < 64; o = NEXT_FREE(c, o), steps++) {
        if (FP_CSIZE(c, o) >= need) { off = o; break; }
    }
    for (int i = b + 1; !off && i < FP_BINS; i++) off = c->bins[i];
    if (!off) return 0;
    uint64_t size = FP_CSIZE(c, off);
    uint64_t flags = *FP_HDR(c, off) & FP_CH_PREV_FREE;
    free_unlink(c, off);
    if (size - need >= FP_MIN_CHUNK) {
        uint64_t rest = off + need;
        /* The remainder's header first: until our own header shrinks, a walk
         * still sees one chunk of `size` and never reads it. */
        *FP_HDR(c, rest) = (size - need) | FP_CH_FREE;
        free_push(c, rest, size - need);
        FP_BARRIER();
        *FP_HDR(c, off) = need | flags;
    } else {
        *FP_HDR(c, off) = size | flags;
        set_prev_free(c, off + size, 0);
    }
    return off;
}

void fp_heap_drop_pages(fp_cache *c, uint64_t start, uint64_t end)
{
    if (start < c->heap_start) start = c->heap_start;
    if (end > c->heap_end) end = c->heap_end;
    start = fp_page_up(start);
    end &= ~(uint64_t)(FP_PAGE - 1);
    if (start < end) madvise(FP_AT(c, start), end - start, MADV_REMOVE);
}

uint64_t fp_heap_free(fp_cache *c, uint64_t off)
{
    uint64_t size = FP_CSIZE(c, off);
    uint64_t next = off + size;
    if (FP_ENT(c, off)->magic) {
        /* A body sent by sendfile may still be on its way out of a socket:
         * drop its pages first (the entry is DEAD by now, so a crash here
         * never serves the emptied pages).  Bodies never sent keep theirs:
         * a fresh page costs a fault when the chunk is written again. */
        if (FP_ENT(c, off)->paged && __atomic_load_n(&FP_ENT(c, off)->sent, __ATOMIC_RELAXED))
            fp_heap_drop_pages(c, fp_body_page(c, off), off + size);
        /* Forget the entry before its chunk can be reused or merged, so a
         * rebuild never resurrects a deleted response from stale bytes. */
        FP_ENT(c, off)->magic = 0;
        FP_BARRIER();
    }
    if (next < c->heap_end && (*FP_HDR(c, next) & FP_CH_FREE)) {
        free_unlink(c, next);
        size += FP_CSIZE(c, next);
    }
    if (*FP_HDR(c, off) & FP_CH_PREV_FREE) {
        uint64_t psize = *(uint64_t *)FP_AT(c, off - 8);
        uint64_t prev = off - psize;
        free_unlink(c, prev);
        off = prev;
        size += psize;
    }
    FP_CRASH_POINT();
    *FP_HDR(c, off) = size | FP_CH_FREE;  /* prev of a free chunk is never free */
    free_push(c, off, size);
    set_prev_free(c, off + size, 1);
    return off;
}

/* Give the tail of a used chunk back (commit of a store smaller than its
 * reservation). */
void fp_heap_shrink(fp_cache *c, uint64_t off, uint64_t need)
{
    uint64_t size = FP_CSIZE(c, off);
    if (need > size || size - need < FP_MIN_CHUNK) return;
    uint64_t rest = off + need;
    *FP_HDR(c, rest) = size - need;        /* a used chunk for a moment ... */
    FP_ENT(c, rest)->magic = 0;
    FP_BARRIER();
    *FP_HDR(c, off) = need | (*FP_HDR(c, off) & FP_CH_PREV_FREE);
    FP_BARRIER();
    fp_heap_free(c, rest);                 /* ... then freed and merged */
}

/* ------------------------------------------------------------------ repair */

static int entry_fits(fp_cache *c, uint64_t off, uint64_t size)
{
    fp_entry *e = FP_ENT(c, off);
    uint64_t room = size - FP_DATA_OFF;
    uint64_t front = (uint64_t)e->key_len + e->head_len + e->body_gap;
    return size >= FP_DATA_OFF && front <= room && e->body_cap <= room - front &&
           e->body_len <= e->body_cap;
}

static int owner_alive(fp_cache *c, uint32_t slot)
{
    return slot < c->nprocs && fp_pid_alive(fp_proc_at(c, slot)->pid);
}

static void reset_heap(fp_cache *c)
{
    for (uint32_t i = 0; i < c->nprocs; i++) {
        fp_proc *p = fp_proc_at(c, i);
        memset(p->pins, 0, (size_t)c->npins * sizeof(fp_pin));
        p->used = 0;
    }
    if (c->paged_min) fp_heap_drop_pages(c, c->heap_start, c->heap_end);
    fp_heap_init(c);
    c->epoch++;
    c->st.resets++;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Rebuild every derived structure from a walk of the heap.  Called with the
 * lock held when its previous owner died mid-mutation (dirty set). */
void fp_cache_rebuild(fp_cache *c)
{
    c->st.rebuilds++;
    /* 1. The walk must land exactly on heap_end; otherwise give up on the
     *    contents (cannot happen by construction, but never trust it). */
    uint64_t nchunks = 0;
    for (uint64_t off = c->heap_start; off != c->heap_end; nchunks++) {
        uint64_t size = FP_CSIZE(c, off);
        if (size < FP_MIN_CHUNK || size % FP_ALIGN || size > c->heap_end - off) {
            reset_heap(c);
            goto relink;
        }
        off += size;
    }
    /* 2. Decide each chunk: keep LIVE entries, PENDING ones whose writer
     *    lives, DEAD ones (a pin may still need them); the rest becomes free,
     *    merged with free neighbours.  Bins, bits and footers are rewritten. */
    memset(c->bins, 0, sizeof c->bins);
    uint64_t run = 0;        /* start of the current free run, 0 = none */
    int prev_free = 0;
    for (uint64_t off = c->heap_start; off < c->heap_end;) {
        uint64_t size = FP_CSIZE(c, off);
        int keep = 0;
        if (!(*FP_HDR(c, off) & FP_CH_FREE) && entry_fits(c, off, size)) {
            fp_entry *e = FP_ENT(c, off);
            keep = e->magic == FP_ENT_LIVE || e->magic == FP_ENT_DEAD ||
                   (e->magic == FP_ENT_PENDING && owner_alive(c, e->owner));
            if (e->magic == FP_ENT_LIVE && e->ready_busy) {
                /* Died rewriting the ready head: the body's first page lost
                 * its bytes.  Sockets may still send the rest: drop it too
                 * (only pages inside this chunk, in case the header lies). */
                keep = 0;
                e->ready_busy = 0;
                if (e->paged && fp_body_page_ok(c, off, size))
                    fp_heap_drop_pages(c, fp_body_page(c, off), off + size);
            }
            e->refs = 0;
            e->hnext = e->prev = e->next = 0;
        }
        if (keep) {
            if (run) {
                uint64_t rsize = off - run;
                *FP_HDR(c, run) = rsize | FP_CH_FREE;
                free_push(c, run, rsize);
                run = 0;
            }
            *FP_HDR(c, off) = size | (prev_free ? FP_CH_PREV_FREE : 0);
            prev_free = 0;
        } else {
            /* No stale magic may survive inside the free run. */
            if (!(*FP_HDR(c, off) & FP_CH_FREE)) FP_ENT(c, off)->magic = 0;
            if (!run) run = off;
            prev_free = 1;
        }
        off += size;
    }
    if (run) {
        uint64_t rsize = c->heap_end - run;
        *FP_HDR(c, run) = rsize | FP_CH_FREE;
        free_push(c, run, rsize);
    }
relink:;
    /* 3. Pins: keep those of live processes that name a kept entry start
     *    (checked against the sorted list of chunk starts) with its id. */
    uint64_t *starts = malloc((nchunks + 1) * sizeof(uint64_t));
    uint64_t n = 0;
    if (starts)
        for (uint64_t off = c->heap_start; off < c->heap_end; off += FP_CSIZE(c, off))
            if (!(*FP_HDR(c, off) & FP_CH_FREE) && n < nchunks + 1) starts[n++] = off;
    for (uint32_t i = 0; i < c->nprocs; i++) {
        fp_proc *p = fp_proc_at(c, i);
        int alive = fp_pid_alive(p->pid);
        if (!alive) p->pid = 0;
        uint32_t used = 0;
        for (uint32_t k = 0; k < c->npins; k++) {
            fp_pin *pin = &p->pins[k];
            if (!pin->off) continue;
            int ok = alive && starts && bsearch(&pin->off, starts, n, sizeof *starts, cmp_u64);
            fp_entry *e = ok ? FP_ENT(c, pin->off) : NULL;
            if (e && e->id == pin->id && (e->magic == FP_ENT_LIVE || e->magic == FP_ENT_DEAD)) {
                e->refs++;
                used++;
            } else {
                pin->off = pin->id = 0;
            }
        }
        p->used = used;
    }
    free(starts);
    /* 4. Index and LRU from the LIVE entries (LRU order becomes heap order:
     *    recency is lost, contents are not); duplicates keep the newest. */
    memset(fp_buckets(c), 0, c->nbuckets * sizeof(uint64_t));
    c->lru_head = c->lru_tail = 0;
    c->st.bytes = c->st.entries = 0;
    for (uint64_t off = c->heap_start; off < c->heap_end; off += FP_CSIZE(c, off)) {
        if (*FP_HDR(c, off) & FP_CH_FREE) continue;
        fp_entry *e = FP_ENT(c, off);
        if (e->magic != FP_ENT_LIVE) continue;
        uint64_t other = fp_index_find(c, e->hash, fp_ent_data(c, off), e->key_len,
                                       e->meta.vary_hash, 0);
        if (other && FP_ENT(c, other)->id > e->id) {
            e->magic = FP_ENT_DEAD;
            continue;
        }
        if (other) {  /* a crash inside a replace left the older one linked */
            fp_unlink(c, other);
            FP_ENT(c, other)->magic = FP_ENT_DEAD;
            c->st.bytes -= FP_CSIZE(c, other);
            c->st.entries--;
        }
        fp_index_insert(c, off);
        fp_lru_push_front(c, off);
        c->st.bytes += FP_CSIZE(c, off);
        c->st.entries++;
    }
    /* 5. Free DEAD entries nobody pins any more. */
    for (uint64_t off = c->heap_start; off < c->heap_end; off += FP_CSIZE(c, off)) {
        if (*FP_HDR(c, off) & FP_CH_FREE) continue;
        fp_entry *e = FP_ENT(c, off);
        if (e->magic == FP_ENT_DEAD && e->refs == 0) off = fp_heap_free(c, off);
    }
}
