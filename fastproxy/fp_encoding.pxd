# Mirror of csrc/fp_encoding.h: content-coding negotiation and head patch.
from libc.stdint cimport int16_t, uint8_t, uint32_t, uint64_t

from fastproxy.fp_http1 cimport fp_framing, fp_head
from fastproxy.fp_rewrite cimport fp_wbuf


cdef extern from "fp_encoding.h" nogil:
    enum:
        FP_ENC_IDENTITY
        FP_ENC_GZIP
        FP_ENC_BR
        FP_ENC_ZSTD
        FP_ENC_COUNT
        FP_ENC_UNKNOWN
        FP_ENC_OK
        FP_ENC_SKIP_NO_TRANSFORM
        FP_ENC_SKIP_ENCODED
        FP_ENC_SKIP_TYPE
        FP_ENC_SKIP_SHORT
        FP_PATCH_DECODED
        FP_PATCH_VARY_ONLY

    ctypedef struct fp_accept:
        int16_t q[4]
        int16_t star
        int present

    ctypedef struct fp_enc_policy:
        uint8_t pref[4]
        int npref
        uint64_t min_length
        const char *types
        uint32_t types_len

    ctypedef struct fp_enc_req:
        int choice
        uint32_t accept
        int keep

    int fp_enc_id(const char *name, size_t n)
    const char *fp_enc_name(int id)
    void fp_accept_init(fp_accept *a)
    void fp_accept_feed(fp_accept *a, const char *v, size_t n)
    int fp_accept_q(const fp_accept *a, int id)
    int fp_accept_choose(const fp_accept *a, const uint8_t *pref, int npref)
    void fp_enc_request(const char *buf, const fp_head *h, const fp_enc_policy *pol,
                        fp_enc_req *out)
    int fp_enc_response(const char *buf, const fp_head *h, const fp_framing *fr,
                        const fp_enc_policy *pol, int *upstream_coding)
    int fp_enc_type_listed(const char *ct, size_t n, const char *lst, size_t list_len)
    int fp_enc_patch_head(fp_wbuf *o, size_t start, int coding, int flags)
