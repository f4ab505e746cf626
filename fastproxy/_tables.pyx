# cython: language_level=3
"""Route and upstream tables compiled from a Config (see _tables.pxd)."""

import os

from fastproxy._compress import Policy
from fastproxy.config_values import parse_upgrade_protocols

from cpython.bytes cimport PyBytes_FromStringAndSize
from cpython.list cimport PyList_GET_ITEM
from libc.stdlib cimport calloc, free, malloc
from libc.stdint cimport int64_t, uint8_t, uint32_t, uint64_t
from libc.string cimport memcmp

from fastproxy.fp_http1 cimport fp_head, fp_header
from fastproxy.fp_known_headers cimport FP_H_UPGRADE
from fastproxy.fp_lb cimport (
    FP_LB_HASH, FP_LB_IP_HASH, FP_LB_KEY_COOKIE, FP_LB_KEY_HEADER, FP_LB_KEY_NONE,
    FP_LB_KEY_PATH, FP_LB_KEY_QUERY, FP_LB_LEAST_CONN, FP_LB_RANDOM, FP_LB_ROUND_ROBIN,
    fp_lb_build_rings, fp_lb_free, fp_lb_init, fp_lb_key, fp_lb_pick, fp_lb_usable,
)
from fastproxy.fp_peer cimport (
    fp_peer, fp_peer_acquire, fp_peer_now_ms, fp_peer_release, peer_state,
)
from fastproxy.fp_path cimport (
    FP_PATH_ABOVE_ROOT,
    FP_PATH_BAD_ESCAPE,
    FP_PATH_NOT_ABS,
    FP_PATH_NUL,
    fp_normalize_path,
)

DEF MAX_HOST = 255


cdef class HeaderRules:
    def __cinit__(self):
        self.kvs = NULL

    def __init__(self, rules=None):
        self.keep = []
        set_ = tuple(rules.set) if rules is not None else ()
        add = tuple(rules.add) if rules is not None else ()
        remove = tuple(rules.remove) if rules is not None else ()
        n = len(set_) + len(add) + len(remove)
        self.empty = n == 0
        self.kvs = <fp_kv *>malloc(sizeof(fp_kv) * (n or 1))
        if self.kvs == NULL:
            raise MemoryError()
        cdef int i = 0
        for group in (set_, add, tuple((r, "") for r in remove)):
            for name, value in group:
                bn = name.encode("latin-1")
                bv = value.encode("latin-1")
                self.keep += [bn, bv]
                self.kvs[i].name = bn
                self.kvs[i].name_len = len(bn)
                self.kvs[i].value = bv
                self.kvs[i].value_len = len(bv)
                i += 1
        self.rules.set = self.kvs
        self.rules.n_set = len(set_)
        self.rules.add = self.kvs + len(set_)
        self.rules.n_add = len(add)
        self.rules.remove = self.kvs + len(set_) + len(add)
        self.rules.n_remove = len(remove)

    def __dealloc__(self):
        free(self.kvs)


cdef class Server:
    def __init__(self, str host, int port, int weight=1, int stats_index=0,
                 bint backup=False, int max_conns=0):
        self.backup = backup
        self.max_conns = max_conns
        self.host = host
        self.port = port
        self.weight = weight
        self.address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self.host_header = self.address.encode("idna" if not host.isascii() else "ascii")
        self.idle = []
        self.active = 0
        self.requests = 0
        self.failures = 0
        self.stats_index = stats_index
        self.peer = NULL
        self.ssl = None
        self.server_hostname = None

    @property
    def inflight(self):
        """Requests in flight to this server, from every worker."""
        return self.peer.inflight if self.peer != NULL else 0

    def peer_state(self):
        """For /status and tests: this server's shared passive/breaker state."""
        return {} if self.peer == NULL else peer_state(self.peer)


# FP_PEER_EV_* -> what happened, for logs and tests
PEER_EVENTS = (None, "passive_out", "breaker_open", "breaker_reopen", "breaker_close")

METHODS = {
    "round_robin": FP_LB_ROUND_ROBIN,
    "least_conn": FP_LB_LEAST_CONN,
    "ip_hash": FP_LB_IP_HASH,
    "hash": FP_LB_HASH,
    "random": FP_LB_RANDOM,
}
KEY_KINDS = {
    "header": FP_LB_KEY_HEADER,
    "cookie": FP_LB_KEY_COOKIE,
    "query": FP_LB_KEY_QUERY,
    "path": FP_LB_KEY_PATH,
}


cdef class Upstream:
    """The servers of one upstream and the C table that balances them
    (csrc/fp_lb.h): primaries first, then backups, each server once."""

    def __cinit__(self):
        self.lb.n = 0
        self.lb.peer = NULL
        self.lb.down = NULL
        self.own_peers = NULL
        self.downs = NULL

    def __init__(self, cfg, index, policy=None):
        self.name = cfg.name
        specs = ([s for s in cfg.servers if not s.backup]
                 + [s for s in cfg.servers if s.backup])
        self.servers = [Server(s.address.host, s.address.port, s.weight,
                               index.server(cfg.name, str(s.address)), s.backup, s.max_conns)
                        for s in specs]
        self.balance = getattr(cfg, "balance", "round_robin")
        self.hash_key = getattr(cfg, "hash_key", None) or ""
        kind, _, key_name = self.hash_key.partition(":")
        self.key_kind = KEY_KINDS.get(kind, FP_LB_KEY_NONE)
        self.key_name = key_name.encode("latin-1")
        cdef uint32_t n = len(self.servers)
        cdef uint32_t n_primary = sum(1 for s in specs if not s.backup)
        cdef uint64_t seed = int.from_bytes(os.urandom(8), "little") | 1
        if fp_lb_init(&self.lb, METHODS[self.balance], n, n_primary, seed) < 0:
            raise MemoryError()
        self.own_peers = <fp_peer *>calloc(n or 1, sizeof(fp_peer))
        self.downs = <const uint8_t **>calloc(n or 1, sizeof(uint8_t *))
        if self.own_peers == NULL or self.downs == NULL:
            raise MemoryError()
        cdef Server srv
        cdef uint32_t i
        for i in range(n):
            srv = <Server>self.servers[i]
            srv.position = i
            self.lb.weight[i] = max(srv.weight, 1)
            self.lb.max_conns[i] = max(srv.max_conns, 0)
            ramp = specs[i].slow_start
            self.lb.slow_start[i] = <int64_t>((cfg.slow_start if ramp is None else ramp) * 1000)
        self.attach_shared(NULL, NULL)
        # Passive checks need somewhere else to go: like nginx, a lone
        # server is never taken out by max_fails.
        self.lb.pol.max_fails = cfg.max_fails if n > 1 else 0
        self.lb.pol.fail_timeout_ms = <int64_t>(cfg.fail_timeout * 1000)
        cb = cfg.circuit_breaker
        if cb is not None:
            self.lb.pol.brk_consecutive = cb.consecutive_failures
            self.lb.pol.brk_error_pct = <uint32_t>round(cb.error_rate * 100)
            self.lb.pol.brk_min_requests = cb.min_requests
            self.lb.pol.brk_window_ms = <int64_t>(cb.window * 1000)
            self.lb.pol.brk_open_ms = max(<int64_t>(cb.cooldown * 1000), 1)
            self.lb.pol.brk_trials = cb.half_open_requests
        self.retries = cfg.retries
        self.retry_non_idempotent = cfg.retry_non_idempotent
        self.retry_timeout = cfg.retry_timeout
        self.fail_on_5xx = cfg.fail_on_5xx
        self.policy = policy
        if self.lb.method == FP_LB_IP_HASH or self.lb.method == FP_LB_HASH:
            build_rings(self)
        self.keepalive = cfg.keepalive
        self.keepalive_requests = cfg.keepalive_requests
        self.keepalive_timeout = cfg.keepalive_timeout
        self.connect_timeout = cfg.connect_timeout
        self.read_timeout = cfg.read_timeout
        self.send_timeout = cfg.send_timeout
        if cfg.host == "pass":
            self.host_mode = HOST_PASS
        elif cfg.host == "upstream":
            self.host_mode = HOST_UPSTREAM
        else:
            self.host_mode = HOST_LITERAL
            self.host_literal = cfg.host.encode("latin-1")

    def __dealloc__(self):
        fp_lb_free(&self.lb)
        free(self.own_peers)
        free(self.downs)

    cdef void attach_shared(self, const uint8_t *down, fp_peer *peers):
        cdef uint32_t i
        cdef Server srv
        for i in range(self.lb.n):
            srv = <Server>PyList_GET_ITEM(self.servers, i)
            srv.peer = &peers[srv.stats_index] if peers != NULL else &self.own_peers[i]
            self.lb.peer[i] = srv.peer
            if down != NULL:
                self.downs[i] = down + srv.stats_index
        self.lb.down = self.downs if down != NULL else NULL

    def lb_policy(self):
        """The passive-health and breaker settings the log lines name, in seconds."""
        return {"max_fails": self.lb.pol.max_fails,
                "fail_timeout": self.lb.pol.fail_timeout_ms / 1000,
                "cooldown": self.lb.pol.brk_open_ms / 1000}

    cdef int acquire(self, Server srv):
        return fp_peer_acquire(srv.peer, &self.lb.pol, fp_peer_now_ms())

    cdef int release(self, Server srv, int trial, int outcome):
        return fp_peer_release(srv.peer, &self.lb.pol, trial, outcome, fp_peer_now_ms())

    cdef Server repick(self, uint64_t exclude, bytes client_ip):
        cdef const char *key = NULL
        cdef size_t klen = 0
        cdef int i
        if self.policy is not None:
            from fastproxy.policy import RequestInfo
            return self.custom_pick(
                RequestInfo(client_ip=(client_ip or b"").decode(), retry=True), client_ip,
                exclude)
        if self.lb.method == FP_LB_IP_HASH and client_ip is not None:
            key = client_ip
            klen = len(client_ip)
        self.lb.exclude = exclude
        i = fp_lb_pick(&self.lb, key, klen)
        self.lb.exclude = 0
        if i < 0:
            return None
        return <Server>PyList_GET_ITEM(self.servers, i)

    cdef Server custom_pick(self, object request, bytes client_ip, uint64_t exclude):
        """The opt-in Python policy: one call per request, given the usable
        servers (primaries, or the backups when no primary is usable)."""
        cdef uint32_t i
        cdef Server srv
        self.lb.now = fp_peer_now_ms()
        self.lb.exclude = exclude
        primaries, backups = [], []
        for i in range(self.lb.n):
            if fp_lb_usable(&self.lb, i):
                srv = <Server>PyList_GET_ITEM(self.servers, i)
                (backups if srv.backup else primaries).append(srv)
        self.lb.exclude = 0
        candidates = primaries or backups
        if not candidates:
            return None
        chosen = self.policy.pick(request, candidates)
        if chosen is None:
            return None
        if not isinstance(chosen, Server) or chosen not in candidates:
            raise ValueError(f"{type(self.policy).__name__}.pick returned {chosen!r}, "
                             "not one of the servers it was given")
        return <Server>chosen

    cdef Server pick(self, const char *buf, const fp_head *h, bytes client_ip,
                     const char *target, size_t tlen):
        cdef const char *key = NULL
        cdef size_t klen = 0
        cdef int i
        if self.policy is not None:
            return self.custom_pick(request_info(buf, h, client_ip, target, tlen), client_ip, 0)
        if self.lb.method == FP_LB_IP_HASH:
            if client_ip is not None:
                key = client_ip
                klen = len(client_ip)
        elif self.lb.method == FP_LB_HASH:
            if not fp_lb_key(self.key_kind, self.key_name, len(self.key_name), buf, h,
                             target, tlen, &key, &klen):
                key = NULL
        i = fp_lb_pick(&self.lb, key, klen)
        if i < 0:
            return None
        return <Server>PyList_GET_ITEM(self.servers, i)

    def unique_servers(self):
        return list(self.servers)

    def down_for_test(self, bytearray flags):
        """For tests: read the health flags from `flags` (indexed by stats_index,
        which must outlive this upstream's use of it); None: all up."""
        cdef const uint8_t *p = NULL
        if flags is not None:
            p = <const uint8_t *><char *>flags
        self.attach_shared(p, NULL)

    def set_inflight_for_test(self, str address, long n):
        """For tests: pretend `n` requests are in flight to `address`."""
        (<Server>self._by_address(address)).peer.inflight = n

    def acquire_for_test(self, str address):
        """For tests: count a request in flight to `address`; returns the trial flag."""
        return self.acquire(self._by_address(address))

    def release_for_test(self, str address, int trial, str outcome):
        """For tests: end a request ("ok", "fail" or "neutral"); returns the event
        name or None."""
        ev = self.release(self._by_address(address), trial,
                          {"neutral": 0, "ok": 1, "fail": 2}[outcome])
        return PEER_EVENTS[ev]

    def _by_address(self, str address):
        for srv in self.servers:
            if srv.address == address:
                return srv
        raise KeyError(address)

    def pick_for_test(self, bytes client_ip, bytes head_bytes):
        """For tests: the address pick() chooses for a raw request head, or None."""
        t = TestHead(head_bytes)
        srv = self.pick(t.buf, &t.h, client_ip, t.target, len(t.target))
        return None if srv is None else srv.address

    def key_for_test(self, bytes head_bytes):
        """For tests: the hash key balance = "hash" finds in a raw request head."""
        t = TestHead(head_bytes)
        cdef const char *key = NULL
        cdef size_t klen = 0
        if not fp_lb_key(self.key_kind, self.key_name, len(self.key_name), t.buf, &t.h,
                         t.target, len(t.target), &key, &klen):
            return None
        return PyBytes_FromStringAndSize(key, klen)


cdef class TestHead:
    """A parsed request head laid out like the data plane's (for the test hooks)."""
    cdef bytes buf
    cdef bytes target
    cdef fp_head h
    cdef fp_header *slots

    def __cinit__(self):
        self.slots = NULL

    def __init__(self, bytes head_bytes):
        from fastproxy._http1 import parse_request
        head = parse_request(head_bytes, framing=False)
        self.target = head.target
        parts = []
        spans = []
        off = 0
        for name, value, _ in head.headers:
            spans.append((off, len(name), off + len(name), len(value)))
            parts += [name, value]
            off += len(name) + len(value)
        self.buf = b"".join(parts)
        self.slots = <fp_header *>calloc(len(spans) or 1, sizeof(fp_header))
        if self.slots == NULL:
            raise MemoryError()
        for i, (noff, nlen, voff, vlen) in enumerate(spans):
            self.slots[i].name.off = noff
            self.slots[i].name.len = nlen
            self.slots[i].value.off = voff
            self.slots[i].value.len = vlen
        self.h.headers = self.slots
        self.h.max_slots = len(spans)
        self.h.num_headers = len(spans)

    def __dealloc__(self):
        free(self.slots)


cdef object request_info(const char *buf, const fp_head *h, bytes client_ip,
                         const char *target, size_t tlen):
    """A RequestInfo for a custom policy (Python objects: opt-in only)."""
    from fastproxy.policy import RequestInfo
    cdef uint32_t i
    headers = {}
    for i in range(h.num_headers):
        f = h.headers[i]
        name = buf[f.name.off:f.name.off + f.name.len].decode("latin-1").lower()
        if name not in headers:
            headers[name] = buf[f.value.off:f.value.off + f.value.len].decode("latin-1")
    return RequestInfo(
        method=buf[h.method.off:h.method.off + h.method.len].decode("latin-1"),
        target=target[:tlen].decode("latin-1"), headers=headers,
        client_ip=(client_ip or b"").decode())


cdef int build_rings(Upstream self) except -1:
    """The consistent-hash rings, from the servers' configured addresses."""
    cdef Py_ssize_t n = len(self.servers)
    names = [(<Server>s).address.encode("utf-8") for s in self.servers]
    cdef const char **ptrs = <const char **>calloc(n or 1, sizeof(char *))
    cdef size_t *lens = <size_t *>calloc(n or 1, sizeof(size_t))
    cdef Py_ssize_t i
    cdef bytes b
    try:
        if ptrs == NULL or lens == NULL:
            raise MemoryError()
        for i in range(n):
            b = names[i]
            ptrs[i] = b
            lens[i] = len(b)
        if fp_lb_build_rings(&self.lb, ptrs, lens) < 0:
            raise MemoryError()
    finally:
        free(ptrs)
        free(lens)
    return 0


cdef class Route:
    def __init__(self, int index, cfg, Upstream upstream, stats):
        self.index = index
        self.label = f"{cfg.host or '*'}{cfg.path_prefix}"
        self.stats_index = stats.route(self.label)
        host = (cfg.host or "").lower().rstrip(".")
        self.wildcard = host.startswith("*.")
        # IDNA refuses an empty first label, so encode the suffix without its dot
        self.host = (b"." + host[2:].encode("idna")) if self.wildcard else host.encode("idna")
        self.prefix = normalize_path(cfg.path_prefix.encode())  # compared with normalised paths
        self.upstream = upstream
        self.return_status = cfg.return_status or 0
        self.body = (cfg.body or "").encode()
        if cfg.redirect is not None:
            self.redirect_to = cfg.redirect.to.encode()
            self.redirect_status = cfg.redirect.status
            self.keep_query = cfg.redirect.keep_query
        else:
            self.redirect_to = b""
            self.redirect_status = 0
            self.keep_query = False
        self.websocket = cfg.websocket
        # checked again: an embedding program may build a RouteConfig itself
        ups = parse_upgrade_protocols(list(cfg.upgrade_protocols))
        self.upgrades = None if ups == ("*",) else frozenset(u.encode() for u in ups)
        self.req_rules = HeaderRules(cfg.request_headers)
        self.resp_rules = HeaderRules(cfg.response_headers)
        comp = getattr(cfg, "compression", None)
        self.compress = Policy(comp) if comp is not None and comp.active else None
        ck = getattr(cfg, "cache_key", None)
        self.cache = bool(getattr(cfg, "cache", False))
        self.cache_query = ck.query if ck is not None else True
        self.cache_headers = tuple(h.lower().encode() for h in ck.headers) if ck else ()
        self.x_cache = False
        self.cache_set_cookie = False
        self.heuristic_max = 86400
        self.lock_timeout = 5.0

    def _cache_options(self, cc):
        """[cache] options (Router): off without a [cache] section."""
        if cc is None:
            self.cache = False
            return
        self.x_cache = cc.x_cache_header
        self.cache_set_cookie = cc.store_set_cookie
        self.heuristic_max = int(cc.heuristic_max)
        self.lock_timeout = cc.lock_timeout


PATH_ERRORS = {FP_PATH_BAD_ESCAPE: "bad percent-escape", FP_PATH_NUL: "encoded NUL",
               FP_PATH_ABOVE_ROOT: "dot-segment above the root",
               FP_PATH_NOT_ABS: "not an absolute path"}


cdef bint upgrade_allowed(Route route, const char *p, const fp_head *h) except -1:
    """May the Upgrade request head p/h go through on this route (its
    upgrade_protocols)?  Every protocol it offers must be allowed, since the
    server picks among them; a name covers its versions (RFC 9110 7.8).
    Once per upgrade request: Python objects are fine here."""
    cdef int i
    cdef bint offered = False
    if route.upgrades is None:
        return True
    for i in range(h.num_headers):
        if h.headers[i].id != FP_H_UPGRADE:
            continue
        value = PyBytes_FromStringAndSize(p + h.headers[i].value.off, h.headers[i].value.len)
        for item in value.split(b","):
            name = item.strip(b" \t").split(b"/", 1)[0].lower()
            if name:
                if name not in route.upgrades:
                    return False
                offered = True
    return offered


cdef bytes normalize_path(bytes path):
    """The path routing matches on (csrc/fp_path.h); ValueError naming why
    when it cannot be made safe."""
    cdef char *out = <char *>malloc(len(path) + 1)
    cdef int64_t n
    if out == NULL:
        raise MemoryError()
    try:
        n = fp_normalize_path(path, len(path), out)
        if n < 0:
            raise ValueError(PATH_ERRORS[n])
        return PyBytes_FromStringAndSize(out, n)
    finally:
        free(out)


cdef Route longest_prefix(list routes, const char *path, size_t plen):
    cdef Route r
    for r in routes:                       # sorted longest prefix first
        if <size_t>len(r.prefix) <= plen and memcmp(<const char *>r.prefix, path,
                                                    len(r.prefix)) == 0:
            return r
    return None


def prefix_len(Route r):
    return -len(r.prefix)


cdef class Router:
    def __init__(self, config, index=None, policies=None):
        from fastproxy._stats import StatsIndex
        self.index = index if index is not None else StatsIndex()
        policies = policies or {}
        self.upstreams = {name: Upstream(u, self.index, policies.get(name))
                          for name, u in config.upstreams.items()}
        self.any_host = []
        self.exact = {}
        wild = {}
        for i, rc in enumerate(config.routes):
            r = Route(i, rc, self.upstreams.get(rc.upstream) if rc.upstream else None,
                      self.index)
            r._cache_options(getattr(config, "cache", None))
            if not r.host:
                self.any_host.append(r)
            elif r.wildcard:
                wild.setdefault(r.host, []).append(r)
            else:
                self.exact.setdefault(r.host, []).append(r)
        self.any_host.sort(key=prefix_len)   # stable: the first listed wins ties
        for lst in self.exact.values():
            lst.sort(key=prefix_len)
        for lst in wild.values():
            lst.sort(key=prefix_len)
        self.wildcards = sorted(wild.items(), key=lambda kv: -len(kv[0]))
        self.has_hosts = bool(self.exact or self.wildcards)

    cdef void attach_shared(self, const uint8_t *down, fp_peer *peers):
        cdef Upstream u
        for u in self.upstreams.values():
            u.attach_shared(down, peers)

    cdef Route match(self, const char *host, size_t hlen, const char *path, size_t plen):
        """Host tier first (exact, then the longest wildcard suffix, then any
        host), like nginx's server_name; then the longest path prefix."""
        cdef char low[MAX_HOST]
        cdef size_t i, n = 0
        cdef list routes
        if self.has_hosts and hlen:
            # lower-case, without the port; "[v6]:port" keeps its brackets
            for i in range(hlen):
                if host[i] == b':' and host[0] != b'[':
                    break
                if n == MAX_HOST:
                    break
                low[n] = host[i] | 0x20 if b'A' <= host[i] <= b'Z' else host[i]
                n += 1
            if n > 1 and low[n - 1] == b'.':
                n -= 1                      # "example.com." is "example.com"
            key = PyBytes_FromStringAndSize(low, n)
            routes = self.exact.get(key)
            if routes is not None:
                return longest_prefix(routes, path, plen)
            for suffix, routes in self.wildcards:
                if len(key) > len(suffix) and key.endswith(suffix):
                    return longest_prefix(routes, path, plen)
        return longest_prefix(self.any_host, path, plen)

    def match_py(self, bytes host, bytes path):
        """For tests: (upstream name or "routeN", prefix, host) of the route a
        host and normalised path meet."""
        r = self.match(host, len(host), path, len(path))
        if r is None:
            return None
        name = r.upstream.name if r.upstream is not None else f"route{r.index}"
        return (name, r.prefix.decode(), r.host.decode())
