# cython: language_level=3
"""The shared-memory stats region: created by the master before fork, one
slot per worker process, read and summed by the master for /metrics and
/status.  See csrc/fp_stats.h for the layout and the rules."""

import time

from libc.stdint cimport uint8_t
from libc.string cimport memset
from posix.mman cimport MAP_ANONYMOUS, MAP_FAILED, MAP_SHARED, PROT_READ, PROT_WRITE
from posix.mman cimport mmap, munmap

from fastproxy.fp_stats cimport (
    FP_STATS_BUCKETS,
    FP_STATS_MAGIC,
    FP_STATS_ROUTES,
    FP_STATS_SERVERS,
    FP_STATS_SLOTS,
    FP_STATS_VERSION,
    fp_server_stats,
    fp_stats_fold,
    fp_stats_region,
    fp_worker_stats,
)

BUCKET_BOUNDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
MAX_WORKERS = FP_STATS_SLOTS - 1
MAX_ROUTES = FP_STATS_ROUTES
MAX_SERVERS = FP_STATS_SERVERS


class StatsIndex:
    """Stable small indexes for routes and upstream servers.  Append-only:
    an index is never given to another name, so counters keep their meaning
    across reloads (overflow shares the last index rather than failing)."""

    def __init__(self):
        self.routes = {}        # route label -> index
        self.servers = {}       # (upstream, address) -> index

    def route(self, str label):
        if label not in self.routes:
            self.routes[label] = min(len(self.routes), MAX_ROUTES - 1)
        return self.routes[label]

    def server(self, str upstream, str address):
        key = (upstream, address)
        if key not in self.servers:
            self.servers[key] = min(len(self.servers), MAX_SERVERS - 1)
        return self.servers[key]


cdef class StatsRegion:
    def __cinit__(self):
        self.region = NULL

    def __init__(self):
        self.size = sizeof(fp_stats_region)
        cdef void *p = mmap(NULL, self.size, PROT_READ | PROT_WRITE,
                            MAP_SHARED | MAP_ANONYMOUS, -1, 0)
        if p == MAP_FAILED:
            raise MemoryError("mmap of the stats region failed")
        self.region = <fp_stats_region *>p
        memset(p, 0, self.size)
        self.region.magic = FP_STATS_MAGIC
        self.region.version = FP_STATS_VERSION
        self.region.started = time.time()

    def __dealloc__(self):
        if self.region != NULL:
            munmap(self.region, self.size)

    cdef fp_worker_stats *slot_ptr(self, int i):
        return &self.region.slot[i]

    cdef const uint8_t *down_ptr(self):
        return self.region.down

    def set_down(self, int index, bint down):
        """Master only (health checks): mark server `index` down or up; every
        worker's balancer sees it on its next pick."""
        if not 0 <= index < FP_STATS_SERVERS:
            raise IndexError(index)
        self.region.down[index] = 1 if down else 0

    def is_down(self, int index):
        if not 0 <= index < FP_STATS_SERVERS:
            raise IndexError(index)
        return self.region.down[index] != 0

    @property
    def generation(self):
        return self.region.generation

    @generation.setter
    def generation(self, value):
        self.region.generation = value

    @property
    def started(self):
        return self.region.started

    def claim(self, int pid, int generation):
        """Master, before fork: a free slot for a new worker (its pid set
        again by the worker itself once it runs)."""
        cdef int i
        for i in range(1, FP_STATS_SLOTS):
            if self.region.slot[i].pid == 0:
                self.region.slot[i].pid = pid if pid else -1
                self.region.slot[i].generation = generation
                return i
        raise RuntimeError(f"more than {MAX_WORKERS} live workers")

    def set_pid(self, int slot, int pid):
        self.region.slot[slot].pid = pid

    def release(self, int slot):
        """Master, after a worker exited: keep its counters (in slot 0),
        drop its gauges, free the slot."""
        fp_stats_fold(&self.region.slot[0], &self.region.slot[slot])
        memset(&self.region.slot[slot], 0, sizeof(fp_worker_stats))

    def snapshot(self):
        """Everything summed over slot 0 and the live slots, plus a per-worker
        list.  Plain Python values, for /metrics and /status."""
        cdef int i, r, k
        cdef fp_worker_stats *w
        cdef fp_server_stats *s
        tot = {"requests": [0] * 6, "bytes_in": 0, "bytes_out": 0, "connections_total": 0,
               "connections_active": 0, "upstream_active": 0, "upstream_requests": 0,
               "errors": 0, "cache": [0] * 6, "compression": [0] * 16}
        routes = {}
        servers = {}
        workers = []
        for i in range(FP_STATS_SLOTS):
            w = &self.region.slot[i]
            if i > 0 and w.pid == 0:
                continue
            for k in range(6):
                tot["requests"][k] += w.requests[k]
                tot["cache"][k] += w.cache[k]
            for k in range(16):
                tot["compression"][k] += w.compression[k]
            tot["bytes_in"] += w.bytes_in
            tot["bytes_out"] += w.bytes_out
            tot["connections_total"] += w.connections_total
            tot["connections_active"] += w.connections_active
            tot["upstream_active"] += w.upstream_active
            tot["upstream_requests"] += w.upstream_requests
            tot["errors"] += w.errors
            for r in range(FP_STATS_ROUTES):
                if any(w.routes[r].requests[k] for k in range(6)):
                    acc = routes.setdefault(r, [0] * 6)
                    for k in range(6):
                        acc[k] += w.routes[r].requests[k]
            for r in range(FP_STATS_SERVERS):
                s = &w.servers[r]
                if s.requests == 0 and s.failures == 0 and s.active == 0 and s.count == 0:
                    continue
                acc = servers.setdefault(r, {"requests": 0, "failures": 0, "active": 0,
                                             "buckets": [0] * FP_STATS_BUCKETS, "count": 0,
                                             "sum_seconds": 0.0})
                acc["requests"] += s.requests
                acc["failures"] += s.failures
                acc["active"] += s.active
                for k in range(FP_STATS_BUCKETS):
                    acc["buckets"][k] += s.buckets[k]
                acc["count"] += s.count
                acc["sum_seconds"] += s.sum_us / 1e6
            if i > 0:
                workers.append({"slot": i, "pid": w.pid, "generation": w.generation,
                                "requests": sum(w.requests[k] for k in range(6)),
                                "connections_active": w.connections_active,
                                "connections_total": w.connections_total})
        down = [i for i in range(FP_STATS_SERVERS) if self.region.down[i]]
        return {"generation": self.region.generation, "started": self.region.started,
                "down": down, "totals": tot, "routes": routes, "servers": servers,
                "workers": workers}
