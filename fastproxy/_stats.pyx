# cython: language_level=3
"""The shared-memory stats region: created by the master before fork, one
slot per worker process, read and summed by the master for /metrics and
/status.  See csrc/fp_stats.h for the layout and the rules."""

import time

from libc.stdint cimport int64_t, uint8_t
from libc.string cimport memset
from posix.mman cimport MAP_ANONYMOUS, MAP_FAILED, MAP_SHARED, PROT_READ, PROT_WRITE
from posix.mman cimport mmap, munmap

from fastproxy.fp_peer cimport (
    fp_peer, fp_peer_forget, fp_peer_now_ms, peer_state,
)
from fastproxy.fp_stats cimport (
    FP_DOWN_DISABLED,
    FP_DOWN_DRAIN,
    FP_DOWN_HEALTH,
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

ADMIN_STATES = ("enabled", "drain", "disabled")
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

    cdef fp_peer *peers_ptr(self):
        return self.region.peers

    def set_down(self, int index, bint down):
        """Master only (health checks): mark server `index` down or up; every
        worker's balancer sees it on its next pick."""
        self._set_flag(index, FP_DOWN_HEALTH, down)

    def is_down(self, int index):
        """Health checks say down (whatever the admin state)."""
        if not 0 <= index < FP_STATS_SERVERS:
            raise IndexError(index)
        return self.region.down[index] & FP_DOWN_HEALTH != 0

    def set_admin(self, int index, str state):
        """Master only (admin API): "enabled", "drain" or "disabled"."""
        if state not in ADMIN_STATES:
            raise ValueError(state)
        if not 0 <= index < FP_STATS_SERVERS:
            raise IndexError(index)
        cdef uint8_t f = self.region.down[index] & ~(FP_DOWN_DRAIN | FP_DOWN_DISABLED)
        if state == "drain":
            f |= FP_DOWN_DRAIN
        elif state == "disabled":
            f |= FP_DOWN_DISABLED
        self._write_flags(index, f)    # one store: no instant of "enabled" in between

    def admin_state(self, int index):
        if not 0 <= index < FP_STATS_SERVERS:
            raise IndexError(index)
        f = self.region.down[index]
        return "disabled" if f & FP_DOWN_DISABLED else "drain" if f & FP_DOWN_DRAIN \
            else "enabled"

    def _set_flag(self, int index, int bit, bint on):
        if not 0 <= index < FP_STATS_SERVERS:
            raise IndexError(index)
        cdef uint8_t before = self.region.down[index]
        self._write_flags(index, (before | bit) if on else (before & ~bit))

    cdef _write_flags(self, int index, uint8_t after):
        cdef uint8_t before = self.region.down[index]
        self.region.down[index] = after
        if before and not after:
            # usable again: slow_start ramps its weight up from now
            self.region.peers[index].recovered_ms = fp_peer_now_ms()

    def peer_state(self, int index):
        """Per server state all workers share: in flight, passive, breaker."""
        if not 0 <= index < FP_STATS_SERVERS:
            raise IndexError(index)
        return peer_state(&self.region.peers[index])

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
        drop its gauges, free the slot.  Requests it had in flight no longer
        count against their servers (least_conn, max_conns), and a half-open
        breaker trial it may have held is given back."""
        cdef int i
        cdef int64_t n
        for i in range(FP_STATS_SERVERS):
            n = self.region.slot[slot].servers[i].inflight
            if n:
                fp_peer_forget(&self.region.peers[i], n)
        fp_stats_fold(&self.region.slot[0], &self.region.slot[slot])
        memset(&self.region.slot[slot], 0, sizeof(fp_worker_stats))

    def snapshot(self):
        """Everything summed over slot 0 and the live slots, plus a per-worker
        list.  Plain Python values, for /metrics and /status."""
        cdef int i, r, k
        cdef fp_worker_stats *w
        cdef fp_server_stats *s
        cdef fp_peer *p
        tot = {"requests": [0] * 6, "bytes_in": 0, "bytes_out": 0, "connections_total": 0,
               "connections_active": 0, "upstream_active": 0, "upstream_requests": 0,
               "errors": 0, "retries": 0, "cache": [0] * 6, "compression": [0] * 16}
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
            tot["retries"] += w.retries
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
        down = [i for i in range(FP_STATS_SERVERS) if self.region.down[i] & FP_DOWN_HEALTH]
        admin = {i: self.admin_state(i) for i in range(FP_STATS_SERVERS)
                 if self.region.down[i] & (FP_DOWN_DRAIN | FP_DOWN_DISABLED)}
        peers = {}
        for i in range(FP_STATS_SERVERS):
            p = &self.region.peers[i]
            if p.inflight or p.trips or p.breaker or p.out_until_ms:
                peers[i] = self.peer_state(i)
        return {"generation": self.region.generation, "started": self.region.started,
                "down": down, "admin": admin, "peers": peers, "totals": tot,
                "routes": routes, "servers": servers, "workers": workers}
