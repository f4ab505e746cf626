# cython: language_level=3
"""Response compression: gzip, br and zstd, negotiated per request and
streamed per response.

Split of the work ("Python decides, C executes"):

* csrc/fp_encoding.c parses Accept-Encoding (RFC 9110 12.5.3, q-values,
  ``*``, ``identity``, ``x-gzip``) on the request head's spans, checks a
  response head against the route's policy (type list, min_length,
  Content-Encoding, ``Cache-Control: no-transform``) and patches the
  serialised response head (Content-Encoding, one merged Vary, weak ETag, no
  Content-Length / Accept-Ranges).  No Python object per header.
* This module holds the per-route ``Policy`` (compiled once per config) and
  the per-response ``Transform`` that drives the codec objects of zlib,
  brotli and zstandard chunk by chunk.  A Transform exists only for a
  response that is actually transformed.

Hooks in _protocols.pyx (kept small): ``request_codings`` when the request
head is parsed, ``response_transform`` when the response head is, then
``Transform.patch_head`` / ``feed`` / ``flush`` / ``finish``.

Work per call is bounded by the upstream read: UpstreamProtocol reads into a
64 KiB buffer, so one ``feed`` compresses at most 64 KiB (measured in
bench/RESULTS.md, "Compression cost per 64 KiB"), on the loop: brotli-4 and
zstd-3 and gzip-6 stay around a millisecond there, so no thread pool.
Decompression is bounded the same way on its output: zlib and brotli are
asked for at most OUT_SLICE bytes per call and zstd writes into a sink in
OUT_SLICE pieces, so a bomb is caught by the caps before it is buffered.

Seam for the shared-memory cache (issue 7): the coding is decided in two
small integers, both FP_ENC_* ids (0 identity, 1 gzip, 2 br, 3 zstd):

* ``ClientProtocol.enc_req.choice`` - the coding this client would get,
  decided from Accept-Encoding when the request head is parsed, before any
  upstream or cache lookup: a cache can use it (or ``enc_req.accept``, the
  bit mask of acceptable codings) to pick the stored variant.
* ``ClientProtocol.out_coding`` - the coding of the body actually sent,
  set when the response head is written (``Transform.coding``; identity when
  nothing was transformed).  A cache storing the bytes the client gets
  stores them under this coding, and can serve them later to any client
  whose ``enc_req.accept`` has that bit, without recompressing.
"""

import zlib

import brotli
import zstandard

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.stdint cimport uint64_t
from libc.stdlib cimport free

from fastproxy.fp_encoding cimport *
from fastproxy.fp_http1 cimport (
    FP_BODY_CHUNKED,
    FP_BODY_NONE,
    FP_BODY_UNTIL_CLOSE,
    FP_M_HEAD,
    fp_framing,
    fp_head,
)
from fastproxy.fp_rewrite cimport fp_wbuf, fp_wbuf_put, fp_wbuf_u64
from fastproxy.fp_stats cimport fp_worker_stats


cdef extern from "fp_known_headers.h" nogil:
    enum:
        FP_H_CONTENT_TYPE

DEF OUT_SLICE = 65536          # most decoded bytes produced per codec call
DEF RATIO_FLOOR = 1048576      # max_ratio is judged once this much was decoded

CODINGS = {"identity": FP_ENC_IDENTITY, "gzip": FP_ENC_GZIP, "br": FP_ENC_BR,
           "zstd": FP_ENC_ZSTD}
NAMES = {v: k for k, v in CODINGS.items()}

# Index of the counters in fp_worker_stats.compression (csrc/fp_stats.h).
STAT_RESPONSES = 0             # + 3 * coding: responses compressed with it
STAT_BYTES_IN = 1              # + 3 * coding: identity bytes compressed
STAT_BYTES_OUT = 2             # + 3 * coding: compressed bytes sent
STAT_DECODED = 12              # responses decompressed for the client
STAT_DECODE_FAILED = 13        # decompressions stopped: bomb caps or corrupt data


class DecodeFailed(Exception):
    """The upstream body could not be decoded within the caps."""


cdef class Policy:
    """A route's [compression] settings as the data plane reads them."""

    def __init__(self, cfg):
        self.c.npref = 0
        if cfg.enabled:
            for name in cfg.algorithms:
                self.c.pref[self.c.npref] = CODINGS[name]
                self.c.npref += 1
        for name, lvl in dict(cfg.levels).items():
            self.level[CODINGS[name]] = lvl
        self.c.min_length = cfg.min_length
        self.types_blob = ",".join(t.lower() for t in cfg.types).encode()
        self.c.types = self.types_blob
        self.c.types_len = len(self.types_blob)
        self.decompress = cfg.decompress_upstream
        self.max_decompressed = cfg.max_decompressed_size
        self.max_ratio = cfg.max_ratio

    def negotiate(self, bytes accept_encoding):
        """Test helper: the coding name chosen for one Accept-Encoding value."""
        cdef fp_accept a
        fp_accept_init(&a)
        fp_accept_feed(&a, accept_encoding, len(accept_encoding))
        return NAMES[fp_accept_choose(&a, self.c.pref, self.c.npref)]

    def type_listed(self, bytes content_type):
        """Test helper: would this Content-Type be compressed?"""
        return bool(fp_enc_type_listed(content_type, len(content_type), self.c.types,
                                       self.c.types_len))


def accept_q(bytes accept_encoding):
    """Test helper: {coding: q} as fp_accept_q sees one Accept-Encoding value."""
    cdef fp_accept a
    fp_accept_init(&a)
    fp_accept_feed(&a, accept_encoding, len(accept_encoding))
    return {name: fp_accept_q(&a, i) / 1000 for name, i in CODINGS.items()}


def patch_head(bytes head, str coding, bint decoded=False, bint vary_only=False):
    """Test helper: fp_enc_patch_head on a serialised head."""
    cdef fp_wbuf w
    w.data = NULL
    w.len = w.cap = 0
    try:
        if fp_wbuf_put(&w, <const char *>head, len(head)) or \
                fp_enc_patch_head(&w, 0, CODINGS[coding], (FP_PATCH_DECODED if decoded else 0)
                                  | (FP_PATCH_VARY_ONLY if vary_only else 0)):
            raise MemoryError()
        return PyBytes_FromStringAndSize(w.data, w.len)
    finally:
        free(w.data)


cdef class _ZstdSink:
    """The file zstandard's stream_writer writes decoded pieces into."""
    cdef Transform t

    def write(self, data):
        self.t.decoded(data)
        return len(data)


cdef inline int emit(fp_wbuf *out, bytes data, bint chunked) except -1:
    """Append codec output, as one chunk when the client gets chunked."""
    cdef Py_ssize_t n = PyBytes_GET_SIZE(data)
    if n == 0:
        return 0                # an empty chunk would end the body
    if chunked and (fp_wbuf_u64(out, n, 16) or fp_wbuf_put(out, b"\r\n", 2)):
        raise MemoryError()
    if fp_wbuf_put(out, PyBytes_AS_STRING(data), n) or \
            (chunked and fp_wbuf_put(out, b"\r\n", 2)):
        raise MemoryError()
    return 0


cdef class Transform:
    """One response body on its way from the upstream to the client:
    decoded (decompress_upstream) and/or encoded, re-framed."""

    def __init__(self, Policy pol, int coding, int upstream_coding, bint stream,
                 bint chunked):
        self.coding = coding
        self.upstream_coding = upstream_coding
        self.stream = stream
        self.chunked = chunked
        self.cap = pol.max_decompressed
        self.ratio = pol.max_ratio
        self.error = None
        lvl = pol.level[coding]
        if coding == FP_ENC_GZIP:
            self.comp = zlib.compressobj(lvl, zlib.DEFLATED, 31)
        elif coding == FP_ENC_BR:
            # 512 KiB window (lgwin 19), as nginx's brotli module: the
            # default 4 MiB is a lot of memory per concurrent response.
            self.comp = brotli.Compressor(quality=lvl, lgwin=19)
        elif coding == FP_ENC_ZSTD:
            # one ZstdCompressor per response: its context is not shareable
            self.comp = zstandard.ZstdCompressor(level=lvl).compressobj()
        if upstream_coding == FP_ENC_GZIP:
            self.dec = zlib.decompressobj(31)
        elif upstream_coding == FP_ENC_BR:
            self.dec = brotli.Decompressor()
        elif upstream_coding == FP_ENC_ZSTD:
            sink = _ZstdSink()
            sink.t = self
            self.zsink = sink
            self.dec = zstandard.ZstdDecompressor().stream_writer(
                sink, write_size=OUT_SLICE, write_return_read=True)

    cdef int decoded(self, bytes data) except -1:
        """Identity bytes (straight from the upstream, or decoded)."""
        cdef uint64_t n = PyBytes_GET_SIZE(data)
        self.n_mid += n
        if self.dec is not None:
            if self.n_mid > self.cap:
                raise DecodeFailed(f"decoded body over max_decompressed_size ({self.cap})")
            if self.n_mid > RATIO_FLOOR and self.n_mid > self.ratio * self.n_in:
                raise DecodeFailed(f"decoded body over max_ratio ({self.ratio:g}:1)")
        if self.comp is not None:
            c = self.coding
            data = self.comp.process(data) if c == FP_ENC_BR else self.comp.compress(data)
        self.n_out += PyBytes_GET_SIZE(data)
        if PyBytes_GET_SIZE(data):
            self.release_head(self.cur)
        return emit(self.cur, data, self.chunked)

    cdef int feed(self, fp_wbuf *out, const char *p, size_t n) except -2:
        """Body bytes from the upstream.  0, or -1 with .error set when the
        upstream body cannot be decoded (a bomb, or corrupt)."""
        if n == 0:
            return 0
        data = PyBytes_FromStringAndSize(p, n)
        self.n_in += n
        self.cur = out
        if self.dec is None:
            return self.decoded(data)
        try:
            u = self.upstream_coding
            if u == FP_ENC_GZIP:
                # output is capped per call: go on while input is left over
                # or a full slice suggests more output is pending
                while not self.dec.eof:
                    piece = self.dec.decompress(data, OUT_SLICE)
                    self.decoded(piece)
                    data = self.dec.unconsumed_tail
                    if not data and PyBytes_GET_SIZE(piece) < OUT_SLICE:
                        break
            elif u == FP_ENC_BR:
                # output is capped per call; drain with empty input until
                # the decoder has nothing more for what it was given
                piece = self.dec.process(data, output_buffer_limit=OUT_SLICE)
                while piece:
                    self.decoded(piece)
                    if self.dec.is_finished():
                        break
                    piece = self.dec.process(b"", output_buffer_limit=OUT_SLICE)
            else:
                self.dec.write(data)
        except DecodeFailed as e:
            self.error = str(e)
            return -1
        except (zlib.error, brotli.error, zstandard.ZstdError) as e:
            self.error = f"corrupt {NAMES[self.upstream_coding]} body from upstream: {e}"
            return -1
        return 0

    cdef int flush(self, fp_wbuf *out) except -2:
        """Push what the compressor holds to the client (streams: SSE, long
        polls, chunked without length)."""
        self.release_head(out)
        if self.comp is None:
            return 0
        c = self.coding
        if c == FP_ENC_GZIP:
            data = self.comp.flush(zlib.Z_SYNC_FLUSH)
        elif c == FP_ENC_BR:
            data = self.comp.flush()
        else:
            data = self.comp.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)
        self.n_out += PyBytes_GET_SIZE(data)
        return emit(out, data, self.chunked)

    cdef int finish(self, fp_wbuf *out) except -2:
        """The upstream body ended: close the codecs (not the chunked
        framing: the caller writes the last chunk)."""
        if self.dec is not None and self.upstream_coding != FP_ENC_ZSTD:
            done = self.dec.eof if self.upstream_coding == FP_ENC_GZIP \
                else self.dec.is_finished()
            if not done:
                self.error = f"truncated {NAMES[self.upstream_coding]} body from upstream"
                return -1
        self.release_head(out)
        if self.comp is None:
            return 0
        data = self.comp.finish() if self.coding == FP_ENC_BR else self.comp.flush()
        self.n_out += PyBytes_GET_SIZE(data)
        self.comp = None
        return emit(out, data, self.chunked)

    cdef int patch_head(self, fp_wbuf *out, size_t start) except -1:
        """Rewrite the head just serialised at out[start:].  When decoding, the
        head is then held back until the first body bytes exist: a bomb or a
        corrupt body found before that is still answered with a clean 502."""
        if fp_enc_patch_head(out, start, self.coding,
                             FP_PATCH_DECODED if self.dec is not None else 0) != 0:
            raise MemoryError()
        if self.dec is not None:
            self.held = PyBytes_FromStringAndSize(out.data + start, out.len - start)
            out.len = start
        return 0

    cdef int release_head(self, fp_wbuf *out) except -1:
        if self.held is not None:
            if fp_wbuf_put(out, PyBytes_AS_STRING(self.held), PyBytes_GET_SIZE(self.held)):
                raise MemoryError()
            self.held = None
        return 0

    cdef void account(self, fp_worker_stats *st):
        cdef int i = 3 * self.coding
        if self.coding != FP_ENC_IDENTITY:
            st.compression[i + STAT_RESPONSES] += 1
            st.compression[i + STAT_BYTES_IN] += self.n_mid
            st.compression[i + STAT_BYTES_OUT] += self.n_out
        if self.dec is not None:
            if self.error is None:
                st.compression[STAT_DECODED] += 1
            else:
                st.compression[STAT_DECODE_FAILED] += 1


cdef void request_codings(Policy pol, const char *buf, const fp_head *h, fp_enc_req *out):
    fp_enc_request(buf, h, &pol.c, out)


cdef bint is_event_stream(const char *buf, const fp_head *h):
    cdef unsigned int i
    for i in range(h.num_headers):
        if h.headers[i].id == FP_H_CONTENT_TYPE:
            return fp_enc_type_listed(buf + h.headers[i].value.off, h.headers[i].value.len,
                                      b"text/event-stream", 17) != 0
    return False


cdef int add_vary(fp_wbuf *out, size_t start) except -1:
    if fp_enc_patch_head(out, start, FP_ENC_IDENTITY, FP_PATCH_VARY_ONLY) != 0:
        raise MemoryError()
    return 0


cdef Transform response_transform(Policy pol, const char *buf, const fp_head *h,
                                  const fp_framing *fr, const fp_enc_req *req,
                                  int method_id, bint upgrade, int client_minor,
                                  bint *vary):
    """The Transform for this response, or None to pass the body through.
    *vary: passed through, but other clients would get another coding, so
    the head needs Vary: Accept-Encoding all the same (as nginx gzip_vary)."""
    cdef int flags, uc = FP_ENC_IDENTITY, coding
    cdef int st = h.status
    vary[0] = False
    if fr.kind == FP_BODY_NONE or method_id == FP_M_HEAD or st < 200 or st == 204 \
            or st == 206 or st == 304 or req.keep or upgrade:
        return None
    flags = fp_enc_response(buf, h, fr, &pol.c, &uc)
    if flags & (1 << FP_ENC_SKIP_NO_TRANSFORM) or uc == FP_ENC_UNKNOWN:
        return None
    if uc == FP_ENC_IDENTITY:
        if pol.c.npref == 0 or flags & (1 << FP_ENC_SKIP_TYPE | 1 << FP_ENC_SKIP_SHORT):
            return None
        coding = req.choice
        if coding == FP_ENC_IDENTITY:
            vary[0] = True
            return None
    else:
        # Encoded upstream: only decoded for a client that cannot take it;
        # then re-encoded with the client's choice when the type is listed.
        if not pol.decompress:
            return None
        if req.accept & (1u << uc):
            vary[0] = True
            return None
        coding = FP_ENC_IDENTITY if flags & (1 << FP_ENC_SKIP_TYPE) else req.choice
    stream = fr.kind == FP_BODY_CHUNKED or fr.kind == FP_BODY_UNTIL_CLOSE \
        or is_event_stream(buf, h)
    return Transform(pol, coding, uc, stream, client_minor == 1)
