/* fp_http1.h - zero-copy HTTP/1.0 and HTTP/1.1 head parser, framing and
 * chunked decoder.  Pure C11: no allocation, no callbacks, no Python.
 *
 * Shape (after picohttpparser): the caller owns the buffer and the header
 * slots; the parser writes offsets into them and returns
 *     > 0               bytes of the head consumed (the head is complete),
 *     FP_INCOMPLETE     need more bytes (call again with the longer buffer),
 *     < FP_INCOMPLETE   an error, one FP_E_* code per reason.
 * The parser is incremental in the cheap sense: feed the whole buffer seen so
 * far each time; an opaque resume hint lets it continue its search for the
 * end of the head instead of starting again, so total work stays linear.
 */
#ifndef FP_HTTP1_H
#define FP_HTTP1_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- results ---------------------------------------------------------- */
enum {
    FP_INCOMPLETE = -1,
    /* start line */
    FP_E_METHOD = -2,          /* empty method or a non-token byte in it   400 */
    FP_E_TARGET = -3,          /* empty target or a forbidden byte         400 */
    FP_E_VERSION = -4,         /* not "HTTP/" DIGIT "." DIGIT              400 */
    FP_E_VERSION_UNSUPPORTED = -5, /* HTTP/x.y with x != 1 (1.2+ is 1.1) 505 */
    FP_E_START_LINE = -6,      /* missing SP, junk after version           400 */
    FP_E_STATUS = -7,          /* status code not 3 digits (response)      502 */
    FP_E_REASON = -8,          /* control byte in reason phrase (response) 502 */
    FP_E_LINE_TOO_LONG = -9,   /* request line over limits.max_line        414 */
    /* header section */
    FP_E_HEAD_TOO_LARGE = -10, /* head over limits.max_head                431 */
    FP_E_TOO_MANY_HEADERS = -11, /* more fields than slots/limit           431 */
    FP_E_HEADER_NAME = -12,    /* empty name or a non-token byte in it     400 */
    FP_E_WS_BEFORE_COLON = -13,/* "Name : v" (RFC 9112 5.1)                400 */
    FP_E_NO_COLON = -14,       /* a field line without ':'                 400 */
    FP_E_OBS_FOLD = -15,       /* line folding (RFC 9112 5.2)              400 */
    FP_E_BARE_CR = -16,        /* CR not followed by LF (RFC 9112 2.2)     400 */
    FP_E_VALUE_CHAR = -17,     /* NUL/CTL other than HTAB in a value       400 */
    FP_E_HOST_MISSING = -18,   /* HTTP/1.1 request without Host            400 */
    FP_E_HOST_MULTIPLE = -19,  /* several Host fields (requests only)      400 */
    /* framing (fp_request_framing / fp_response_framing) */
    FP_E_CL_INVALID = -20,     /* Content-Length not 1*DIGIT, or overflow  400 */
    FP_E_CL_CONFLICT = -21,    /* several differing Content-Length values  400 */
    FP_E_TE_WITH_CL = -22,     /* request with both TE and CL              400 */
    FP_E_TE_NOT_CHUNKED = -23, /* request TE whose final coding is not chunked 400 */
    FP_E_TE_UNSUPPORTED = -24, /* a transfer coding we do not implement    501 */
    FP_E_TE_HTTP10 = -25,      /* Transfer-Encoding in an HTTP/1.0 request 400 */
    /* chunked body */
    FP_E_CHUNK_SIZE = -26,     /* chunk-size not hex / missing             400 */
    FP_E_CHUNK_OVERFLOW = -27, /* chunk-size over 2^63                     400 */
    FP_E_CHUNK_EXT = -28,      /* chunk extension too long or bad byte     400 */
    FP_E_CHUNK_CRLF = -29,     /* chunk data not followed by CRLF          400 */
    FP_E_TRAILER = -30,        /* trailer section too large or malformed   400 */
    FP_E_HOST_INVALID = -31,   /* Host value not uri-host[:port]           400 */
    FP_E_LAST = -31
};

/* ---- slots ------------------------------------------------------------ */
typedef struct {
    uint32_t off; /* from the start of the buffer given to the parser */
    uint32_t len;
} fp_span;

typedef struct {
    fp_span name;
    fp_span value; /* optional whitespace already trimmed both sides */
    int32_t id;    /* FP_H_* from fp_known_headers.h, FP_H_UNKNOWN (0) else */
} fp_header;

typedef struct {
    uint32_t max_line;     /* request line (414) / status line (431)
                              bytes, excluding the line terminator      */
    uint32_t max_head;     /* whole head including the blank line  (431) */
    uint32_t max_headers;  /* field lines; also <= slots given      (431) */
} fp_limits;

enum { FP_M_OTHER = 0, FP_M_GET, FP_M_HEAD, FP_M_POST, FP_M_PUT, FP_M_DELETE,
       FP_M_CONNECT, FP_M_OPTIONS, FP_M_TRACE, FP_M_PATCH };

typedef struct {
    fp_header *headers;    /* in: caller-owned slots                       */
    uint32_t max_slots;    /* in: how many slots `headers` has             */
    uint32_t num_headers;  /* out                                          */
    fp_span method;        /* request                                      */
    fp_span target;        /* request                                      */
    fp_span reason;        /* response                                     */
    int32_t method_id;     /* FP_M_*                                       */
    int32_t status;        /* response status code                         */
    int32_t minor;         /* 0 for HTTP/1.0, 1 for HTTP/1.1               */
    uint32_t head_len;     /* bytes including the final empty line         */
    int32_t host_index;    /* slot index of Host, -1 when absent           */
} fp_head;

/* Parse a request head from buf[0..len).  `scanned` may be NULL; otherwise it
 * is an opaque resume hint: 0 for a new message, then left as the previous
 * FP_INCOMPLETE call set it while the same buffer grows.  Leading empty lines
 * (at most 16 bytes of them) are skipped (RFC 9112 2.2).  A bare LF ends a line like CRLF does; the
 * proxy re-serialises every head, so the next hop only ever sees CRLF. */
int64_t fp_parse_request(const char *buf, size_t len, fp_head *h,
                         const fp_limits *lim, size_t *scanned);
int64_t fp_parse_response(const char *buf, size_t len, fp_head *h,
                          const fp_limits *lim, size_t *scanned);

/* ---- framing (RFC 9112 section 6.3), decided here and nowhere else ---- */
enum { FP_BODY_NONE = 0, FP_BODY_LENGTH, FP_BODY_CHUNKED, FP_BODY_UNTIL_CLOSE };

enum {
    FP_F_KEEP_ALIVE = 1 << 0,   /* connection persists after this message  */
    FP_F_UPGRADE = 1 << 1,      /* Connection: upgrade and Upgrade present */
    FP_F_EXPECT_CONTINUE = 1 << 2, /* request Expect: 100-continue         */
    FP_F_CONN_CLOSE = 1 << 3,   /* Connection: close seen                  */
    FP_F_HAS_TE = 1 << 4,       /* Transfer-Encoding was present           */
    FP_F_HAS_CL = 1 << 5,       /* Content-Length was present              */
    FP_F_CONN_TOKENS = 1 << 6   /* Connection names other fields to drop   */
};

typedef struct {
    int32_t kind;     /* FP_BODY_*                        */
    uint32_t flags;   /* FP_F_*                           */
    uint64_t length;  /* for FP_BODY_LENGTH               */
} fp_framing;

/* 0 on success, FP_E_* otherwise. */
int fp_request_framing(const char *buf, const fp_head *h, fp_framing *out);
/* `req_method_id` is the FP_M_* of the request this answers. */
int fp_response_framing(const char *buf, const fp_head *h, int req_method_id,
                        fp_framing *out);

/* Does the comma-separated list value buf[v] contain `token` (lower case,
 * compared case-insensitively)? */
int fp_list_has_token(const char *buf, fp_span v, const char *token, size_t tlen);

/* ---- chunked body decoder -------------------------------------------- */
typedef struct {
    int32_t state;        /* private */
    uint64_t remaining;   /* data bytes left in the current chunk          */
    uint32_t ext_len;     /* bytes of chunk extension seen on this line    */
    uint32_t trailer_len; /* bytes of trailer section seen                 */
    uint32_t max_ext;     /* in: bound on one chunk line's extension (4096)*/
    uint32_t max_trailer; /* in: bound on the trailer section (16384)      */
    uint32_t line_len;    /* private */
    uint32_t digits;      /* private: significant size digits seen         */
} fp_chunked;

void fp_chunked_init(fp_chunked *d, uint32_t max_ext, uint32_t max_trailer);

enum { FP_CHUNK_NEED_MORE = 0, FP_CHUNK_DATA = 1, FP_CHUNK_DONE = 2 };

/* Advance over buf[0..len).  Sets *consumed to the bytes it used.  Returns
 *   FP_CHUNK_DATA       *data_off and *data_len locate body bytes inside buf
 *                       (zero copy); call again with the rest,
 *   FP_CHUNK_NEED_MORE  everything was consumed, no data in it,
 *   FP_CHUNK_DONE       last chunk and trailers consumed; bytes after
 *                       *consumed belong to the next message,
 *   FP_E_*              malformed (*consumed is 0); close the connection. */
int fp_chunked_feed(fp_chunked *d, const char *buf, size_t len, size_t *consumed,
                    size_t *data_off, size_t *data_len);

/* ---- scanning path ---------------------------------------------------- */
/* 1 when the SIMD scan is compiled in; fp_set_simd(0) forces the scalar
 * path at run time (tests run both).  Returns the previous setting. */
int fp_simd_available(void);
int fp_set_simd(int on);

/* Is v[0..n) a valid Host value: uri-host [ ":" port ] (RFC 9112 3.2)? */
int fp_valid_host(const char *v, size_t n);

/* Human-readable name of an FP_E_* code ("FP_E_TARGET") and the HTTP status
 * a server answers it with (responses map to 502 by the caller). */
const char *fp_error_name(int code);
int fp_error_status(int code);

#ifdef __cplusplus
}
#endif
#endif
