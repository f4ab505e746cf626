# cython: language_level=3
"""Python view of csrc/fp_rewrite.c and csrc/fp_path.c, for tests, tools and
the micro-benchmarks.  The data plane calls the C directly."""

from cpython.bytes cimport PyBytes_FromStringAndSize
from libc.stdint cimport int64_t

from posix.time cimport CLOCK_MONOTONIC, clock_gettime, timespec

from fastproxy._tables cimport HeaderRules, Server, Upstream
from fastproxy._tables cimport normalize_path as _normalize_path
from fastproxy.fp_http1 cimport *
from fastproxy.fp_rewrite cimport *

DEF SLOTS = 256


class _Rules:
    def __init__(self, set=(), add=(), remove=()):
        self.set = tuple(set)
        self.add = tuple(add)
        self.remove = tuple(remove)


def normalize_path(bytes path):
    """The path routing matches on; ValueError when it can't be made safe."""
    return _normalize_path(path)


cdef fp_str S(bytes b):
    cdef fp_str s
    s.p = b
    s.n = len(b)
    return s


cdef int parse_for_rewrite(bytes raw, bint request, int method, fp_head *h,
                           fp_header *slots, fp_framing *fr) except -1:
    """Parse a whole head into `slots` and frame it; ValueError when invalid."""
    cdef fp_limits lim
    cdef int64_t rc
    lim.max_line = 65536
    lim.max_head = 1 << 20
    lim.max_headers = SLOTS
    h.headers = slots
    h.max_slots = SLOTS
    if request:
        rc = fp_parse_request(raw, len(raw), h, &lim, NULL)
    else:
        rc = fp_parse_response(raw, len(raw), h, &lim, NULL)
    if rc < 0:
        raise ValueError(fp_error_name(<int>rc).decode())
    rc = fp_request_framing(raw, h, fr) if request else fp_response_framing(raw, h, method, fr)
    if rc != 0:
        raise ValueError("bad framing")
    return 0


def rewrite_request(bytes raw, *, bytes client_ip=b"127.0.0.1", bint trusted=False,
                    bint xff_replace=False, bint x_forwarded=True, bint forwarded=False,
                    bint via=False, bytes via_name=b"fastproxy", host=None, target=None,
                    bytes proto=b"http", set=(), add=(), remove=(), bint upgrade=False):
    """Parse `raw` as a request head and return what fastproxy sends upstream."""
    cdef fp_header slots[SLOTS]
    cdef fp_head h
    cdef fp_framing fr
    cdef fp_req_rw rw
    cdef fp_wbuf out
    parse_for_rewrite(raw, True, FP_M_OTHER, &h, slots, &fr)
    orig_host = raw[h.headers[h.host_index].value.off:h.headers[h.host_index].value.off
                    + h.headers[h.host_index].value.len] if h.host_index >= 0 else b""
    host_b = orig_host if host is None else host
    target_b = raw[h.target.off:h.target.off + h.target.len] if target is None else target
    via_b = b"1.1 " + via_name
    rules = HeaderRules(_Rules(set, add, remove))
    rw.flags = ((FP_RW_X_FORWARDED if x_forwarded else 0) | (FP_RW_TRUSTED if trusted else 0)
                | (FP_RW_XFF_REPLACE if xff_replace else 0)
                | (FP_RW_FORWARDED if forwarded else 0) | (FP_RW_VIA if via else 0)
                | (FP_RW_UPGRADE if upgrade else 0))
    rw.target = S(target_b)
    rw.host = S(host_b)
    rw.orig_host = S(orig_host)
    rw.client_ip = S(client_ip)
    rw.proto = S(proto)
    rw.via = S(via_b)
    rw.body_kind = FP_BODY_LENGTH if (fr.flags & FP_F_HAS_CL) else fr.kind
    rw.length = fr.length
    rw.rules = NULL if rules.empty else &rules.rules
    rw.conn_rules = NULL
    out.data = NULL
    out.len = out.cap = 0
    try:
        if fp_rewrite_request(&out, raw, &h, &rw) != 0:
            raise MemoryError()
        return PyBytes_FromStringAndSize(out.data, out.len)
    finally:
        fp_wbuf_free(&out)


def rewrite_response(bytes raw, *, bytes request_method=b"GET", int client_minor=1,
                     bint close=False, bint via=False, bytes via_name=b"fastproxy",
                     set=(), add=(), remove=(), bint date=False):
    """Parse `raw` as a response head and return what fastproxy sends the client
    (date: add Date when it has none, as the proxy does; off by default so
    that outputs stay byte-exact)."""
    cdef fp_header slots[SLOTS]
    cdef fp_head h
    cdef fp_framing fr
    cdef fp_resp_rw rw
    cdef fp_wbuf out
    m = {b"HEAD": FP_M_HEAD, b"GET": FP_M_GET}.get(request_method, FP_M_OTHER)
    parse_for_rewrite(raw, False, m, &h, slots, &fr)
    via_b = b"1.1 " + via_name
    rules = HeaderRules(_Rules(set, add, remove))
    rw.flags = (FP_RW_CLOSE if close else 0) | (FP_RW_VIA if via else 0) \
        | (FP_RW_DATE if date else 0)
    rw.client_minor = client_minor
    kind = fr.kind
    if kind == FP_BODY_CHUNKED or kind == FP_BODY_UNTIL_CLOSE:
        kind = FP_BODY_CHUNKED if client_minor == 1 else FP_BODY_UNTIL_CLOSE
    rw.body_kind = kind
    rw.length = fr.length
    rw.via = S(via_b)
    rw.rules = NULL if rules.empty else &rules.rules
    rw.conn_rules = NULL
    out.data = NULL
    out.len = out.cap = 0
    try:
        if fp_rewrite_response(&out, raw, &h, &rw) != 0:
            raise MemoryError()
        return PyBytes_FromStringAndSize(out.data, out.len)
    finally:
        fp_wbuf_free(&out)


# ---- timing loops for bench/ (the C work alone, no Python per iteration) ----

cdef double now_ns() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return ts.tv_sec * 1e9 + ts.tv_nsec


def time_rewrite_request(bytes raw, int n, set=(), bint via=True):
    """Nanoseconds per fp_rewrite_request of an already-parsed head into a
    reused buffer (what the data plane does per request), over n runs."""
    cdef fp_header slots[SLOTS]
    cdef fp_head h
    cdef fp_framing fr
    cdef fp_req_rw rw
    cdef fp_wbuf out
    cdef int _i
    cdef double t0
    parse_for_rewrite(raw, True, FP_M_OTHER, &h, slots, &fr)
    rules = HeaderRules(_Rules(set, (), ()))
    host = raw[h.headers[h.host_index].value.off:h.headers[h.host_index].value.off
               + h.headers[h.host_index].value.len]
    target = raw[h.target.off:h.target.off + h.target.len]
    ip, proto, via_b = b"127.0.0.1", b"http", b"1.1 fastproxy"
    rw.flags = FP_RW_X_FORWARDED | (FP_RW_VIA if via else 0)
    rw.target = S(target)
    rw.host = S(host)
    rw.orig_host = S(host)
    rw.client_ip = S(ip)
    rw.proto = S(proto)
    rw.via = S(via_b)
    rw.body_kind = fr.kind
    rw.length = fr.length
    rw.rules = NULL if rules.empty else &rules.rules
    rw.conn_rules = NULL
    out.data = NULL
    out.len = out.cap = 0
    try:
        t0 = now_ns()
        for _i in range(n):
            out.len = 0
            if fp_rewrite_request(&out, raw, &h, &rw) != 0:
                raise MemoryError()
        return (now_ns() - t0) / n
    finally:
        fp_wbuf_free(&out)


def time_pick(Upstream upstream, bytes client_ip, bytes raw, int n):
    """Nanoseconds per Upstream.pick for an already-parsed head, over n runs."""
    cdef fp_header slots[SLOTS]
    cdef fp_head h
    cdef fp_framing fr
    cdef int _i
    cdef double t0
    cdef Server _picked
    parse_for_rewrite(raw, True, FP_M_OTHER, &h, slots, &fr)
    target = raw[h.target.off:h.target.off + h.target.len]
    t0 = now_ns()
    for _i in range(n):
        _picked = upstream.pick(raw, &h, client_ip, target, len(target))
    return (now_ns() - t0) / n
