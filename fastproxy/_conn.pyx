# cython: language_level=3
"""Receive buffer and deadline shared by the client and upstream protocols.

uvloop asks get_buffer() for somewhere to read into; we return self, whose
__getbuffer__ exposes the free tail of a malloc'd buffer, so a read costs no
Python object at all.  The buffer is only moved or grown between reads.
"""

from libc.stdlib cimport free, malloc, realloc
from libc.string cimport memcpy, memmove
from posix.time cimport CLOCK_MONOTONIC, clock_gettime, timespec

cdef extern from "<time.h>" nogil:
    enum:
        CLOCK_MONOTONIC_COARSE

DEF MIN_FREE = 4096
DEF BUF_CAP = 16384            # a new connection's receive buffer
DEF BUF_POOL = 128             # freed ones kept for new connections (2 MiB)

# A connection per request (Connection: close) would otherwise cost a 16 KiB
# malloc and free each, which glibc serves from its bins, consolidating
# neighbours; nginx keeps such buffers in pools too.  One loop thread per
# process touches this.
cdef char *buf_pool[BUF_POOL]
cdef int buf_pooled = 0


cdef inline char *take_buf() noexcept:
    global buf_pooled
    if buf_pooled:
        buf_pooled -= 1
        return buf_pool[buf_pooled]
    return <char *>malloc(BUF_CAP)


cdef inline void give_buf(char *b, size_t cap) noexcept:
    global buf_pooled
    if b != NULL and cap == BUF_CAP and buf_pooled < BUF_POOL:
        buf_pool[buf_pooled] = b
        buf_pooled += 1
    else:
        free(b)


cdef double monotonic() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return ts.tv_sec + ts.tv_nsec * 1e-9


cdef double coarse_now() noexcept nogil:
    # The monotonic clock as of the kernel's last tick: up to a tick (1-4 ms)
    # behind monotonic(), never ahead, and read without the TSC (about 7 ns
    # here against 35; a proxied request read the clock 7 times).  For
    # deadlines and idle times, which the sweep checks every 0.1 s anyway;
    # durations that are reported use monotonic().
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts)
    return ts.tv_sec + ts.tv_nsec * 1e-9


cdef class Conn:
    def __cinit__(self, *args, **kwargs):
        self.cap = BUF_CAP
        self.max_cap = 1 << 20
        self.buf = take_buf()
        if self.buf == NULL:
            raise MemoryError()
        self.start = self.end = 0
        self.deadline = 0
        self.send_by = 0
        self.closed = False
        self.reading_paused = False
        self.tfd = -1

    def __dealloc__(self):
        give_buf(self.buf, self.cap)

    def __getbuffer__(self, Py_buffer *view, int flags):
        view.buf = self.buf + self.end
        view.len = self.cap - self.end
        view.readonly = 0
        view.itemsize = 1
        view.format = NULL
        view.ndim = 1
        view.shape = NULL
        view.strides = NULL
        view.suboffsets = NULL
        view.internal = NULL
        view.obj = self

    def __releasebuffer__(self, Py_buffer *view):
        pass

    def __len__(self):
        # uvloop's TLS transport sizes its read by len(get_buffer())
        return self.cap - self.end

    def __bool__(self):
        return True             # a connection is never "empty"

    def get_buffer(self, Py_ssize_t sizehint):
        self.make_room()
        return self

    def data_received(self, data):
        """Bytes handed over instead of read into get_buffer(): copied into
        the receive buffer, as many pieces as it takes, until the connection
        closes.  uvloop looks this attribute up on every new transport's
        protocol (without it, an AttributeError raised and dropped per
        connection); its buffered transports never call it."""
        cdef const unsigned char[::1] v = data
        cdef Py_ssize_t at = 0, n
        cdef Py_ssize_t total = v.shape[0]
        while at < total and not self.closed:
            self.make_room()
            n = min(<Py_ssize_t>(self.cap - self.end), total - at)
            memcpy(self.buf + self.end, &v[at], n)
            at += n
            self.buffer_updated(n)

    cdef int make_room(self) except -1:
        """Ensure some free space after end: slide data down, then grow."""
        cdef size_t n
        cdef char *nb
        if self.cap - self.end >= MIN_FREE:
            return 0
        if self.start > 0:
            n = self.end - self.start
            memmove(self.buf, self.buf + self.start, n)
            self.start = 0
            self.end = n
            if self.cap - self.end >= MIN_FREE:
                return 0
        if self.cap < self.max_cap:
            nb = <char *>realloc(self.buf, self.cap * 2)
            if nb == NULL:
                raise MemoryError()
            self.buf = nb
            self.cap *= 2
        if self.cap == self.end:
            raise MemoryError("receive buffer full")  # callers pause before this
        return 0

    cdef int grow_to(self, size_t cap) except -1:
        cdef char *nb
        if cap > self.cap:
            nb = <char *>realloc(self.buf, cap)
            if nb == NULL:
                raise MemoryError()
            self.buf = nb
            self.cap = cap
        return 0

    cdef void consumed_all(self):
        if self.start == self.end:
            self.start = self.end = 0

    cdef void on_timeout(self):
        pass

    cdef void on_send_timeout(self):
        pass

    cdef void pause_reading(self):
        if not self.reading_paused and self.transport is not None and not self.closed:
            self.reading_paused = True
            self.transport.pause_reading()

    cdef void resume_reading(self):
        if self.reading_paused and self.transport is not None and not self.closed:
            self.reading_paused = False
            self.transport.resume_reading()

    def abort_now(self):
        """Close at once (graceful stop ran out of time)."""
        if self.transport is not None and not self.closed:
            self.transport.abort()

    def _expire(self):
        """Called by the runtime's sweep when the deadline or send_by has passed."""
        if self.send_by and self.send_by <= coarse_now():
            self.send_by = 0
            self.on_send_timeout()
            return
        self.deadline = 0
        self.on_timeout()
