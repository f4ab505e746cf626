/* fp_stats.h - per-worker counters in one shared memory region.
 *
 * The master maps the region (MAP_SHARED | MAP_ANONYMOUS) before forking and
 * gives each worker process a slot of its own.  A worker is the only writer
 * of its slot, so the hot path increments plain integers with no lock and
 * no atomic instruction; the master reads all slots and sums them (aligned
 * 64-bit loads are single-copy atomic on the platforms we build for).
 *
 * Slot 0 is the master's "retired" slot: when a worker exits, the master adds
 * its counters into slot 0 and zeroes the slot before reuse, so totals never
 * go down (Prometheus counters must be monotonic).  Gauges (active counts)
 * are not carried over.
 *
 * Routes and upstream servers are identified by small indexes that the
 * master assigns once per (route label) and (upstream, server address) and
 * never reuses, so an index keeps its meaning across reloads.
 */
#ifndef FP_STATS_H
#define FP_STATS_H

#include <stdint.h>

#include "fp_peer.h"

#define FP_STATS_MAGIC UINT64_C(0x66707374617473)  /* "fpstats" */
#define FP_STATS_VERSION 4
#define FP_STATS_SLOTS 65          /* slot 0 retired + up to 64 live workers */
#define FP_STATS_ROUTES 128
#define FP_STATS_SERVERS 256
#define FP_STATS_BUCKETS 12        /* finite histogram buckets; +Inf is count */

/* Upper bounds of the response-time histogram buckets, in microseconds:
 * 1ms 2.5ms 5ms 10ms 25ms 50ms 100ms 250ms 500ms 1s 2.5s 5s (+Inf). */
#define FP_STATS_BUCKET_BOUNDS_US \
    { 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000, \
      1000000, 2500000, 5000000 }

typedef struct {
    uint64_t requests[6];          /* [0] no status (aborted), [1..5] 1xx..5xx */
} fp_route_stats;

typedef struct {
    uint64_t requests;             /* requests sent to this server             */
    uint64_t failures;             /* connect errors, resets, timeouts, 502/504 */
    int64_t active;                /* open connections to it (gauge)           */
    uint64_t buckets[FP_STATS_BUCKETS]; /* response time <= bound (not cumulative) */
    uint64_t count;                /* responses timed (= the +Inf bucket)      */
    uint64_t sum_us;               /* sum of response times, microseconds      */
    int64_t inflight;              /* this worker's share of fp_peer.inflight,
                                      taken back by the master if it dies      */
} fp_server_stats;

typedef struct {
    int64_t pid;                   /* 0 = free slot                            */
    uint64_t generation;           /* config generation the worker runs        */
    uint64_t requests[6];          /* by status class, as fp_route_stats       */
    uint64_t bytes_in;             /* from clients                             */
    uint64_t bytes_out;            /* to clients                               */
    uint64_t connections_total;    /* client connections accepted              */
    int64_t connections_active;    /* client connections open (gauge)          */
    int64_t upstream_active;       /* upstream connections open (gauge)        */
    uint64_t upstream_requests;    /* requests sent upstream                   */
    uint64_t errors;               /* requests answered with an error we made  */
    uint64_t retries;              /* requests sent to another server after a failure */
    uint64_t cache[6];             /* reserved for the cache: hits misses stores
                                      evictions bytes entries                  */
    uint64_t compression[16];      /* response compression (fastproxy/_compress):
                                      [3*c+0] responses, [3*c+1] identity bytes in,
                                      [3*c+2] encoded bytes out, for c = 1 gzip,
                                      2 br, 3 zstd; [12] responses decompressed,
                                      [13] decompressions stopped (caps, corrupt) */
    fp_route_stats routes[FP_STATS_ROUTES];
    fp_server_stats servers[FP_STATS_SERVERS];
} fp_worker_stats;

typedef struct {
    uint64_t magic;
    uint64_t version;
    uint64_t generation;           /* current config generation (master)      */
    double started;                /* master start, Unix time                  */
    /* Why a server takes no new requests, by server index: FP_DOWN_* bits
     * (0 = usable).  Written by the master only (health checks, admin API);
     * workers read a byte per pick. */
    uint8_t down[FP_STATS_SERVERS];
    /* Per server state every worker writes: in-flight requests, passive
     * health, circuit breaker, slow start (csrc/fp_peer.h). */
    fp_peer peers[FP_STATS_SERVERS];
    fp_worker_stats slot[FP_STATS_SLOTS];
} fp_stats_region;

enum {
    FP_DOWN_HEALTH = 1,            /* active health checks failed            */
    FP_DOWN_DRAIN = 2,             /* admin: drain (in-flight ones finish)   */
    FP_DOWN_DISABLED = 4,          /* admin: disabled                        */
};

/* Status code -> index into requests[]. */
static inline int fp_stats_class(int status)
{
    return (status >= 100 && status < 600) ? status / 100 : 0;
}

/* Record one response time (microseconds) for a server. */
static inline void fp_stats_time(fp_server_stats *s, uint64_t us)
{
    static const uint64_t bounds[FP_STATS_BUCKETS] = FP_STATS_BUCKET_BOUNDS_US;
    int i = 0;
    while (i < FP_STATS_BUCKETS && us > bounds[i]) i++;
    if (i < FP_STATS_BUCKETS) s->buckets[i]++;
    s->count++;
    s->sum_us += us;
}

/* Add src's counters (not gauges, not pid/generation) into dst. */
void fp_stats_fold(fp_worker_stats *dst, const fp_worker_stats *src);

#endif
