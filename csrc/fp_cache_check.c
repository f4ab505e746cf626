/* fp_cache_check.c - a full consistency check of the cache region, for
 * tests (and for a curious operator): every invariant the allocator, the
 * index, the LRU list, the pins and the counters promise.  O(heap), under
 * the lock. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "fp_cache_int.h"

static int fail(char *err, size_t n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (err && n) vsnprintf(err, n, fmt, ap);
    va_end(ap);
    return -1;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static int check_locked(fp_cache *c, char *err, size_t n)
{
    if (c->dirty) return fail(err, n, "dirty flag set outside a mutation");
    /* Pins, sorted, to count the references of each entry. */
    uint64_t npins = 0;
    for (uint32_t i = 0; i < c->nprocs; i++) {
        fp_proc *p = fp_proc_at(c, i);
        uint32_t used = 0;
        for (uint32_t k = 0; k < c->npins; k++) used += p->pins[k].off != 0;
        if (used && !p->pid) return fail(err, n, "slot %u has pins but no pid", i);
        if (used != p->used) return fail(err, n, "slot %u: used %u, pins %u", i, p->used, used);
        npins += used;
    }
    uint64_t *pins = malloc((npins + 1) * sizeof(uint64_t));
    if (!pins) return fail(err, n, "out of memory");
    uint64_t m = 0;
    for (uint32_t i = 0; i < c->nprocs; i++) {
        fp_proc *p = fp_proc_at(c, i);
        for (uint32_t k = 0; k < c->npins; k++)
            if (p->pins[k].off) pins[m++] = p->pins[k].off;
    }
    qsort(pins, m, sizeof *pins, cmp_u64);

    int r = 0;
    uint64_t nfree = 0, live = 0, bytes = 0, pinned_refs = 0;
    int prev_free = 0;
    for (uint64_t off = c->heap_start; off < c->heap_end;) {
        uint64_t h = *FP_HDR(c, off), size = h & ~FP_CH_FLAGS;
        if (size < FP_MIN_CHUNK || size % FP_ALIGN || size > c->heap_end - off) {
            r = fail(err, n, "bad chunk size %llu at %llu", (unsigned long long)size,
                     (unsigned long long)off);
            goto out;
        }
        if (!!(h & FP_CH_PREV_FREE) != prev_free) {
            r = fail(err, n, "PREV_FREE bit wrong at %llu", (unsigned long long)off);
            goto out;
        }
        if (h & FP_CH_FREE) {
            if (prev_free) { r = fail(err, n, "two free chunks in a row at %llu",
                                      (unsigned long long)off); goto out; }
            if (*(uint64_t *)FP_AT(c, off + size - 8) != size) {
                r = fail(err, n, "free chunk footer wrong at %llu", (unsigned long long)off);
                goto out;
            }
            nfree++;
            prev_free = 1;
        } else {
            fp_entry *e = FP_ENT(c, off);
            prev_free = 0;
            if (e->magic != FP_ENT_LIVE && e->magic != FP_ENT_DEAD && e->magic != FP_ENT_PENDING) {
                r = fail(err, n, "used chunk at %llu is no entry", (unsigned long long)off);
                goto out;
            }
            if ((uint64_t)e->key_len + e->head_len + e->body_gap + e->body_cap >
                    size - FP_DATA_OFF || e->body_len > e->body_cap) {
                r = fail(err, n, "entry at %llu overflows its chunk", (unsigned long long)off);
                goto out;
            }
            if (e->paged && (!fp_body_page_ok(c, off, size) ||
                             fp_body_off(c, off) + e->body_cap >
                                 ((off + size) & ~(uint64_t)(FP_PAGE - 1)) ||
                             e->ready_len > e->ready_cap || e->ready_busy)) {
                r = fail(err, n, "paged entry at %llu does not own its body's pages",
                         (unsigned long long)off);
                goto out;
            }
            uint64_t refs = 0;
            uint64_t *at = bsearch(&off, pins, m, sizeof *pins, cmp_u64);
            if (at) {
                while (at > pins && at[-1] == off) at--;
                while (at < pins + m && *at == off) { refs++; at++; }
            }
            if (refs != e->refs) {
                r = fail(err, n, "entry at %llu: refs %u, pins %llu", (unsigned long long)off,
                         e->refs, (unsigned long long)refs);
                goto out;
            }
            pinned_refs += refs;
            if (e->magic == FP_ENT_DEAD && e->refs == 0) {
                r = fail(err, n, "dead entry with no pin at %llu", (unsigned long long)off);
                goto out;
            }
            if (e->magic == FP_ENT_PENDING && (e->owner >= c->nprocs ||
                                                fp_proc_at(c, e->owner)->pid == 0)) {
                r = fail(err, n, "pending entry of a free slot at %llu", (unsigned long long)off);
                goto out;
            }
            if (e->magic == FP_ENT_LIVE) {
                if (e->hash != fp_cache_hash(fp_ent_data(c, off), e->key_len)) {
                    r = fail(err, n, "entry hash wrong at %llu", (unsigned long long)off);
                    goto out;
                }
                live++;
                bytes += size;
            }
        }
        off += size;
    }
    if (pinned_refs != m) { r = fail(err, n, "a pin names no entry"); goto out; }
    if (live != c->st.entries || bytes != c->st.bytes) {
        r = fail(err, n, "counters: entries %llu/%llu bytes %llu/%llu",
                 (unsigned long long)c->st.entries, (unsigned long long)live,
                 (unsigned long long)c->st.bytes, (unsigned long long)bytes);
        goto out;
    }
    /* Free lists: every member free, in its bin, linked both ways. */
    uint64_t listed = 0;
    for (int b = 0; b < FP_BINS; b++) {
        uint64_t prev = 0;
        for (uint64_t o = c->bins[b]; o; o = ((uint64_t *)FP_AT(c, o))[1]) {
            if (o < c->heap_start || o >= c->heap_end || !(*FP_HDR(c, o) & FP_CH_FREE) ||
                63 - __builtin_clzll(FP_CSIZE(c, o)) != b || ((uint64_t *)FP_AT(c, o))[2] != prev ||
                ++listed > nfree) {
                r = fail(err, n, "free list %d broken at %llu", b, (unsigned long long)o);
                goto out;
            }
            prev = o;
        }
    }
    if (listed != nfree) { r = fail(err, n, "%llu free chunks, %llu listed",
                                    (unsigned long long)nfree, (unsigned long long)listed); goto out; }
    /* Index: every chained entry LIVE and in the right bucket; as many as live. */
    uint64_t indexed = 0;
    for (uint64_t i = 0; i < c->nbuckets; i++) {
        for (uint64_t o = fp_buckets(c)[i]; o; o = FP_ENT(c, o)->hnext) {
            if (o < c->heap_start || o >= c->heap_end || FP_ENT(c, o)->magic != FP_ENT_LIVE ||
                (FP_ENT(c, o)->hash & (c->nbuckets - 1)) != i || ++indexed > live) {
                r = fail(err, n, "hash chain %llu broken", (unsigned long long)i);
                goto out;
            }
        }
    }
    if (indexed != live) { r = fail(err, n, "%llu live, %llu indexed",
                                     (unsigned long long)live, (unsigned long long)indexed); goto out; }
    /* LRU: both directions agree and hold every live entry once. */
    uint64_t seen = 0, prev = 0;
    for (uint64_t o = c->lru_head; o; o = FP_ENT(c, o)->next) {
        if (o < c->heap_start || o >= c->heap_end || FP_ENT(c, o)->magic != FP_ENT_LIVE ||
            FP_ENT(c, o)->prev != prev || ++seen > live) {
            r = fail(err, n, "LRU list broken at %llu", (unsigned long long)o);
            goto out;
        }
        prev = o;
    }
    if (prev != c->lru_tail || seen != live) {
        r = fail(err, n, "LRU tail or length wrong (%llu of %llu)", (unsigned long long)seen,
                 (unsigned long long)live);
        goto out;
    }
out:
    free(pins);
    return r;
}

int fp_cache_check(fp_cache *c, char *err, size_t errlen)
{
    if (!fp_cache_valid(c, c->size)) return fail(err, errlen, "not a cache region");
    if (fp_lock(c)) return fail(err, errlen, "lock not taken");
    int r = check_locked(c, err, errlen);
    fp_unlock(c);
    return r;
}

int fp_cache_test_dead_body(fp_cache *c, long index, const uint8_t **body, size_t *len)
{
    if (fp_lock(c)) return 0;
    int found = 0;
    for (uint64_t off = c->heap_start; off < c->heap_end && !found; off += FP_CSIZE(c, off)) {
        fp_entry *e = FP_ENT(c, off);
        if ((*FP_HDR(c, off) & FP_CH_FREE) || e->magic != FP_ENT_DEAD || index-- > 0) continue;
        *body = fp_ent_body(c, off);
        *len = e->body_len;
        found = 1;
    }
    fp_unlock(c);
    return found;
}
