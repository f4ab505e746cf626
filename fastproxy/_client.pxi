# Included by _protocols.pyx (one module: the two protocols call each
# other's cdef methods).  The client (downstream) side: parse a request head,
# route it, pick a server, rewrite the head, stream the body upstream, answer
# errors; retries and the servers' shared state (fp_peer) are tracked here.

cdef class ClientProtocol(ReadConn):
    cdef fp_header slots[SLOTS]
    cdef fp_head head
    cdef fp_framing fr
    cdef size_t hint
    cdef int state
    cdef UpstreamProtocol up
    cdef Route route
    cdef Server server
    cdef fp_chunked chunk
    cdef uint64_t body_left, body_seen
    cdef int body_kind
    cdef bint keep_alive, trusted, upgrade, response_started, retried, client_eof
    cdef bint connecting, write_paused, can_retry, counted, peer_held
    cdef int trial              # the server's half-open breaker trial (fp_peer)
    cdef int tries              # other servers tried after failures
    cdef uint64_t tried         # Server.position bits already tried
    cdef int minor, method_id, requests, status
    cdef uint64_t bytes_out
    cdef bytes peer_ip
    cdef str peer
    cdef bytes pending          # the request as first sent, kept for one retry
    cdef fp_wbuf wb
    cdef object log_info
    cdef double t_start, t_upstream
    # The listener's (fastproxy/tls.py ListenerRuntime): b"https" on TLS
    # listeners, rules added to every request / response (client cert, HSTS).
    cdef object listener
    cdef bytes proto
    cdef HeaderRules lreq, lresp
    cdef bint redirect_https
    cdef fp_enc_req enc_req     # compression: what this request accepts (_compress)
    cdef int out_coding         # FP_ENC_* of the body being sent (cache seam)
    # the cache's request path (_cache_path.pxi)
    cdef int cxc                # X-Cache value for an upstream answer, XC_NONE: none
    cdef bytes ckey             # key this response may be stored under (or invalidates)
    cdef bytes creq_head        # the request head, for the Vary key at store time
    cdef bint cinval            # unsafe method: success invalidates ckey (RFC 9111 4.4)
    cdef bint crefetch          # our validation's 304 refreshed nothing: ask again, whole
    cdef bint cstoring          # cput is a store in progress
    cdef fp_cache_put cput
    cdef fp_cc creq             # request Cache-Control (5.2.1)
    cdef int chas_auth
    cdef int64_t creq_time
    cdef uint64_t cfill         # key hash whose fill claim this request owns, 0 = none
    cdef bint cnofill           # the wait for another fill is over: go upstream
    cdef uint64_t cwaitfor      # key hash of the fill this request waits for
    cdef double cwait_until     # coalesced wait: give up at this monotonic time
    cdef bytes cvalidators      # stale entry: If-None-Match / If-Modified-Since lines to add
    cdef uint64_t cvary         # the stale entry's Vary hash
    cdef fp_cache_meta cmeta    # the stale entry's meta
    cdef bint csie              # the stale entry may be served on an error (stale-if-error)
    cdef size_t cmark_head      # where the response head starts in the upstream's out
    cdef int sfd                # the socket, for send() and cache hits; -1: none (TLS)
    cdef int tls_fd             # TLS: the TCP socket under it (write_failed); else -1
    cdef bint linger_wanted     # refused before the request was read whole: linger on close
    # What direct_fd() need not ask the transport again (two Python calls per
    # answer, ~3 % of a cache hit): its write queue was seen empty and nothing
    # was handed to it since (only write() does); we are inside a read of this
    # connection (the transport's callback, or the ReadLoop's) and have not
    # touched the transport since: uvloop reads only while it is open, our own
    # close paths leave the ReadLoop at once, and the one other way it closes --
    # a failed queued write, in the same loop iteration as our read -- leaves
    # a dead socket that a direct write cannot harm.  (fastproxy's own
    # transport is asked directly instead: its state is a C field.)
    cdef bint tq_empty
    cdef bint in_read
    cdef double linger_until    # lingering close: LINGER_TIME is up at this monotonic time

    def __cinit__(self, *args, **kwargs):
        self.head.headers = self.slots
        self.head.max_slots = SLOTS

    def __init__(self, Runtime rt, listener=None):
        self.setup(rt, listener)

    cdef setup(self, Runtime rt, listener):
        self.rt = rt
        self.state = C_HEAD
        self.sfd = -1
        self.tls_fd = -1
        self.proto = b"http"
        if listener is not None:
            self.listener = listener
            self.proto = listener.proto
            self.lreq = listener.req_rules
            self.lresp = listener.resp_rules
            self.redirect_https = listener.redirect_https
        self.max_cap = max(1 << 20, rt.req_limits.max_head + 65536)

    def __dealloc__(self):
        fp_wbuf_free(&self.wb)
        if self.listener is not None and self.transport is None:
            # uvloop drops a TLS connection whose handshake failed or timed
            # out without telling the protocol; this is the only trace of it.
            try:
                self.listener.handshake_failed()
            except Exception:
                pass

    # ---- asyncio protocol interface ------------------------------------
    def connection_made(self, transport):
        cdef char ipbuf[64]
        # uvloop's get_extra_info("peername") reads the same address
        # through a Python tuple and a sprintf: 2,400 instructions
        cdef int n = fp_sock_peer_ip(self.tfd, ipbuf, sizeof(ipbuf)) if self.tfd >= 0 else -1
        self.made(transport, ipbuf, n)

    cdef made(self, transport, const char *ipbuf, int n):
        """connection_made() with the peer's IP address ipbuf[:n] already
        known (n < 0: ask the transport): fastproxy's own listener has it
        from accept4."""
        self.transport = transport
        self.twrite = transport.write
        if n >= 0:
            self.peer_ip = PyBytes_FromStringAndSize(ipbuf, n)
            ip = self.peer_ip.decode("ascii")
        else:                       # TLS, or a loop without the transport table
            peer = transport.get_extra_info("peername")
            ip = peer[0] if peer else "unknown"
            self.peer_ip = ip.encode()
        self.peer = ip
        if self.proto != b"https":  # a TLS listener's proto (tls.py): no direct writes
            if self.tfd >= 0:       # told by the loop's transport table (_uvtransports)
                self.sfd = self.tfd
            else:
                sock = transport.get_extra_info("socket")
                self.sfd = sock.fileno() if sock is not None else -1
        else:
            sock = transport.get_extra_info("socket")
            self.tls_fd = sock.fileno() if sock is not None else -1
        self.trusted = self.rt.is_trusted(ip)
        if self.listener is not None and self.listener.per_connection:
            self.lreq = self.listener.client_rules(transport)   # mTLS: the cert's subject
        self.rt.conns.add(self)
        self.rt.st.connections_total += 1
        self.rt.st.connections_active += 1
        self.set_deadline(T_IDLE, self.rt.header_timeout)

    def buffer_updated(self, Py_ssize_t nbytes):
        self.received(nbytes)
        self.read_by_readloop()

    cdef int read_by_readloop(self) except -1:
        # Between requests, a keep-alive plain-TCP connection moves to the
        # worker's ReadLoop (_readloop.pxi) for good.
        if not self.own_read and self.sfd >= 0 and self.state == C_HEAD and not self.closed \
                and not self.reading_paused:
            take_reading(self, self.sfd)
        return 0

    cdef int on_read(self, size_t n) except -1:
        self.received(n)
        return 0

    cdef int on_eof(self) except -1:
        if not self.eof_received():
            self.transport.close()
        return 0

    cdef int on_read_failed(self) except -1:
        self.abort()
        return 0

    cdef received(self, size_t nbytes):
        self.end += nbytes
        self.rt.st.bytes_in += nbytes
        self.in_read = True
        try:
            self.process()
        finally:
            self.in_read = False

    def eof_received(self):
        self.client_eof = True
        if self.state == C_WAIT or self.state == C_TUNNEL:
            if self.state == C_TUNNEL and self.up is not None and self.up.transport.can_write_eof():
                self.up.transport.write_eof()
            return True             # half-close: still send the response
        if self.state == C_BODY and self.up is not None:
            self.up.abort()         # truncated body: the upstream can't be reused
            self.up = None
        return False

    def connection_lost(self, exc):
        # uvloop's transports close the socket after this call; fastproxy's
        # own has closed it already, and has let go of the reading with it
        drop_reading(self)
        self.closed = True
        self.state = C_CLOSED
        self.rt.conns.discard(self)
        self.rt.st.connections_active -= 1
        if self.route is not None and not self.counted:
            # A request still under way (the client reset, a write to it
            # failed, a timeout), or a tunnel that ended: counted and logged
            # like any other, as nginx does -- 499, its "client closed
            # request", when no answer had started.
            if not self.response_started:
                self.status = 499
            if self.cwaitfor:           # it was waiting for a cache fill: uncounted then
                self.rt.requests_total += 1
            self.request_done(self.status != 101)
        cache_store_abort(self)
        self.end_server(FP_PEER_NEUTRAL)
        if self.up is not None:
            up, self.up = self.up, None
            up.client_gone()

    def pause_writing(self):
        # The client stopped taking the answer: it has client_send_timeout
        # to take more (nginx's send_timeout), and the server's read timeout
        # waits meanwhile -- the delay is not the server's.
        self.write_paused = True
        self.start_send_by()
        if self.up is not None:
            self.up.pause_reading()
            self.up.client_stalled()

    def resume_writing(self):
        self.write_paused = False
        if not self.transport_closing():    # closing: the queue still has to drain in time
            self.send_by = 0
        if self.up is not None:
            self.up.resume_reading()
            self.up.client_moving()

    def close_if_idle(self):
        """Graceful stop: close a connection that has no request in progress."""
        # Only connections that already served a request: one accepted just
        # before the stop signal still gets its first request answered.
        if (self.state == C_HEAD and self.start == self.end and not self.closed
                and self.requests > 0) or self.state == C_LINGER:
            self.close_now()

    # ---- request side ----------------------------------------------------
    cdef void set_deadline(self, int kind, double seconds):
        self.tkind = kind
        self.deadline = coarse_now() + seconds if seconds > 0 else 0

    cdef void start_send_by(self):
        """client_send_timeout from now: the queued answer must move by then."""
        self.send_by = coarse_now() + self.rt.send_timeout

    cdef process(self):
        while not self.closed:
            if self.state == C_HEAD:
                if not self.read_head():
                    return
            elif self.state == C_BODY:
                forward_body(self)
                return
            elif self.state == C_LINGER:
                self.start = self.end = 0   # dropped; the client is not quiet yet
                self.deadline = min(coarse_now() + LINGER_TIMEOUT, self.linger_until)
                return
            elif self.state == C_TUNNEL:
                if self.end > self.start and self.up is not None:
                    self.up.send(PyBytes_FromStringAndSize(
                        self.buf + self.start, self.end - self.start))
                    self.start = self.end
                    self.consumed_all()
                    self.set_deadline(T_TUNNEL, self.rt.ws_timeout)
                return
            else:
                # Pipelined bytes wait for the response in progress.
                if self.end - self.start > PIPELINE_LIMIT:
                    self.pause_reading()
                return

    cdef bint read_head(self) except -1:
        cdef int64_t rc
        if self.start == self.end:
            self.consumed_all()
            return False
        rc = fp_parse_request(self.buf + self.start, self.end - self.start, &self.head,
                              &self.rt.req_limits, &self.hint)
        if rc == FP_INCOMPLETE:
            if self.tkind != T_HEADER:
                self.set_deadline(T_HEADER, self.rt.header_timeout)
            return False
        self.hint = 0
        if rc < 0:
            self.reset_request()
            self.fail(fp_error_status(<int>rc), fp_error_name(<int>rc).decode())
            return False
        if self.own_tr is None and self.requests > 0 and self.write_failed():
            # A request pipelined behind an answer whose write failed (the
            # client reset) must not start and reach a server.  fastproxy's
            # own transport ends the connection at once; uvloop's report the
            # failure only in connection_lost, a loop turn later.
            self.transport.abort()
            return False
        self.start_request(<size_t>rc)
        return True

    cdef bint write_failed(self) except -1:
        """On uvloop's transports (TLS; plain TCP with FASTPROXY_UVLOOP_ACCEPT=1):
        has a write to the client failed, though connection_lost has not come
        yet?  The plain one says so in is_closing() at once.  The TLS one does
        not, so the socket under it is asked -- for every request after the
        first, not only pipelined ones: the TLS layer may hand over bytes it
        read before the failure in a later turn (0.3 us a request:
        bench/c/gone_check_cost.c; a TLS request costs ~23 us)."""
        if self.tls_fd >= 0:
            return fp_sock_tcp_gone(self.tls_fd)
        return self.transport.is_closing()

    cdef void reset_request(self):
        """Forget the previous request: errors must describe the current one."""
        self.status = 0
        self.bytes_out = 0
        self.retried = False
        self.response_started = False
        self.method_id = FP_M_OTHER
        self.route = None
        self.server = None
        self.upgrade = False
        self.pending = None
        self.counted = False
        self.enc_req.choice = self.out_coding = 0
        self.enc_req.accept = 1
        self.enc_req.keep = 0
        self.cxc = XC_NONE
        self.ckey = self.creq_head = self.cvalidators = None
        self.cinval = self.csie = self.crefetch = False

    cdef start_request(self, size_t head_len):
        cdef const char *p = self.buf + self.start
        cdef const char *t = p + self.head.target.off
        cdef size_t tl = self.head.target.len, plen, i
        cdef const char *host = NULL
        cdef const char *q = NULL
        cdef size_t hl = 0
        cdef int rc
        cdef int64_t n
        cdef Route route
        cdef bytes origin_form
        # precise only for the access log's duration; retry_timeout is seconds
        self.t_start = monotonic() if self.rt.access_log is not None else coarse_now()
        self.requests += 1
        self.rt.requests_total += 1
        self.reset_request()
        self.minor = self.head.minor
        self.method_id = self.head.method_id
        self.deadline = 0
        self.tkind = T_NONE
        if self.rt.access_log is not None:
            capture_log_info(self, p)
        rc = fp_request_framing(p, &self.head, &self.fr)
        if rc != 0:
            self.fail(fp_error_status(rc), fp_error_name(rc).decode())
            return
        self.keep_alive = (self.fr.flags & FP_F_KEEP_ALIVE) != 0 and not self.rt.closing \
            and self.requests < self.rt.keepalive_requests
        self.body_kind = self.fr.kind
        self.body_left = self.fr.length
        self.body_seen = 0
        if self.method_id == FP_M_CONNECT:
            self.fail(405, "CONNECT refused: not a forward proxy", ALLOW)
            return
        if self.fr.kind == FP_BODY_LENGTH and self.rt.max_body \
                and self.fr.length > self.rt.max_body:
            self.fail(413, f"body of {self.fr.length} bytes over max_body_size")
            return
        if self.head.host_index >= 0:
            host = p + self.head.headers[self.head.host_index].value.off
            hl = self.head.headers[self.head.host_index].value.len
        # Request-target forms (RFC 9112 3.2): origin, absolute, asterisk.
        if tl == 1 and t[0] == b'*':
            if self.method_id != FP_M_OPTIONS:
                self.fail(400, "asterisk-form only with OPTIONS")
                return
            n = 1
            self.rt.scratch[0] = b'/'
        else:
            if t[0] != b'/':
                i = 0
                if tl > 7 and (t[0] | 0x20) == b'h' and (t[1] | 0x20) == b't' \
                        and (t[2] | 0x20) == b't' and (t[3] | 0x20) == b'p':
                    i = 7 if t[4] == b':' else (8 if (t[4] | 0x20) == b's' and t[5] == b':' else 0)
                if i == 0 or t[i - 1] != b'/' or t[i - 2] != b'/':
                    self.fail(400, "request-target is neither origin- nor absolute-form")
                    return
                host = t + i            # RFC 9112 3.2.2: Host comes from the target
                hl = 0
                while i + hl < tl and t[i + hl] != b'/' and t[i + hl] != b'?':
                    hl += 1
                if hl == 0 or not fp_valid_host(host, hl):
                    self.fail(400, "bad authority in absolute-form target")
                    return
                t = host + hl
                tl = tl - i - hl
                if tl == 0 or t[0] == b'?':
                    # RFC 9112 3.2.1: an empty path is sent as "/"
                    origin_form = b"/" + PyBytes_FromStringAndSize(t, tl)
                    t = origin_form
                    tl += 1
            plen = tl
            q = <const char *>memchr(t, b'?', tl)
            if q != NULL:
                plen = q - t
            n = fp_normalize_path(t, plen, self.rt.scratch)
            if n < 0:
                self.fail(400, "request-target path cannot be normalised safely")
                return
        if self.redirect_https:
            status, loc = self.listener.redirect(self.method_id == FP_M_GET or self.method_id
                                                 == FP_M_HEAD, host[:hl] if hl else b"",
                                                 PyBytes_FromStringAndSize(t, tl))
            if status == 400:
                self.fail(400, "Host is not a host name for the https redirect")
            else:
                self.local(status, EMPTY, b"Location: " + loc + b"\r\n", head_len)
            return
        route = self.rt.router.match(host, hl, self.rt.scratch, <size_t>n)
        self.route = route
        if route is None:
            self.local(404, b"no route\n", EMPTY, head_len)
            return
        if route.return_status:
            self.local(route.return_status, route.body, EMPTY, head_len)
            return
        if route.redirect_status:
            loc = route.redirect_to
            if route.keep_query and q != NULL and tl - (q - t) > 1:
                # the target's own "?..." joins an existing query with "&"
                loc += (b"&" if b"?" in loc else b"?") + PyBytes_FromStringAndSize(
                    q + 1, tl - (q - t) - 1)
            self.local(route.redirect_status, EMPTY, b"Location: " + loc + b"\r\n", head_len)
            return
        if route.cache and cache_request(self, p, head_len, host, hl, t, tl, q):
            return
        forward_request(self, route, p, head_len, host, hl, t, tl)

    # ---- answers -----------------------------------------------------------
    cdef write(self, bytes data):
        if self.closed or self.state == C_LINGER:  # lingering: the FIN is sent, no more
            return
        self.bytes_out += len(data)
        self.rt.st.bytes_out += len(data)
        self.tq_empty = self.in_read = False   # queued, or failed and closing
        self.twrite(data)

    cdef local(self, int status, bytes body, bytes extra, size_t head_len):
        """Answer without an upstream (no route, return, redirect)."""
        cdef bint has_body = self.fr.kind == FP_BODY_CHUNKED or (
            self.fr.kind == FP_BODY_LENGTH and self.fr.length > 0)
        cdef bint close = not self.keep_alive or has_body
        self.start += head_len
        self.status = status
        self.wb.len = 0
        if fp_simple_response(&self.wb, status, S(self.rt.server_header + extra), S(TEXT),
                              S(body), close, self.method_id == FP_M_HEAD) != 0:
            raise MemoryError()
        self.write(PyBytes_FromStringAndSize(self.wb.data, self.wb.len))
        self.request_done()
        if close:
            self.linger_wanted = has_body   # its body was never read: it may be arriving
            self.close()
        else:
            self.state = C_HEAD
            self.reset_request()
            self.set_deadline(T_IDLE, self.rt.keepalive_timeout)

    cdef fail(self, int status, str why, bytes extra=EMPTY):
        """Refuse the request with `status` and close: the framing of whatever
        follows can't be trusted."""
        self.rt.error(self.peer, self.route.label if self.route is not None else None,
                      self.server.address if self.server is not None else None,
                      f"{status}: {why}")
        if self.up is not None:
            up, self.up = self.up, None
            up.abort()
        self.rt.st.errors += 1
        if self.state == C_HEAD or self.state == C_BODY:
            self.linger_wanted = True   # the rest of the request may still be coming
        if self.response_started or self.closed:
            self.request_done(True)
            self.abort()
            return
        body = f"{status} {fp_reason_phrase(status).decode()}\n".encode()
        self.status = status
        self.wb.len = 0
        if fp_simple_response(&self.wb, status, S(self.rt.server_header + extra), S(TEXT),
                              S(body), 1, self.method_id == FP_M_HEAD) != 0:
            raise MemoryError()
        self.write(PyBytes_FromStringAndSize(self.wb.data, self.wb.len))
        self.request_done()
        self.close()

    cdef bint fin_follows(self):
        """This response is the connection's last and the bytes being
        written complete it: send them with MSG_MORE, so that the close
        right after puts the FIN in their last segment (one delivery and
        one wake-up of the client instead of two).  Not when more may come
        from the client (a request body still arriving, bytes pipelined
        behind, or a client that did not ask to close -- we end it for
        keepalive_requests or a stop -- and may send its next request):
        closing with unread data sends a reset, which would also drop what
        MSG_MORE still holds."""
        return ((self.fr.flags & FP_F_KEEP_ALIVE) == 0 or self.client_eof) \
            and self.state != C_BODY and self.start == self.end

    cdef int direct_fd(self) except -2:
        """The socket when bytes may be written to it directly rather than
        through the transport (send(), cache hits): plain TCP, open, nothing
        queued in the transport -- queued bytes must go first; else -1."""
        if self.sfd < 0 or self.closed or self.state == C_CLOSED or self.state == C_LINGER:
            return -1
        if self.own_tr is not None:     # fastproxy's own transport: no Python call
            if self.own_tr.closing or self.own_tr.q.len != self.own_tr.qoff:
                return -1
            self.tq_empty = True
            return self.sfd
        if not self.tq_empty:
            if self.transport.get_write_buffer_size():
                return -1
            self.tq_empty = True
        if not self.in_read and self.transport.is_closing():
            return -1
        return self.sfd

    cdef send(self, const char *p, size_t n, bint fin_next):
        self.send2(p, n, NULL, 0, fin_next)

    cdef send2(self, const char *p, size_t n, const char *q, size_t m, bint fin_next):
        """Write p[:n] then q[:m] to the client: straight to the socket when
        the transport has nothing queued (no bytes object, no transport call),
        what the socket does not take through the transport (which also
        reports any error).  fin_next: see fin_follows()."""
        cdef size_t sent = 0, total = n + m
        cdef int fd = self.direct_fd()
        cdef bytes rest
        cdef char *d
        if fd >= 0:
            if fin_next and self.bytes_out:
                # Earlier bytes of this answer are in flight: an ACK for them
                # would push a MSG_MORE segment out before the close; a cork
                # holds it until the FIN.
                fp_sock_cork(fd)
            sent = fp_sock_send(fd, p, n, q, m, fin_next)
            self.bytes_out += sent
            self.rt.st.bytes_out += sent
        if sent < total:
            rest = PyBytes_FromStringAndSize(NULL, total - sent)
            d = PyBytes_AS_STRING(rest)
            if sent < n:
                memcpy(d, p + sent, n - sent)
                if m:
                    memcpy(d + n - sent, q, m)
            else:
                memcpy(d, q + (sent - n), total - sent)
            self.write(rest)

    cdef close(self):
        """End the connection after its last answer: at once, or by a
        lingering close when the client may still be sending -- the rest of
        a refused request, bytes pipelined behind, or its next request (it
        did not ask to close)."""
        if self.closed or self.state == C_CLOSED:
            return
        if self.state != C_LINGER and not self.client_eof and self.transport.can_write_eof() \
                and not self.transport.is_closing() \
                and (self.linger_wanted or self.state == C_BODY or self.start != self.end
                     or self.fr.flags & FP_F_KEEP_ALIVE):
            self.linger()
        else:
            self.close_now()

    cdef close_now(self):
        # The transport first: fastproxy's own closes the socket at once when
        # nothing is queued, which takes it out of the ReadLoop's set with no
        # EPOLL_CTL_DEL of its own (a system call per connection).
        if not self.closed:
            self.state = C_CLOSED
            self.deadline = 0
            self.transport.close()
            drop_reading(self)
            if not self.closed and not self.send_by and self.queued():
                self.start_send_by()    # the transport drains before it closes: in time

    cdef bint transport_closing(self) except -1:
        if self.own_tr is not None:
            return self.own_tr.closing
        return self.closed or self.transport.is_closing()

    cdef bint queued(self) except -1:
        """Bytes of an answer still in the transport, not yet in the socket."""
        if self.own_tr is not None:
            return self.own_tr.q.len != self.own_tr.qoff
        return self.transport.get_write_buffer_size() > 0

    cdef linger(self):
        """nginx's lingering close: the FIN follows the answer (write_eof),
        then what the client still sends is read and dropped until it
        closes, is quiet for LINGER_TIMEOUT, or LINGER_TIME is up.  Closing
        with unread data would send a reset instead, which makes the
        client's sending fail before it reads the answer, and throws away
        whatever of the answer the kernel has not sent yet."""
        if self.up is not None:
            up, self.up = self.up, None
            up.abort()
        self.connecting = False         # a connect still under way finds nobody to serve
        self.state = C_LINGER
        self.start = self.end = 0
        self.linger_until = coarse_now() + LINGER_TIME
        self.set_deadline(T_LINGER, LINGER_TIMEOUT)
        self.transport.write_eof()
        self.resume_reading()

    def abort_now(self):
        """Close at once (graceful stop ran out of time), through abort() so
        the state says so and no direct write follows."""
        self.abort()

    cdef abort(self):
        if not self.closed:
            self.state = C_CLOSED
            self.deadline = 0
            self.transport.abort()
            drop_reading(self)

    cdef void on_send_timeout(self):
        """The socket took none of the queued answer for client_send_timeout."""
        try:
            why = f"client took no bytes of the answer for {self.rt.send_timeout:g}s: closed"
            self.rt.error(self.peer, self.route.label if self.route is not None else None,
                          self.server.address if self.server is not None else None, why)
            self.abort()
        except Exception:
            self.rt.log.exception("client send timeout handler")

    cdef void on_timeout(self):
        try:
            if self.tkind == T_IDLE or self.tkind == T_LINGER:
                self.close_now()        # an idle keep-alive connection ends without lingering
            elif self.tkind == T_HEADER:
                self.fail(408, "client too slow sending the request head")
            elif self.tkind == T_BODY:
                self.fail(408, "client too slow sending the request body")
            elif self.tkind == T_TUNNEL:
                self.close_now()
                if self.up is not None:
                    self.up.abort()
        except Exception:
            self.rt.log.exception("client timeout handler")

    # ---- the server's shared state (csrc/fp_peer.h) ------------------------
    cdef take_server(self):
        """self.server gets this request: count it in flight (all workers)."""
        self.trial = self.route.upstream.acquire(self.server)
        self.rt.st.servers[self.server.stats_index].inflight += 1
        self.peer_held = True
        if self.server.position < 64:
            self.tried |= (<uint64_t>1) << self.server.position

    cdef end_server(self, int outcome, str why=None):
        """The request is done with self.server: record how it went."""
        if not self.peer_held:
            return
        self.peer_held = False
        self.rt.st.servers[self.server.stats_index].inflight -= 1
        ev = self.route.upstream.release(self.server, self.trial, outcome)
        if ev != FP_PEER_EV_NONE:
            self.peer_event(ev, why)

    cdef peer_event(self, int ev, str why):
        cdef Upstream u = self.route.upstream
        cdef object pol = u.lb_policy()
        name = f"{u.name} {self.server.address}"
        if ev == FP_PEER_EV_PASSIVE_OUT:
            self.rt.log.warning("%s out for %gs: %d failures within %gs: %s", name,
                                pol["fail_timeout"], pol["max_fails"], pol["fail_timeout"],
                                why or "failed")
        elif ev == FP_PEER_EV_BREAKER_OPEN:
            self.rt.log.warning("%s circuit breaker open for %gs: %s", name,
                                pol["cooldown"], why or "failed")
        elif ev == FP_PEER_EV_BREAKER_REOPEN:
            self.rt.log.warning("%s circuit breaker open again for %gs: trial request "
                                "failed: %s", name, pol["cooldown"], why or "failed")
        elif ev == FP_PEER_EV_BREAKER_CLOSE:
            self.rt.log.info("%s circuit breaker closed: trial request succeeded", name)

    # ---- called by the upstream side ---------------------------------------
    cdef upstream_failed(self, int status, str why, bint retryable=False):
        """The server failed this request.  `retryable`: it refused, reset or
        timed out before any response byte, so another server may take it."""
        self.connecting = False
        self.up = None
        if self.server is not None:
            self.server.failures += 1
            self.rt.st.servers[self.server.stats_index].failures += 1
            self.end_server(FP_PEER_FAIL, why)
        if self.closed:
            return
        if self.bytes_out == 0:
            # the head was parsed but held back (decompress_upstream waits for
            # body bytes): nothing reached the client, so it can still get a 502
            self.response_started = False
        if retryable and self.try_next(why):
            return
        if self.csie and cache_stale_on_error(self):
            return
        self.fail(status, why)

    cdef bint try_next(self, str why):
        """Send the request to another server (upstream `retries`,
        `retry_timeout`); the client never sees the failed try."""
        cdef Upstream u = self.route.upstream
        cdef Server old = self.server
        if not self.can_retry or self.pending is None or self.response_started \
                or self.tries >= u.retries:
            return False
        if u.retry_timeout > 0 and monotonic() - self.t_start > u.retry_timeout:
            return False
        try:
            srv = u.repick(self.tried, self.peer_ip)
        except Exception as exc:        # a custom Python policy failed
            self.rt.log.warning("balancing policy failed on retry: %r", exc)
            return False
        if srv is None:
            return False
        self.tries += 1
        self.rt.st.retries += 1
        self.rt.error(self.peer, self.route.label, old.address,
                      f"{why}; retrying on {srv.address} (retry {self.tries} of {u.retries})")
        if u.host_mode == HOST_UPSTREAM:
            self.pending = swap_host(self.pending, old.host_header, (<Server>srv).host_header)
        self.server = srv
        self.take_server()
        self.retried = False        # the new server's stale pooled connection may retry too
        send_upstream(self)
        return True

    cdef retry(self):
        """The reused connection died before answering: once, on a new one."""
        self.retried = True
        self.up = None
        self.rt.error(self.peer, self.route.label, self.server.address,
                      "retrying on a new connection: pooled connection closed")
        connect_upstream(self)

    cdef response_done(self):
        self.up = None
        self.request_done()
        if self.closed:
            return
        if not self.keep_alive or self.client_eof or self.state == C_BODY:
            self.close()
            return
        self.state = C_HEAD
        self.reset_request()
        self.set_deadline(T_IDLE, self.rt.keepalive_timeout)
        self.resume_reading()
        self.process()
        self.read_by_readloop()

    cdef start_tunnel(self):
        self.state = C_TUNNEL
        self.set_deadline(T_TUNNEL, self.rt.ws_timeout)
        self.process()

    cdef request_done(self, bint aborted=False):
        """Count the request once (by status class, overall and per route),
        then write its access-log line when logging is on."""
        cdef int cls
        cache_store_abort(self)     # a store still open here did not complete
        self.end_server(FP_PEER_NEUTRAL)
        if not self.counted:
            self.counted = True
            cls = 0 if aborted else fp_stats_class(self.status)
            self.rt.st.requests[cls] += 1
            if self.route is not None:
                self.rt.st.routes[self.route.stats_index].requests[cls] += 1
        if self.rt.access_log is not None and self.log_info is not None:
            write_access_line(self)
