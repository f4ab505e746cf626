# cython: language_level=3
"""Python view of the C HTTP/1.x parser, for tests, tools and embedding.

Builds Python objects for every field, so it is deliberately not what the data
plane uses: the protocols call csrc/ directly through fp_http1.pxd.
"""

from libc.stdint cimport int64_t, uint32_t
from libc.string cimport memcpy
from posix.mman cimport MAP_ANONYMOUS, MAP_FAILED, MAP_PRIVATE, PROT_NONE, PROT_READ
from posix.mman cimport PROT_WRITE, mmap, mprotect, munmap
from posix.unistd cimport sysconf

from fastproxy.fp_http1 cimport *
from fastproxy.fp_known_headers cimport FP_H_COUNT, fp_header_id, fp_header_name

cdef extern from "unistd.h":
    enum:
        _SC_PAGESIZE

DEF MAX_SLOTS = 512


class ParseError(ValueError):
    """A head or body the parser refuses; `status` is what to answer."""

    def __init__(self, int code):
        self.code = code
        self.name = fp_error_name(code).decode()
        self.status = fp_error_status(code)
        super().__init__(f"{self.name} ({self.status})")


ERRORS = {c: (fp_error_name(c).decode(), fp_error_status(c))
          for c in range(FP_E_LAST, FP_INCOMPLETE)}
HEADER_IDS = {fp_header_name(i).decode(): i for i in range(1, FP_H_COUNT)}

_KINDS = ("none", "length", "chunked", "until_close")
_METHODS = {b"GET": FP_M_GET, b"HEAD": FP_M_HEAD, b"POST": FP_M_POST, b"PUT": FP_M_PUT,
            b"DELETE": FP_M_DELETE, b"CONNECT": FP_M_CONNECT, b"OPTIONS": FP_M_OPTIONS,
            b"TRACE": FP_M_TRACE, b"PATCH": FP_M_PATCH}


class Head:
    """A parsed head as Python values (see _http1.pyi)."""

    def __repr__(self):
        return (f"Head(method={self.method!r}, target={self.target!r}, "
                f"status={self.status}, version={self.version}, "
                f"headers={self.headers!r}, head_len={self.head_len}, "
                f"body_kind={self.body_kind!r}, content_length={self.content_length})")


cdef object span(const char *buf, fp_span s):
    return buf[s.off:s.off + s.len]


cdef object build_head(const char *buf, fp_head *h, bint request, bint framing,
                       int req_method):
    cdef fp_framing fr
    cdef int rc
    cdef uint32_t i
    head = Head()
    head.method = span(buf, h.method) if request else None
    head.target = span(buf, h.target) if request else None
    head.status = 0 if request else h.status
    head.reason = None if request else span(buf, h.reason)
    head.version = (1, h.minor)
    head.headers = [(span(buf, h.headers[i].name), span(buf, h.headers[i].value),
                     h.headers[i].id) for i in range(h.num_headers)]
    head.head_len = h.head_len
    head.body_kind = None
    head.content_length = None
    head.keep_alive = head.upgrade = head.expect_continue = False
    if framing:
        if request:
            rc = fp_request_framing(buf, h, &fr)
        else:
            rc = fp_response_framing(buf, h, req_method, &fr)
        if rc != 0:
            raise ParseError(rc)
        head.body_kind = _KINDS[fr.kind]
        head.content_length = fr.length if fr.kind == FP_BODY_LENGTH else None
        head.keep_alive = bool(fr.flags & FP_F_KEEP_ALIVE)
        head.upgrade = bool(fr.flags & FP_F_UPGRADE)
        head.expect_continue = bool(fr.flags & FP_F_EXPECT_CONTINUE)
    return head


cdef object parse(bytes data, bint request, int max_line, int max_head, int max_headers,
                  bint guard, bint framing, int req_method):
    cdef fp_header slots[MAX_SLOTS]
    cdef fp_head h
    cdef fp_limits lim
    cdef int64_t rc
    cdef size_t n = len(data), page, total
    cdef char *region = NULL
    cdef const char *buf = data
    lim.max_line = max_line
    lim.max_head = max_head
    lim.max_headers = max_headers
    h.headers = slots
    h.max_slots = MAX_SLOTS
    if guard:
        # Copy the input so it ends exactly where a PROT_NONE page begins.
        page = <size_t>sysconf(_SC_PAGESIZE)
        total = ((n + page - 1) // page + 1) * page
        region = <char *>mmap(NULL, total, PROT_READ | PROT_WRITE,
                              MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
        if <void *>region == MAP_FAILED:
            raise MemoryError("mmap")
        mprotect(region + total - page, page, PROT_NONE)
        buf = region + total - page - n
        memcpy(<char *>buf, <const char *>data, n)
    try:
        if request:
            rc = fp_parse_request(buf, n, &h, &lim, NULL)
        else:
            rc = fp_parse_response(buf, n, &h, &lim, NULL)
        if rc == FP_INCOMPLETE:
            return None
        if rc < 0:
            raise ParseError(<int>rc)
        return build_head(buf, &h, request, framing, req_method)
    finally:
        if region != NULL:
            munmap(region, total)


def parse_request(bytes data, *, int max_line=8192, int max_head=65536,
                  int max_headers=100, bint guard=False, bint framing=True):
    return parse(data, True, max_line, max_head, max_headers, guard, framing, 0)


def parse_response(bytes data, *, bytes request_method=b"GET", int max_line=8192,
                   int max_head=65536, int max_headers=100, bint guard=False,
                   bint framing=True):
    return parse(data, False, max_line, max_head, max_headers, guard, framing,
                 _METHODS.get(request_method, FP_M_OTHER))


cdef int64_t scan(bytes data, bint request, int max_line, int max_head,
                  int max_headers) except -2:
    """Parse into C slots and decide the framing, as the data plane does."""
    cdef fp_header slots[MAX_SLOTS]
    cdef fp_head h
    cdef fp_limits lim
    cdef fp_framing fr
    cdef int64_t rc
    cdef int frc
    lim.max_line = max_line
    lim.max_head = max_head
    lim.max_headers = max_headers
    h.headers = slots
    h.max_slots = MAX_SLOTS
    if request:
        rc = fp_parse_request(data, len(data), &h, &lim, NULL)
    else:
        rc = fp_parse_response(data, len(data), &h, &lim, NULL)
    if rc == FP_INCOMPLETE:
        return 0
    if rc < 0:
        raise ParseError(<int>rc)
    if request:
        frc = fp_request_framing(data, &h, &fr)
    else:
        frc = fp_response_framing(data, &h, FP_M_GET, &fr)
    if frc != 0:
        raise ParseError(frc)
    return rc


def scan_request(bytes data, int max_line=8192, int max_head=65536, int max_headers=100):
    """What the data plane does per request head, called from Python: parse
    into C slots and decide the framing, building no Python object but the
    returned int (head length; 0 = incomplete).  Raises ParseError."""
    return scan(data, True, max_line, max_head, max_headers)


def scan_response(bytes data, int max_line=8192, int max_head=65536, int max_headers=100):
    """scan_request for a response head to a GET."""
    return scan(data, False, max_line, max_head, max_headers)


cdef class RequestParser:
    """Feeds a growing buffer to fp_parse_request with its resume hint."""

    cdef bytearray buf
    cdef size_t hint
    cdef fp_limits lim
    cdef bint done

    def __init__(self, *, int max_line=8192, int max_head=65536, int max_headers=100):
        self.buf = bytearray()
        self.hint = 0
        self.lim.max_line = max_line
        self.lim.max_head = max_head
        self.lim.max_headers = max_headers
        self.done = False

    def feed(self, bytes chunk):
        cdef fp_header slots[MAX_SLOTS]
        cdef fp_head h
        cdef int64_t rc
        if self.done:
            raise RuntimeError("RequestParser already returned a head")
        self.buf += chunk
        data = bytes(self.buf)
        h.headers = slots
        h.max_slots = MAX_SLOTS
        rc = fp_parse_request(data, len(data), &h, &self.lim, &self.hint)
        if rc == FP_INCOMPLETE:
            return None
        self.done = True
        if rc < 0:
            raise ParseError(<int>rc)
        return build_head(data, &h, True, True, 0)


cdef class ChunkedDecoder:
    """Python face of fp_chunked_feed: returns copies of the data spans."""

    cdef fp_chunked dec

    def __init__(self, int max_ext=4096, int max_trailer=16384):
        fp_chunked_init(&self.dec, max_ext, max_trailer)

    def feed(self, bytes data):
        cdef const char *buf = data
        cdef size_t n = len(data), pos = 0, used = 0, off = 0, dlen = 0
        cdef int rc
        pieces = []
        while True:
            rc = fp_chunked_feed(&self.dec, buf + pos, n - pos, &used, &off, &dlen)
            if rc < 0:
                raise ParseError(rc)
            if rc == FP_CHUNK_DATA:
                pieces.append(data[pos + off:pos + off + dlen])
                pos += used
                continue
            pos += used
            return pieces, rc == FP_CHUNK_DONE, pos


def header_id(bytes name):
    return fp_header_id(name, len(name))


def header_name(int id):
    cdef const char *s = fp_header_name(id)
    return None if s == NULL else s.decode()


def simd_available():
    return bool(fp_simd_available())


def set_simd(bint on):
    return bool(fp_set_simd(on))
