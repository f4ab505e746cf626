# Compiled configuration the data plane reads per request: routes, upstreams,
# servers with their keep-alive pools, header rules as C arrays.  Python
# builds these once per config (build_router); protocols only read them.
from libc.stdint cimport int64_t, uint8_t, uint64_t

from fastproxy.fp_http1 cimport fp_head
from fastproxy.fp_lb cimport fp_lb
from fastproxy.fp_peer cimport fp_peer
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
    cdef readonly int max_conns     # 0 = unlimited (requests in flight, all workers)
    cdef readonly int position      # index in Upstream.servers (bit in fp_lb.exclude)
    cdef fp_peer *peer              # shared state (csrc/fp_peer.h)
    cdef public object ssl          # ssl.SSLContext for TLS to the server, or None
    cdef public str server_hostname  # SNI / name verified with ssl


cdef class Upstream:
    cdef readonly str name
    cdef readonly list servers      # each server once: primaries, then backups
    cdef readonly str balance
    cdef readonly str hash_key
    cdef fp_lb lb                   # the C balancing table (csrc/fp_lb.h)
    cdef fp_peer *own_peers         # per server state when no shared region is attached
    cdef const uint8_t **downs      # per server: its FP_DOWN_* byte in the stats region
    cdef readonly object policy     # a custom fastproxy.Policy, or None (the C table)
    cdef int key_kind               # FP_LB_KEY_* for balance = "hash"
    cdef bytes key_name             # header / cookie / query parameter name
    cdef readonly int keepalive
    cdef readonly int keepalive_requests
    cdef readonly double keepalive_timeout
    cdef readonly double connect_timeout
    cdef readonly double read_timeout
    cdef readonly double send_timeout
    cdef readonly int retries               # other servers tried after a failure
    cdef readonly bint retry_non_idempotent
    cdef readonly double retry_timeout      # seconds from the request's start; 0 = none
    cdef readonly bint fail_on_5xx          # a 5xx counts as a failure (passive, breaker)
    cdef int host_mode          # HOST_PASS, HOST_UPSTREAM, HOST_LITERAL
    cdef bytes host_literal
    # The balancing decision for one request.  buf/h: the parsed request head
    # (offsets in h are relative to buf); client_ip: the peer address as
    # text; target/tlen: the request-target as received.  None = no server.
    cdef Server pick(self, const char *buf, const fp_head *h, bytes client_ip,
                     const char *target, size_t tlen)
    # A retry: any usable server not in `exclude` (bit = Server.position);
    # ip_hash keeps its key, other keys are gone with the consumed head.
    cdef Server repick(self, uint64_t exclude, bytes client_ip)
    # A request goes to / is done with `srv` (csrc/fp_peer.h): acquire
    # returns the half-open trial flag to hand back to release; release
    # returns an FP_PEER_EV_* event to log.
    cdef Server custom_pick(self, object request, bytes client_ip, uint64_t exclude)
    cdef int acquire(self, Server srv)
    cdef int release(self, Server srv, int trial, int outcome)
    # Read the servers' FP_DOWN_* flags from down[stats_index] and their
    # shared state from peers[stats_index] (the stats region); NULL: no
    # flags / this upstream's private state.
    cdef void attach_shared(self, const uint8_t *down, fp_peer *peers)


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
    cdef frozenset upgrades     # upgrade_protocols: lower-case bytes names; None = any
    cdef HeaderRules req_rules
    cdef HeaderRules resp_rules
    cdef readonly object compress   # fastproxy._compress.Policy, None = off
    # The cache (docs/cache.md "Request path"): on for this route when
    # `cache = true` and [cache] exists; the key and the [cache] options the
    # request path reads per request.
    cdef readonly bint cache
    cdef readonly bint cache_query      # cache_key.query
    cdef readonly tuple cache_headers   # cache_key.headers: lower-case bytes names
    cdef readonly bint x_cache          # [cache] x_cache_header
    cdef readonly bint cache_set_cookie  # [cache] store_set_cookie
    cdef readonly int64_t heuristic_max  # [cache] heuristic_max, seconds
    cdef readonly double lock_timeout   # [cache] lock_timeout, seconds


cdef class Router:
    cdef list any_host          # routes with no host, longest prefix first
    cdef dict exact             # host -> routes, longest prefix first
    cdef list wildcards         # (suffix, routes), longest suffix first
    cdef bint has_hosts
    cdef readonly dict upstreams
    cdef readonly object index      # the StatsIndex that numbered routes and servers
    cdef Route match(self, const char *host, size_t hlen, const char *path, size_t plen)
    cdef void attach_shared(self, const uint8_t *down, fp_peer *peers)  # on every upstream


cdef enum:
    HOST_PASS = 0
    HOST_UPSTREAM = 1
    HOST_LITERAL = 2


cdef bytes normalize_path(bytes path)
cdef bint upgrade_allowed(Route route, const char *p, const fp_head *h) except -1
