/* fp_lb_random.c - power of two choices: draw two servers at random
 * (in proportion to weight, among the usable ones) and take the one with
 * fewer requests in flight (all workers) relative to weight.
 * xorshift64* PRNG, per table, seeded by Python per worker. */
#include "fp_lb.h"

static uint64_t next_rand(fp_lb *lb) {
    uint64_t x = lb->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    lb->rng = x;
    return x * 0x2545F4914F6CDD1DULL;
}

static int draw(fp_lb *lb, uint32_t lo, uint32_t hi, int64_t total) {
    int64_t r = (int64_t)((next_rand(lb) >> 11) % (uint64_t)total);
    for (uint32_t i = lo; i < hi; i++) {
        if (!fp_lb_usable(lb, i))
            continue;
        r -= fp_lb_weight(lb, i);
        if (r < 0)
            return (int)i;
    }
    return -1; /* not reached */
}

int fp_lb_random_pick(fp_lb *lb, uint32_t lo, uint32_t hi, const char *key, size_t klen) {
    (void)key;
    (void)klen;
    int64_t total = 0;
    for (uint32_t i = lo; i < hi; i++)
        if (fp_lb_usable(lb, i))
            total += fp_lb_weight(lb, i);
    if (total == 0)
        return -1;
    int a = draw(lb, lo, hi, total);
    int b = draw(lb, lo, hi, total);
    if (fp_lb_load(lb, (uint32_t)b) * fp_lb_weight(lb, (uint32_t)a) <
        fp_lb_load(lb, (uint32_t)a) * fp_lb_weight(lb, (uint32_t)b))
        return b;
    return a;
}
