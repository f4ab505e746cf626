/* fp_cache.c - region set-up, the lock, the index, the LRU list and the
 * store operations.  See fp_cache.h for the model, fp_cache_heap.c for the
 * allocator and the crash repair, fp_cache_fill.c for the fill claims of
 * request coalescing, docs/cache.md for the whole design. */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "fp_cache_int.h"

long fp_cache_crash_countdown;  /* process-local, tests only */

void fp_cache_crash_now(void)
{
    for (;;) raise(SIGKILL);
}

void fp_cache_test_crash_after(long n) { fp_cache_crash_countdown = n; }

/* ------------------------------------------------------------------ lock */

int fp_lock(fp_cache *c)
{
    /* Uncontended (the usual case on a hit): no clock read for a deadline. */
    int r = pthread_mutex_trylock(&c->lock);
    if (r == EBUSY) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += FP_CACHE_LOCK_TIMEOUT_MS / 1000;
        ts.tv_nsec += (long)(FP_CACHE_LOCK_TIMEOUT_MS % 1000) * 1000000L;
        if (ts.tv_nsec >= 1000000000L) { ts.tv_sec++; ts.tv_nsec -= 1000000000L; }
        r = pthread_mutex_timedlock(&c->lock, &ts);
    }
    if (r == EOWNERDEAD) {
        /* The previous owner died holding the lock.  If it was mid-mutation
         * the links may be half-written: rebuild them from the heap. */
        c->st.recoveries++;
        if (c->dirty) fp_cache_rebuild(c);
        c->dirty = 0;
        pthread_mutex_consistent(&c->lock);
        return 0;
    }
    return r == 0 ? 0 : -1;
}

void fp_unlock(fp_cache *c) { pthread_mutex_unlock(&c->lock); }

/* ------------------------------------------------------------------ set-up */

#define NPROCS 80              /* 64 workers (two generations) + master + tests */

static uint64_t align_up(uint64_t n, uint64_t a) { return (n + a - 1) & ~(a - 1); }

static uint32_t pins_for(size_t size) { return size >= ((size_t)64 << 20) ? 256 : 32; }

size_t fp_cache_min_size(void)
{
    return align_up(sizeof(fp_cache), FP_ALIGN) +
           NPROCS * align_up(sizeof(fp_proc) + 32 * sizeof(fp_pin), 8) +
           FP_NFILL * sizeof(fp_fill) + 64 * 8 + 8 * 1024;
}

int fp_cache_valid(const void *mem, size_t size)
{
    const fp_cache *c = mem;
    return mem && size >= sizeof(fp_cache) && c->magic == FP_CACHE_MAGIC &&
           c->version == FP_CACHE_VERSION && c->size == size;
}

int fp_cache_init(void *mem, size_t size, uint64_t max_entry, uint64_t max_entries,
                  uint64_t paged_min)
{
    if (!mem || size < fp_cache_min_size() || max_entry == 0) return FP_CACHE_EINVAL;
    fp_cache *c = mem;
    memset(c, 0, sizeof *c);
    pthread_mutexattr_t a;
    if (pthread_mutexattr_init(&a)) return FP_CACHE_EINVAL;
    pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
    pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
    int r = pthread_mutex_init(&c->lock, &a);
    pthread_mutexattr_destroy(&a);
    if (r) return FP_CACHE_EINVAL;
    c->size = size;
    c->max_entry = max_entry;
    c->max_entries = max_entries;
    /* Page-laid bodies assume 4 KiB pages (MADV_REMOVE drops whole pages). */
    c->paged_min = sysconf(_SC_PAGESIZE) == FP_PAGE ? paged_min : 0;
    c->nprocs = NPROCS;
    c->npins = pins_for(size);
    c->proc_stride = (uint32_t)align_up(sizeof(fp_proc) + c->npins * sizeof(fp_pin), 8);
    uint64_t off = align_up(sizeof(fp_cache), FP_ALIGN);
    c->procs_off = off;
    off += (uint64_t)c->nprocs * c->proc_stride;
    c->fill_off = off = align_up(off, 8);
    off += FP_NFILL * sizeof(fp_fill);
    /* About one bucket per 2 KiB of heap (or per allowed entry). */
    uint64_t want = max_entries ? max_entries : size / 2048;
    uint64_t nb = 64;
    while (nb < want && nb < (UINT64_C(1) << 24)) nb <<= 1;
    while (nb > 64 && off + nb * 8 + size / 2 > size) nb >>= 1;
    c->nbuckets = nb;
    c->buckets_off = off = align_up(off, 8);
    off += nb * 8;
    c->heap_start = align_up(off, FP_ALIGN);
    c->heap_end = c->heap_start + ((size - c->heap_start) & ~(uint64_t)(FP_ALIGN - 1));
    if (c->heap_end - c->heap_start < 16 * FP_MIN_CHUNK) return FP_CACHE_EINVAL;
    memset(FP_AT(c, c->procs_off), 0, c->heap_start - c->procs_off);
    c->next_id = 1;
    c->st.capacity = c->heap_end - c->heap_start;
    fp_heap_init(c);
    c->version = FP_CACHE_VERSION;
    c->magic = FP_CACHE_MAGIC;
    return FP_CACHE_OK;
}

/* ------------------------------------------------------------------ slots */

static void clear_slot(fp_cache *c, uint32_t i);

int fp_cache_attach(fp_cache *c, int32_t pid)
{
    if (fp_lock(c)) return FP_CACHE_EBUSY;
    int found = FP_CACHE_ENOSPC;
    fp_mut_begin(c);
    for (uint32_t i = 0; i < c->nprocs && found < 0; i++) {
        fp_proc *p = fp_proc_at(c, i);
        if (p->pid != pid) continue;
        /* A process attaches once, so this slot is a dead process's whose pid
         * was reused: its pins and stores are not ours. */
        clear_slot(c, i);
        p->pid = pid;
        found = (int)i;
    }
    for (uint32_t i = 0; i < c->nprocs && found < 0; i++) {
        fp_proc *p = fp_proc_at(c, i);
        if (p->pid != 0 && !fp_pid_alive(p->pid)) clear_slot(c, i);  /* its owner is gone */
        if (p->pid == 0) {
            p->pid = pid;
            found = (int)i;
        }
    }
    fp_mut_end(c);
    fp_unlock(c);
    return found;
}

static void unpin(fp_cache *c, fp_pin *pin)
{
    fp_entry *e = FP_ENT(c, pin->off);
    if (e->id == pin->id && e->refs > 0) {
        e->refs--;
        if (e->refs == 0 && e->magic == FP_ENT_DEAD) fp_heap_free(c, pin->off);
    }
    pin->off = pin->id = 0;
}

/* Lock held, mutation open. */
static void drop_pins(fp_cache *c, fp_proc *p)
{
    for (uint32_t k = 0; k < c->npins; k++)
        if (p->pins[k].off) unpin(c, &p->pins[k]);
    p->used = 0;
    p->pid = 0;
}

/* Free a slot: its pins, and its unfinished stores (PENDING chunks it owns;
 * a heap walk, once per dead process).  Lock held, mutation open. */
static void clear_slot(fp_cache *c, uint32_t i)
{
    for (uint64_t off = c->heap_start; off < c->heap_end; off += FP_CSIZE(c, off)) {
        if (*FP_HDR(c, off) & FP_CH_FREE) continue;
        fp_entry *e = FP_ENT(c, off);
        if (e->magic == FP_ENT_PENDING && e->owner == i) off = fp_heap_free(c, off);
    }
    drop_pins(c, fp_proc_at(c, i));
}

void fp_cache_detach(fp_cache *c, int slot)
{
    if (slot < 0 || (uint32_t)slot >= c->nprocs || fp_lock(c)) return;
    fp_mut_begin(c);
    clear_slot(c, (uint32_t)slot);
    fp_mut_end(c);
    fp_unlock(c);
}

int fp_cache_reap(fp_cache *c, int32_t pid)
{
    if (pid <= 0) return FP_CACHE_EINVAL;
    if (fp_lock(c)) return FP_CACHE_EBUSY;
    int n = 0;
    fp_mut_begin(c);
    for (uint32_t i = 0; i < c->nprocs; i++) {
        fp_proc *p = fp_proc_at(c, i);
        if (p->pid != pid) continue;
        clear_slot(c, i);
        n++;
    }
    fp_fill *f = fp_fills(c);
    for (int i = 0; i < FP_NFILL; i++)
        if (f[i].hash && f[i].pid == pid) f[i].hash = 0;
    fp_mut_end(c);
    fp_unlock(c);
    return n;
}

/* ------------------------------------------------------------------ hash */

static inline uint64_t mix(uint64_t x)
{
    x ^= x >> 31;
    x *= UINT64_C(0x7fb5d329728ea185);
    x ^= x >> 27;
    x *= UINT64_C(0x81dadef4bc2dd44d);
    return x ^ (x >> 33);
}

uint64_t fp_cache_hash(const void *key, size_t len)
{
    const uint8_t *p = key;
    uint64_t h = UINT64_C(0x9e3779b97f4a7c15) ^ len;
    while (len >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        h = mix(h ^ w) + UINT64_C(0x2545f4914f6cdd1d);
        p += 8;
        len -= 8;
    }
    uint64_t w = 0;
    memcpy(&w, p, len);
    h = mix(h ^ w ^ ((uint64_t)len << 56));
    return h ? h : 1;  /* 0 marks a free fill-table slot */
}

/* ------------------------------------------------------------------ index, LRU */

static uint64_t *bucket(fp_cache *c, uint64_t hash) { return &fp_buckets(c)[hash & (c->nbuckets - 1)]; }

static int same_key(fp_cache *c, uint64_t off, uint64_t hash, const void *key, size_t klen)
{
    fp_entry *e = FP_ENT(c, off);
    return e->hash == hash && e->key_len == klen && memcmp(fp_ent_data(c, off), key, klen) == 0;
}

uint64_t fp_index_find(fp_cache *c, uint64_t hash, const void *key, size_t klen, uint64_t vary,
                       unsigned flags)
{
    if (vary == FP_CACHE_VARY_STAR && !(flags & FP_CACHE_ANY_VARIANT)) return 0;
    for (uint64_t o = *bucket(c, hash); o; o = FP_ENT(c, o)->hnext) {
        if (!same_key(c, o, hash, key, klen)) continue;
        if ((flags & FP_CACHE_ANY_VARIANT) || FP_ENT(c, o)->meta.vary_hash == vary) return o;
    }
    return 0;
}

void fp_index_insert(fp_cache *c, uint64_t off)
{
    uint64_t *b = bucket(c, FP_ENT(c, off)->hash);
    FP_ENT(c, off)->hnext = *b;
    FP_CRASH_POINT();
    *b = off;
}

void fp_lru_push_front(fp_cache *c, uint64_t off)
{
    fp_entry *e = FP_ENT(c, off);
    e->prev = 0;
    e->next = c->lru_head;
    if (c->lru_head) FP_ENT(c, c->lru_head)->prev = off;
    else c->lru_tail = off;
    FP_CRASH_POINT();
    c->lru_head = off;
}

static void lru_unlink(fp_cache *c, uint64_t off)
{
    fp_entry *e = FP_ENT(c, off);
    if (e->prev) FP_ENT(c, e->prev)->next = e->next;
    else c->lru_head = e->next;
    FP_CRASH_POINT();
    if (e->next) FP_ENT(c, e->next)->prev = e->prev;
    else c->lru_tail = e->prev;
    e->prev = e->next = 0;
}

void fp_unlink(fp_cache *c, uint64_t off)
{
    uint64_t *pp = bucket(c, FP_ENT(c, off)->hash);
    while (*pp && *pp != off) pp = &FP_ENT(c, *pp)->hnext;
    if (*pp) *pp = FP_ENT(c, off)->hnext;
    FP_ENT(c, off)->hnext = 0;
    FP_CRASH_POINT();
    lru_unlink(c, off);
}

/* Take a LIVE entry out of the cache; its memory goes when its last pin does.
 * Marking it DEAD is the decisive store: a rebuild from then on never links it
 * again, so a delete or purge, once begun, is never undone by a crash. */
static void drop_entry(fp_cache *c, uint64_t off)
{
    fp_entry *e = FP_ENT(c, off);
    e->magic = FP_ENT_DEAD;
    FP_BARRIER();
    fp_unlink(c, off);
    c->st.bytes -= FP_CSIZE(c, off);
    c->st.entries--;
    FP_CRASH_POINT();
    if (!e->refs) fp_heap_free(c, off);
}

static int evict_one(fp_cache *c)
{
    if (!c->lru_tail) return 0;
    drop_entry(c, c->lru_tail);
    c->st.evictions++;
    return 1;
}

/* A chunk of `need` bytes, evicting from the LRU tail until one is free. */
static uint64_t alloc_evicting(fp_cache *c, uint64_t need)
{
    for (;;) {
        uint64_t off = fp_heap_alloc(c, need);
        if (off || !evict_one(c)) return off;
    }
}

/* ------------------------------------------------------------------ reads */

static void fill_hit(fp_cache *c, uint64_t off, fp_cache_hit *out)
{
    fp_entry *e = FP_ENT(c, off);
    const uint8_t *d = fp_ent_data(c, off);
    out->key = d;
    out->key_len = e->key_len;
    out->head = d + e->key_len;
    out->head_len = e->head_len;
    out->body = fp_ent_body(c, off);
    out->body_len = e->body_len;
    out->meta = e->meta;
    out->id = e->id;
    out->file_off = e->paged ? (int64_t)fp_body_off(c, off) : -1;
}

static int lookup(fp_cache *c, int slot, const void *key, size_t klen, uint64_t vary,
                  unsigned flags, uint8_t *buf, size_t cap, fp_cache_hit *out)
{
    if (slot < 0 || (uint32_t)slot >= c->nprocs) return FP_CACHE_EINVAL;
    uint64_t h = fp_cache_hash(key, klen);
    if (fp_lock(c)) return FP_CACHE_EBUSY;
    uint64_t off = fp_index_find(c, h, key, klen, vary, flags);
    if (!off) {
        if (!(flags & FP_CACHE_NOCOUNT)) c->st.misses++;
        fp_unlock(c);
        return FP_CACHE_MISS;
    }
    fp_entry *e = FP_ENT(c, off);
    /* A small entry is copied out now: no pin to take, and none to drop
     * under the lock again later. */
    int copy = buf && !e->paged && e->head_len + e->body_len <= cap;
    fp_proc *p = fp_proc_at(c, (uint32_t)slot);
    int32_t k = -1;
    if (!copy) {
        for (uint32_t i = 0; i < c->npins; i++)
            if (!p->pins[i].off) { k = (int32_t)i; break; }
        if (k < 0) {
            fp_unlock(c);
            return FP_CACHE_ENOPIN;
        }
    }
    fp_mut_begin(c);
    if (!copy) {
        p->pins[k].id = e->id;
        p->pins[k].off = off;
        p->used++;
        FP_CRASH_POINT();
        e->refs++;
    }
    if (!(flags & FP_CACHE_NOTOUCH) && c->lru_head != off) {
        lru_unlink(c, off);
        fp_lru_push_front(c, off);
    }
    if (!(flags & FP_CACHE_NOCOUNT)) c->st.hits++;
    fp_mut_end(c);
    fill_hit(c, off, out);
    out->pin = k;
    if (copy) {
        memcpy(buf, out->head, out->head_len);
        memcpy(buf + out->head_len, out->body, out->body_len);
        out->key = NULL;
        out->head = buf;
        out->body = buf + out->head_len;
    }
    fp_unlock(c);
    return FP_CACHE_HIT;
}

int fp_cache_lookup(fp_cache *c, int slot, const void *key, size_t klen, uint64_t vary,
                    unsigned flags, fp_cache_hit *out)
{
    return lookup(c, slot, key, klen, vary, flags, NULL, 0, out);
}

int fp_cache_lookup_copy(fp_cache *c, int slot, const void *key, size_t klen, uint64_t vary,
                         unsigned flags, void *buf, size_t cap, fp_cache_hit *out)
{
    return lookup(c, slot, key, klen, vary, flags, buf, cap, out);
}

void fp_cache_release(fp_cache *c, int slot, int32_t pin)
{
    if (slot < 0 || (uint32_t)slot >= c->nprocs || pin < 0 || (uint32_t)pin >= c->npins) return;
    if (fp_lock(c)) return;  /* the pin stays until this process is reaped */
    fp_proc *p = fp_proc_at(c, (uint32_t)slot);
    if (p->pins[pin].off) {
        fp_mut_begin(c);
        unpin(c, &p->pins[pin]);
        p->used--;
        fp_mut_end(c);
    }
    fp_unlock(c);
}

void fp_cache_note_sendfile(fp_cache *c, const fp_cache_hit *hit)
{
    uint64_t off = (uint64_t)(hit->key - (const uint8_t *)c) - FP_DATA_OFF;
    fp_entry *e = FP_ENT(c, off);
    if (e->paged && !__atomic_load_n(&e->sent, __ATOMIC_RELAXED))
        __atomic_store_n(&e->sent, 1, __ATOMIC_RELAXED);
}

int fp_cache_ready_head(fp_cache *c, const fp_cache_hit *hit, const void *head, size_t hlen,
                        int64_t now)
{
    uint64_t off = (uint64_t)(hit->key - (const uint8_t *)c) - FP_DATA_OFF;
    fp_entry *e = FP_ENT(c, off);
    if (!e->paged || hlen == 0 || hlen > e->ready_cap) return 0;
    uint8_t *body = fp_ent_body(c, off);
    /* Our pin keeps rewrites out (they need the only pin), so this read is
     * stable without the lock. */
    if (e->ready_len == hlen && memcmp(body - hlen, head, hlen) == 0) return 1;
    /* Cheap refusals first: the lock is global, and another pin or a rewrite
     * this second is the common case on a hot entry. */
    if (__atomic_load_n(&e->ready_time, __ATOMIC_RELAXED) == now ||
        __atomic_load_n(&e->refs, __ATOMIC_RELAXED) != 1)
        return 0;
    if (fp_lock(c)) return 0;
    int done = 0;
    if (e->magic == FP_ENT_LIVE && e->refs == 1 && e->ready_time != now) {
        fp_mut_begin(c);
        e->ready_time = now;
        if (e->sent) {
            /* Sockets may still hold the page with the old head: drop it
             * (they keep the old page) and write the body's first bytes back
             * into the new one.  ready_busy tells a rebuild after a crash in
             * between that the page lost them. */
            uint64_t page = fp_body_page(c, off);
            size_t keep = FP_PAGE - e->ready_cap;
            uint8_t saved[FP_PAGE];
            if (keep > e->body_len) keep = e->body_len;
            memcpy(saved, body, keep);
            e->ready_busy = 1;
            FP_BARRIER();
            fp_heap_drop_pages(c, page, page + FP_PAGE);
            memcpy(body, saved, keep);
        }
        memcpy(body - hlen, head, hlen);
        e->ready_len = (uint16_t)hlen;
        FP_BARRIER();
        e->ready_busy = 0;
        fp_mut_end(c);
        done = 1;
    }
    fp_unlock(c);
    return done;
}

/* ------------------------------------------------------------------ writes */

static uint64_t body_room(fp_cache *c, uint64_t off)
{
    uint64_t end = off + FP_CSIZE(c, off);
    /* A paged body owns whole pages: the allocator may round its chunk a few
     * bytes into the next page, which the next chunk shares (and which is
     * never dropped for a socket), so the body must stop short of it. */
    if (FP_ENT(c, off)->paged) end &= ~(uint64_t)(FP_PAGE - 1);
    return end - fp_body_off(c, off);
}

/* A PENDING chunk for key + head + `cap` body bytes; lock held. */
static uint64_t reserve(fp_cache *c, int slot, uint64_t hash, size_t klen, size_t hlen,
                        uint64_t cap, const fp_cache_meta *meta)
{
    /* A paged body may need up to a page of gap before its first page, then
     * the ready head room and the body in whole pages. */
    int paged = c->paged_min && cap >= c->paged_min;
    uint64_t ready = hlen + FP_CACHE_READY_EXTRA <= FP_PAGE ? hlen + FP_CACHE_READY_EXTRA : 0;
    uint64_t off = alloc_evicting(c, paged ? fp_need(klen + hlen + FP_PAGE - 1 +
                                                     fp_page_up(ready + cap))
                                           : fp_need(klen + hlen + cap));
    if (!off) return 0;
    fp_entry *e = FP_ENT(c, off);
    memset(e, 0, sizeof *e);
    e->owner = (uint32_t)slot;
    e->id = c->next_id++;
    e->hash = hash;
    e->key_len = (uint32_t)klen;
    e->head_len = (uint32_t)hlen;
    if (meta) e->meta = *meta;
    if (paged) {
        uint64_t head_end = off + FP_DATA_OFF + klen + hlen;
        e->ready_cap = (uint16_t)ready;
        e->ready_time = INT64_MIN;   /* no head written yet, in any second */
        e->body_gap = (uint16_t)(fp_page_up(head_end) - head_end + ready);
        e->paged = 1;
        fp_heap_shrink(c, off, fp_entry_need(c, off, cap));  /* the unused slack */
    }
    e->body_cap = body_room(c, off);
    FP_BARRIER();
    e->magic = FP_ENT_PENDING;
    return off;
}

int fp_cache_begin(fp_cache *c, int slot, const void *key, size_t klen, const void *head,
                   size_t hlen, const fp_cache_meta *meta, uint64_t body_hint, fp_cache_put *p)
{
    p->off = 0;
    if (slot < 0 || (uint32_t)slot >= c->nprocs || klen == 0 || klen > UINT32_MAX ||
        hlen > UINT32_MAX)
        return FP_CACHE_EINVAL;
    if (klen + hlen > c->max_entry) return FP_CACHE_ETOOBIG;
    if (meta && meta->vary_hash == FP_CACHE_VARY_STAR) return FP_CACHE_EINVAL;
    uint64_t cap = body_hint;
    if (klen + hlen + cap > c->max_entry) cap = c->max_entry - klen - hlen;
    uint64_t hash = fp_cache_hash(key, klen);
    if (fp_lock(c)) return FP_CACHE_EBUSY;
    fp_mut_begin(c);
    uint64_t off = reserve(c, slot, hash, klen, hlen, cap, meta);
    fp_mut_end(c);
    if (off) p->id = FP_ENT(c, off)->id;
    fp_unlock(c);
    if (!off) return FP_CACHE_ENOSPC;
    /* The chunk is ours (PENDING): fill it without the lock. */
    memcpy(fp_ent_data(c, off), key, klen);
    memcpy(fp_ent_data(c, off) + klen, head, hlen);
    p->off = off;
    p->cap = FP_ENT(c, off)->body_cap;
    p->body_len = 0;
    p->slot = slot;
    return FP_CACHE_OK;
}

static int owned(fp_cache *c, fp_cache_put *p)
{
    if (!p->off) return 0;
    fp_entry *e = FP_ENT(c, p->off);
    return e->magic == FP_ENT_PENDING && e->id == p->id;
}

/* Move a pending store to a bigger chunk (the body outgrew its hint). */
static int grow(fp_cache *c, fp_cache_put *p, uint64_t want)
{
    fp_entry *old = FP_ENT(c, p->off);
    uint64_t klen = old->key_len, hlen = old->head_len, hash = old->hash;
    fp_cache_meta meta = old->meta;
    uint64_t limit = c->max_entry - klen - hlen;
    if (want > limit) return FP_CACHE_ETOOBIG;
    uint64_t cap = p->cap * 2 > want ? p->cap * 2 : want;
    if (cap > limit) cap = limit;
    if (fp_lock(c)) return FP_CACHE_EBUSY;
    if (!owned(c, p)) { fp_unlock(c); return FP_CACHE_ESTALE; }
    fp_mut_begin(c);
    uint64_t off = reserve(c, p->slot, hash, klen, hlen, cap, &meta);
    fp_mut_end(c);
    fp_unlock(c);
    if (off) {
        memcpy(fp_ent_data(c, off), fp_ent_data(c, p->off), klen + hlen);
        memcpy(fp_ent_body(c, off), fp_ent_body(c, p->off), p->body_len);
        if (fp_lock(c) == 0) {
            fp_mut_begin(c);
            if (owned(c, p)) fp_heap_free(c, p->off);
            fp_mut_end(c);
            fp_unlock(c);
        }
    } else {
        /* The chunk being grown may be what splits the free space in two (a
         * small region): keep its bytes aside, free it, and try once more. */
        uint8_t *saved = malloc(klen + hlen + p->body_len);
        if (!saved) return FP_CACHE_ENOSPC;
        memcpy(saved, fp_ent_data(c, p->off), klen + hlen);
        memcpy(saved + klen + hlen, fp_ent_body(c, p->off), p->body_len);
        if (fp_lock(c)) { free(saved); return FP_CACHE_EBUSY; }
        if (!owned(c, p)) { fp_unlock(c); free(saved); return FP_CACHE_ESTALE; }
        fp_mut_begin(c);
        fp_heap_free(c, p->off);
        off = reserve(c, p->slot, hash, klen, hlen, cap, &meta);
        fp_mut_end(c);
        fp_unlock(c);
        p->off = 0;  /* the old chunk is gone either way */
        if (off) {
            memcpy(fp_ent_data(c, off), saved, klen + hlen);
            memcpy(fp_ent_body(c, off), saved + klen + hlen, p->body_len);
        }
        free(saved);
        if (!off) return FP_CACHE_ENOSPC;
    }
    FP_ENT(c, off)->body_len = p->body_len;
    p->off = off;
    p->id = FP_ENT(c, off)->id;  /* PENDING and ours: stable without the lock */
    p->cap = FP_ENT(c, off)->body_cap;
    return FP_CACHE_OK;
}

int fp_cache_append(fp_cache *c, fp_cache_put *p, const void *data, size_t len)
{
    if (!p->off) return FP_CACHE_EINVAL;
    fp_entry *own = FP_ENT(c, p->off);
    /* The chunk is rounded up, so its room may exceed the limit: check both. */
    if ((uint64_t)own->key_len + own->head_len + p->body_len + len > c->max_entry)
        return FP_CACHE_ETOOBIG;
    if (p->body_len + len > p->cap) {
        int r = grow(c, p, p->body_len + len);
        if (r) return r;
    }
    fp_entry *e = FP_ENT(c, p->off);
    memcpy(fp_ent_body(c, p->off) + p->body_len, data, len);
    p->body_len += len;
    e->body_len = p->body_len;
    return FP_CACHE_OK;
}

int fp_cache_commit(fp_cache *c, fp_cache_put *p)
{
    if (!p->off) return FP_CACHE_EINVAL;
    if (fp_lock(c)) return FP_CACHE_EBUSY;
    if (!owned(c, p)) { fp_unlock(c); p->off = 0; return FP_CACHE_ESTALE; }
    fp_mut_begin(c);
    uint64_t off = p->off;
    fp_entry *e = FP_ENT(c, off);
    e->body_len = p->body_len;
    fp_heap_shrink(c, off, fp_entry_need(c, off, p->body_len));
    e->body_cap = body_room(c, off);
    const uint8_t *key = fp_ent_data(c, off);
    uint64_t old;
    while ((old = fp_index_find(c, e->hash, key, e->key_len, e->meta.vary_hash, 0)))
        drop_entry(c, old);  /* a replaced response */
    while (c->max_entries && c->st.entries >= c->max_entries && evict_one(c)) {}
    fp_index_insert(c, off);
    fp_lru_push_front(c, off);
    c->st.bytes += FP_CSIZE(c, off);
    FP_CRASH_POINT();
    c->st.entries++;
    c->st.stores++;
    FP_BARRIER();
    e->magic = FP_ENT_LIVE;
    fp_mut_end(c);
    fp_unlock(c);
    p->off = 0;
    return FP_CACHE_OK;
}

void fp_cache_abort(fp_cache *c, fp_cache_put *p)
{
    if (!p->off) return;
    if (fp_lock(c) == 0) {
        fp_mut_begin(c);
        if (owned(c, p)) fp_heap_free(c, p->off);
        fp_mut_end(c);
        fp_unlock(c);
    }
    p->off = 0;
}

int fp_cache_put_all(fp_cache *c, int slot, const void *key, size_t klen, const void *head,
                     size_t hlen, const void *body, size_t blen, const fp_cache_meta *meta)
{
    fp_cache_put p;
    if (klen + hlen + blen > c->max_entry) return FP_CACHE_ETOOBIG;
    int r = fp_cache_begin(c, slot, key, klen, head, hlen, meta, blen, &p);
    if (r) return r;
    if ((r = fp_cache_append(c, &p, body, blen))) {
        fp_cache_abort(c, &p);
        return r;
    }
    return fp_cache_commit(c, &p);
}

int fp_cache_update_head(fp_cache *c, int slot, const void *key, size_t klen, uint64_t vary,
                         const void *head, size_t hlen, const fp_cache_meta *meta)
{
    /* Readers may be sending the old head right now, so never write it in
     * place: copy into a new entry (the pinned old body is the source) and
     * let the commit replace the old one. */
    fp_cache_hit hit;
    int r = fp_cache_lookup(c, slot, key, klen, vary, FP_CACHE_NOCOUNT | FP_CACHE_NOTOUCH, &hit);
    if (r != FP_CACHE_HIT) return r == FP_CACHE_MISS ? FP_CACHE_EINVAL : r;
    fp_cache_meta m = meta ? *meta : hit.meta;
    m.vary_hash = hit.meta.vary_hash;
    r = fp_cache_put_all(c, slot, key, klen, head, hlen, hit.body, hit.body_len, &m);
    if (r == FP_CACHE_OK && fp_lock(c) == 0) {
        c->st.stores--;  /* a refresh, not a new response */
        fp_unlock(c);
    }
    fp_cache_release(c, slot, hit.pin);
    return r;
}

/* ------------------------------------------------------------------ removal */

static long remove_matching(fp_cache *c, const void *key, size_t klen, int prefix)
{
    if (fp_lock(c)) return FP_CACHE_EBUSY;
    long n = 0;
    fp_mut_begin(c);
    uint64_t *b = fp_buckets(c);
    uint64_t h = prefix ? 0 : fp_cache_hash(key, klen);
    uint64_t first = prefix ? 0 : (h & (c->nbuckets - 1));
    uint64_t last = prefix ? c->nbuckets : first + 1;
    for (uint64_t i = first; i < last; i++) {
        uint64_t o = b[i];
        while (o) {
            fp_entry *e = FP_ENT(c, o);
            uint64_t next = e->hnext;
            int hit = prefix ? e->key_len >= klen && memcmp(fp_ent_data(c, o), key, klen) == 0
                             : same_key(c, o, h, key, klen);
            if (hit) {
                drop_entry(c, o);
                n++;
            }
            o = next;
        }
    }
    fp_mut_end(c);
    fp_unlock(c);
    return n;
}

long fp_cache_delete(fp_cache *c, const void *key, size_t klen)
{
    return remove_matching(c, key, klen, 0);
}

long fp_cache_purge_prefix(fp_cache *c, const void *prefix, size_t plen)
{
    return remove_matching(c, prefix, plen, 1);
}

/* ------------------------------------------------------------------ stats */

void fp_cache_count(fp_cache *c, uint64_t hits, uint64_t misses)
{
    /* No lock: the request path counts its decision once per request. */
    if (hits) __atomic_fetch_add(&c->st.hits, hits, __ATOMIC_RELAXED);
    if (misses) __atomic_fetch_add(&c->st.misses, misses, __ATOMIC_RELAXED);
}

void fp_cache_get_stats(const fp_cache *c, fp_cache_stats *out)
{
    *out = c->st;  /* aligned 64-bit loads; a torn snapshot across fields is fine */
}

long fp_cache_lru_keys(fp_cache *c, uint8_t *buf, size_t cap, long *count)
{
    if (fp_lock(c)) return FP_CACHE_EBUSY;
    size_t used = 0;
    long n = 0;
    for (uint64_t o = c->lru_head; o; o = FP_ENT(c, o)->next, n++) {
        fp_entry *e = FP_ENT(c, o);
        if (used + e->key_len + 1 <= cap) {
            memcpy(buf + used, fp_ent_data(c, o), e->key_len);
            buf[used + e->key_len] = 0;
        }
        used += e->key_len + 1;
    }
    fp_unlock(c);
    *count = n;
    return (long)used;
}

/* ------------------------------------------------------------------ tests */

int fp_cache_test_die_in_lock(fp_cache *c)
{
    if (fp_lock(c)) return FP_CACHE_EBUSY;
    fp_mut_begin(c);
    /* Half of an LRU move and a bucket pointing at garbage: what a process
     * killed mid-mutation could leave. */
    if (c->lru_head) FP_ENT(c, c->lru_head)->prev = c->heap_start + 8;
    fp_buckets(c)[0] = c->heap_end - 64;
    c->st.entries += 1000;
    return FP_CACHE_OK;  /* returns holding the lock; the caller must die now */
}
