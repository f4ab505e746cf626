# Response compression: per-route policy (compiled from [compression]) and
# the per-response body transform.  See fastproxy/_compress.pyx.
from libc.stdint cimport uint64_t

from fastproxy.fp_encoding cimport fp_enc_policy, fp_enc_req
from fastproxy.fp_http1 cimport fp_framing, fp_head
from fastproxy.fp_rewrite cimport fp_wbuf
from fastproxy.fp_stats cimport fp_worker_stats


cdef class Policy:
    cdef fp_enc_policy c
    cdef bytes types_blob           # what c.types points into
    cdef int level[4]               # by FP_ENC_* id
    cdef readonly bint decompress
    cdef readonly uint64_t max_decompressed
    cdef readonly double max_ratio


cdef class Transform:
    cdef readonly int coding        # FP_ENC_* the client receives (cache seam)
    cdef readonly int upstream_coding   # FP_ENC_* decoded from, IDENTITY = none
    cdef readonly bint stream       # flush after every upstream read
    cdef bint chunked               # frame output as HTTP/1.1 chunks
    cdef object comp                # zlib / brotli / zstandard compressor or None
    cdef object dec                 # decompressor or None
    cdef object zsink               # zstd: the writer the decoder writes into
    cdef fp_wbuf *cur               # output buffer of the call in progress
    cdef readonly uint64_t n_in     # bytes from the upstream
    cdef readonly uint64_t n_mid    # identity bytes (decoded / to be encoded)
    cdef readonly uint64_t n_out    # body bytes to the client (before chunk framing)
    cdef uint64_t cap
    cdef double ratio
    cdef readonly str error         # why feed/finish failed
    cdef bytes held                 # decoding: the response head, until body bytes exist

    cdef int decoded(self, bytes data) except -1
    cdef int feed(self, fp_wbuf *out, const char *p, size_t n) except -2
    cdef int flush(self, fp_wbuf *out) except -2
    cdef int finish(self, fp_wbuf *out) except -2
    cdef int patch_head(self, fp_wbuf *out, size_t start) except -1
    cdef int release_head(self, fp_wbuf *out) except -1
    cdef void account(self, fp_worker_stats *st)


cdef void request_codings(Policy pol, const char *buf, const fp_head *h, fp_enc_req *out)
cdef Transform response_transform(Policy pol, const char *buf, const fp_head *h,
                                  const fp_framing *fr, const fp_enc_req *req,
                                  int method_id, bint upgrade, int client_minor,
                                  bint *vary)
cdef int add_vary(fp_wbuf *out, size_t start) except -1
