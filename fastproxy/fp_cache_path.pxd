# Mirror of csrc/fp_cache_path.h: the cache's request path, C half.
from libc.stdint cimport int64_t, uint64_t

from fastproxy.fp_cache cimport fp_cache, fp_cache_hit, fp_cache_meta, fp_cache_put
from fastproxy.fp_cache_policy cimport fp_cc
from fastproxy.fp_http1 cimport fp_head
from fastproxy.fp_rewrite cimport fp_wbuf


cdef extern from "fp_cache_path.h" nogil:
    enum:
        FP_CP_FRESH
        FP_CP_STALE
        FP_CP_STALE_OK
        FP_CP_SWR
        FP_CP_HAS_VALIDATOR

    ctypedef struct fp_cpath_resp:
        fp_cc cc
        int has_expires
        int has_set_cookie
        int vary_star
        int64_t date
        int64_t expires
        int64_t last_modified
        int64_t age
        char vary[512]
        size_t vary_len
        int has_validator

    void fp_cpath_read_response(const char *buf, const fp_head *h, int64_t now,
                                fp_cpath_resp *out)
    void fp_cpath_read_request(const char *buf, const fp_head *h, fp_cc *cc, int *has_auth)
    int fp_cpath_stored_head(fp_wbuf *o, const char *head, size_t n)
    size_t fp_cpath_field(const char *head, size_t n, const char *name, size_t nlen,
                          char *out, size_t cap)
    uint64_t fp_cpath_vary(const char *vary, size_t vlen, const char *req, size_t rlen,
                           int drop_ae, unsigned coding)
    int fp_cpath_judge(const fp_cache_meta *m, const fp_cc *req, int64_t now, int64_t *age)
    int fp_cpath_key(fp_wbuf *o, const char *scheme, size_t sl, const char *host, size_t hl,
                     const char *target, size_t tl)
    int fp_cpath_write_hit(fp_wbuf *o, const fp_cache_hit *hit, int64_t age, const char *xc,
                           int close, int client_minor, int head_only)
    int fp_cpath_write_304(fp_wbuf *o, const fp_cache_hit *hit, int64_t age, const char *xc,
                           int close, int client_minor)
    int fp_cpath_append(fp_cache *c, fp_cache_put *p, const char *data, size_t n, int chunked)
    size_t fp_cpath_send_file(int sock, const char *head, size_t hlen, int fd, int64_t off,
                              size_t blen)
    int fp_cpath_merge_304(fp_wbuf *o, const char *stored, size_t sn, const char *fresh,
                           size_t fn, int keep_set_cookie)
    int fp_cpath_304_selects(const char *stored, size_t sn, const char *fresh, size_t fn)
    void fp_cpath_read_stored(const char *head, size_t n, int64_t now, fp_cpath_resp *out)
    int fp_cpath_put_fields(fp_wbuf *o, const char *head, size_t n, const char *name,
                            size_t nl)
    int fp_cpath_not_modified(const char *req, const fp_head *h, const fp_cache_hit *hit,
                              int64_t now)
