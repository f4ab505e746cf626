# Included by _protocols.pyx, after _client.pxi.  fastproxy's own listener
# and transport for plain-TCP client connections.
#
# uvloop's accept path is four system calls and about 8,000 instructions per
# connection more than the work needs (bench/RESULTS.md, 2026-11-29): it
# asks the new socket for both its addresses, builds a TCPTransport and a
# libuv stream around it, and takes it out of its epoll set one call at a
# time before closing it.  Every plain-TCP client connection is read by the
# worker's ReadLoop (_readloop.pxi) between requests anyway, and answered
# mostly by direct writes (ClientProtocol.send2, cache hits), so the transport
# was only a write queue and a close.  Here that is all it is:
#
# - SockServer watches a listening socket (loop.add_reader) and accepts in C
#   (fp_sock_accept: accept4, TCP_NODELAY, the peer's address from accept4
#   itself), then makes the ClientProtocol and reads the request right away:
#   with a new connection per request it is usually in by then, and an
#   answer with `Connection: close` then ends the connection without its
#   socket ever joining an epoll set.
# - SockTransport is what ClientProtocol calls `transport`: write() sends at
#   once and queues what the socket does not take, and the ReadLoop's set
#   reports when it takes more (EPOLLOUT); pause_writing()/resume_writing()
#   at asyncio's default water marks; close() after the queue drains;
#   write_eof(); abort().  The socket is closed before connection_lost() is
#   called (batched per loop turn, as asyncio calls it soon, not at once),
#   which takes it out of the set with no EPOLL_CTL_DEL (unless the process
#   has forked: see FORKED); from the close on, the protocol counts as closed.
#
# TLS listeners keep uvloop's server and transports; so does every listener
# when FASTPROXY_UVLOOP_ACCEPT=1 is set (for A/B measurements; README,
# "Embedding").

from cpython.buffer cimport PyBUF_SIMPLE, PyObject_GetBuffer, PyBuffer_Release
from libc.errno cimport (ECONNABORTED, EHOSTDOWN, EHOSTUNREACH, ENETDOWN, ENETUNREACH, ENONET,
                         ENOPROTOOPT, EOPNOTSUPP, EPERM, EPROTO, ETIMEDOUT)
from posix.unistd cimport close as close_socket

cdef extern from "<sys/socket.h>" nogil:
    ssize_t send(int fd, const void *buf, size_t n, int flags)
    int shutdown(int fd, int how)
    enum:
        MSG_NOSIGNAL
        MSG_DONTWAIT
        SHUT_WR

cdef extern from "<pthread.h>" nogil:
    int pthread_atfork(void (*prepare)() noexcept nogil, void (*parent)() noexcept nogil,
                       void (*child)() noexcept nogil)

# Closing a socket takes it out of an epoll set only once no process holds
# it.  After a fork (an embedding program's multiprocessing, say), the child
# holds a copy of every socket this process had, so a connection must leave
# the read loop's set (EPOLL_CTL_DEL) before its close, or the set would go
# on naming a freed protocol.  Until then, which is always in fastproxy's own
# workers, the close alone does it, one system call fewer per connection.
cdef bint FORKED = False


cdef void note_fork_parent() noexcept nogil:
    global FORKED
    FORKED = True


cdef void note_fork_child() noexcept nogil:
    global FORKED
    FORKED = False      # its own sets start empty; only its own later forks matter


pthread_atfork(NULL, note_fork_parent, note_fork_child)

DEF ACCEPT_BATCH = 128          # connections accepted per readiness of the listener
DEF HIGH_WATER = 65536          # asyncio's default write-buffer limits
DEF LOW_WATER = 16384
DEF ACCEPT_PAUSE = 0.5          # out of descriptors: stop accepting this long (nginx: 0.5 s)


cdef inline tuple address_tuple(str host, int port):
    """asyncio's shapes of a socket address: (host, port), and for IPv6
    (host, port, flowinfo, scope_id)."""
    return (host, port, 0, 0) if ":" in host else (host, port)


cdef class SockTransport:
    """The transport of a plain-TCP client connection accepted by SockServer."""
    cdef int fd
    cdef ClientProtocol proto
    cdef ReadLoop rl
    cdef fp_wbuf q              # q.data[qoff:q.len]: bytes the socket has not taken
    cdef size_t qoff
    cdef bint closing           # close() or abort() called, or a write failed
    cdef bint eof_pending       # write_eof() once the queue drains
    cdef bint eof_sent
    cdef bint writing_paused    # the protocol was told pause_writing()
    cdef object peer            # (ip, port), made when asked for
    cdef object host            # the peer's IP address (str), kept past the end
    cdef int port               # the peer's
    cdef object exc             # for connection_lost()

    def __cinit__(self):
        self.fd = -1

    def __dealloc__(self):
        fp_wbuf_free(&self.q)
        if self.fd >= 0:        # never delivered its connection_lost: still ours to close
            close_socket(self.fd)

    # ---- what ClientProtocol calls ----------------------------------------
    def write(self, data):
        cdef Py_buffer pb
        if self.closing:
            return
        if self.eof_pending or self.eof_sent:
            raise RuntimeError("Cannot call write() after write_eof()")
        PyObject_GetBuffer(data, &pb, PyBUF_SIMPLE)
        try:
            self.put(<const char *>pb.buf, <size_t>pb.len)
        finally:
            PyBuffer_Release(&pb)

    cdef int put(self, const char *p, size_t n) except -1:
        cdef ssize_t r = 0
        if n == 0:
            return 0
        if self.q.len == self.qoff:
            r = send(self.fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT)
            if r < 0:
                if errno != EAGAIN and errno != EINTR:
                    self.failed(errno)
                    return 0
                r = 0
            if <size_t>r == n:
                return 0
        if self.qoff:           # slide the queue down before it grows
            memmove(self.q.data, self.q.data + self.qoff, self.q.len - self.qoff)
            self.q.len -= self.qoff
            self.qoff = 0
        if fp_wbuf_put(&self.q, p + r, n - <size_t>r) < 0:
            raise MemoryError()
        if not self.proto.rl_out:
            self.proto.rl_out = True
            if not self.rl.update(self.proto):
                self.failed(errno)
                return 0
        if not self.writing_paused and self.q.len - self.qoff > HIGH_WATER:
            self.writing_paused = True
            self.tell("pause_writing")
        return 0

    cdef tell(self, str what):
        """pause_writing() or resume_writing(): what raises there is the
        loop's to report, as asyncio's transports do, not the writer's."""
        try:
            getattr(self.proto, what)()
        except Exception as exc:
            self.rl.loop.call_exception_handler({
                "message": f"protocol.{what}() failed", "exception": exc,
                "transport": self, "protocol": self.proto})

    cdef int writable(self) except -1:
        """The ReadLoop's set says the socket takes bytes again."""
        cdef ssize_t r
        cdef size_t left = self.q.len - self.qoff
        if left:
            r = send(self.fd, self.q.data + self.qoff, left, MSG_NOSIGNAL | MSG_DONTWAIT)
            if r < 0:
                if errno != EAGAIN and errno != EINTR:
                    self.failed(errno)
                return 0
            self.qoff += r
            left -= r
            if self.proto.send_by and r > 0:    # it takes bytes: the timeout starts again
                self.proto.start_send_by()
        if left:
            if self.writing_paused and left <= LOW_WATER:
                self.writing_paused = False
                self.tell("resume_writing")
            return 0
        self.q.len = self.qoff = 0
        if self.q.cap > HIGH_WATER:     # a burst: give the memory back
            fp_wbuf_free(&self.q)
        self.proto.rl_out = False
        if self.closing:
            self.finish(None)
            return 0
        self.rl.update(self.proto)
        if self.eof_pending:
            self.eof_pending = False
            self.eof_sent = True
            shutdown(self.fd, SHUT_WR)
        if self.writing_paused:
            self.writing_paused = False
            self.tell("resume_writing")
        return 0

    def close(self):
        if self.closing:
            return
        self.closing = True
        if self.q.len == self.qoff:
            self.finish(None)
            return
        if not self.proto.send_by:      # the queue drains first, in time
            self.proto.start_send_by()
        if self.proto.rl_watched:       # nothing more is read
            self.proto.rl_watched = False
            self.rl.update(self.proto)

    def abort(self):
        self.closing = True     # (a socket still open has not finished)
        self.finish(None)

    def write_eof(self):
        if self.closing or self.eof_pending or self.eof_sent:
            return
        if self.q.len == self.qoff:
            self.eof_sent = True
            shutdown(self.fd, SHUT_WR)
        else:
            self.eof_pending = True

    def can_write_eof(self):
        return True

    def is_closing(self):
        return self.closing

    def get_write_buffer_size(self):
        return self.q.len - self.qoff

    def get_write_buffer_limits(self):
        return (LOW_WATER, HIGH_WATER)

    def pause_reading(self):
        pass        # the protocol pauses its ReadLoop reading itself (ReadConn)

    def resume_reading(self):
        pass

    def is_reading(self):
        return self.proto is not None and self.proto.rl_watched

    def get_protocol(self):
        return self.proto

    def get_extra_info(self, name, default=None):
        cdef char ip[64]
        cdef int port = 0, n
        if name == "peername":
            if self.peer is None and self.host is not None and self.host != "unknown":
                self.peer = address_tuple(self.host, self.port)
            return self.peer if self.peer is not None else default
        if name == "sockname" and self.fd >= 0:
            n = fp_sock_name(self.fd, ip, sizeof(ip), &port)
            if n >= 0:
                return address_tuple(PyBytes_FromStringAndSize(ip, n).decode("ascii"), port)
        return default

    # ---- the end ------------------------------------------------------------
    cdef int failed(self, int err) except -1:
        """A write failed (the peer reset, or went away): asyncio's
        _force_close -- the queue is dropped and the connection ends."""
        self.closing = True
        self.finish(OSError(err, os.strerror(err)) if err else None)
        return 0

    cdef int finish(self, exc) except -1:
        """Close the socket now and call connection_lost() soon.  The
        connection ends here for the protocol too, not in connection_lost():
        until then nothing may use the fd number, which may already be
        another socket's -- no resume_reading() putting it back in the set
        (an upstream that drained), no direct write -- and no request
        pipelined behind a failed write may start."""
        cdef ClientProtocol c = self.proto
        if self.fd < 0:
            return 0
        self.q.len = self.qoff = 0
        c.rl_watched = c.rl_out = False
        if c.rl_mask and FORKED:
            self.rl.update(c)   # EPOLL_CTL_DEL: a forked child may hold the socket (above)
        c.rl_mask = 0
        if c.own_read:
            c.own_read = False
            Py_DECREF(c)        # (self.proto still holds it)
        close_socket(self.fd)
        self.fd = -1
        c.sfd = c.rfd = c.tfd = -1
        c.closed = True
        c.state = C_CLOSED
        self.exc = exc
        self.rl.lost(self)
        return 0


cdef class SockServer:
    """A plain-TCP listener accepted by fastproxy itself: what the worker
    keeps of asyncio's Server (close(), sockets)."""
    cdef object loop
    cdef object sock            # the listening socket given (closed by close() if owned)
    cdef bint owned
    cdef int fd                 # our own duplicate of it
    cdef object where           # its address, for the log
    cdef ClientFactory factory
    cdef bint serving
    cdef object resume

    def __init__(self, loop, sock, ClientFactory factory, bint owned):
        self.loop = loop
        self.sock = sock
        self.owned = owned
        self.factory = factory
        self.where = sock.getsockname()[:2]
        self.fd = os.dup(sock.fileno())
        os.set_blocking(self.fd, False)

    def start(self):
        if not self.serving and self.fd >= 0:
            self.loop.add_reader(self.fd, self.accept_ready)
            self.serving = True

    def close(self):
        if self.resume is not None:
            self.resume.cancel()
            self.resume = None
        if self.serving:
            self.loop.remove_reader(self.fd)
            self.serving = False
        if self.fd >= 0:
            close_socket(self.fd)
            self.fd = -1
            if self.owned:
                self.sock.close()

    @property
    def sockets(self):
        return [self.sock] if self.fd >= 0 else []

    def is_serving(self):
        return self.serving

    def accept_ready(self):
        cdef char ip[64]
        cdef int n, port, fd, i, err
        for i in range(ACCEPT_BATCH):
            if not self.serving:
                return          # closed by what the last connection did (a stop)
            fd = fp_sock_accept(self.fd, ip, sizeof(ip), &n, &port)
            if fd >= 0:
                self.started(fd, ip, n, port)
                continue
            err = errno
            if err == EAGAIN:
                return
            if err == ECONNABORTED or err == EPERM or err == ETIMEDOUT or err == EPROTO \
                    or err == ENETDOWN or err == ENOPROTOOPT or err == EHOSTDOWN \
                    or err == ENONET or err == EHOSTUNREACH or err == EOPNOTSUPP \
                    or err == ENETUNREACH:
                # This connection's own error (gone before its turn; EPERM: a
                # firewall; the rest: accept(2) hands over the new socket's
                # pending network error, to be retried like EAGAIN).
                continue
            # Out of descriptors or memory (EMFILE, ENFILE, ENOBUFS, ENOMEM),
            # or anything stranger: the listener stays readable, so asking
            # again at once would spin; pause, as nginx does.
            self.factory.rt.log.error(
                "accept on %s failed: %s; not accepting for %gs",
                self.where, os.strerror(err), ACCEPT_PAUSE)
            self.loop.remove_reader(self.fd)
            self.serving = False
            self.resume = self.loop.call_later(ACCEPT_PAUSE, self.resume_accepting)
            return

    def resume_accepting(self):
        self.resume = None
        self.start()

    cdef started(self, int fd, const char *ip, int n, int port):
        """A new connection: its protocol, its transport, and a first read."""
        cdef ClientProtocol c
        cdef SockTransport t = None
        try:
            c = self.factory.make()
            t = SockTransport.__new__(SockTransport)
            t.fd = fd
            t.proto = c
            t.rl = readloop_of(c.rt)
            t.port = port
            c.tfd = c.rfd = fd
            c.own_tr = t
            c.made(t, ip, n)
            t.host = c.peer
            c.own_read = True
            Py_INCREF(c)        # held while the ReadLoop may read it (drop_reading)
            c.rl_watched = True
        except Exception as exc:
            if t is not None:
                t.fd = -1       # closed here, not by its __dealloc__
                t.proto = None
            close_socket(fd)
            if c is not None and c in c.rt.conns:   # made() got as far as counting it
                c.connection_lost(exc)
            self.loop.call_exception_handler({
                "message": "Failed to set up an accepted connection", "exception": exc})
            return
        read_ready(c)           # most likely the request is in already
        if c.rl_watched and not t.closing and not t.rl.update(c):
            t.abort()
