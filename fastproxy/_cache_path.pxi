# Included by _protocols.pyx.  The cache's request path (RFC 9111, shared
# cache; docs/cache.md "Request path"), the Cython half over csrc/fp_cache_path.c
# and the store (fastproxy._cache).  A hit is answered here without a Python
# call: key in a C buffer, two lookups, freshness and Age in C, one bytes
# object for transport.write (or, for a large body on a plain socket, the
# head by send and the body by sendfile from the region's memfd).  Hooks in
# _client.pxi / _upstream.pxi are one line each:
#   start_request  -> cache_request()      (may answer: HIT / STALE / 304 / 504)
#   read_head      -> cache_response_head() (X-Cache, storability, begin the store)
#   body written   -> cache_tap()           (append what the client got, de-chunked)
#   finish         -> cache_store_end()     (commit)
#   request_done / connection_lost -> cache_store_abort()

from libc.string cimport memcpy, strlen
from libc.time cimport time as c_time

from cpython.bytes cimport PyBytes_AS_STRING

from fastproxy._cache cimport CacheRegion, cache_begin, cache_commit, cache_abort
from fastproxy._cache cimport (
    cache_lookup, cache_lookup_copy, cache_note_sendfile, cache_ready_head, cache_release,
)
from fastproxy.fp_cache cimport (
    FP_CACHE_ANY_VARIANT, FP_CACHE_HIT, FP_CACHE_NOCOUNT, FP_CACHE_NOTOUCH, FP_CACHE_OK,
    FP_CACHE_SENDFILE_MIN,
    FP_FILL_OWNER, FP_FILL_WAIT, fp_cache_delete, fp_cache_fill_claim, fp_cache_fill_done,
    fp_cache_fill_pending, fp_cache_hash, fp_cache_hit, fp_cache_meta, fp_cache_purge_prefix,
    fp_cache_count, fp_cache_update_head,
)
from fastproxy.fp_cache_policy cimport (
    FP_CC_MUST_REVALIDATE, FP_CC_NO_CACHE, FP_CC_NO_STORE, FP_CC_ONLY_IF_CACHED, FP_CC_PRIVATE,
    FP_CC_PROXY_REVALIDATE,
    FP_CC_S_MAXAGE, FP_NS_OK, fp_cc, fp_current_age, fp_freshness_lifetime, fp_storable,
    fp_store_query,
)
from fastproxy.fp_cache_path cimport *

cdef extern from "fp_known_headers.h" nogil:
    enum:
        FP_H_LOCATION
        FP_H_CONTENT_LOCATION
        FP_H_IF_NONE_MATCH
        FP_H_IF_MODIFIED_SINCE
        FP_H_IF_MATCH
        FP_H_IF_UNMODIFIED_SINCE
        FP_H_IF_RANGE
        FP_H_RANGE
        FP_H_CACHE_CONTROL
        FP_H_PRAGMA
        FP_H_CONNECTION
        FP_H_KEEP_ALIVE
        FP_H_EXPECT
        FP_H_UPGRADE

from fastproxy import _cache as _cache_mod

cdef enum:                     # X-Cache values (XC_NONE: no header)
    XC_NONE = 0
    XC_HIT = 1
    XC_MISS = 2
    XC_STALE = 3
    XC_REVALIDATED = 4
    XC_BYPASS = 5


cdef inline const char *xc_name(int xc) noexcept:
    if xc == XC_HIT:
        return b"HIT"
    if xc == XC_MISS:
        return b"MISS"
    if xc == XC_STALE:
        return b"STALE"
    if xc == XC_REVALIDATED:
        return b"REVALIDATED"
    return b"BYPASS"

cdef CacheRegion CREGION = None  # this worker's region (fastproxy._cache.current())
cdef int CREGION_PID = 0


cdef inline CacheRegion cache_region():
    global CREGION, CREGION_PID
    if CREGION_PID != PID:      # once per process: workers attach after fork
        CREGION = _cache_mod.current()
        CREGION_PID = PID
    return CREGION


def use_cache_region(region):
    """Make `region` (attached; or None) the one this process's requests
    use: a worker's, inherited from the master, or an embedded Proxy's own."""
    global CREGION, CREGION_PID
    _cache_mod.set_current(region)
    CREGION = region
    CREGION_PID = PID


cdef inline char lower_c(char ch) noexcept:
    return ch + 32 if b'A' <= ch <= b'Z' else ch


cdef bint name_is(const char *p, fp_span s, bytes low) noexcept:
    cdef const char *lw = low
    cdef size_t i
    if s.len != <size_t>len(low):
        return False
    for i in range(s.len):
        if lower_c(p[s.off + i]) != lw[i]:
            return False
    return True


cdef int cache_key(ClientProtocol self, fp_wbuf *w, const char *p, const char *host, size_t hl,
                   const char *t, size_t tl, const char *q, bint extras) except -1:
    """The key (cache_admin's format): "GET " scheme "://" host target ["\\n" extras]."""
    cdef size_t n = tl
    cdef uint32_t j
    cdef Route route = self.route
    if q != NULL and not route.cache_query:
        n = q - t
    if fp_cpath_key(w, <const char *>self.proto, len(self.proto), host, hl, t, n):
        raise MemoryError()
    if not extras or not route.cache_headers:
        return 0
    for name in route.cache_headers:            # key extras: "\n" name ": " value
        for j in range(self.head.num_headers):
            f = self.head.headers[j]
            if name_is(p, f.name, <bytes>name):
                if fp_wbuf_put(w, b"\n", 1) or fp_wbuf_put(w, <const char *>name, len(name)) \
                        or fp_wbuf_put(w, b": ", 2) \
                        or fp_wbuf_put(w, p + f.value.off, f.value.len):
                    raise MemoryError()
    return 0


cdef bint cache_request(ClientProtocol self, const char *p, size_t head_len, const char *host,
                        size_t hl, const char *t, size_t tl, const char *q) except -1:
    """A request on a cache route, before any upstream.  True: answered
    from the cache (or 504 for only-if-cached).  False: go upstream; self.ckey
    is set when the response may be stored (or, for unsafe methods, when its
    success invalidates the URL, 4.4)."""
    cdef CacheRegion r = cache_region()
    cdef fp_cache_hit hit
    cdef int64_t now, age
    cdef uint64_t vh
    cdef int verdict
    cdef char vary[512]
    cdef size_t vn
    cdef int m = self.method_id
    cdef bint has_body = self.fr.kind == FP_BODY_CHUNKED or (
        self.fr.kind == FP_BODY_LENGTH and self.fr.length > 0)
    cdef bint nofill = self.cnofill
    if r is None:
        return False
    self.cnofill = False
    self.cxc = XC_BYPASS
    if hl == 0 or tl == 0 or t[0] != b'/':     # no Host, or an absolute/authority form
        return False
    if m != FP_M_GET and m != FP_M_HEAD and m != FP_M_OPTIONS and m != FP_M_TRACE:
        # 4.4: unsafe methods, "including methods whose safety is unknown"
        # (the safe ones are RFC 9110 9.2.1's four)
        cache_key(self, &self.wb, p, host, hl, t, tl, q, False)
        self.ckey = PyBytes_FromStringAndSize(self.wb.data, self.wb.len)
        self.cinval = True
        return False
    if (m != FP_M_GET and m != FP_M_HEAD) or has_body:
        return False
    cache_key(self, &self.wb, p, host, hl, t, tl, q, True)
    fp_cpath_read_request(p, &self.head, &self.creq, &self.chas_auth)
    if self.route.compress is not None:   # the coding picks the variant
        request_codings(<Policy>self.route.compress, p, &self.head, &self.enc_req)
    now = c_time(NULL)
    # Newest variant of the URL: no Vary (the common case) is the answer;
    # otherwise its Vary names the request fields of the secondary key (4.1).
    # A small entry comes copied (one lock), a larger one pinned (released below).
    if cache_lookup_copy(r, self.wb.data, self.wb.len, 0,
                         FP_CACHE_ANY_VARIANT | FP_CACHE_NOCOUNT, &hit) == FP_CACHE_HIT:
        if hit.meta.vary_hash != 0:
            vn = fp_cpath_field(<const char *>hit.head, hit.head_len, b"vary", 4, vary,
                                sizeof(vary))
            vh = fp_cpath_vary(vary, vn, p, head_len, self.route.compress is not None,
                               self.enc_req.choice) if vn < sizeof(vary) else 0
            if vh != hit.meta.vary_hash:
                cache_release(r, hit.pin)
                if vh == 0 or cache_lookup_copy(r, self.wb.data, self.wb.len, vh,
                                                FP_CACHE_NOCOUNT, &hit) != FP_CACHE_HIT:
                    return cache_miss(self, p, head_len, now, nofill)
        verdict = fp_cpath_judge(&hit.meta, &self.creq, now, &age)
        if verdict == FP_CP_FRESH:
            fp_cache_count(r.c, 1, 0)
            cache_serve(self, r, &hit, now, age, XC_HIT, head_len,
                        fp_cpath_not_modified(p, &self.head, &hit, now))
            return True
        if verdict == FP_CP_STALE_OK or verdict == FP_CP_SWR:
            # 4.2.4 / RFC 5861: stale, and allowed to be; within
            # stale-while-revalidate a refresh starts in the background (once)
            if verdict == FP_CP_SWR:
                cache_refresh(self, r, p)
            fp_cache_count(r.c, 1, 0)
            cache_serve(self, r, &hit, now, age, XC_STALE, head_len, False)
            return True
        cache_note_stale(self, &hit, p, age)
        cache_release(r, hit.pin)
    return cache_miss(self, p, head_len, now, nofill)


cdef bint cache_miss(ClientProtocol self, const char *p, size_t head_len,
                     int64_t now, bint nofill) except -1:
    if self.creq.flags & FP_CC_ONLY_IF_CACHED:
        # 5.2.1.7: nothing stored that may be used: 504
        fp_cache_count(CREGION.c, 0, 1)
        self.status = 504
        self.local(504, b"504 Gateway Timeout: not in the cache (only-if-cached)\n",
                   EMPTY, head_len)
        return True
    self.cxc = XC_MISS
    self.creq_time = now
    if not (self.creq.flags & FP_CC_NO_STORE):      # 5.2.1.5: the request forbids storing
        self.ckey = PyBytes_FromStringAndSize(self.wb.data, self.wb.len)
        self.creq_head = PyBytes_FromStringAndSize(p, head_len)
        if self.method_id == FP_M_GET and not nofill and cache_coalesce(self):
            return True         # waiting: counted when it runs again
    else:
        # nothing of the answer may be kept, so a 304 to our validators
        # could refresh nothing: ask for the whole response
        self.cvalidators = None
    fp_cache_count(CREGION.c, 0, 1)
    return False


DEF FILL_POLL = 0.003          # seconds between looks at a fill in progress

# Fills in progress in this worker: the shared claims are per process, so
# requests of one worker coalesce here first.
cdef dict LOCAL_FILLS = {}


cdef inline int64_t mono_ms() noexcept:
    return <int64_t>(monotonic() * 1000)


cdef bint cache_coalesce(ClientProtocol self) except -1:
    """Request coalescing: one request per key, in any worker, fetches it (the
    fill claim's owner); the others wait for its result (True: waiting)."""
    cdef CacheRegion r = CREGION
    cdef int64_t deadline = 0
    cdef uint64_t h = fp_cache_hash(<const char *>self.ckey, len(self.ckey))
    cdef int rc = FP_FILL_WAIT
    if h not in LOCAL_FILLS:
        rc = fp_cache_fill_claim(r.c, h, PID, mono_ms(),
                                 <int64_t>(self.route.lock_timeout * 1000), &deadline)
    if rc == FP_FILL_OWNER:
        self.cfill = h
        LOCAL_FILLS[h] = True
        return False
    if rc != FP_FILL_WAIT:
        return False            # no room in the claim table: fetch it ourselves
    # Wait with the request unconsumed in the buffer; when the fill is over
    # the request is parsed again and finds the stored response (or, if the
    # owner did not store one, goes upstream without waiting again).
    self.state = C_WAIT
    self.cwaitfor = h
    self.cwait_until = monotonic() + self.route.lock_timeout
    self.requests -= 1          # counted again when it runs
    self.rt.requests_total -= 1
    self.ckey = self.creq_head = None
    self.rt.loop.call_later(FILL_POLL, _cache_poll, self)
    return True


def _cache_poll(ClientProtocol c):
    cdef CacheRegion r = CREGION
    cdef uint64_t h = c.cwaitfor
    if c.closed or c.state != C_WAIT or h == 0:
        return
    if (h in LOCAL_FILLS or fp_cache_fill_pending(r.c, h, mono_ms())) \
            and monotonic() < c.cwait_until:
        c.rt.loop.call_later(FILL_POLL, _cache_poll, c)
        return
    c.cwaitfor = 0
    c.cnofill = True
    c.state = C_HEAD
    c.process()


cdef void cache_fill_done(ClientProtocol c) noexcept:
    """The owner's fill is over (stored or not): waiters may look again."""
    if c.cfill:
        fp_cache_fill_done(CREGION.c, c.cfill, PID)
        LOCAL_FILLS.pop(c.cfill, None)
        c.cfill = 0


cdef bint cache_send_direct(ClientProtocol self, CacheRegion r, fp_cache_hit *hit,
                            size_t body_len, int64_t now) except -1:
    """Send the head in self.wb and body_len bytes of the hit's body on the
    socket itself.  A page-laid body goes by sendfile from the region's
    memfd: with its ready head in front, head and body are one sendfile
    (keep-alive answers: a closing one wants its FIN riding with the last
    bytes, which only sendmsg's MSG_MORE gives); otherwise, from 24 KiB, the
    head by send and the body by sendfile.  The rest goes in one sendmsg
    straight from the pinned region (or a small hit's copy).  What the
    socket does not take is copied into the transport.  False: not
    possible here, nothing sent."""
    cdef int sock = self.direct_fd()
    cdef size_t sent, total = self.wb.len + body_len
    if sock < 0:
        return False
    if body_len and hit.file_off >= 0 and r.fd >= 0 and self.keep_alive and \
            cache_ready_head(r, hit, self.wb.data, self.wb.len, now):
        cache_note_sendfile(r, hit)
        sent = fp_cpath_send_file(sock, NULL, 0, r.fd, hit.file_off - <int64_t>self.wb.len,
                                  total)
    elif body_len >= FP_CACHE_SENDFILE_MIN and hit.file_off >= 0 and r.fd >= 0:
        cache_note_sendfile(r, hit)     # from now on its pages are dropped when freed
        sent = fp_cpath_send_file(sock, self.wb.data, self.wb.len, r.fd, hit.file_off,
                                  body_len)
    else:
        sent = fp_sock_send(sock, self.wb.data, self.wb.len, <const char *>hit.body, body_len,
                            not self.keep_alive and self.fin_follows())
    self.bytes_out += sent
    self.rt.st.bytes_out += sent
    if sent < total:
        self.write(hit_bytes(self, hit, body_len, sent))
    return True


cdef bytes hit_bytes(ClientProtocol self, fp_cache_hit *hit, size_t body_len, size_t skip):
    """(the head in self.wb + body_len bytes of body)[skip:] as one bytes
    object: the copy path's whole answer (skip 0), or what a socket did not
    take of a direct send."""
    cdef size_t hl = self.wb.len, total = hl + body_len
    cdef bytes out = PyBytes_FromStringAndSize(NULL, total - skip)
    cdef char *p = PyBytes_AS_STRING(out)
    if skip < hl:
        memcpy(p, self.wb.data + skip, hl - skip)
        memcpy(p + hl - skip, hit.body, body_len)
    else:
        memcpy(p, hit.body + (skip - hl), total - skip)
    return out


cdef cache_serve(ClientProtocol self, CacheRegion r, fp_cache_hit *hit, int64_t now,
                 int64_t age, int xc, size_t head_len, bint not_modified):
    """Answer from a pinned or copied entry: head from C, then written to
    the socket directly (cache_send_direct), or, behind queued bytes or on TLS, copied
    once into the bytes object handed to transport.write."""
    global ANSWERED_IN_READ
    cdef bint close = not self.keep_alive
    cdef bint head_only = self.method_id == FP_M_HEAD
    cdef const char *xn = xc_name(xc) if self.route.x_cache else NULL
    cdef int rc
    cdef size_t body_len = hit.body_len
    cdef bytes out = None
    self.start += head_len
    self.wb.len = 0
    if not_modified:            # RFC 9110 13.1: the client's copy is current
        self.status = 304
        rc = fp_cpath_write_304(&self.wb, hit, age, xn, close, self.minor)
    else:
        self.status = hit.meta.status
        rc = fp_cpath_write_hit(&self.wb, hit, age, xn, close, self.minor, 1)
    if rc != 0:
        cache_release(r, hit.pin)
        raise MemoryError()
    if not_modified or head_only or hit.meta.status == 204 or hit.meta.status == 304:
        body_len = 0
    try:
        if not cache_send_direct(self, r, hit, body_len, now):
            out = hit_bytes(self, hit, body_len, 0)
    finally:                    # a pin left behind would keep the entry forever
        cache_release(r, hit.pin)
    if out is not None:
        self.write(out)
    self.request_done()
    if close:
        self.close()
    else:
        if xc == XC_HIT and out is None and self.tq_empty:
            ANSWERED_IN_READ += 1   # all sent here: the read loop may ask its set again
        self.state = C_HEAD
        self.reset_request()
        self.set_deadline(T_IDLE, self.rt.keepalive_timeout)


cdef int add_xcache(fp_wbuf *out, size_t hs, int xc) except -1:
    """X-Cache into the serialised head at out[hs:] (before its blank line)."""
    cdef const char *name = xc_name(xc)
    if out.len < hs + 4 or out.data[out.len - 4] != b'\r' or out.data[out.len - 3] != b'\n':
        return 0                # head held back (decoding): no header
    out.len -= 2
    if fp_wbuf_put(out, b"X-Cache: ", 9) or fp_wbuf_put(out, name, strlen(name)) \
            or fp_wbuf_put(out, b"\r\n\r\n", 4):
        raise MemoryError()
    return 0


cdef cache_invalidate(CacheRegion r, bytes key):
    """Every entry of a URL: all variants and all key extras (cache_admin)."""
    fp_cache_delete(r.c, <const char *>key, len(key))
    k = key + b"\n"
    fp_cache_purge_prefix(r.c, <const char *>k, len(k))


cdef cache_response_head(ClientProtocol c, UpstreamProtocol u, const char *p, size_t hs):
    """The response head is in u.out[hs:]: X-Cache, invalidation (4.4) and,
    when storable (3), the start of the store."""
    cdef CacheRegion r = cache_region()
    cdef fp_cpath_resp resp
    cdef fp_store_query q
    cdef fp_cache_meta meta
    cdef int64_t now
    cdef char vary[512]
    cdef size_t vn
    cdef int status = u.head.status
    if c.cxc == XC_NONE or r is None:
        return
    c.cmark_head = hs
    if status == 304 and c.cvalidators is not None:
        if c.ckey is not None and cache_revalidated(c, u, r, p):
            c.ckey = None
            cache_fill_done(c)
        else:
            u.out.len = hs      # never to the client, who asked unconditionally
            c.crefetch = True   # the whole response once this 304 is read (finish)
        return
    if status >= 500 and c.csie and u.out.len > hs:
        end = u.out.len
        u.out.len = hs          # stale-if-error: the stored response instead of the 5xx
        if cache_stale_hit(c, &u.out, u.close_client):
            u.cdiscard = True   # its body is read and dropped
            u.tx = None
            u.out_kind = FP_BODY_LENGTH
            cache_store_abort(c)
            return
        u.out.len = end         # the entry is gone: the 5xx goes through
        c.csie = False
    if c.route.x_cache:
        add_xcache(&u.out, hs, c.cxc)
    if c.ckey is None:
        return
    if c.cinval:
        # 4.4: a non-error response to an unsafe method invalidates the target
        # URI and Location / Content-Location on the same host.
        if status < 400:
            cache_invalidate(r, c.ckey)
            cache_invalidate_locations(c, r, p, &u.head)
        c.ckey = None
        return
    if c.method_id != FP_M_GET or u.out.len <= hs or c.cstoring:
        c.ckey = None           # HEAD is served from a stored GET, never stored itself
        cache_fill_done(c)
        return
    now = c_time(NULL)
    fp_cpath_read_response(p, &u.head, now, &resp)
    q.is_get = 1
    q.status = status
    q.req = &c.creq
    q.resp = &resp.cc
    q.has_authorization = c.chas_auth
    q.has_expires = resp.has_expires
    q.has_set_cookie = resp.has_set_cookie
    q.allow_set_cookie = c.route.cache_set_cookie
    q.vary_star = resp.vary_star
    if fp_storable(&q) != FP_NS_OK or resp.vary_len >= sizeof(resp.vary) \
            or (u.tx is not None and u.tx.upstream_coding != 0):
        c.ckey = None
        cache_fill_done(c)      # not storable: the waiters fetch it themselves
        return
    meta.status = status
    meta_from(&meta, &resp, resp.age, c.creq_time, now, c.route.heuristic_max)
    # The head as sent (compression may have added Vary: Accept-Encoding),
    # without its framing; the Vary hash from that head and the request's.
    c.wb.len = 0
    if fp_cpath_stored_head(&c.wb, u.out.data + hs, u.out.len - hs) != 0:
        raise MemoryError()
    vn = fp_cpath_field(c.wb.data, c.wb.len, b"vary", 4, vary, sizeof(vary))
    if vn >= sizeof(vary):
        c.ckey = None
        cache_fill_done(c)
        return
    meta.vary_hash = fp_cpath_vary(vary, vn, <const char *>c.creq_head, len(c.creq_head),
                                   c.route.compress is not None,
                                   c.enc_req.choice) if vn else 0
    if cache_begin(r, <const char *>c.ckey, len(c.ckey), c.wb.data, c.wb.len, &meta,
                   u.fr.length if u.fr.kind == FP_BODY_LENGTH and u.tx is None else 0,
                   &c.cput) == FP_CACHE_OK:
        c.cstoring = True
        u.cmark = u.out.len
    else:
        c.ckey = None
        cache_fill_done(c)


cdef void meta_from(fp_cache_meta *m, const fp_cpath_resp *r, int64_t age,
                    int64_t request_time, int64_t now, int64_t heuristic_max) noexcept:
    """What an entry's meta keeps of a response head (m.status set already):
    its times, validators and freshness (4.2.1), with `age` its received
    Age; a head without Date is dated when received (RFC 9110 6.6.1)."""
    m.request_time = request_time
    m.response_time = now
    m.date = r.date if r.date >= 0 else now
    m.expires = r.expires
    m.last_modified = r.last_modified
    m.age_value = age
    m.freshness = fp_freshness_lifetime(&r.cc, m.status, m.date, r.expires, r.last_modified,
                                        now, heuristic_max)
    m.swr = r.cc.swr
    m.sie = r.cc.sie
    m.flags = r.cc.flags | (FP_CP_HAS_VALIDATOR if r.has_validator else 0)


cdef cache_invalidate_locations(ClientProtocol c, CacheRegion r, const char *p,
                                const fp_head *h):
    """4.4: Location and Content-Location on the same origin: a path, an
    absolute URL (scheme, host and port as the request's) or a
    scheme-relative one.  A URL with a query also takes the entry without
    it, since the route that stores that path may key it without the query
    (cache_key.query = false); removing one entry too many costs a miss."""
    cdef uint32_t i
    cdef bytes base = c.ckey                    # "GET scheme://host/path..."
    cdef Py_ssize_t sep = base.find(b"://")
    cdef Py_ssize_t slash = base.find(b"/", sep + 3)
    cdef bytes origin = base[:slash] if slash > 0 else base
    cdef bytes olow = origin.lower()
    for i in range(h.num_headers):
        f = h.headers[i]
        if f.id != FP_H_LOCATION and f.id != FP_H_CONTENT_LOCATION:
            continue
        v = p[f.value.off:f.value.off + f.value.len].partition(b"#")[0]
        if v.startswith(b"//"):                 # scheme-relative: the request's scheme
            v = base[4:sep + 1] + v
        if v.startswith(b"/"):
            path = v
        elif b"://" in v:
            full = b"GET " + v
            path = full[len(origin):]
            # same origin: the host and port end right there (not host.evil, host:81)
            if not full.lower().startswith(olow) or path[:1] not in (b"/", b"?", b""):
                continue
            if path[:1] != b"/":
                path = b"/" + path              # http://host?q is /?q
        else:
            continue                            # relative references are not resolved
        cache_invalidate(r, origin + path)
        if b"?" in path:
            cache_invalidate(r, origin + path.partition(b"?")[0])


cdef inline int cache_tap(ClientProtocol c, UpstreamProtocol u) except -1:
    """Append the body bytes in u.out[u.cmark:] (as the client gets them) to
    the store in progress; over max_entry_size or on error the store is dropped."""
    cdef CacheRegion r
    if c.cstoring and u.out.len > u.cmark:
        r = cache_region()
        if fp_cpath_append(r.c, &c.cput, u.out.data + u.cmark, u.out.len - u.cmark,
                           u.out_kind == FP_BODY_CHUNKED) != FP_CACHE_OK:
            cache_store_abort(c)
    u.cmark = 0
    return 0


cdef cache_store_end(ClientProtocol c):
    """The response is complete: the entry becomes visible."""
    if c.cstoring:
        c.cstoring = False
        cache_commit(cache_region(), &c.cput)
    c.ckey = None
    cache_fill_done(c)


cdef void cache_store_abort(ClientProtocol c) noexcept:
    if c.cstoring:
        c.cstoring = False
        cache_abort(CREGION, &c.cput)
    c.ckey = None
    cache_fill_done(c)
