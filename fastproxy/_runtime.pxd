# Per-worker runtime the protocols read: limits, timeouts, forwarding
# policy, the compiled router, the set of live connections (for the timeout
# sweep and graceful stop) and the log sinks.
from libc.stdint cimport uint8_t, uint32_t, uint64_t

from fastproxy._tables cimport Router
from fastproxy.fp_http1 cimport fp_limits
from fastproxy.fp_peer cimport fp_peer
from fastproxy.fp_stats cimport fp_worker_stats


cdef class Runtime:
    cdef fp_limits req_limits
    # where a request's path is normalised, then routed (start_request, which
    # no other request interrupts); sized by apply() for req_limits.max_line
    cdef char *scratch
    cdef size_t scratch_cap
    cdef fp_limits resp_limits
    cdef public Router router
    cdef public double header_timeout
    cdef public double body_timeout
    cdef public double send_timeout    # [server] client_send_timeout
    cdef public double keepalive_timeout
    cdef public double ws_timeout
    cdef public uint64_t max_body
    cdef public int keepalive_requests
    cdef uint32_t fwd_flags            # FP_RW_X_FORWARDED | FORWARDED | VIA | XFF_REPLACE
    cdef bytes via                     # b"1.1 fastproxy"
    cdef bytes server_header           # b"" or b"Server: name\r\n" on local answers
    cdef tuple trusted                 # ip networks whose X-Forwarded-* we keep
    cdef public set conns
    cdef public object loop
    cdef public object access_log      # callable(line: str) or None
    cdef public str access_format      # "combined" | "json"
    cdef public object log             # logging.Logger for errors
    cdef public bint closing
    cdef public long requests_total
    cdef object sweeper
    cdef unsigned long sweeps          # for the periodic heap trim
    cdef public object readloop        # _protocols.ReadLoop, made on first use
    cdef public object pool_trimmer    # set by _protocols: trims idle upstream pools
    cdef fp_worker_stats *st           # this worker's counters (shared slot or own)
    cdef fp_worker_stats own           # used when no shared region is attached
    cdef object region                 # keeps the shared region alive
    cdef const uint8_t *down           # the region's FP_DOWN_* flags, or NULL
    cdef fp_peer *peers                # the region's per-server shared state, or NULL
    cdef public object policies        # {upstream name: fastproxy.Policy} or None
    cdef public object stats_index     # StatsIndex numbering routes and servers

    cdef bint is_trusted(self, object ip)
