# Mirror of csrc/fp_stats.h: per-worker counters in shared memory.
from libc.stdint cimport int64_t, uint8_t, uint64_t

from fastproxy.fp_peer cimport fp_peer


cdef extern from "fp_stats.h" nogil:
    enum:
        FP_DOWN_HEALTH
        FP_DOWN_DRAIN
        FP_DOWN_DISABLED

    enum:
        FP_STATS_SLOTS
        FP_STATS_ROUTES
        FP_STATS_SERVERS
        FP_STATS_BUCKETS

    ctypedef struct fp_route_stats:
        uint64_t requests[6]

    ctypedef struct fp_server_stats:
        uint64_t requests
        uint64_t failures
        int64_t active
        uint64_t buckets[12]
        uint64_t count
        uint64_t sum_us
        int64_t inflight

    ctypedef struct fp_worker_stats:
        int64_t pid
        uint64_t generation
        uint64_t requests[6]
        uint64_t bytes_in
        uint64_t bytes_out
        uint64_t connections_total
        int64_t connections_active
        int64_t upstream_active
        uint64_t upstream_requests
        uint64_t errors
        uint64_t retries
        uint64_t cache[6]
        uint64_t compression[16]
        fp_route_stats routes[128]
        fp_server_stats servers[256]

    ctypedef struct fp_stats_region:
        uint64_t magic
        uint64_t version
        uint64_t generation
        double started
        uint8_t down[256]
        fp_peer peers[256]
        fp_worker_stats slot[65]

    uint64_t FP_STATS_MAGIC
    int FP_STATS_VERSION
    int fp_stats_class(int status)
    void fp_stats_time(fp_server_stats *s, uint64_t us)
    void fp_stats_fold(fp_worker_stats *dst, const fp_worker_stats *src)
