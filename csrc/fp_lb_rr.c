/* fp_lb_rr.c - the table's life cycle, the dispatcher, and smooth weighted
 * round-robin (nginx's: every usable server gains its weight, the one with
 * the most is chosen and loses the total, so 1:2:3 gives c b a c b c, not
 * a b b c c c). */
#include <stdlib.h>
#include <string.h>

#include "fp_lb.h"

static const fp_lb_pick_fn methods[FP_LB_METHODS] = {
    [FP_LB_ROUND_ROBIN] = fp_lb_rr_pick,
    [FP_LB_LEAST_CONN] = fp_lb_least_pick,
    [FP_LB_IP_HASH] = fp_lb_hash_pick,
    [FP_LB_HASH] = fp_lb_hash_pick,
    [FP_LB_RANDOM] = fp_lb_random_pick,
};

int fp_lb_init(fp_lb *lb, int32_t method, uint32_t n, uint32_t n_primary, uint64_t seed) {
    memset(lb, 0, sizeof *lb);
    if (method < 0 || method >= FP_LB_METHODS || n_primary > n)
        return -1;
    lb->method = method;
    lb->n = n;
    lb->n_primary = n_primary;
    lb->rng = seed ? seed : 0x9E3779B97F4A7C15ULL;
    size_t m = n ? n : 1;
    lb->weight = calloc(m, sizeof *lb->weight);
    lb->max_conns = calloc(m, sizeof *lb->max_conns);
    lb->slow_start = calloc(m, sizeof *lb->slow_start);
    lb->current = calloc(m, sizeof *lb->current);
    lb->peer = calloc(m, sizeof *lb->peer);
    if (!lb->weight || !lb->max_conns || !lb->slow_start || !lb->current || !lb->peer)
        return -1;
    for (uint32_t i = 0; i < n; i++)
        lb->weight[i] = 1;
    return 0;
}

void fp_lb_free(fp_lb *lb) {
    free(lb->weight);
    free(lb->max_conns);
    free(lb->slow_start);
    free(lb->current);
    free(lb->peer);
    free(lb->ring[0].nodes);
    free(lb->ring[1].nodes);
    memset(lb, 0, sizeof *lb);
}

int fp_lb_pick(fp_lb *lb, const char *key, size_t klen) {
    if (lb->n == 0 || lb->peer == NULL)
        return -1;
    lb->now = fp_peer_now_ms();
    fp_lb_pick_fn fn = methods[lb->method];
    int i = fn(lb, 0, lb->n_primary, key, klen);
    if (i < 0 && lb->n_primary < lb->n)
        i = fn(lb, lb->n_primary, lb->n, key, klen);
    return i;
}

int fp_lb_rr_pick(fp_lb *lb, uint32_t lo, uint32_t hi, const char *key, size_t klen) {
    (void)key;
    (void)klen;
    int best = -1;
    int64_t total = 0;
    for (uint32_t i = lo; i < hi; i++) {
        if (!fp_lb_usable(lb, i))
            continue;
        int32_t w = fp_lb_weight(lb, i);
        lb->current[i] += w;
        total += w;
        if (best < 0 || lb->current[i] > lb->current[best])
            best = (int)i;
    }
    if (best >= 0)
        lb->current[best] -= total;
    return best;
}
