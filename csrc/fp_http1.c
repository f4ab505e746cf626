/* fp_http1.c - HTTP/1.x head parser (RFC 9112 sections 2-5).
 * Framing lives in fp_framing.c, the chunked decoder in fp_chunked.c.
 *
 * Strategy: a first call parses in one pass (the value scan stops at the CR
 * or LF, so line ends cost nothing extra) and stops at the first line it does
 * not accept; that line's error is reported only once the end of the head is
 * known to be in the buffer, as before.  A call that resumes after
 * FP_INCOMPLETE searches on for the end of the head (memchr, from where the
 * last call stopped) and parses once it is there, so feeding a growing buffer
 * stays linear.  Two checks run early so hostile input is refused before the
 * head ends: an over-long request line (414) and an over-long head (431); the
 * start line is also validated as soon as it is complete.  Every byte class is
 * checked against the RFC grammar; the scans for field names, values and the
 * target use SSE2 when available. */
#include "fp_http1.h"
#include "fp_known_headers.h"
#include "fp_scan.h"

#include <stdatomic.h>
#include <string.h>

/* At most this many bytes of empty lines before a request line. */
#define FP_MAX_LEADING_EMPTY 16

#define SPAN(p) ((uint32_t)((p) - base))

#if defined(__GNUC__) || defined(__clang__)
#define FP_ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define FP_ALWAYS_INLINE inline
#endif

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
    while (p < eol && fp_tchar[(unsigned char)*p]) p++;
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
    /* (a '#' stops the scan too: no fragment in a request-target, RFC 9112
     * 3.2; the path we route on would not be the one the origin serves) */
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

/* ---- known header ids, fast path ---------------------------------------
 * fp_header_id switches on the length and the first byte, then compares a
 * byte at a time.  Here a hash of three bytes and the length picks a slot and
 * one compare of 8 bytes at a time (OR 0x20 lower-cases) confirms it.  The
 * table is built on first use from fp_header_name(), so the generated list
 * stays the only list; until it is built, or if a name does not suit it, the
 * parser calls fp_header_id.  Only names already checked to be tchar come
 * here: OR 0x20 is exact on those against names made of [A-Za-z0-9-]. */
#define KH_MAX 32
#define KH_SLOTS 256

static char kh_low[FP_H_COUNT][KH_MAX]; /* lower-cased names, zero padded */
static uint16_t kh_slot[KH_SLOTS];  /* id | length << 8 of the name hashed here */
static atomic_int kh_state;           /* 0 not built, 1 building, 2 ready, 3 unusable */

static inline unsigned kh_hash(const char *s, size_t n)
{
    unsigned c0 = (unsigned char)s[0] | 0x20, c1 = (unsigned char)s[n > 1] | 0x20;
    unsigned cl = (unsigned char)s[n - 1] | 0x20;
    return (c0 + c1 + 17 * cl + 13 * (unsigned)n) & (KH_SLOTS - 1);
}

static inline uint64_t ld64(const char *p) { uint64_t v; memcpy(&v, p, 8); return v; }
static inline uint32_t ld32(const char *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static inline uint16_t ld16(const char *p) { uint16_t v; memcpy(&v, p, 2); return v; }

/* s[0..n) (any case) equals low[0..n)?  Overlapping loads, none past n. */
static inline int kh_equal(const char *s, const char *low, size_t n)
{
    if (n >= 8) {
        const uint64_t m = 0x2020202020202020ull;
        for (size_t i = 0; i + 8 < n; i += 8)
            if ((ld64(s + i) | m) != ld64(low + i)) return 0;
        return (ld64(s + n - 8) | m) == ld64(low + n - 8);
    }
    if (n >= 4)
        return (((ld32(s) | 0x20202020u) ^ ld32(low)) |
                ((ld32(s + n - 4) | 0x20202020u) ^ ld32(low + n - 4))) == 0;
    if (n >= 2)
        return (((ld16(s) | 0x2020u) ^ ld16(low)) |
                ((ld16(s + n - 2) | 0x2020u) ^ ld16(low + n - 2))) == 0;
    return ((unsigned char)s[0] | 0x20) == (unsigned char)low[0];
}

static FP_ALWAYS_INLINE int32_t kh_lookup(const char *s, size_t n)
{
    if (n - 1 >= KH_MAX) return FP_H_UNKNOWN; /* also n == 0 */
    for (unsigned x = kh_hash(s, n);; x = (x + 1) & (KH_SLOTS - 1)) {
        unsigned e = kh_slot[x];
        if (e == 0) return FP_H_UNKNOWN;
        if ((e >> 8) == n && kh_equal(s, kh_low[e & 255], n)) return (int32_t)(e & 255);
    }
}

static int kh_build(void)
{
    if (FP_H_COUNT > KH_SLOTS / 2) return 0; /* ids fit 8 bits, probes stay short */
    for (int id = 1; id < FP_H_COUNT; id++) {
        const char *s = fp_header_name(id);
        size_t n = s ? strlen(s) : 0;
        if (n == 0 || n > KH_MAX) return 0;
        for (size_t i = 0; i < n; i++) {
            unsigned char c = (unsigned char)s[i];
            if (!((c | 0x20) >= 'a' && (c | 0x20) <= 'z') && !(c >= '0' && c <= '9') && c != '-')
                return 0;
            kh_low[id][i] = (char)(c | 0x20);
        }
        if (kh_lookup(s, n) != FP_H_UNKNOWN) return 0; /* listed twice */
        unsigned x = kh_hash(s, n);
        while (kh_slot[x]) x = (x + 1) & (KH_SLOTS - 1);
        kh_slot[x] = (uint16_t)(id | n << 8);
    }
    return 1;
}

/* 1 once the table can be used; the first caller builds it, callers racing
 * with it fall back to fp_header_id meanwhile. */
static int kh_ready(void)
{
    int s = atomic_load_explicit(&kh_state, memory_order_acquire);
    if (s == 2) return 1;
    if (s != 0 || !atomic_compare_exchange_strong(&kh_state, &s, 1)) return 0;
    int ok = kh_build();
    atomic_store_explicit(&kh_state, ok ? 2 : 3, memory_order_release);
    return ok;
}

/* RFC 9112 3.2 / RFC 3986 3.2.2: uri-host [ ":" port ], IP-literals in
 * brackets; empty is allowed (a target without authority).  host_char[c] is
 * 1 for ALPHA DIGIT and - . _ ~ % ! $ & ' ( ) * + , ; =, 2 for : [ ] */
static const unsigned char host_char[256] = {
    ['-'] = 1, ['.'] = 1, ['_'] = 1, ['~'] = 1, ['%'] = 1, ['!'] = 1, ['$'] = 1,
    ['&'] = 1, ['\''] = 1, ['('] = 1, [')'] = 1, ['*'] = 1, ['+'] = 1, [','] = 1,
    [';'] = 1, ['='] = 1, [':'] = 2, ['['] = 2, [']'] = 2,
    ['0'] = 1, ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1, ['5'] = 1, ['6'] = 1,
    ['7'] = 1, ['8'] = 1, ['9'] = 1,
    ['A'] = 1, ['B'] = 1, ['C'] = 1, ['D'] = 1, ['E'] = 1, ['F'] = 1, ['G'] = 1,
    ['H'] = 1, ['I'] = 1, ['J'] = 1, ['K'] = 1, ['L'] = 1, ['M'] = 1, ['N'] = 1,
    ['O'] = 1, ['P'] = 1, ['Q'] = 1, ['R'] = 1, ['S'] = 1, ['T'] = 1, ['U'] = 1,
    ['V'] = 1, ['W'] = 1, ['X'] = 1, ['Y'] = 1, ['Z'] = 1,
    ['a'] = 1, ['b'] = 1, ['c'] = 1, ['d'] = 1, ['e'] = 1, ['f'] = 1, ['g'] = 1,
    ['h'] = 1, ['i'] = 1, ['j'] = 1, ['k'] = 1, ['l'] = 1, ['m'] = 1, ['n'] = 1,
    ['o'] = 1, ['p'] = 1, ['q'] = 1, ['r'] = 1, ['s'] = 1, ['t'] = 1, ['u'] = 1,
    ['v'] = 1, ['w'] = 1, ['x'] = 1, ['y'] = 1, ['z'] = 1,
};

int fp_valid_host(const char *v, size_t n)
{
    /* uri-host [ ":" port ] (RFC 9110 7.2, RFC 3986 3.2.2-3.2.3): an
     * IP-literal in brackets, or a reg-name / IPv4 (host_char without
     * ':' '[' ']', which host_char marks 2); then port = *DIGIT */
    size_t i = 0;
    if (n && v[0] == '[') {
        for (i = 1; i < n && v[i] != ']'; i++)
            if (!host_char[(unsigned char)v[i]] || v[i] == '[') return 0;
        if (i++ == n) return 0;             /* no closing bracket */
    } else {
        while (i < n && host_char[(unsigned char)v[i]] == 1) i++;
    }
    if (i == n) return 1;
    if (v[i] != ':') return 0;
    for (i++; i < n; i++)
        if (v[i] < '0' || v[i] > '9') return 0;
    return 1;
}

/* The exact field-line parser, for a head known to end (with the empty line)
 * before `end`.  It continues from h->num_headers: parse_fields_fast hands it
 * the first line it does not accept.  Returns 0 or FP_E_*; *endp gets the
 * head end. */
static int parse_fields_exact(const char *base, const char *p, const char *end,
                              fp_head *h, uint32_t cap, const char **endp,
                              int is_request)
{
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
        while (p < eol && fp_tchar[(unsigned char)*p]) p++;
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

/* parse_fields_fast's answer for a line it leaves to parse_fields_exact. */
#define FP_SLOW 1

/* One pass over the field lines from p, for a head that may not have ended:
 * the value scan stops at the CR or LF, so no separate search for line ends.
 * It accepts only well-formed lines and returns
 *   0                    *at just past the empty line (the head end),
 *   FP_INCOMPLETE        the buffer ends first (everything so far is valid),
 *   FP_E_HEAD_TOO_LARGE  a line starts at max_head or later, so the head ends
 *                        past max_head or not at all: 431 either way,
 *   FP_SLOW              *at is the start of a line it does not accept: an
 *                        error if the head turns out complete, which the
 *                        exact parser then names.
 * Inlined twice with `simd` constant, so neither path tests the switch per
 * scan. */
static FP_ALWAYS_INLINE int
fields_pass(const char *base, const char *p, const char *end, fp_head *h, uint32_t cap,
            size_t max_head, int is_request, const char **at, const int simd,
            const int kh)
{
    uint32_t i = h->num_headers;
    int rc;
    for (;;) {
        const char *ls = p;
        if (simd) p = fp_scan_name_simd(p, end);
        if (p >= end || *p != ':') p = fp_scan_name_scalar(p, end); /* SIMD stops at ':' mostly */
        if (p == ls) {                    /* the empty line, or an error */
            if (p >= end) { rc = FP_INCOMPLETE; break; }
            if (*p == '\n') { *at = p + 1; rc = 0; break; }
            if (*p == '\r') {
                if (p + 1 >= end) { rc = FP_INCOMPLETE; break; }
                if (p[1] == '\n') { *at = p + 2; rc = 0; break; }
            }
            *at = ls;
            rc = FP_SLOW;
            break;
        }
        if ((size_t)(ls - base) >= max_head) { rc = FP_E_HEAD_TOO_LARGE; break; }
        if (p >= end) { rc = FP_INCOMPLETE; break; }
        if (*p != ':' || i >= cap) { *at = ls; rc = FP_SLOW; break; }
        const char *ne = p++;

        while (p < end && (*p == ' ' || *p == '\t')) p++;
        const char *v = p;
        for (;;) {
            if (simd) p = fp_scan_value_simd(p, end);
            p = fp_scan_value_scalar(p, end);
            if (p >= end || *p != '\t') break;
            p++;
        }
        if (p >= end) { rc = FP_INCOMPLETE; break; }
        const char *eol = p;
        if (*p == '\r') {
            if (p + 1 >= end) { rc = FP_INCOMPLETE; break; }
            p++;
        }
        if (*p != '\n') { *at = ls; rc = FP_SLOW; break; }

        const char *ve = eol;
        while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t')) ve--;
        int32_t id = kh ? kh_lookup(ls, (size_t)(ne - ls)) : fp_header_id(ls, (size_t)(ne - ls));
        if (id == FP_H_HOST && is_request) {
            if (h->host_index >= 0 || !fp_valid_host(v, (size_t)(ve - v))) {
                *at = ls;
                rc = FP_SLOW;
                break;
            }
            h->host_index = (int32_t)i;
        }
        fp_header *f = &h->headers[i++];
        f->name.off = SPAN(ls);
        f->name.len = (uint32_t)(ne - ls);
        f->value.off = SPAN(v);
        f->value.len = (uint32_t)(ve - v);
        f->id = id;
        p++;
    }
    h->num_headers = i;
    return rc;
}

static int parse_fields_fast(const char *base, const char *p, const char *end, fp_head *h,
                             uint32_t cap, size_t max_head, int is_request, const char **at)
{
    int kh = kh_ready();
    if (fp_simd_on) return fields_pass(base, p, end, h, cap, max_head, is_request, at, 1, kh);
    return fields_pass(base, p, end, h, cap, max_head, is_request, at, 0, kh);
}

/* A well-formed request line in one pass, for a first call: returns the LF
 * ending it, or NULL to leave the line to the exact path (which also sees
 * the errors and the line that has not ended).  *rc gets 414 for a line that
 * is well-formed but too long. */
static const char *fast_request_line(const char *base, const char *p, const char *end,
                                     fp_head *h, const fp_limits *lim, int *rc)
{
    const char *start = p;
    while (p < end && fp_tchar[(unsigned char)*p]) p++;
    if (p == start || p >= end || *p != ' ') return NULL;
    h->method.off = SPAN(start);
    h->method.len = (uint32_t)(p - start);
    h->method_id = method_id(start, (size_t)(p - start));
    const char *t = ++p;
    p = fp_scan_target(p, end);
    if (p == t || p >= end || *p != ' ') return NULL;
    h->target.off = SPAN(t);
    h->target.len = (uint32_t)(p - t);
    p++;
    if (end - p < 9 || parse_version(p, &h->minor) != 0) return NULL;
    p += 8;
    const char *eol = p;
    if (*p == '\r') {
        if (end - p < 2) return NULL;
        p++;
    }
    if (*p != '\n') return NULL;
    if ((size_t)(eol - start) > lim->max_line) *rc = FP_E_LINE_TOO_LONG;
    return p;
}

/* The same for a status line; over max_line it is a 431. */
static const char *fast_status_line(const char *base, const char *p, const char *end,
                                    fp_head *h, const fp_limits *lim, int *rc)
{
    const char *start = p;
    if (end - p < 13 || parse_version(p, &h->minor) != 0 || p[8] != ' ') return NULL;
    p += 9;
    int status = 0;
    for (int i = 0; i < 3; i++, p++) {
        if (*p < '0' || *p > '9') return NULL;
        status = status * 10 + (*p - '0');
    }
    if (status < 100) return NULL;
    h->status = status;
    const char *r = p;
    if (*p == ' ') {
        r = ++p;
        for (;;) {
            p = fp_scan_value(p, end);
            if (p >= end || *p != '\t') break;
            p++;
        }
        if (p >= end) return NULL;
    }
    const char *eol = p;
    if (*p == '\r') {
        if (end - p < 2) return NULL;
        p++;
    }
    if (*p != '\n') return NULL;
    h->reason.off = SPAN(r);
    h->reason.len = (uint32_t)(eol - r);
    if ((size_t)(eol - start) > lim->max_line) *rc = FP_E_HEAD_TOO_LARGE;
    return p;
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
 * line already validated).  A first call parses in one pass; a call that
 * resumes (the head had not ended before) first searches on for the end of
 * the head from where the last one stopped, so feeding a growing buffer
 * stays linear, and parses only once the head is complete. */
static int64_t parse_head(const char *buf, size_t len, fp_head *h,
                          const fp_limits *lim, size_t *hint, int is_request)
{
    const char *base = buf, *end = buf + len, *p = buf;
    size_t searched = hint ? (*hint >> 1) : 0;
    int line_ok = hint ? (int)(*hint & 1) : 0;
    uint32_t cap = h->max_slots < lim->max_headers ? h->max_slots : lim->max_headers;

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
    const char *first_lf = NULL;
    const char *head_end = NULL;         /* known only when resuming */
    int rc = 0;

    if (!line_ok) {
        /* The start line: 414 (or 431 for a status line) before it ends,
         * validated as soon as it is complete. */
        if (searched == 0)
            first_lf = is_request ? fast_request_line(base, start, end, h, lim, &rc)
                                  : fast_status_line(base, start, end, h, lim, &rc);
        if (rc) return rc;
        if (first_lf == NULL) {
            const char *from = start + (searched > (size_t)(start - base)
                                            ? searched - (size_t)(start - base) : 0);
            if (from > end) from = end;
            first_lf = find_lf(from, end);
            /* RFC 9112 3: the request-line excludes its CRLF. */
            const char *le = first_lf ? line_end(start, first_lf)
                                      : (end > start && end[-1] == '\r' ? end - 1 : end);
            if ((size_t)(le - start) > lim->max_line)
                return is_request ? FP_E_LINE_TOO_LONG : FP_E_HEAD_TOO_LARGE;
            if (first_lf == NULL) {
                if (hint) *hint = (size_t)(end - base) << 1;
                return FP_INCOMPLETE;
            }
            const char *eol = line_end(start, first_lf);
            rc = is_request ? parse_request_line(base, start, eol, h)
                            : parse_status_line(base, start, eol, h);
            if (rc) return rc;
        }
    } else {
        const char *from = base + (searched >= 2 ? searched - 2 : 0);
        if (from < start) from = start;
        head_end = find_head_end(from, end);
        if (head_end == NULL) {
            if (len > lim->max_head) return FP_E_HEAD_TOO_LARGE;
            if (hint) *hint = (len << 1) | 1u;
            return FP_INCOMPLETE;
        }
        if ((size_t)(head_end - base) > lim->max_head) return FP_E_HEAD_TOO_LARGE;
        first_lf = find_lf(start, head_end);
        const char *eol = line_end(start, first_lf);
        rc = is_request ? parse_request_line(base, start, eol, h)
                        : parse_status_line(base, start, eol, h);
        if (rc) return rc;
        end = head_end;
    }

    const char *done = NULL;
    rc = parse_fields_fast(base, first_lf + 1, end, h, cap, lim->max_head, is_request, &done);
    if (rc == FP_SLOW) {
        if (head_end == NULL) {           /* errors wait for the head end */
            head_end = find_head_end(done - 1, end);
            if (head_end == NULL) rc = FP_INCOMPLETE;
            else if ((size_t)(head_end - base) > lim->max_head) return FP_E_HEAD_TOO_LARGE;
        }
        if (head_end) rc = parse_fields_exact(base, done, head_end, h, cap, &done, is_request);
    }
    if (rc == FP_INCOMPLETE) {
        if (len > lim->max_head) return FP_E_HEAD_TOO_LARGE;
        if (hint) *hint = (len << 1) | 1u;
        return FP_INCOMPLETE;
    }
    if (rc) return rc;
    if ((size_t)(done - base) > lim->max_head) return FP_E_HEAD_TOO_LARGE;
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
