# Included by _protocols.pyx after _cache_path.pxi (whose cimports it uses): a stored
# response gone stale -- validating it with the origin (RFC 9111 4.3): the 304 that
# refreshes it or the request sent again whole; serving it on errors (stale-if-error,
# RFC 5861 4); and the one background refresh of stale-while-revalidate (RFC 5861 3).


# ---- stale entries: validation (4.3) and stale-if-error (RFC 5861 4) -------------------

cdef cache_note_stale(ClientProtocol self, fp_cache_hit *hit, const char *p, int64_t age):
    """A stored response too stale to serve: remember it, to validate it with
    the origin (4.3.1) and to fall back on it on errors (stale-if-error)."""
    cdef char v[512]
    cdef size_t n
    cdef uint32_t i
    self.cmeta = hit.meta
    self.cvary = hit.meta.vary_hash
    # 4.2.4: never stale against no-cache, must-revalidate, proxy-revalidate
    # or s-maxage, stale-if-error included
    self.csie = hit.meta.sie >= 0 and age - hit.meta.freshness <= hit.meta.sie \
        and not (hit.meta.flags & (FP_CC_NO_CACHE | FP_CC_MUST_REVALIDATE
                                   | FP_CC_PROXY_REVALIDATE | FP_CC_S_MAXAGE))
    if not (hit.meta.flags & FP_CP_HAS_VALIDATOR):
        return
    for i in range(self.head.num_headers):      # the client's own conditionals win
        if self.head.headers[i].id == FP_H_IF_NONE_MATCH \
                or self.head.headers[i].id == FP_H_IF_MODIFIED_SINCE:
            return
    out = b""
    n = fp_cpath_field(<const char *>hit.head, hit.head_len, b"etag", 4, v, sizeof(v))
    if 0 < n < sizeof(v):
        out += b"If-None-Match: " + v[:n] + b"\r\n"
    n = fp_cpath_field(<const char *>hit.head, hit.head_len, b"last-modified", 13, v, sizeof(v))
    if 0 < n < sizeof(v):
        out += b"If-Modified-Since: " + v[:n] + b"\r\n"
    if out:
        self.cvalidators = out


cdef int cache_add_validators(ClientProtocol self) except -1:
    """Into the rewritten request head in self.wb (a GET: no body follows)."""
    if self.wb.len < 4 or self.wb.data[self.wb.len - 3] != b'\n':
        return 0
    self.wb.len -= 2
    if fp_wbuf_put(&self.wb, <const char *>self.cvalidators, len(self.cvalidators)) \
            or fp_wbuf_put(&self.wb, b"\r\n", 2):
        raise MemoryError()
    return 0


cdef bint cache_revalidated(ClientProtocol c, UpstreamProtocol u, CacheRegion r,
                            const char *p) except -1:
    """The origin answered our validation with 304 (4.3.3, 4.3.4): refresh the
    stored head and send the stored response (REVALIDATED) in place of the 304,
    which is in u.out[hs:].  False: nothing it may refresh -- the entry went
    meanwhile, or the 304 names another representation -- and the caller
    fetches the whole response instead."""
    cdef fp_cache_hit hit, sent
    cdef fp_cpath_resp resp, now_says
    cdef fp_cache_meta meta
    cdef int64_t now = c_time(NULL), age
    cdef size_t hs = c.cmark_head, merged
    cdef const char *fresh = u.out.data + hs
    cdef size_t fn = u.out.len - hs
    cdef bint keep_cookies = c.route.cache_set_cookie
    cdef int rc
    if cache_lookup(r, <const char *>c.ckey, len(c.ckey), c.cvary, FP_CACHE_NOCOUNT,
                    &hit) != FP_CACHE_HIT:
        return False
    if not fp_cpath_304_selects(<const char *>hit.head, hit.head_len, fresh, fn):
        cache_release(r, hit.pin)
        return False
    try:
        # the updated head, then (for this client only) the 304's Set-Cookie
        # when the cache may not keep it
        c.wb.len = 0
        if fp_cpath_merge_304(&c.wb, <const char *>hit.head, hit.head_len, fresh, fn,
                              keep_cookies) != 0:
            raise MemoryError()
        merged = c.wb.len
        if not keep_cookies and fp_cpath_put_fields(&c.wb, fresh, fn, b"set-cookie", 10) != 0:
            raise MemoryError()
        # 4.3.4: the updated head is the stored response now, freshness and
        # directives included (the 304's Age is this exchange's)
        fp_cpath_read_response(p, &u.head, now, &resp)
        fp_cpath_read_stored(c.wb.data, merged, now, &now_says)
        meta = hit.meta
        meta_from(&meta, &now_says, resp.age, c.creq_time, now, c.route.heuristic_max)
        sent = hit
        sent.head = <const uint8_t *>c.wb.data
        sent.head_len = c.wb.len
        sent.meta = meta
        age = fp_current_age(meta.age_value, meta.date, meta.request_time,
                             meta.response_time, now)
        u.out.len = hs
        rc = fp_cpath_write_hit(&u.out, &sent, age, xc_name(XC_REVALIDATED) if c.route.x_cache
                                else NULL, u.close_client, c.minor, c.method_id == FP_M_HEAD)
        if rc != 0:
            raise MemoryError()
        c.status = meta.status
        if now_says.cc.flags & (FP_CC_NO_STORE | FP_CC_PRIVATE):
            cache_invalidate(r, c.ckey)     # 3: the refreshed response may not be kept
        else:
            fp_cache_update_head(r.c, r.slot, <const char *>c.ckey, len(c.ckey), c.cvary,
                                 c.wb.data, merged, &meta)
    finally:
        cache_release(r, hit.pin)
    return True


cdef int cache_refetch(ClientProtocol c) except -1:
    """Our validation's 304 refreshed nothing (cache_revalidated is False) and
    the client asked unconditionally: the request again without our
    validators, for the whole response, stored as a miss would be."""
    cdef bytes tail = c.cvalidators + b"\r\n"
    if c.pending is None or not c.pending.endswith(tail):
        c.upstream_failed(502, "the origin's 304 refreshes no stored response")
        return 0
    c.pending = c.pending[:len(c.pending) - len(tail)] + b"\r\n"
    c.cvalidators = None
    c.cxc = XC_MISS
    c.csie = False
    c.response_started = False
    c.status = 0
    c.rt.error(c.peer, c.route.label, c.server.address,
               "the origin's 304 refreshes no stored response (4.3.4); fetching it whole")
    c.retried = False
    c.take_server()
    send_upstream(c)
    return 0


cdef bint cache_stale_hit(ClientProtocol c, fp_wbuf *out, bint close) except -1:
    """stale-if-error: write the remembered stale response into out."""
    cdef CacheRegion r = CREGION
    cdef fp_cache_hit hit
    cdef int64_t age
    if c.ckey is None or cache_lookup(r, <const char *>c.ckey, len(c.ckey), c.cvary,
                                      FP_CACHE_NOCOUNT, &hit) != FP_CACHE_HIT:
        return False
    age = fp_current_age(hit.meta.age_value, hit.meta.date, hit.meta.request_time,
                         hit.meta.response_time, c_time(NULL))
    rc = fp_cpath_write_hit(out, &hit, age, xc_name(XC_STALE) if c.route.x_cache else NULL,
                            close, c.minor, c.method_id == FP_M_HEAD)
    c.status = hit.meta.status
    cache_release(r, hit.pin)
    if rc != 0:
        raise MemoryError()
    return True


cdef bint cache_stale_on_error(ClientProtocol c) except -1:
    """The origin could not be reached (or timed out): serve stale if allowed."""
    if c.closed or c.response_started or not c.csie:
        return False
    c.wb.len = 0
    if not cache_stale_hit(c, &c.wb, not c.keep_alive):
        return False
    c.csie = False
    c.rt.error(c.peer, c.route.label, c.server.address if c.server is not None else None,
               "origin failed; served a stale response (stale-if-error)")
    c.write(PyBytes_FromStringAndSize(c.wb.data, c.wb.len))
    cache_store_abort(c)
    c.response_done()
    return True


# ---- stale-while-revalidate: the background refresh (RFC 5861 3) -----------------------

cdef set LOCAL_REFRESH = set()  # key hashes this worker is refreshing


cdef cache_refresh(ClientProtocol self, CacheRegion r, const char *p):
    """Refresh a stale entry once: the fill claim (shared by every worker)
    picks who does it; the refresh is the same request, marked no-cache, run
    through the data plane on a connection with no client behind it, so it
    is validated, stored and counted like any request."""
    cdef int64_t deadline = 0
    cdef uint64_t h = fp_cache_hash(self.wb.data, self.wb.len)
    if h in LOCAL_REFRESH or h in LOCAL_FILLS:
        return
    if fp_cache_fill_claim(r.c, h, PID, mono_ms(), <int64_t>(self.route.lock_timeout * 1000),
                           &deadline) != FP_FILL_OWNER:
        return                  # another worker refreshes it (or fetches it)
    LOCAL_REFRESH.add(h)
    self.rt.loop.call_soon(_run_refresh, self.rt, self.listener, refresh_request(self, p), h)


cdef bytes refresh_request(ClientProtocol self, const char *p):
    """The client's request as its refresh sends it: without what would make
    it ask for something else than the current response -- the client's own
    preconditions and Range (the answer would be a 304 or 206 for that
    client, never stored), its Cache-Control and Pragma (only-if-cached
    would end the refresh in a local 504), Connection, Expect, Upgrade --
    then Cache-Control: no-cache and Connection: close."""
    cdef uint32_t i
    cdef int fid
    cdef fp_header f
    out = [PyBytes_FromStringAndSize(p + self.head.method.off, self.head.method.len), b" ",
           PyBytes_FromStringAndSize(p + self.head.target.off, self.head.target.len),
           b" HTTP/1.1\r\n"]
    for i in range(self.head.num_headers):
        f = self.head.headers[i]
        fid = f.id
        if fid == FP_H_IF_NONE_MATCH or fid == FP_H_IF_MODIFIED_SINCE or fid == FP_H_IF_MATCH \
                or fid == FP_H_IF_UNMODIFIED_SINCE or fid == FP_H_IF_RANGE or fid == FP_H_RANGE \
                or fid == FP_H_CACHE_CONTROL or fid == FP_H_PRAGMA or fid == FP_H_CONNECTION \
                or fid == FP_H_KEEP_ALIVE or fid == FP_H_EXPECT or fid == FP_H_UPGRADE:
            continue
        out += (PyBytes_FromStringAndSize(p + f.name.off, f.name.len), b": ",
                PyBytes_FromStringAndSize(p + f.value.off, f.value.len), b"\r\n")
    out.append(b"Cache-Control: no-cache\r\nConnection: close\r\n\r\n")
    return b"".join(out)


class _RefreshTransport:
    """A transport with nobody behind it: the refresh's response is dropped
    (the cache keeps it)."""

    def __init__(self, proto, h):
        self.proto = proto
        self.h = h
        self.closed = False

    def write(self, data):
        pass

    def close(self):
        if not self.closed:
            self.closed = True
            LOCAL_REFRESH.discard(self.h)
            self.proto.connection_lost(None)

    abort = close

    def get_extra_info(self, name, default=None):
        return ("127.0.0.1", 0) if name in ("peername", "sockname") else default

    def pause_reading(self):
        pass

    def resume_reading(self):
        pass

    def is_closing(self):
        return self.closed

    def get_write_buffer_size(self):
        return 0

    def can_write_eof(self):
        return False


def _run_refresh(Runtime rt, listener, bytes req, h):
    proto = ClientProtocol(rt, listener)
    t = _RefreshTransport(proto, h)
    try:
        proto.connection_made(t)
        proto.data_received(req)
    except Exception:
        rt.log.exception("cache refresh")
        t.close()
