# Mirror of csrc/fp_cache_policy.h: RFC 9111 rules for a shared cache.
from libc.stdint cimport int64_t, uint32_t, uint64_t


cdef extern from "fp_cache_policy.h" nogil:
    enum:
        FP_CC_NO_STORE
        FP_CC_NO_CACHE
        FP_CC_PRIVATE
        FP_CC_PUBLIC
        FP_CC_MUST_REVALIDATE
        FP_CC_PROXY_REVALIDATE
        FP_CC_NO_TRANSFORM
        FP_CC_ONLY_IF_CACHED
        FP_CC_MAX_AGE
        FP_CC_S_MAXAGE
        FP_CC_MAX_STALE
        FP_CC_MIN_FRESH
        FP_CC_SWR
        FP_CC_SIE
        FP_CC_MUST_UNDERSTAND
        FP_CC_INVALID
        FP_NS_OK
        FP_NS_METHOD
        FP_NS_STATUS
        FP_NS_NO_STORE
        FP_NS_PRIVATE
        FP_NS_AUTHORIZATION
        FP_NS_NOT_EXPLICIT
        FP_NS_SET_COOKIE
        FP_NS_VARY_STAR

    ctypedef struct fp_cc:
        uint32_t flags
        int64_t max_age
        int64_t s_maxage
        int64_t max_stale
        int64_t min_fresh
        int64_t swr
        int64_t sie

    ctypedef struct fp_store_query:
        int is_get
        int status
        const fp_cc *req
        const fp_cc *resp
        int has_authorization
        int has_expires
        int has_set_cookie
        int allow_set_cookie
        int vary_star

    void fp_cc_init(fp_cc *cc)
    void fp_cc_parse(fp_cc *cc, const char *v, size_t len)
    int64_t fp_http_date(const char *s, size_t len, int64_t now)
    int fp_status_heuristic(int status)
    int fp_storable(const fp_store_query *q)
    int64_t fp_freshness_lifetime(const fp_cc *cc, int status, int64_t date, int64_t expires,
                                  int64_t last_modified, int64_t response_time,
                                  int64_t heuristic_cap)
    int64_t fp_current_age(int64_t age_value, int64_t date, int64_t request_time,
                           int64_t response_time, int64_t now)
    uint64_t fp_vary_key(const char *vary, size_t vlen, const char *head, size_t hlen)
