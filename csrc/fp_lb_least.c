/* fp_lb_least.c - least connections: the usable server with the fewest
 * requests in flight relative to its weight (load/weight, compared by
 * cross-multiplying); ties go round-robin by starting the scan one further
 * along each time.  The counts are requests in flight from ALL workers
 * (fp_peer.inflight in shared memory), so workers do not pile onto the
 * server each of them alone thinks is idle. */
#include "fp_lb.h"

int fp_lb_least_pick(fp_lb *lb, uint32_t lo, uint32_t hi, const char *key, size_t klen) {
    (void)key;
    (void)klen;
    uint32_t n = hi - lo;
    if (n == 0)
        return -1;
    uint32_t start = lb->rr++ % n;
    int best = -1;
    for (uint32_t k = 0; k < n; k++) {
        uint32_t i = lo + (start + k) % n;
        if (!fp_lb_usable(lb, i))
            continue;
        if (best < 0 || fp_lb_load(lb, i) * fp_lb_weight(lb, (uint32_t)best) <
                            fp_lb_load(lb, (uint32_t)best) * fp_lb_weight(lb, i))
            best = (int)i;
    }
    return best;
}
