# cython: language_level=3
"""Per-worker runtime: settings compiled from a Config, the live-connection
set, a coarse timeout sweep, and the log sinks.

Timeouts are deadlines stored on each connection and checked by one sweep
every SWEEP seconds (the way nginx keeps a timer tree rather than a timer
object per event): a request costs a clock read, not a TimerHandle.
"""

import ipaddress
import logging

from libc.stdlib cimport free, realloc
from libc.string cimport memset

from fastproxy._conn cimport Conn, coarse_now
from fastproxy._stats cimport StatsRegion
from fastproxy._tables cimport Router
from fastproxy.tls import attach_upstream_tls
from fastproxy._uvtransports import install as install_transport_table
from fastproxy.fp_stats cimport fp_worker_stats
from fastproxy.fp_rewrite cimport (
    FP_RW_FORWARDED,
    FP_RW_VIA,
    FP_RW_X_FORWARDED,
    FP_RW_XFF_REPLACE,
)

SWEEP = 0.1
HEAP_CHECK = 50                # sweeps between two looks at the malloc heap (5 s)
HEAP_SLACK = 64 << 20          # free heap bytes kept before giving them back


cdef extern from "<malloc.h>" nogil:
    struct mallinfo2:
        size_t fordblks         # free bytes held in the heap
    mallinfo2 c_mallinfo2 "mallinfo2"()
    int malloc_trim(size_t pad)


cdef void trim_heap():
    """glibc keeps freed memory in the heap unless it is at the top; TLS
    handshakes (OpenSSL and uvloop's per-connection buffers) leave it
    fragmented, so the RSS would only grow.  Give it back past HEAP_SLACK."""
    if c_mallinfo2().fordblks > HEAP_SLACK:
        malloc_trim(0)


cdef class Runtime:
    def __cinit__(self, *args, **kwargs):
        memset(&self.own, 0, sizeof(fp_worker_stats))
        self.st = &self.own
        self.down = NULL
        self.peers = NULL
        self.scratch = NULL
        self.scratch_cap = 0

    def __dealloc__(self):
        free(self.scratch)

    def __init__(self, config, loop, log=None, stats_index=None, policies=None):
        self.loop = loop
        install_transport_table(loop)       # no-op for a loop it does not know
        self.policies = policies
        self.stats_index = stats_index
        self.conns = set()
        self.log = log or logging.getLogger("fastproxy")
        self.access_log = None
        self.access_format = "combined"
        self.closing = False
        self.requests_total = 0
        self.sweeper = None
        self.apply(config)

    def apply(self, config):
        """Compile config into what the data plane reads.  Connections keep
        the route objects of the request they are serving, so swapping the
        router is safe in the middle of traffic."""
        s = config.server
        router = Router(config, self.stats_index, self.policies)
        attach_upstream_tls(router, config)   # servers reached over TLS; may raise TLSError
        self.router = router
        self.router.attach_shared(self.down, self.peers)
        self.stats_index = self.router.index
        self.req_limits.max_line = s.max_request_line
        if self.scratch_cap < <size_t>s.max_request_line + 1:
            # grown, never shrunk: a reload may raise max_request_line while
            # connections opened before it are still reading
            scratch = <char *>realloc(self.scratch, s.max_request_line + 1)
            if scratch == NULL:
                raise MemoryError()
            self.scratch = scratch
            self.scratch_cap = s.max_request_line + 1
        self.req_limits.max_head = s.max_header_size
        self.req_limits.max_headers = min(s.max_headers, 256)
        # Responses: generous fixed limits; a bad origin gets a 502.
        self.resp_limits.max_line = 8192
        self.resp_limits.max_head = max(65536, s.max_header_size)
        self.resp_limits.max_headers = 256
        self.header_timeout = s.client_header_timeout
        self.body_timeout = s.client_body_timeout
        self.send_timeout = s.client_send_timeout
        self.keepalive_timeout = s.keepalive_timeout
        self.ws_timeout = s.websocket_idle_timeout
        self.max_body = s.max_body_size
        self.keepalive_requests = s.keepalive_requests
        flags = FP_RW_X_FORWARDED
        if s.x_forwarded_for == "replace":
            flags |= FP_RW_XFF_REPLACE
        if s.forwarded:
            flags |= FP_RW_FORWARDED
        if s.via:
            flags |= FP_RW_VIA
        self.fwd_flags = flags
        self.via = f"1.1 {s.via_name}".encode()
        self.server_header = (f"Server: {s.server_header}\r\n".encode()
                              if s.server_header else b"")
        self.trusted = tuple(ipaddress.ip_network(n) for n in s.trusted_proxies)

    def attach_stats(self, StatsRegion region, int slot):
        """Count into `slot` of the shared region from now on."""
        self.region = region
        self.st = region.slot_ptr(slot)
        self.down = region.down_ptr()       # servers marked down by the master
        self.peers = region.peers_ptr()     # state all workers share per server
        self.router.attach_shared(self.down, self.peers)

    def local_stats(self):
        """This runtime's counters (single-process use, tests)."""
        return {"requests": [self.st.requests[i] for i in range(6)],
                "bytes_in": self.st.bytes_in, "bytes_out": self.st.bytes_out,
                "connections_total": self.st.connections_total,
                "connections_active": self.st.connections_active,
                "upstream_requests": self.st.upstream_requests, "errors": self.st.errors,
                # fp_worker_stats.compression, indexes in csrc/fp_stats.h
                "compression": [self.st.compression[i] for i in range(16)]}

    cdef bint is_trusted(self, object ip):
        # a loop, not any(<generator>): Cython would allocate the generator's
        # closure on every call, even with no trusted_proxies (every connection)
        if not self.trusted or ip is None:
            return False
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return False
        for net in self.trusted:
            if addr in net:
                return True
        return False

    def start(self):
        if self.sweeper is None:
            self.sweeper = self.loop.call_later(SWEEP, self._sweep)

    def stop(self):
        if self.sweeper is not None:
            self.sweeper.cancel()
            self.sweeper = None
        if self.readloop is not None:
            self.readloop.close()
            self.readloop = None

    def _sweep(self):
        cdef double now = coarse_now()     # deadlines are set on this clock
        cdef Conn c
        expired = [c for c in self.conns
                   if (c.deadline and c.deadline <= now) or (c.send_by and c.send_by <= now)]
        for c in expired:
            try:
                c._expire()
            except Exception:
                self.log.exception("timeout handler failed")
        if self.pool_trimmer is not None:
            self.pool_trimmer(self)
        self.sweeps += 1
        if self.sweeps % HEAP_CHECK == 0:
            trim_heap()
        self.sweeper = self.loop.call_later(SWEEP, self._sweep)

    def error(self, str client, str route, str upstream, str message):
        """One line per error, naming who was involved."""
        self.log.warning("client=%s route=%s upstream=%s %s", client or "-",
                         route or "-", upstream or "-", message)
