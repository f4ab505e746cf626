# Mirror of csrc/fp_rewrite.h and csrc/fp_wbuf.h: head re-serialisation.
from libc.stdint cimport uint32_t, uint64_t

from fastproxy.fp_http1 cimport fp_head


cdef extern from "fp_wbuf.h" nogil:
    ctypedef struct fp_wbuf:
        char *data
        size_t len
        size_t cap
    int fp_wbuf_reserve(fp_wbuf *b, size_t extra)
    int fp_wbuf_put(fp_wbuf *b, const void *p, size_t n)
    int fp_wbuf_u64(fp_wbuf *b, uint64_t v, int base)
    void fp_wbuf_free(fp_wbuf *b)


cdef extern from "fp_rewrite.h" nogil:
    ctypedef struct fp_kv:
        const char *name
        uint32_t name_len
        const char *value
        uint32_t value_len

    ctypedef struct fp_rules:
        const fp_kv *set
        uint32_t n_set
        const fp_kv *add
        uint32_t n_add
        const fp_kv *remove
        uint32_t n_remove

    ctypedef struct fp_str:
        const char *p
        uint32_t n

    enum:
        FP_RW_TRUSTED
        FP_RW_XFF_REPLACE
        FP_RW_FORWARDED
        FP_RW_VIA
        FP_RW_UPGRADE
        FP_RW_CLOSE
        FP_RW_X_FORWARDED
        FP_RW_DATE

    ctypedef struct fp_req_rw:
        uint32_t flags
        fp_str target
        fp_str host
        fp_str orig_host
        fp_str client_ip
        fp_str proto
        fp_str via
        int body_kind
        uint64_t length
        const fp_rules *rules
        const fp_rules *conn_rules

    ctypedef struct fp_resp_rw:
        uint32_t flags
        int client_minor
        int body_kind
        uint64_t length
        fp_str via
        const fp_rules *rules
        const fp_rules *conn_rules

    int fp_rewrite_request(fp_wbuf *out, const char *buf, const fp_head *h,
                           const fp_req_rw *rw)
    const char *fp_date_now()
    int fp_rewrite_response(fp_wbuf *out, const char *buf, const fp_head *h,
                            const fp_resp_rw *rw)
    int fp_simple_response(fp_wbuf *out, int status, fp_str extra, fp_str content_type,
                           fp_str body, int close, int head_only)
    const char *fp_reason_phrase(int status)
