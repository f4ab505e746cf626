/* fp_stats.c - folding a dead worker's counters into the retired slot. */
#include "fp_stats.h"

static void add(uint64_t *d, const uint64_t *s, int n)
{
    for (int i = 0; i < n; i++) d[i] += s[i];
}

void fp_stats_fold(fp_worker_stats *dst, const fp_worker_stats *src)
{
    add(dst->requests, src->requests, 6);
    dst->bytes_in += src->bytes_in;
    dst->bytes_out += src->bytes_out;
    dst->connections_total += src->connections_total;
    dst->upstream_requests += src->upstream_requests;
    dst->errors += src->errors;
    dst->retries += src->retries;
    add(dst->cache, src->cache, 4);          /* hits misses stores evictions */
    add(dst->compression, src->compression, 16);
    for (int r = 0; r < FP_STATS_ROUTES; r++)
        add(dst->routes[r].requests, src->routes[r].requests, 6);
    for (int i = 0; i < FP_STATS_SERVERS; i++) {
        fp_server_stats *d = &dst->servers[i];
        const fp_server_stats *s = &src->servers[i];
        d->requests += s->requests;
        d->failures += s->failures;
        add(d->buckets, s->buckets, FP_STATS_BUCKETS);
        d->count += s->count;
        d->sum_us += s->sum_us;
    }
}
