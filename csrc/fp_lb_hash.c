/* fp_lb_hash.c - consistent hashing (ip_hash and hash): a ring of
 * FP_LB_VNODES virtual nodes per unit of weight, their points derived from
 * the server's name alone, sorted once per config; a request's key hashes
 * to a point and goes to the first node at or after it (binary search).
 * Taking one of N servers away moves only the keys its nodes owned, ~1/N.
 * An unusable server (at max_conns) passes its keys to the next usable
 * server along the ring.  No key: smooth weighted round-robin. */
#include <stdlib.h>

#include "fp_lb.h"

uint64_t fp_lb_mix64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xFF51AFD7ED558CCDULL;
    x ^= x >> 33;
    x *= 0xC4CEB9FE1A85EC53ULL;
    x ^= x >> 33;
    return x;
}

uint64_t fp_lb_hash64(const char *p, size_t n) {
    uint64_t h = 0xCBF29CE484222325ULL;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)p[i];
        h *= 0x100000001B3ULL;
    }
    return fp_lb_mix64(h ^ n);
}

static int by_point(const void *a, const void *b) {
    const fp_lb_vnode *x = a, *y = b;
    if (x->point != y->point)
        return x->point < y->point ? -1 : 1;
    return x->server < y->server ? -1 : x->server > y->server;
}

static int build_ring(fp_lb *lb, fp_lb_ring *ring, uint32_t lo, uint32_t hi,
                      const char *const *names, const size_t *name_lens) {
    /* FP_LB_VNODES per unit of weight, scaled down (keeping proportions)
     * when huge weights would make the ring larger than FP_LB_MAX_NODES */
    uint64_t wsum = 0;
    for (uint32_t i = lo; i < hi; i++)
        wsum += (uint64_t)lb->weight[i];
    uint64_t per_unit = FP_LB_VNODES, scale = 0;
    if (wsum * FP_LB_VNODES > FP_LB_MAX_NODES) {
        per_unit = 0;
        scale = wsum;
    }
#define VNODES_OF(i)                                                                       \
    (scale ? (size_t)((uint64_t)lb->weight[i] * FP_LB_MAX_NODES / scale + 1)                 \
           : (size_t)(per_unit * (uint64_t)lb->weight[i]))
    size_t total = 0;
    for (uint32_t i = lo; i < hi; i++)
        total += VNODES_OF(i);
    free(ring->nodes);
    ring->n = 0;
    ring->nodes = malloc((total ? total : 1) * sizeof *ring->nodes);
    if (!ring->nodes)
        return -1;
    size_t k = 0;
    for (uint32_t i = lo; i < hi; i++) {
        uint64_t h = fp_lb_hash64(names[i], name_lens[i]);
        size_t v_n = VNODES_OF(i);
        for (size_t v = 0; v < v_n; v++) {
            ring->nodes[k].point = fp_lb_mix64(h + (v + 1) * 0x9E3779B97F4A7C15ULL);
            ring->nodes[k].server = i;
            k++;
        }
    }
#undef VNODES_OF
    qsort(ring->nodes, total, sizeof *ring->nodes, by_point);
    ring->n = (uint32_t)total;
    return 0;
}

int fp_lb_build_rings(fp_lb *lb, const char *const *names, const size_t *name_lens) {
    if (build_ring(lb, &lb->ring[0], 0, lb->n_primary, names, name_lens) < 0)
        return -1;
    return build_ring(lb, &lb->ring[1], lb->n_primary, lb->n, names, name_lens);
}

int fp_lb_hash_pick(fp_lb *lb, uint32_t lo, uint32_t hi, const char *key, size_t klen) {
    const fp_lb_ring *ring = &lb->ring[lo == 0 ? 0 : 1];
    if (key == NULL || ring->n == 0)
        return fp_lb_rr_pick(lb, lo, hi, key, klen);
    int any = 0;
    for (uint32_t i = lo; i < hi && !any; i++)
        any = fp_lb_usable(lb, i);
    if (!any)
        return -1;
    uint64_t point = fp_lb_hash64(key, klen);
    uint32_t a = 0, b = ring->n; /* first node with node.point >= point */
    while (a < b) {
        uint32_t mid = a + (b - a) / 2;
        if (ring->nodes[mid].point < point)
            a = mid + 1;
        else
            b = mid;
    }
    for (uint32_t k = 0; k < ring->n; k++) {
        uint32_t s = ring->nodes[(a + k) % ring->n].server;
        if (fp_lb_usable(lb, s))
            return (int)s;
    }
    return -1; /* not reached: some server is usable */
}
