# Included by _protocols.pyx.  The worker's own read loop for plain-TCP
# connections, both sides.
#
# uvloop reads a stream through two Python calls per read: get_buffer() and
# buffer_updated(), each through a context switch, with a new int for the
# size and a buffer-protocol round trip.  So a connection that is not TLS is
# taken off its transport's reading (pause_reading()) and put in one epoll
# set per worker, which the loop watches as a single fd.  When that fd is
# readable, one Python call (ReadLoop.ready) reads every ready connection in
# C, straight into its receive buffer.  The transport is kept for everything
# else: the writes it queues, close and abort.
#
# - A client connection moves once it is between requests (keep-alive).
#   A/B against uvloop's reading (bench/RESULTS.md, 2026-11-28): 100 B cache
#   hits 7.71 -> 7.25 us of CPU.
# - A server connection moves after its first read, and stays for its life,
#   in the pool too (an idle one must still see the server's close).
#
# While every connection of a batch was answered whole inside its read (a
# cache hit sent straight to the socket: nothing left for the loop to do),
# ready() asks its set again before giving the loop its turn back, up to
# MORE_BATCHES times and MORE_BATCHES_TIME, if the batch had more than one
# connection (a lone one, as with one client at a time, would make it an
# epoll_wait that finds nothing, every request): a loop turn (uvloop's
# epoll_pwait, its handle, the GIL) costs about 1,600 instructions and a
# system call, and under load the next requests are in by then.  Anything
# else in a batch (a request sent upstream, an EOF, a local answer) ends the
# call, since it may wait on the loop: asking again regardless stretched
# proxied requests' tail to tens of ms (bench/RESULTS.md, 2026-11-29).
#
# Level-triggered, as libuv is: a connection with more bytes, or an EOF
# behind its bytes, is simply reported again.  Like libuv, a read that
# fills the buffer is followed by another at once (up to MORE_READS), so a
# large body does not wait for a loop turn per buffer.  (An edge-triggered
# set that read each socket dry measured no better.)
#
# The socket stays open until the transport has called connection_lost()
# (uvloop and asyncio close it after that call), so a connection leaves the
# set (EPOLL_CTL_DEL) by then at the latest, and its fd number can never be
# someone else's when it does.
#
# A client connection accepted by fastproxy's own listener
# (_socktransport.pxi) has no uvloop transport at all: the set reads it from
# its first byte and also reports when its socket takes queued bytes again
# (EPOLLOUT, only while some are queued).  Its transport closes the socket
# itself, which takes it out of the set without an EPOLL_CTL_DEL (unless the
# process has forked: _socktransport.pxi, FORKED), and only then calls
# connection_lost().

from cpython.ref cimport Py_DECREF, Py_INCREF
from libc.errno cimport EAGAIN, EINTR, errno
from libc.stdint cimport uint32_t
from posix.unistd cimport close as close_fd, read as read_fd


cdef extern from "<sys/epoll.h>" nogil:
    ctypedef union epoll_data_t:
        void *ptr
        int fd
    cdef struct epoll_event:
        uint32_t events
        epoll_data_t data
    enum:
        EPOLLIN
        EPOLLOUT
        EPOLLERR
        EPOLLHUP
        EPOLL_CLOEXEC
        EPOLL_CTL_ADD
        EPOLL_CTL_DEL
        EPOLL_CTL_MOD
    int epoll_create1(int flags)
    int epoll_ctl(int epfd, int op, int fd, epoll_event *event)
    int epoll_wait(int epfd, epoll_event *events, int maxevents, int timeout)

DEF READY_BATCH = 64        # connections read per call of ready()
DEF MORE_READS = 16         # reads in a row while each fills the buffer
DEF MORE_BATCHES = 16       # batches more per call while every read was answered whole
DEF MORE_BATCHES_TIME = 0.0005  # ... and for at most this long (s): timers, accepts wait

# Requests answered whole inside a read, with nothing left for the loop to
# do (cache_serve counts them): while every connection of a batch gave one,
# ready() may ask its set again instead of returning to the loop.
cdef uint64_t ANSWERED_IN_READ = 0


cdef class SockTransport     # _socktransport.pxi


cdef class ReadConn(Conn):
    """A connection the ReadLoop may read instead of its transport.  What a
    read brings is the subclass's to handle: on_read(), on_eof(),
    on_read_failed()."""
    cdef Runtime rt
    cdef readonly bint own_read  # the worker's ReadLoop reads this socket, not the transport
    cdef readonly bint rl_watched  # ... and it is in the ReadLoop's set now (not paused)
    cdef int rfd                # the socket the ReadLoop reads
    cdef bint rl_out            # the set also reports when the socket is writable
    cdef uint32_t rl_mask       # the events the set has for rfd now (0: not in it)
    cdef SockTransport own_tr   # fastproxy's own transport (_socktransport.pxi), or None

    cdef int on_read(self, size_t n) except -1:
        """n bytes were read into buf at end."""
        raise NotImplementedError

    cdef int on_eof(self) except -1:
        """The peer closed its side (the reading has been dropped)."""
        raise NotImplementedError

    cdef int on_read_failed(self) except -1:
        """A read failed, or handling one raised: the connection ends."""
        raise NotImplementedError

    cdef void pause_reading(self):
        if self.own_read:
            if not self.reading_paused and not self.closed:
                self.reading_paused = True
                pause_own_reading(self)
        else:
            Conn.pause_reading(self)

    cdef void resume_reading(self):
        if self.own_read:
            if self.reading_paused and not self.closed:
                self.reading_paused = False
                resume_own_reading(self)
        else:
            Conn.resume_reading(self)


cdef class ReadLoop:
    """One per worker (Runtime.readloop): the epoll set of the connections
    whose reading it has taken, and the loop's watch on it."""
    cdef int epfd
    cdef object loop
    cdef bint watching          # the loop watches epfd
    cdef list lost_q            # SockTransports whose connection_lost() is due
    cdef readonly uint64_t calls, batches   # ready() calls, and the non-empty sets they read

    def __cinit__(self, loop):
        self.loop = loop
        self.lost_q = []
        self.epfd = epoll_create1(EPOLL_CLOEXEC)
        if self.epfd < 0:
            raise OSError(errno, "epoll_create1")

    cdef bint update(self, ReadConn c) except -1:
        """Give the set what c wants now: EPOLLIN while rl_watched,
        EPOLLOUT while rl_out; neither takes it out.  False when that
        failed (c is then out of the set)."""
        cdef epoll_event ev
        cdef uint32_t want = (EPOLLIN if c.rl_watched else 0) | (EPOLLOUT if c.rl_out else 0)
        cdef int op
        if want == c.rl_mask:
            return True
        if self.epfd < 0:
            c.rl_mask = 0
            return want == 0
        op = EPOLL_CTL_DEL if want == 0 else (EPOLL_CTL_MOD if c.rl_mask else EPOLL_CTL_ADD)
        ev.events = want
        ev.data.ptr = <void *>c
        if epoll_ctl(self.epfd, op, c.rfd, &ev) < 0:
            if op != EPOLL_CTL_ADD:
                epoll_ctl(self.epfd, EPOLL_CTL_DEL, c.rfd, &ev)
            c.rl_mask = 0
            return want == 0
        c.rl_mask = want
        if want and not self.watching:
            self.loop.add_reader(self.epfd, self.ready)
            self.watching = True
        return True

    def ready(self):
        """The loop's callback: one read from each ready connection, and
        again while each was answered whole (see the top of the file)."""
        cdef epoll_event evs[READY_BATCH]
        cdef int n, i, more = MORE_BATCHES
        cdef bint whole
        cdef uint64_t before
        cdef double until = 0
        cdef ReadConn c
        self.calls += 1
        while True:
            n = epoll_wait(self.epfd, evs, READY_BATCH, 0)
            if n <= 0:
                return
            self.batches += 1
            whole = True
            for i in range(n):
                c = <ReadConn>evs[i].data.ptr     # a reference for the call
                if c.rl_out and evs[i].events & (EPOLLOUT | EPOLLERR | EPOLLHUP):
                    whole = False
                    c.own_tr.writable()
                    if not evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP):
                        continue
                before = ANSWERED_IN_READ
                read_ready(c)
                if ANSWERED_IN_READ == before:
                    whole = False
            if not whole or not more or n < 2:
                return          # (one connection alone: most likely nothing more comes yet)
            if until == 0:
                until = monotonic() + MORE_BATCHES_TIME
            elif monotonic() > until:
                return
            more -= 1

    cdef int lost(self, SockTransport t) except -1:
        """t closed its socket: its protocol's connection_lost() is called
        soon, together with those of the rest of this loop turn."""
        if not self.lost_q:
            self.loop.call_soon(self.deliver_lost)
        self.lost_q.append(t)
        return 0

    def deliver_lost(self):
        cdef SockTransport t
        cdef ClientProtocol c
        q, self.lost_q = self.lost_q, []
        for t in q:
            c, t.proto = t.proto, None      # (which also ends the reference cycle)
            try:
                c.connection_lost(t.exc)
            except Exception as exc:
                self.loop.call_exception_handler({
                    "message": "connection_lost() failed", "exception": exc, "protocol": c})

    def close(self):
        """The worker is stopping and every connection has been aborted."""
        if self.epfd < 0:
            return
        if self.watching:
            self.loop.remove_reader(self.epfd)
            self.watching = False
        close_fd(self.epfd)
        self.epfd = -1


cdef ReadLoop readloop_of(Runtime rt):
    if rt.readloop is None:
        rt.readloop = ReadLoop(rt.loop)
    return <ReadLoop>rt.readloop


cdef int take_reading(ReadConn c, int fd) except -1:
    """Move c's reading of socket fd from its transport to the worker's
    ReadLoop."""
    cdef ReadLoop rl
    if c.rt.closing:
        return 0                # stopping: the transport reads what is left
    rl = readloop_of(c.rt)
    c.rfd = fd
    c.transport.pause_reading()
    c.rl_watched = True
    if not rl.update(c):
        c.rl_watched = False
        c.transport.resume_reading()
        return 0
    c.own_read = True
    Py_INCREF(c)                # held while the set may name c
    return 0


cdef int drop_reading(ReadConn c) except -1:
    """c's reading ends for good: closing, EOF, or a read error."""
    if not c.own_read:
        return 0
    pause_own_reading(c)
    c.own_read = False
    Py_DECREF(c)                # the caller holds its own reference
    return 0


cdef int pause_own_reading(ReadConn c) except -1:
    # Out of the set, not just EPOLLIN off: a socket that is reset
    # reports EPOLLERR/EPOLLHUP whatever the mask, and would spin.
    if c.rl_watched:
        c.rl_watched = False
        if c.rt.readloop is not None:   # else stopped: its set is gone
            (<ReadLoop>c.rt.readloop).update(c)
    return 0


cdef int resume_own_reading(ReadConn c) except -1:
    if not c.rl_watched and c.rt.readloop is not None:
        c.rl_watched = True
        if not (<ReadLoop>c.rt.readloop).update(c):
            # cannot happen with a live fd; the transport reads instead,
            # or, with no uvloop transport behind, the connection ends
            c.rl_watched = False
            drop_reading(c)
            if c.own_tr is not None:
                c.own_tr.abort()
            else:
                c.transport.resume_reading()
    return 0


cdef int read_ready(ReadConn c) except -1:
    """What uvloop's read callbacks do, with one read(2) and no Python call
    on the way: bytes to on_read(), EOF to on_eof(), an error, or an
    exception while handling the bytes, to on_read_failed()."""
    cdef ssize_t n
    cdef size_t room
    cdef int more = MORE_READS
    if not c.rl_watched:
        return 0                # paused or closed earlier in this batch
    try:
        while True:
            c.make_room()
            room = c.cap - c.end
            n = read_fd(c.rfd, c.buf + c.end, room)
            if n <= 0:
                break
            c.on_read(n)
            more -= 1
            if <size_t>n < room or not more or not c.rl_watched:
                return 0        # drained (or paused, closed): epoll says when there is more
        if n == 0:
            drop_reading(c)
            c.on_eof()
        elif errno != EAGAIN and errno != EINTR:    # EWOULDBLOCK == EAGAIN on Linux
            drop_reading(c)
            c.on_read_failed()
    except Exception as exc:    # uvloop's read callback does the same
        drop_reading(c)
        c.on_read_failed()
        c.rt.loop.call_exception_handler({
            "message": "Fatal error on a connection",
            "exception": exc,
            "protocol": c,
        })
    return 0
