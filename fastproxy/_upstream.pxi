# Included by _protocols.pyx.  The upstream side: one connection to a
# server, taken from the keep-alive pool or newly opened; parses the response
# head, rewrites it for the client and streams the body back, re-framed and
# (with _compress) transformed.

cdef class UpstreamProtocol(ReadConn):
    cdef Server server
    cdef Upstream upstream
    cdef ClientProtocol client
    cdef fp_header slots[SLOTS]
    cdef fp_head head
    cdef fp_framing fr
    cdef size_t hint
    cdef int state
    cdef fp_chunked chunk
    cdef uint64_t left
    cdef int out_kind
    cdef bint reused, got_bytes, close_client, ka, write_paused
    cdef int requests
    cdef double idle_since
    cdef fp_wbuf out
    cdef Transform tx           # compression of the body in progress, or None
    cdef size_t cmark           # out[cmark:] is body not yet given to the cache store
    cdef bint cdiscard          # the client got a stale response instead: drop this body
    cdef int ufd                # the socket, for send(); -1: TLS or not known
    cdef const char *zb         # body bytes to send after out, from buf (not copied)
    cdef size_t zn              # ... their length; 0 outside process()
    cdef bint uq_maybe          # the transport may hold queued bytes (ufd writes wait)
    cdef bint read_failed       # a read failed (a reset): the end is not a clean close
    cdef bint pooled            # in server.idle (whatever its state says)

    def __cinit__(self, *args, **kwargs):
        self.head.headers = self.slots
        self.head.max_slots = SLOTS

    def __init__(self, Runtime rt, Server server, Upstream upstream):
        self.ufd = -1
        # Responses are read into a 64 KiB buffer: a 16 KiB body and its
        # head arrive in one read instead of two (few upstream connections,
        # so the memory is small).
        self.grow_to(65536)
        self.rt = rt
        self.server = server
        self.upstream = upstream
        self.state = U_IDLE

    def __dealloc__(self):
        fp_wbuf_free(&self.out)

    def connection_made(self, transport):
        self.transport = transport
        self.twrite = transport.write
        if self.server.ssl is None:
            self.ufd = self.tfd     # told by the loop's transport table (_uvtransports)
        self.server.active += 1
        self.rt.conns.add(self)
        self.rt.st.upstream_active += 1
        self.rt.st.servers[self.server.stats_index].active += 1

    def connection_lost(self, exc):
        cdef ClientProtocol c = self.client
        drop_reading(self)          # the socket is still open: closed after this call
        self.closed = True
        self.server.active -= 1
        self.rt.conns.discard(self)
        self.rt.st.upstream_active -= 1
        self.rt.st.servers[self.server.stats_index].active -= 1
        if self.pooled:             # also one aborted in the pool (stray bytes)
            self.pooled = False
            try:
                self.server.idle.remove(self)
            except ValueError:
                pass
        self.client = None
        if c is None:
            return
        if self.state == U_HEAD:
            if not self.got_bytes and self.reused and c.can_retry and not c.retried:
                c.retry()
            elif not self.got_bytes:
                c.upstream_failed(502, "upstream closed the connection before a response",
                                  True)
            else:
                c.upstream_failed(502, "upstream closed mid-head")
        elif self.state == U_BODY:
            # A body delimited by the close ends with a clean one only: after
            # a reset it is cut short, and the client must not see an end.
            # (A TLS close without close_notify still counts as an end, as
            # it did: many servers just close.)
            if self.fr.kind == FP_BODY_UNTIL_CLOSE and not self.read_failed \
                    and not isinstance(exc, ConnectionResetError):
                self.out.len = 0        # EOF is this body's legitimate end
                self.zn = 0
                if self.body_end(c):
                    cache_tap(c, self)
                    if self.out.len:
                        c.send(self.out.data, self.out.len, c.fin_follows())
                    cache_store_end(c)
                    c.end_server(FP_PEER_FAIL if c.status >= 500 and self.upstream.fail_on_5xx
                                 else FP_PEER_OK, f"status {c.status}")
                    c.response_done()
            else:
                c.upstream_failed(502, "upstream closed mid-response")
        elif self.state == U_TUNNEL:
            c.close()
        self.state = U_CLOSED

    def eof_received(self):
        self.ufd = -1               # the transport closes now: no direct writes after it
        return False

    def buffer_updated(self, Py_ssize_t nbytes):
        self.on_read(nbytes)
        # After its first read, a plain-TCP connection is read by the
        # worker's ReadLoop (_readloop.pxi) for the rest of its life.
        if not self.own_read and self.ufd >= 0 and self.state != U_CLOSED and not self.closed \
                and not self.reading_paused:
            take_reading(self, self.ufd)

    cdef int on_read(self, size_t n) except -1:
        self.end += n
        self.got_bytes = True
        self.process()
        return 0

    cdef int on_eof(self) except -1:
        # What uvloop does when eof_received() returns False; connection_lost
        # then ends whatever was in progress.
        self.ufd = -1
        self.transport.close()
        return 0

    cdef int on_read_failed(self) except -1:
        # As uvloop on a read error: the transport aborts with the state as
        # it is, so connection_lost tells the client (502, or a retry).
        self.ufd = -1
        self.read_failed = True
        if not self.closed:
            self.transport.abort()
        return 0

    cdef close_transport(self):
        """Close after what is queued has been written (state set by the caller)."""
        drop_reading(self)
        if not self.closed:
            self.transport.close()

    def pause_writing(self):
        self.write_paused = True
        if self.client is not None:
            self.client.pause_reading()
            self.tkind = T_SEND
            self.deadline = coarse_now() + self.upstream.send_timeout

    def resume_writing(self):
        self.write_paused = False
        if self.client is not None:
            self.client.resume_reading()
            if self.state == U_TUNNEL:  # the client's websocket_idle_timeout governs it
                self.tkind = T_NONE
                self.deadline = 0
            else:
                self.tkind = T_READ
                self.deadline = coarse_now() + self.upstream.read_timeout

    cdef begin(self, ClientProtocol c, bint reused):
        self.client = c
        self.reused = reused
        self.got_bytes = False
        self.state = U_HEAD
        self.hint = 0
        self.requests += 1
        self.tx = None
        self.cdiscard = False
        self.server.requests += 1
        self.rt.st.upstream_requests += 1
        self.rt.st.servers[self.server.stats_index].requests += 1
        self.tkind = T_READ
        self.deadline = coarse_now() + self.upstream.read_timeout
        if c.write_paused:              # still behind with an earlier answer
            self.client_stalled()

    cdef send(self, bytes data):
        """Write data to the server: straight to the socket when the transport
        has nothing queued (no transport call), what the socket does not take
        through the transport, which also reports any error."""
        cdef size_t n = len(data), sent = 0
        if self.ufd >= 0 and not self.closed and self.state != U_CLOSED:
            if self.uq_maybe and not self.transport.get_write_buffer_size():
                self.uq_maybe = False
            if not self.uq_maybe:
                sent = fp_sock_send(self.ufd, data, n, NULL, 0, 0)
        if sent < n:
            self.uq_maybe = True
            self.twrite(data[sent:] if sent else data)

    cdef client_stalled(self):
        """The client stopped taking the answer (its read is paused): no read
        timeout meanwhile, which would blame the server for the wait."""
        if self.tkind == T_READ and (self.state == U_HEAD or self.state == U_BODY):
            self.deadline = 0

    cdef client_moving(self):
        if self.tkind == T_READ and (self.state == U_HEAD or self.state == U_BODY) \
                and not self.closed:
            self.deadline = coarse_now() + self.upstream.read_timeout

    cdef client_gone(self):
        """The client vanished mid-exchange: this connection is not reusable."""
        self.client = None
        self.abort()

    def abort_now(self):
        """Close at once (graceful stop ran out of time): U_CLOSED first, so
        connection_lost does not take the cut for the end of an until-close
        body."""
        self.abort()

    cdef abort(self):
        drop_reading(self)
        if not self.closed and self.state != U_CLOSED:
            self.state = U_CLOSED
            self.deadline = 0
            self.transport.abort()

    cdef void on_timeout(self):
        cdef ClientProtocol c = self.client
        try:
            if self.tkind == T_POOL:
                self.state = U_CLOSED
                self.close_transport()
                return
            retryable = self.state == U_HEAD and not self.got_bytes  # before abort()
            self.client = None
            self.abort()
            if c is not None:
                c.upstream_failed(504, "upstream send timeout" if self.tkind == T_SEND
                                  else "upstream read timeout", retryable)
        except Exception:
            self.rt.log.exception("upstream timeout handler")

    cdef process(self):
        cdef ClientProtocol c = self.client
        if c is None or self.state == U_IDLE or self.state == U_CLOSED:
            self.abort()                # bytes nobody asked for: not reusable
            return
        self.out.len = 0
        self.zn = 0
        try:
            if self.state == U_HEAD:
                self.read_head(c)
            if self.state == U_BODY:
                self.read_body(c)
                if self.tx is not None and self.tx.stream and self.state == U_BODY:
                    self.tx.flush(&self.out)    # a stream: this read's events go out now
            elif self.state == U_TUNNEL and self.end > self.start:
                fp_wbuf_put(&self.out, self.buf + self.start, self.end - self.start)
                self.start = self.end
                c.set_deadline(T_TUNNEL, self.rt.ws_timeout)
        finally:
            self.consumed_all()
        cache_tap(c, self)
        if (self.out.len or self.zn) and self.client is not None:
            c.send2(self.out.data, self.out.len, self.zb, self.zn, False)
        self.zn = 0
        if self.state == U_BODY:
            self.deadline = coarse_now() + self.upstream.read_timeout
            if self.client is not None and self.client.write_paused:
                self.client_stalled()   # this read filled the client's queue

    cdef read_head(self, ClientProtocol c):
        cdef int64_t rc
        cdef int frc, kind
        cdef bint vary
        cdef size_t hs                  # where the final head starts in out
        cdef fp_resp_rw rw
        cdef const char *p
        while True:
            p = self.buf + self.start
            rc = fp_parse_response(p, self.end - self.start, &self.head,
                                   &self.rt.resp_limits, &self.hint)
            if rc == FP_INCOMPLETE:
                return
            self.hint = 0
            if rc < 0:
                self.bad_response(c, fp_error_name(<int>rc).decode())
                return
            frc = fp_response_framing(p, &self.head, c.method_id, &self.fr)
            if frc != 0:
                self.bad_response(c, fp_error_name(frc).decode())
                return
            rw.flags = (self.rt.fwd_flags & FP_RW_VIA) | FP_RW_DATE
            rw.client_minor = c.minor
            rw.via = S(self.rt.via)
            rw.rules = NULL if c.route.resp_rules.empty else &c.route.resp_rules.rules
            rw.conn_rules = NULL if c.lresp is None or c.lresp.empty else &c.lresp.rules
            rw.length = self.fr.length
            if self.head.status < 200 and self.head.status != 101:
                # 1xx: pass through to HTTP/1.1 clients (RFC 9110 15.2), keep going.
                if c.minor == 1:
                    rw.body_kind = FP_BODY_NONE
                    if fp_rewrite_response(&self.out, p, &self.head, &rw) != 0:
                        raise MemoryError()
                self.start += <size_t>rc
                continue
            if self.head.status == 101:
                if not c.upgrade:
                    self.bad_response(c, "101 to a request that did not ask to upgrade")
                    return
                rw.flags |= FP_RW_UPGRADE
                rw.body_kind = FP_BODY_NONE
                if fp_rewrite_response(&self.out, p, &self.head, &rw) != 0:
                    raise MemoryError()
                self.start += <size_t>rc
                c.status = 101
                c.response_started = True
                c.end_server(FP_PEER_OK)
                self.state = U_TUNNEL
                self.tkind = T_NONE
                self.deadline = 0
                if self.end > self.start:
                    fp_wbuf_put(&self.out, self.buf + self.start, self.end - self.start)
                    self.start = self.end
                c.write(PyBytes_FromStringAndSize(self.out.data, self.out.len))
                self.out.len = 0
                c.start_tunnel()
                return
            kind = self.fr.kind
            if kind == FP_BODY_CHUNKED or kind == FP_BODY_UNTIL_CLOSE:
                self.out_kind = FP_BODY_CHUNKED if c.minor == 1 else FP_BODY_UNTIL_CLOSE
            else:
                self.out_kind = kind
            vary = False
            if c.route.compress is not None:
                self.tx = response_transform(<Policy>c.route.compress, p, &self.head, &self.fr,
                                             &c.enc_req, c.method_id, c.upgrade, c.minor, &vary)
                if self.tx is not None:     # length unknown once transformed
                    self.out_kind = FP_BODY_CHUNKED if c.minor == 1 else FP_BODY_UNTIL_CLOSE
            self.close_client = not c.keep_alive or c.client_eof or c.state == C_BODY \
                or self.out_kind == FP_BODY_UNTIL_CLOSE
            if self.close_client:
                rw.flags |= FP_RW_CLOSE
                c.keep_alive = False
            rw.body_kind = self.out_kind
            hs = self.out.len
            if fp_rewrite_response(&self.out, p, &self.head, &rw) != 0:
                raise MemoryError()
            if self.tx is not None:
                self.tx.patch_head(&self.out, hs)
                c.out_coding = self.tx.coding
            elif vary:
                add_vary(&self.out, hs)
            self.start += <size_t>rc
            c.status = self.head.status
            c.response_started = True
            if c.cxc:
                cache_response_head(c, self, p, hs)
            self.ka = (self.fr.flags & FP_F_KEEP_ALIVE) != 0
            self.left = self.fr.length
            if kind == FP_BODY_CHUNKED:
                fp_chunked_init(&self.chunk, 4096, 16384)
            self.state = U_BODY
            if kind == FP_BODY_NONE:
                self.finish(c)
            return

    cdef read_body(self, ClientProtocol c):
        cdef size_t n, used, off, dlen
        cdef int rc
        cdef int kind = self.fr.kind
        if kind == FP_BODY_LENGTH:
            n = self.end - self.start
            if n > self.left:
                n = <size_t>self.left
            if not self.body_data(c, self.buf + self.start, n):
                return
            self.start += n
            self.left -= n
            if self.left == 0 and self.body_end(c):
                self.finish(c)
            return
        if kind == FP_BODY_UNTIL_CLOSE:
            n = self.end - self.start
            if self.body_data(c, self.buf + self.start, n):
                self.start = self.end
            return
        while True:                     # chunked
            rc = fp_chunked_feed(&self.chunk, self.buf + self.start, self.end - self.start,
                                 &used, &off, &dlen)
            if rc < 0:
                self.flush(c)
                self.client = None
                self.abort()
                c.upstream_failed(502, "bad chunked body from upstream: "
                                  + fp_error_name(rc).decode())
                return
            if rc == FP_CHUNK_DATA:
                if not self.body_data(c, self.buf + self.start + off, dlen):
                    return
                self.start += used
                continue
            self.start += used
            if rc == FP_CHUNK_DONE and self.body_end(c):
                self.finish(c)
            return

    cdef bint body_data(self, ClientProtocol c, const char *p, size_t n) except -1:
        """Body bytes toward the client: through the transform, as a chunk,
        or as they are.  False when the transform failed (answered)."""
        if n == 0 or self.cdiscard:
            return True
        if self.zn:                     # out's bytes go first: keep the order
            if fp_wbuf_put(&self.out, self.zb, self.zn):
                raise MemoryError()
            self.zn = 0
        if self.tx is not None:
            if self.tx.feed(&self.out, p, n) < 0:
                self.transform_failed(c)
                return False
        elif self.out_kind == FP_BODY_CHUNKED:
            put_chunk(&self.out, p, n)
        elif not c.cstoring:
            # As they are, and not stored: sent from the receive buffer
            # behind out's bytes by the next send2 (flush(), or the end of
            # process(), before buf is read into again).
            self.zb = p
            self.zn = n
        elif fp_wbuf_put(&self.out, p, n):
            raise MemoryError()
        return True

    cdef bint body_end(self, ClientProtocol c) except -1:
        """The upstream body is complete: close the transform, then the
        chunked framing.  False when the transform failed (answered)."""
        if self.tx is not None:
            if self.tx.finish(&self.out) < 0:
                self.transform_failed(c)
                return False
            self.tx.account(self.rt.st)
            self.tx = None
        if self.out_kind == FP_BODY_CHUNKED and fp_wbuf_put(&self.out, b"0\r\n\r\n", 5):
            raise MemoryError()
        return True

    cdef transform_failed(self, ClientProtocol c):
        """A body we decode was a bomb or corrupt: 502 while nothing was sent
        to the client, else the connection is cut (fail() does either)."""
        why = self.tx.error
        self.tx.account(self.rt.st)
        self.tx = None
        self.client = None
        self.abort()
        if c.bytes_out == 0:
            self.out.len = 0
            c.response_started = False
        c.upstream_failed(502, why)

    cdef flush(self, ClientProtocol c, bint last=False):
        """Hand what out holds to the client; last: it ends the response
        (finish()), so the FIN may ride with it (fin_follows())."""
        cache_tap(c, self)
        if self.out.len or self.zn:
            c.send2(self.out.data, self.out.len, self.zb, self.zn, last and c.fin_follows())
            self.out.len = 0
            self.zn = 0

    cdef bad_response(self, ClientProtocol c, str why):
        self.client = None
        self.abort()
        if c.response_started:
            self.flush(c)
        c.upstream_failed(502, "invalid response from upstream: " + why)

    cdef finish(self, ClientProtocol c):
        """Response complete: flush it, pool or close this connection, then
        let the client move on (its next pipelined request may write)."""
        cdef Upstream u = self.upstream
        self.flush(c, True)
        if not c.crefetch:      # (a refetch keeps the key, to store what comes)
            cache_store_end(c)
        self.client = None
        fp_stats_time(&self.rt.st.servers[self.server.stats_index],
                      <uint64_t>((monotonic() - c.t_upstream) * 1e6))
        if c.status >= 500 and u.fail_on_5xx:
            c.end_server(FP_PEER_FAIL, f"status {c.status}")
        else:
            c.end_server(FP_PEER_OK)
        # C_WAIT: the whole request went out (not C_BODY, nor a client gone
        # in the middle of its body, C_CLOSED), so the server expects no more
        reusable = self.ka and self.start == self.end and c.state == C_WAIT \
            and u.keepalive > 0 and self.requests < u.keepalive_requests \
            and not self.rt.closing and not self.closed
        # The pool may briefly hold up to twice `keepalive`: bursts then reuse
        # connections instead of closing and reopening them; trim_pools()
        # brings it back to `keepalive` once the extra ones sat idle a while.
        if reusable and len(self.server.idle) < 2 * u.keepalive:
            self.idle_since = coarse_now()
            self.state = U_IDLE
            self.tkind = T_POOL
            self.deadline = self.idle_since + u.keepalive_timeout
            self.resume_reading()
            self.server.idle.append(self)
            self.pooled = True
        else:
            self.state = U_CLOSED
            self.deadline = 0
            self.close_transport()
        if c.crefetch and not c.closed:
            c.crefetch = False
            c.up = None
            cache_refetch(c)
        else:
            c.response_done()
