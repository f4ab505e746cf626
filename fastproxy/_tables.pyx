# cython: language_level=3
"""Route and upstream tables compiled from a Config (see _tables.pxd)."""

from cpython.bytes cimport PyBytes_FromStringAndSize
from libc.stdlib cimport free, malloc
from libc.stdint cimport int64_t
from libc.string cimport memcmp

from fastproxy.fp_http1 cimport fp_head
from fastproxy.fp_path cimport fp_normalize_path

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
    def __init__(self, str host, int port, int weight=1, int stats_index=0):
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


cdef class Upstream:
    def __init__(self, cfg, index):
        self.name = cfg.name
        # Weighted round-robin for now: a server of weight w appears w times,
        # interleaved. The load-balancing work replaces pick() wholesale.
        servers = [Server(s.address.host, s.address.port, s.weight,
                          index.server(cfg.name, str(s.address)))
                   for s in cfg.servers if not s.backup]
        order = []
        top = max([s.weight for s in servers] or [0])
        for round_ in range(top):
            order += [s for s in servers if s.weight > round_]
        self.servers = order
        self.n = len(order)
        self.rr = 0
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

    cdef Server pick(self, const char *buf, const fp_head *h, bytes client_ip,
                     const char *target, size_t tlen):
        if self.n == 0:
            return None
        self.rr += 1
        return <Server>self.servers[self.rr % self.n]

    def unique_servers(self):
        seen = {}
        for s in self.servers:
            seen.setdefault(id(s), s)
        return list(seen.values())


cdef class Route:
    def __init__(self, int index, cfg, Upstream upstream, stats):
        self.index = index
        self.label = f"{cfg.host or '*'}{cfg.path_prefix}"
        self.stats_index = stats.route(self.label)
        host = (cfg.host or "").lower().rstrip(".")
        self.wildcard = host.startswith("*.")
        # IDNA refuses an empty first label, so encode the suffix without its dot
        self.host = (b"." + host[2:].encode("idna")) if self.wildcard else host.encode("idna")
        self.prefix = normalized_prefix(cfg.path_prefix.encode())
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
        self.req_rules = HeaderRules(cfg.request_headers)
        self.resp_rules = HeaderRules(cfg.response_headers)


cdef bytes normalized_prefix(bytes prefix):
    """Prefixes are compared with normalised paths, so normalise them too."""
    cdef char *out = <char *>malloc(len(prefix) + 1)
    cdef int64_t n
    if out == NULL:
        raise MemoryError()
    try:
        n = fp_normalize_path(prefix, len(prefix), out)
        if n < 0:
            raise ValueError(f"path_prefix {prefix!r} cannot be normalised")
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
    def __init__(self, config, index=None):
        from fastproxy._stats import StatsIndex
        self.index = index if index is not None else StatsIndex()
        self.upstreams = {name: Upstream(u, self.index) for name, u in config.upstreams.items()}
        self.any_host = []
        self.exact = {}
        wild = {}
        for i, rc in enumerate(config.routes):
            r = Route(i, rc, self.upstreams.get(rc.upstream) if rc.upstream else None,
                      self.index)
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
