# Compiled configuration the data plane reads per request: routes, upstreams,
# servers with their keep-alive pools, header rules as C arrays.  Python
# builds these once per config (build_router); protocols only read them.
from libc.stdint cimport uint8_t

from fastproxy.fp_http1 cimport fp_head
from fastproxy.fp_lb cimport fp_lb
from fastproxy.fp_rewrite cimport fp_kv, fp_rules


cdef class HeaderRules:
    cdef fp_rules rules
    cdef fp_kv *kvs
    cdef list keep          # the bytes objects the C pointers point into
    cdef bint empty


cdef class Server:
    cdef readonly str host
    cdef readonly int port
    cdef readonly int weight
    cdef readonly str address   # "host:port" as configured
    cdef bytes host_header      # b"host:port" for host = "upstream"
    cdef public list idle       # pooled upstream connections, most recent last
    cdef public int active      # open connections to this server
    cdef public long requests
    cdef public long failures
    cdef readonly int stats_index   # slot in fp_worker_stats.servers
    cdef readonly bint backup       # used only when no primary is usable
    cdef readonly int max_conns     # 0 = unlimited (per worker)


cdef class Upstream:
    cdef readonly str name
    cdef readonly list servers      # each server once: primaries, then backups
    cdef readonly str balance
    cdef readonly str hash_key
    cdef fp_lb lb                   # the C balancing table (csrc/fp_lb.h)
    cdef int *busy                  # per server: active - idle, refreshed by pick
    cdef const uint8_t **downs      # per server: its health flag in the stats region
    cdef bint track_load            # least_conn/random or some max_conns: refresh busy
    cdef int key_kind               # FP_LB_KEY_* for balance = "hash"
    cdef bytes key_name             # header / cookie / query parameter name
    cdef readonly int keepalive
    cdef readonly int keepalive_requests
    cdef readonly double keepalive_timeout
    cdef readonly double connect_timeout
    cdef readonly double read_timeout
    cdef readonly double send_timeout
    cdef int host_mode          # HOST_PASS, HOST_UPSTREAM, HOST_LITERAL
    cdef bytes host_literal
    # The balancing decision for one request.  buf/h: the parsed request head
    # (offsets in h are relative to buf); client_ip: the peer address as
    # text; target/tlen: the request-target as received.  None = no server.
    cdef Server pick(self, const char *buf, const fp_head *h, bytes client_ip,
                     const char *target, size_t tlen)
    # Read the servers' health flags (1 = down) from down[stats_index]: the
    # shared stats region's down array; NULL = no flags, every server up.
    cdef void set_down(self, const uint8_t *down)


cdef class Route:
    cdef readonly int index         # position in the config's [[routes]]
    cdef readonly str label         # "host/prefix" for logs and metrics
    cdef readonly int stats_index   # slot in fp_worker_stats.routes
    cdef readonly bytes host    # lower case; b"" for any host
    cdef bint wildcard          # host is a "*.suffix" pattern (stored as ".suffix")
    cdef readonly bytes prefix
    cdef readonly Upstream upstream
    cdef int return_status
    cdef bytes body
    cdef bytes redirect_to
    cdef int redirect_status
    cdef bint keep_query
    cdef bint websocket
    cdef HeaderRules req_rules
    cdef HeaderRules resp_rules
    cdef readonly object compress   # fastproxy._compress.Policy, None = off


cdef class Router:
    cdef list any_host          # routes with no host, longest prefix first
    cdef dict exact             # host -> routes, longest prefix first
    cdef list wildcards         # (suffix, routes), longest suffix first
    cdef bint has_hosts
    cdef readonly dict upstreams
    cdef readonly object index      # the StatsIndex that numbered routes and servers
    cdef Route match(self, const char *host, size_t hlen, const char *path, size_t plen)
    cdef void set_down(self, const uint8_t *down)  # Upstream.set_down on every upstream


cdef enum:
    HOST_PASS = 0
    HOST_UPSTREAM = 1
    HOST_LITERAL = 2


cdef bytes normalize_path(bytes path)
