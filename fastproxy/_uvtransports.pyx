# cython: language_level=3
"""A cheaper stand-in for uvloop's table of live transports.

uvloop keeps every transport it creates in a weakref.WeakValueDictionary,
keyed by file descriptor (Loop._transports), for one check: add_reader() and
add_writer() refuse an fd that a live transport owns.  That dictionary is
pure Python: an insert per connection, and a weakref callback that deletes
the entry when the transport dies, together about 3 us of a new client
connection's ~48 us here (perf, bench/RESULTS.md).  install() puts a
TransportTable in its place: the same meaning (fd -> the transport, while it
lives) with C-level weak references; and on the way it tells our protocols
the fd of their socket, which saves each connection a getsockname() call.

The table is a private field of uvloop's Loop with no Python name, so
install() finds it by identity: the one WeakValueDictionary the loop
references (gc.get_referents) and the one pointer-sized slot of the loop
object that holds it.  Unless both are exactly one -- another uvloop that
keeps its transports differently, asyncio's own loop -- nothing is changed
and everything works as before, a little slower.
"""

import gc
import weakref

import uvloop

from cpython.object cimport PyObject
from cpython.ref cimport Py_DECREF, Py_INCREF
from cpython.weakref cimport PyWeakref_GetObject, PyWeakref_NewRef

from fastproxy._conn cimport Conn


cdef class TransportTable:
    """fd -> the live transport using it; a lookup of a dead one is a KeyError."""
    cdef dict refs      # fd -> weakref; dead ones stay until the fd is reused

    def __cinit__(self):
        self.refs = {}

    def __setitem__(self, fd, transport):
        self.refs[fd] = PyWeakref_NewRef(transport, None)
        proto = transport.get_protocol()
        if isinstance(proto, Conn):             # TLS: uvloop's SSLProtocol, not ours
            (<Conn>proto).tfd = fd

    def __getitem__(self, fd):
        cdef PyObject *o = PyWeakref_GetObject(self.refs[fd])
        if o == <PyObject *>None:
            raise KeyError(fd)
        return <object>o

    def __delitem__(self, fd):
        del self.refs[fd]

    def __len__(self):
        cdef Py_ssize_t n = 0
        for r in self.refs.values():
            if PyWeakref_GetObject(r) != <PyObject *>None:
                n += 1
        return n


def install(loop) -> bool:
    """Swap `loop`'s transport table for a TransportTable; False (and no
    change) when the loop is not one whose table can be found for sure."""
    if not isinstance(loop, uvloop.Loop):
        return False
    old = [o for o in gc.get_referents(loop) if type(o) is weakref.WeakValueDictionary]
    if len(old) != 1:
        return False
    cdef PyObject *target = <PyObject *>old[0]
    cdef PyObject **words = <PyObject **><PyObject *>loop
    cdef Py_ssize_t nwords = type(loop).__basicsize__ // sizeof(PyObject *)
    cdef Py_ssize_t i, at = -1
    for i in range(2, nwords):                  # after ob_refcnt and ob_type
        if words[i] == target:
            if at >= 0:
                return False                    # held twice: not sure which
            at = i
    if at < 0:
        return False
    table = TransportTable()
    for fd, transport in list(old[0].items()):  # transports made before this call
        table[fd] = transport
    Py_INCREF(table)
    words[at] = <PyObject *>table
    Py_DECREF(old[0])                           # the loop's reference, now gone
    return True
