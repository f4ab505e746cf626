# Base of both protocols: the receive buffer handed to uvloop (zero-copy
# BufferedProtocol) and the deadline the runtime's sweep checks.
from cpython.buffer cimport Py_buffer


cdef class Conn:
    cdef char *buf
    cdef size_t cap           # allocated bytes
    cdef size_t max_cap       # never grow past this
    cdef size_t start         # first unconsumed byte
    cdef size_t end           # one past the last received byte
    cdef double deadline      # monotonic seconds; 0 = none
    cdef int tkind            # what the deadline means (per subclass)
    # A client's answer the socket stopped taking must move on by then (the
    # sweep checks it beside the deadline, which it leaves alone); 0 = none
    cdef double send_by
    cdef object transport
    cdef object twrite        # transport.write, bound once per connection
    cdef bint closed
    cdef bint reading_paused
    # the socket's fd, told by _uvtransports.TransportTable; -1: not known
    cdef readonly int tfd

    cdef int make_room(self) except -1
    cdef int grow_to(self, size_t cap) except -1
    cdef void consumed_all(self)
    cdef void on_timeout(self)
    cdef void on_send_timeout(self)
    cdef void pause_reading(self)
    cdef void resume_reading(self)


cdef double monotonic() noexcept nogil
cdef double coarse_now() noexcept nogil      # deadlines: a tick behind monotonic()
