# Mirror of csrc/fp_http1.h: the zero-copy HTTP/1.x parser, framing and
# chunked decoder.  Read csrc/fp_http1.h for the contract of each function.
from libc.stdint cimport int32_t, int64_t, uint32_t, uint64_t


cdef extern from "fp_http1.h" nogil:
    enum:
        FP_INCOMPLETE
        FP_E_METHOD
        FP_E_TARGET
        FP_E_VERSION
        FP_E_VERSION_UNSUPPORTED
        FP_E_START_LINE
        FP_E_STATUS
        FP_E_REASON
        FP_E_LINE_TOO_LONG
        FP_E_HEAD_TOO_LARGE
        FP_E_TOO_MANY_HEADERS
        FP_E_HEADER_NAME
        FP_E_WS_BEFORE_COLON
        FP_E_NO_COLON
        FP_E_OBS_FOLD
        FP_E_BARE_CR
        FP_E_VALUE_CHAR
        FP_E_HOST_MISSING
        FP_E_HOST_MULTIPLE
        FP_E_CL_INVALID
        FP_E_CL_CONFLICT
        FP_E_TE_WITH_CL
        FP_E_TE_NOT_CHUNKED
        FP_E_TE_UNSUPPORTED
        FP_E_TE_HTTP10
        FP_E_CHUNK_SIZE
        FP_E_CHUNK_OVERFLOW
        FP_E_CHUNK_EXT
        FP_E_CHUNK_CRLF
        FP_E_TRAILER
        FP_E_HOST_INVALID
        FP_E_LAST

    ctypedef struct fp_span:
        uint32_t off
        uint32_t len

    ctypedef struct fp_header:
        fp_span name
        fp_span value
        int32_t id

    ctypedef struct fp_limits:
        uint32_t max_line
        uint32_t max_head
        uint32_t max_headers

    enum:
        FP_M_OTHER
        FP_M_GET
        FP_M_HEAD
        FP_M_POST
        FP_M_PUT
        FP_M_DELETE
        FP_M_CONNECT
        FP_M_OPTIONS
        FP_M_TRACE
        FP_M_PATCH

    ctypedef struct fp_head:
        fp_header *headers
        uint32_t max_slots
        uint32_t num_headers
        fp_span method
        fp_span target
        fp_span reason
        int32_t method_id
        int32_t status
        int32_t minor
        uint32_t head_len
        int32_t host_index

    int64_t fp_parse_request(const char *buf, size_t len, fp_head *h,
                             const fp_limits *lim, size_t *scanned)
    int64_t fp_parse_response(const char *buf, size_t len, fp_head *h,
                              const fp_limits *lim, size_t *scanned)

    enum:
        FP_BODY_NONE
        FP_BODY_LENGTH
        FP_BODY_CHUNKED
        FP_BODY_UNTIL_CLOSE

    enum:
        FP_F_KEEP_ALIVE
        FP_F_UPGRADE
        FP_F_EXPECT_CONTINUE
        FP_F_CONN_CLOSE
        FP_F_HAS_TE
        FP_F_HAS_CL
        FP_F_CONN_TOKENS

    ctypedef struct fp_framing:
        int32_t kind
        uint32_t flags
        uint64_t length

    int fp_request_framing(const char *buf, const fp_head *h, fp_framing *out)
    int fp_response_framing(const char *buf, const fp_head *h, int req_method_id,
                            fp_framing *out)
    int fp_valid_host(const char *v, size_t n)
    int fp_list_has_token(const char *buf, fp_span v, const char *token, size_t tlen)

    ctypedef struct fp_chunked:
        int32_t state
        uint64_t remaining
        uint32_t ext_len
        uint32_t trailer_len
        uint32_t max_ext
        uint32_t max_trailer

    void fp_chunked_init(fp_chunked *d, uint32_t max_ext, uint32_t max_trailer)

    enum:
        FP_CHUNK_NEED_MORE
        FP_CHUNK_DATA
        FP_CHUNK_DONE

    int fp_chunked_feed(fp_chunked *d, const char *buf, size_t len, size_t *consumed,
                        size_t *data_off, size_t *data_len)

    int fp_simd_available()
    int fp_set_simd(int on)
    const char *fp_error_name(int code)
    int fp_error_status(int code)
