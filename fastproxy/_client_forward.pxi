# Included by _protocols.pyx after _client.pxi: the half of a client's
# request that goes to a server -- pick the server, rewrite the head, re-frame
# the body, and send it over a pooled or new upstream connection.  Functions
# of the ClientProtocol rather than methods so that _client.pxi stays one
# readable size (Cython keeps a cdef class's body in one file).


cdef forward_request(ClientProtocol c, Route route, const char *p, size_t head_len,
                     const char *host, size_t hl, const char *t, size_t tl):
    """Send the request whose head is p[:head_len] (target t[:tl], Host
    host[:hl]) to a server of route's upstream, or answer why not."""
    cdef fp_req_rw rw
    cdef Upstream ups = route.upstream
    cdef int rc
    try:
        c.server = ups.pick(p, &c.head, c.peer_ip, t, tl)
    except Exception as exc:        # a custom Python policy failed
        c.fail(500, f"balancing policy failed: {exc!r}")
        return
    if c.server is None:
        c.fail(503, "no server available")
        return
    c.tries = 0
    c.tried = 0
    c.take_server()
    c.upgrade = (c.fr.flags & FP_F_UPGRADE) != 0 and route.websocket \
        and upgrade_allowed(route, p, &c.head)
    if route.compress is not None:      # decided now: the head is gone later
        request_codings(<Policy>route.compress, p, &c.head, &c.enc_req)
    rw.flags = c.rt.fwd_flags
    if c.trusted:
        rw.flags |= FP_RW_TRUSTED
    if c.upgrade:
        rw.flags |= FP_RW_UPGRADE
    rw.target = SP(t, tl)
    if ups.host_mode == HOST_PASS and hl:
        rw.host = SP(host, hl)
    elif ups.host_mode == HOST_PASS:
        rw.host = S(c.server.host_header)   # HTTP/1.0 without Host
    elif ups.host_mode == HOST_UPSTREAM:
        rw.host = S(c.server.host_header)
    else:
        rw.host = S(ups.host_literal)
    rw.orig_host = SP(host, hl)
    rw.client_ip = S(c.peer_ip)
    rw.proto = S(c.proto)
    rw.via = S(c.rt.via)
    rw.body_kind = FP_BODY_LENGTH if (c.fr.flags & FP_F_HAS_CL) else c.fr.kind
    rw.length = c.fr.length
    rw.rules = NULL if route.req_rules.empty else &route.req_rules.rules
    rw.conn_rules = NULL if c.lreq is None or c.lreq.empty else &c.lreq.rules
    c.wb.len = 0
    if fp_rewrite_request(&c.wb, p, &c.head, &rw) != 0:
        raise MemoryError()
    if c.cvalidators is not None:
        cache_add_validators(c)
    c.start += head_len
    if c.body_kind == FP_BODY_CHUNKED:
        fp_chunked_init(&c.chunk, 4096, 16384)
    rc = append_body(c)
    if rc < 0:
        return
    c.state = C_WAIT if rc == 1 else C_BODY
    c.pending = PyBytes_FromStringAndSize(c.wb.data, c.wb.len)
    # replayable: the whole request is in `pending` (retries, and the
    # stale pooled connection case)
    c.can_retry = c.state == C_WAIT and (idempotent(c.method_id) or ups.retry_non_idempotent)
    send_upstream(c)


cdef int append_body(ClientProtocol c) except -2:
    """Move request body bytes from the receive buffer into wb, re-framed.
    1: body complete, 0: more to come, -1: refused (answered already)."""
    cdef size_t n, used, off, dlen
    cdef int rc
    if c.body_kind == FP_BODY_LENGTH:
        n = c.end - c.start
        if n > c.body_left:
            n = <size_t>c.body_left
        if n and fp_wbuf_put(&c.wb, c.buf + c.start, n):
            raise MemoryError()
        c.start += n
        c.body_left -= n
        c.consumed_all()
        return c.body_left == 0
    if c.body_kind != FP_BODY_CHUNKED:
        return 1
    while True:
        rc = fp_chunked_feed(&c.chunk, c.buf + c.start, c.end - c.start, &used, &off, &dlen)
        if rc < 0:
            c.fail(fp_error_status(rc), fp_error_name(rc).decode())
            return -1
        if rc == FP_CHUNK_DATA:
            c.body_seen += dlen
            if c.rt.max_body and c.body_seen > c.rt.max_body:
                c.fail(413, "chunked body over max_body_size")
                return -1
            put_chunk(&c.wb, c.buf + c.start + off, dlen)
            c.start += used
            continue
        c.start += used
        c.consumed_all()
        if rc == FP_CHUNK_DONE:
            if fp_wbuf_put(&c.wb, b"0\r\n\r\n", 5):
                raise MemoryError()
            return 1
        return 0


cdef send_upstream(ClientProtocol c):
    cdef UpstreamProtocol up
    c.t_upstream = monotonic()  # upstream time includes connecting, as in nginx
    idle = c.server.idle
    while idle:
        up = <UpstreamProtocol>idle.pop()
        up.pooled = False
        if not up.closed and up.state == U_IDLE:    # not one being closed already
            attach(c, up, True)
            return
    connect_upstream(c)


cdef connect_upstream(ClientProtocol c):
    c.connecting = True
    c.rt.loop.create_task(open_upstream(c.rt, c.server, c.route.upstream, c))


cdef attach(ClientProtocol c, UpstreamProtocol up, bint reused):
    c.connecting = False
    c.up = up
    up.begin(c, reused)
    up.send(c.pending)
    if not c.can_retry:
        c.pending = None
    if c.write_paused:
        up.pause_reading()
    if c.state == C_BODY:
        forward_body(c)


cdef forward_body(ClientProtocol c):
    cdef int rc
    if c.up is None:
        if c.end - c.start > PIPELINE_LIMIT:
            c.pause_reading()       # still connecting: hold the body
        return
    c.wb.len = 0
    rc = append_body(c)
    if rc < 0:
        return
    if c.wb.len:
        c.up.send(PyBytes_FromStringAndSize(c.wb.data, c.wb.len))
    if c.reading_paused and not c.up.write_paused:
        c.resume_reading()          # paused while connecting; the body can flow now
    if rc == 1:
        c.state = C_WAIT
        c.set_deadline(T_NONE, 0)
        c.process()                 # pipelined bytes may already be waiting
    else:
        c.set_deadline(T_BODY, c.rt.body_timeout)
