/* fp_http1.c - HTTP/1.x head parser (RFC 9112 sections 2-5).
 * Framing lives in fp_framing.c, the chunked decoder in fp_chunked.c.
 *
 * Strategy: find the end of the head first (memchr for LF, cheap and
 * resumable), then parse the complete head once.  Two checks run early so
 * hostile input is refused before the head ends: an over-long request line
 * (414) and an over-long head (431); the start line is also validated as soon
 * as it is complete.  Every byte class is checked against the RFC grammar;
 * the scan for the first forbidden byte of a field value or target uses SSE2
 * when available. */
#include "fp_http1.h"
#include "fp_known_headers.h"
#include "fp_scan.h"

#include <string.h>

/* tchar (RFC 9110 5.6.2): ! # $ % & ' * + - . ^ _ ` | ~ DIGIT ALPHA */
static const unsigned char tchar[256] = {
    ['!'] = 1, ['#'] = 1, ['$'] = 1, ['%'] = 1, ['&'] = 1, ['\''] = 1,
    ['*'] = 1, ['+'] = 1, ['-'] = 1, ['.'] = 1, ['^'] = 1, ['_'] = 1,
    ['`'] = 1, ['|'] = 1, ['~'] = 1,
    ['0'] = 1, ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1, ['5'] = 1,
    ['6'] = 1, ['7'] = 1, ['8'] = 1, ['9'] = 1,
    ['A'] = 1, ['B'] = 1, ['C'] = 1, ['D'] = 1, ['E'] = 1, ['F'] = 1,
    ['G'] = 1, ['H'] = 1, ['I'] = 1, ['J'] = 1, ['K'] = 1, ['L'] = 1,
    ['M'] = 1, ['N'] = 1, ['O'] = 1, ['P'] = 1, ['Q'] = 1, ['R'] = 1,
    ['S'] = 1, ['T'] = 1, ['U'] = 1, ['V'] = 1, ['W'] = 1, ['X'] = 1,
    ['Y'] = 1, ['Z'] = 1,
    ['a'] = 1, ['b'] = 1, ['c'] = 1, ['d'] = 1, ['e'] = 1, ['f'] = 1,
    ['g'] = 1, ['h'] = 1, ['i'] = 1, ['j'] = 1, ['k'] = 1, ['l'] = 1,
    ['m'] = 1, ['n'] = 1, ['o'] = 1, ['p'] = 1, ['q'] = 1, ['r'] = 1,
    ['s'] = 1, ['t'] = 1, ['u'] = 1, ['v'] = 1, ['w'] = 1, ['x'] = 1,
    ['y'] = 1, ['z'] = 1,
};

int fp_is_tchar(unsigned char c) { return tchar[c]; }

/* At most this many bytes of empty lines before a request line. */
#define FP_MAX_LEADING_EMPTY 16

#define SPAN(p) ((uint32_t)((p) - base))

/* End of the line starting at p: the LF at or after p, NULL if none. */
static const char *find_lf(const char *p, const char *end)
{
    return (const char *)memchr(p, '\n', (size_t)(end - p));
}

/* The line [p, lf) without its CR.  A CR elsewhere is an error later. */
static const char *line_end(const char *p, const char *lf)
{
    return (lf > p && lf[-1] == '\r') ? lf - 1 : lf;
}

static int method_id(const char *m, size_t n)
{
#define M(s, id) if (n == sizeof(s) - 1 && memcmp(m, s, n) == 0) return id
    switch (n) {
    case 3: M("GET", FP_M_GET); M("PUT", FP_M_PUT); break;
    case 4: M("HEAD", FP_M_HEAD); M("POST", FP_M_POST); break;
    case 5: M("PATCH", FP_M_PATCH); M("TRACE", FP_M_TRACE); break;
    case 6: M("DELETE", FP_M_DELETE); break;
    case 7: M("CONNECT", FP_M_CONNECT); M("OPTIONS", FP_M_OPTIONS); break;
    }
#undef M
    return FP_M_OTHER;
}

/* "HTTP/" DIGIT "." DIGIT at p (8 bytes known available). */
static int parse_version(const char *p, int32_t *minor)
{
    if (memcmp(p, "HTTP/", 5) != 0) return FP_E_VERSION;
    if (p[5] < '0' || p[5] > '9' || p[6] != '.' || p[7] < '0' || p[7] > '9')
        return FP_E_VERSION;
    if (p[5] != '1') return FP_E_VERSION_UNSUPPORTED;
    /* RFC 9110 2.5: a higher minor version is handled as the highest we do. */
    *minor = p[7] == '0' ? 0 : 1;
    return 0;
}

static int parse_request_line(const char *base, const char *p, const char *eol,
                              fp_head *h)
{
    const char *m = p;
    while (p < eol && tchar[(unsigned char)*p]) p++;
    if (p == m) return (p < eol && *p == '\r') ? FP_E_BARE_CR : FP_E_METHOD;
    if (p == eol) return FP_E_START_LINE;
    if (*p != ' ') return *p == '\r' ? FP_E_BARE_CR : FP_E_METHOD;
    h->method.off = SPAN(m);
    h->method.len = (uint32_t)(p - m);
    h->method_id = method_id(m, (size_t)(p - m));
    p++;

    const char *t = p;
    p = fp_scan_target(p, eol);
    if (p == t) return (p < eol && *p == '\r') ? FP_E_BARE_CR : FP_E_TARGET;
    if (p == eol) return FP_E_START_LINE;
    if (*p != ' ') return *p == '\r' ? FP_E_BARE_CR : FP_E_TARGET;
    h->target.off = SPAN(t);
    h->target.len = (uint32_t)(p - t);
    p++;

    if (eol - p < 8) {
        const char *cr = memchr(p, '\r', (size_t)(eol - p));
        return cr ? FP_E_BARE_CR : FP_E_VERSION;
    }
    int rc = parse_version(p, &h->minor);
    if (rc) return rc;
    p += 8;
    if (p != eol) return *p == '\r' ? FP_E_BARE_CR : FP_E_START_LINE;
    return 0;
}

static int parse_status_line(const char *base, const char *p, const char *eol,
                             fp_head *h)
{
    if (eol - p < 12) return (eol - p >= 8 && memcmp(p, "HTTP/", 5) == 0)
                                 ? FP_E_STATUS : FP_E_VERSION;
    int rc = parse_version(p, &h->minor);
    if (rc) return rc;
    p += 8;
    if (*p++ != ' ') return FP_E_START_LINE;
    int status = 0;
    for (int i = 0; i < 3; i++, p++) {
        if (*p < '0' || *p > '9') return FP_E_STATUS;
        status = status * 10 + (*p - '0');
    }
    if (status < 100) return FP_E_STATUS;
    h->status = status;
    h->reason.off = SPAN(p);
    h->reason.len = 0;
    if (p == eol) return 0;               /* "HTTP/1.1 200" with no reason */
    if (*p != ' ') return FP_E_STATUS;
    p++;
    const char *r = p;
    for (;;) {
        p = fp_scan_value(p, eol);
        if (p == eol) break;
        if (*p == '\t') { p++; continue; }
        return *p == '\r' ? FP_E_BARE_CR : FP_E_REASON;
    }
    h->reason.off = SPAN(r);
    h->reason.len = (uint32_t)(eol - r);
    return 0;
}

/* Parse field lines from p to the empty line that ends the head (known to be
 * present before `end`).  Returns 0 or FP_E_*; *endp gets the head end. */
/* RFC 9112 3.2 / RFC 3986 3.2.2: uri-host [ ":" port ], IP-literals in
 * brackets; empty is allowed (a target without authority). */
int fp_valid_host(const char *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)v[i];
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
            continue;
        if (strchr("-._~%!$&'()*+,;=:[]", c) == NULL || c == 0) return 0;
    }
    return 1;
}

static int parse_fields(const char *base, const char *p, const char *end,
                        fp_head *h, const fp_limits *lim, const char **endp,
                        int is_request)
{
    uint32_t cap = h->max_slots < lim->max_headers ? h->max_slots : lim->max_headers;
    h->num_headers = 0;
    h->host_index = -1;
    for (;;) {
        const char *lf = find_lf(p, end);
        if (lf == NULL) return FP_INCOMPLETE; /* cannot happen: end found */
        const char *eol = line_end(p, lf);
        if (eol == p) {                       /* empty line: end of head */
            *endp = lf + 1;
            return 0;
        }
        if (*p == ' ' || *p == '\t') return FP_E_OBS_FOLD;
        const char *n = p;
        while (p < eol && tchar[(unsigned char)*p]) p++;
        if (p == eol) return (p == n || *n == '\r') ? FP_E_HEADER_NAME : FP_E_NO_COLON;
        if (*p != ':') {
            if (p == n) return *p == '\r' ? FP_E_BARE_CR : FP_E_HEADER_NAME;
            if (*p == ' ' || *p == '\t') {
                const char *q = p;
                while (q < eol && (*q == ' ' || *q == '\t')) q++;
                if (q < eol && *q == ':') return FP_E_WS_BEFORE_COLON;
            }
            return *p == '\r' ? FP_E_BARE_CR : FP_E_HEADER_NAME;
        }
        if (p == n) return FP_E_HEADER_NAME;
        if (h->num_headers >= cap) return FP_E_TOO_MANY_HEADERS;
        fp_header *f = &h->headers[h->num_headers];
        f->name.off = SPAN(n);
        f->name.len = (uint32_t)(p - n);
        f->id = fp_header_id(n, (size_t)(p - n));
        p++;
        while (p < eol && (*p == ' ' || *p == '\t')) p++;
        const char *v = p;
        for (;;) {
            p = fp_scan_value(p, eol);
            if (p == eol) break;
            if (*p == '\t') { p++; continue; }
            return *p == '\r' ? FP_E_BARE_CR : FP_E_VALUE_CHAR;
        }
        const char *ve = eol;
        while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t')) ve--;
        f->value.off = SPAN(v);
        f->value.len = (uint32_t)(ve - v);
        if (f->id == FP_H_HOST && is_request) {
            if (h->host_index >= 0) return FP_E_HOST_MULTIPLE;
            if (!fp_valid_host(v, (size_t)(ve - v))) return FP_E_HOST_INVALID;
            h->host_index = (int32_t)h->num_headers;
        }
        h->num_headers++;
        p = lf + 1;
    }
}

/* Find the empty line that ends the head, searching from `from` (>= start of
 * the first line).  Returns a pointer just past it, or NULL. */
static const char *find_head_end(const char *from, const char *end)
{
    const char *p = from;
    for (;;) {
        const char *lf = find_lf(p, end);
        if (lf == NULL || lf + 1 >= end) return NULL;
        if (lf[1] == '\n') return lf + 2;
        if (lf[1] == '\r') {
            if (lf + 2 >= end) return NULL;
            if (lf[2] == '\n') return lf + 3;
        }
        p = lf + 1;
    }
}

/* The shared driver.  The resume hint packs (bytes searched << 1) | (start
 * line already validated). */
static int64_t parse_head(const char *buf, size_t len, fp_head *h,
                          const fp_limits *lim, size_t *hint, int is_request)
{
    const char *base = buf, *end = buf + len, *p = buf;
    size_t searched = hint ? (*hint >> 1) : 0;
    int line_ok = hint ? (int)(*hint & 1) : 0;

    h->num_headers = 0;
    h->host_index = -1;
    h->method.off = h->method.len = 0;
    h->target.off = h->target.len = 0;
    h->reason.off = h->reason.len = 0;
    h->method_id = FP_M_OTHER;
    h->status = 0;
    h->minor = 1;
    h->head_len = 0;

    if (is_request) {                     /* RFC 9112 2.2: skip empty lines */
        while (p < end && (*p == '\r' || *p == '\n')) {
            if (*p == '\r') {
                if (p + 1 == end) return FP_INCOMPLETE;
                if (p[1] != '\n') return FP_E_BARE_CR;
                p++;
            }
            p++;
            if (p - base > FP_MAX_LEADING_EMPTY) return FP_E_START_LINE;
        }
        if (p == end) return FP_INCOMPLETE;
    }
    const char *start = p;

    /* The start line: 414 (or 431 for a status line) before it ends,
     * validated as soon as it is complete. */
    const char *first_lf = NULL;
    if (!line_ok) {
        const char *from = start + (searched > (size_t)(start - base)
                                        ? searched - (size_t)(start - base) : 0);
        if (from > end) from = end;
        first_lf = find_lf(from, end);
        /* RFC 9112 3: the request-line excludes its CRLF. */
        const char *le = first_lf ? line_end(start, first_lf)
                                  : (end > start && end[-1] == '\r' ? end - 1 : end);
        size_t line_len = (size_t)(le - start);
        if (line_len > lim->max_line)
            return is_request ? FP_E_LINE_TOO_LONG : FP_E_HEAD_TOO_LARGE;
        if (first_lf == NULL) {
            if (hint) *hint = (size_t)(end - base) << 1;
            return FP_INCOMPLETE;
        }
        const char *eol = line_end(start, first_lf);
        int rc = is_request ? parse_request_line(base, start, eol, h)
                            : parse_status_line(base, start, eol, h);
        if (rc) return rc;
        line_ok = 1;
        searched = (size_t)(first_lf - base);
    }

    const char *from = base + (searched >= 2 ? searched - 2 : 0);
    if (from < start) from = start;
    const char *head_end = find_head_end(from, end);
    if (head_end == NULL) {
        if ((size_t)(end - base) > lim->max_head) return FP_E_HEAD_TOO_LARGE;
        if (hint) *hint = ((size_t)(end - base) << 1) | 1u;
        return FP_INCOMPLETE;
    }
    if ((size_t)(head_end - base) > lim->max_head) return FP_E_HEAD_TOO_LARGE;

    /* Complete: parse it once, start line included. */
    first_lf = find_lf(start, head_end);
    const char *eol = line_end(start, first_lf);
    int rc = is_request ? parse_request_line(base, start, eol, h)
                        : parse_status_line(base, start, eol, h);
    if (rc) return rc;
    const char *done = NULL;
    rc = parse_fields(base, first_lf + 1, head_end, h, lim, &done, is_request);
    if (rc) return rc;
    if (is_request && h->minor == 1 && h->host_index < 0) return FP_E_HOST_MISSING;
    h->head_len = (uint32_t)(done - base);
    if (hint) *hint = 0;
    return (int64_t)h->head_len;
}

int64_t fp_parse_request(const char *buf, size_t len, fp_head *h,
                         const fp_limits *lim, size_t *scanned)
{
    return parse_head(buf, len, h, lim, scanned, 1);
}

int64_t fp_parse_response(const char *buf, size_t len, fp_head *h,
                          const fp_limits *lim, size_t *scanned)
{
    return parse_head(buf, len, h, lim, scanned, 0);
}

/* ---- error table ----------------------------------------------------- */
static const struct { const char *name; int status; } errors[] = {
    [1] = {"FP_INCOMPLETE", 0},
    [2] = {"FP_E_METHOD", 400},
    [3] = {"FP_E_TARGET", 400},
    [4] = {"FP_E_VERSION", 400},
    [5] = {"FP_E_VERSION_UNSUPPORTED", 505},
    [6] = {"FP_E_START_LINE", 400},
    [7] = {"FP_E_STATUS", 502},
    [8] = {"FP_E_REASON", 502},
    [9] = {"FP_E_LINE_TOO_LONG", 414},
    [10] = {"FP_E_HEAD_TOO_LARGE", 431},
    [11] = {"FP_E_TOO_MANY_HEADERS", 431},
    [12] = {"FP_E_HEADER_NAME", 400},
    [13] = {"FP_E_WS_BEFORE_COLON", 400},
    [14] = {"FP_E_NO_COLON", 400},
    [15] = {"FP_E_OBS_FOLD", 400},
    [16] = {"FP_E_BARE_CR", 400},
    [17] = {"FP_E_VALUE_CHAR", 400},
    [18] = {"FP_E_HOST_MISSING", 400},
    [19] = {"FP_E_HOST_MULTIPLE", 400},
    [20] = {"FP_E_CL_INVALID", 400},
    [21] = {"FP_E_CL_CONFLICT", 400},
    [22] = {"FP_E_TE_WITH_CL", 400},
    [23] = {"FP_E_TE_NOT_CHUNKED", 400},
    [24] = {"FP_E_TE_UNSUPPORTED", 501},
    [25] = {"FP_E_TE_HTTP10", 400},
    [26] = {"FP_E_CHUNK_SIZE", 400},
    [27] = {"FP_E_CHUNK_OVERFLOW", 400},
    [28] = {"FP_E_CHUNK_EXT", 400},
    [29] = {"FP_E_CHUNK_CRLF", 400},
    [30] = {"FP_E_TRAILER", 400},
    [31] = {"FP_E_HOST_INVALID", 400},
};

const char *fp_error_name(int code)
{
    return (code <= -1 && code >= FP_E_LAST) ? errors[-code].name : "FP_E_UNKNOWN";
}

int fp_error_status(int code)
{
    return (code <= -1 && code >= FP_E_LAST) ? errors[-code].status : 500;
}
