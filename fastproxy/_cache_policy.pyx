# cython: language_level=3
"""A thin Python face on csrc/fp_cache_policy.c (RFC 9111 rules for a shared
cache), for tests and the control plane.  The data plane calls the C
functions directly."""

import time

from libc.stdint cimport int64_t

from fastproxy.fp_cache_policy cimport (
    FP_CC_INVALID,
    FP_CC_MAX_AGE,
    FP_CC_MAX_STALE,
    FP_CC_MIN_FRESH,
    FP_CC_MUST_REVALIDATE,
    FP_CC_MUST_UNDERSTAND,
    FP_CC_NO_CACHE,
    FP_CC_NO_STORE,
    FP_CC_NO_TRANSFORM,
    FP_CC_ONLY_IF_CACHED,
    FP_CC_PRIVATE,
    FP_CC_PROXY_REVALIDATE,
    FP_CC_PUBLIC,
    FP_CC_S_MAXAGE,
    FP_CC_SIE,
    FP_CC_SWR,
    fp_cc,
    fp_cc_init,
    fp_cc_parse,
    fp_current_age,
    fp_freshness_lifetime,
    fp_http_date,
    fp_status_heuristic,
    fp_storable,
    fp_store_query,
    fp_vary_key,
)

_FLAGS = (
    (FP_CC_NO_STORE, "no-store"),
    (FP_CC_NO_CACHE, "no-cache"),
    (FP_CC_PRIVATE, "private"),
    (FP_CC_PUBLIC, "public"),
    (FP_CC_MUST_REVALIDATE, "must-revalidate"),
    (FP_CC_PROXY_REVALIDATE, "proxy-revalidate"),
    (FP_CC_NO_TRANSFORM, "no-transform"),
    (FP_CC_ONLY_IF_CACHED, "only-if-cached"),
    (FP_CC_MUST_UNDERSTAND, "must-understand"),
    (FP_CC_INVALID, "invalid"),
)
_VALUES = (
    (FP_CC_MAX_AGE, "max-age"),
    (FP_CC_S_MAXAGE, "s-maxage"),
    (FP_CC_MAX_STALE, "max-stale"),
    (FP_CC_MIN_FRESH, "min-fresh"),
    (FP_CC_SWR, "stale-while-revalidate"),
    (FP_CC_SIE, "stale-if-error"),
)
NOT_STORABLE = ("", "method", "status", "no-store", "private", "authorization",
                "no-freshness", "set-cookie", "vary-star")
HEURISTIC_CAP = 86400


cdef fp_cc _parse(values):
    cdef fp_cc cc
    fp_cc_init(&cc)
    if isinstance(values, (bytes, str)):
        values = [values]
    for v in values:
        b = v.encode("latin-1") if isinstance(v, str) else v
        fp_cc_parse(&cc, <const char *>b, len(b))
    return cc


cdef int64_t _value(fp_cc *cc, int bit):
    if bit == FP_CC_MAX_AGE:
        return cc.max_age
    if bit == FP_CC_S_MAXAGE:
        return cc.s_maxage
    if bit == FP_CC_MAX_STALE:
        return cc.max_stale
    if bit == FP_CC_MIN_FRESH:
        return cc.min_fresh
    if bit == FP_CC_SWR:
        return cc.swr
    return cc.sie


def parse_cache_control(values):
    """Directives of one or several Cache-Control field values: a dict of the
    directives present; valued ones map to seconds (max-stale without a value
    to None), the others to True; "invalid" when a delta-seconds was not one."""
    cdef fp_cc cc = _parse(values)
    out = {}
    for bit, name in _FLAGS:
        if cc.flags & bit:
            out[name] = True
    for bit, name in _VALUES:
        if cc.flags & bit:
            v = _value(&cc, bit)
            out[name] = None if v < 0 else v
    return out


def parse_http_date(value, now=None):
    """Unix seconds, or None when value is no HTTP-date (RFC 9110 5.6.7)."""
    b = value.encode("latin-1") if isinstance(value, str) else value
    cdef int64_t n = int(time.time() if now is None else now)
    cdef int64_t r = fp_http_date(<const char *>b, len(b), n)
    return None if r < 0 else r


def heuristically_cacheable(int status):
    return fp_status_heuristic(status) != 0


def storable(int status, response_cc=(), request_cc=(), *, str method="GET",
             bint authorization=False, bint expires=False, bint set_cookie=False,
             bint allow_set_cookie=False, bint vary_star=False):
    """"" when a shared cache may store the response (RFC 9111 3), else the reason."""
    cdef fp_cc rs = _parse(response_cc)
    cdef fp_cc rq = _parse(request_cc)
    cdef fp_store_query q
    q.is_get = method == "GET"
    q.status = status
    q.req = &rq
    q.resp = &rs
    q.has_authorization = authorization
    q.has_expires = expires
    q.has_set_cookie = set_cookie
    q.allow_set_cookie = allow_set_cookie
    q.vary_star = vary_star
    return NOT_STORABLE[fp_storable(&q)]


def freshness_lifetime(int status, response_cc=(), *, date=None, expires=None,
                       bint expires_invalid=False, last_modified=None, response_time=0,
                       heuristic_cap=HEURISTIC_CAP):
    """Seconds (RFC 9111 4.2.1 / 4.2.2)."""
    cdef fp_cc cc = _parse(response_cc)
    return fp_freshness_lifetime(&cc, status, -1 if date is None else date,
                                 -2 if expires_invalid else (-1 if expires is None else expires),
                                 -1 if last_modified is None else last_modified,
                                 response_time, heuristic_cap)


def current_age(int64_t now, *, int64_t response_time, int64_t request_time, date=None,
                int64_t age_value=0):
    """Seconds (RFC 9111 4.2.3)."""
    return fp_current_age(age_value, -1 if date is None else date, request_time,
                          response_time, now)


def vary_key(vary, bytes head):
    """The secondary key of a request (raw head) under a response's Vary value(s)."""
    if isinstance(vary, (list, tuple)):
        vary = ",".join(vary)
    b = vary.encode("latin-1") if isinstance(vary, str) else vary
    return fp_vary_key(<const char *>b, len(b), <const char *>head, len(head))
