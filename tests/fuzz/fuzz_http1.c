/* fuzz_http1.c - libFuzzer target over the pure C HTTP/1 code (csrc/fp_http1.c).
 *
 * Build (tests/fuzz/test_fuzz.py does this):
 *   clang -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
 *         -g -O1 -Icsrc tests/fuzz/fuzz_http1.c csrc/fp_http1.c \
 *         csrc/fp_known_headers.c -o fuzz_http1
 *
 * Input layout: data[0] is a control byte, data[1..] the payload.
 *   bits 0-1  mode: 0 = request head (+ framing, + chunked body when framed so),
 *                   1 = response head (+ framing, + chunked body when framed so),
 *                   2 = chunked decoder alone, 3 = request head fed incrementally
 *   bit  2    SIMD path first (else scalar first); both paths are always compared
 *   bits 3-4  limits profile (roomy / tight) for the head parser and the decoder
 *   bits 5-6  request method the response answers (GET, HEAD, CONNECT, POST)
 *   bit  7    chunked: feed one byte at a time instead of random-sized pieces
 *
 * Every buffer handed to the parser is a malloc'd copy of exactly the bytes it
 * may read, so ASan reports any over-read.  Invariants are checked with
 * CHECK(), which traps: libFuzzer then saves the input as a crash artifact.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fp_http1.h"
#include "fp_known_headers.h"

#define CHECK(cond)                                                            \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "fuzz_http1.c:%d: invariant failed: %s\n", __LINE__, \
                    #cond);                                                    \
            __builtin_trap();                                                  \
        }                                                                      \
    } while (0)

#define MAX_SLOTS 64

/* ---- helpers ---------------------------------------------------------- */

static char *dup_exact(const uint8_t *p, size_t n)
{
    /* ASan's malloc(0) returns a unique pointer with no readable bytes. */
    char *b = (char *)malloc(n);
    CHECK(b != NULL || n == 0);
    if (n) memcpy(b, p, n);
    return b;
}

/* splitmix64: piece sizes and split points, seeded from the input. */
static uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint64_t seed_of(const uint8_t *p, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

static int is_error(int64_t r) { return r < FP_INCOMPLETE && r >= FP_E_LAST; }

static void check_span(fp_span s, size_t bound)
{
    CHECK((uint64_t)s.off + s.len <= bound);
}

static int is_tchar(unsigned char c)
{
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
        return 1;
    return c && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* HTAB / SP / VCHAR / obs-text: no NUL, CR, LF, other CTL or DEL */
static int is_field_char(unsigned char c) { return c == '\t' || (c >= 0x20 && c != 0x7f); }

static void check_error_code(int64_t r)
{
    CHECK(is_error(r));
    CHECK(fp_error_name((int)r) != NULL);
    int st = fp_error_status((int)r);
    CHECK(st >= 400 && st <= 599);
}

/* Invariants of a head parsed with result r from buf[0..len). */
static void check_head(int64_t r, const char *buf, size_t len, const fp_head *h,
                       const fp_limits *lim, int is_request)
{
    if (r == FP_INCOMPLETE) return;
    if (r < 0) {
        check_error_code(r);
        return;
    }
    CHECK(r > 0);
    CHECK((uint64_t)r <= len);
    CHECK(h->head_len == (uint64_t)r);
    CHECK(h->head_len <= len);
    CHECK(h->head_len <= lim->max_head);
    CHECK(h->num_headers <= h->max_slots);
    CHECK(h->num_headers <= lim->max_headers);
    CHECK(h->minor == 0 || h->minor == 1);
    CHECK(h->host_index >= -1 && h->host_index < (int64_t)h->num_headers);
    if (h->host_index >= 0) CHECK(h->headers[h->host_index].id == FP_H_HOST);
    if (!is_request) CHECK(h->host_index == -1); /* Host is tracked for requests */

    if (is_request) {
        check_span(h->method, h->head_len);
        check_span(h->target, h->head_len);
        CHECK(h->method.len > 0);
        CHECK(h->target.len > 0);
        for (uint32_t i = 0; i < h->method.len; i++)
            CHECK(is_tchar((unsigned char)buf[h->method.off + i]));
        for (uint32_t i = 0; i < h->target.len; i++) {
            unsigned char c = (unsigned char)buf[h->target.off + i];
            CHECK(c > 0x20 && c != 0x7f); /* no SP, CTL (RFC 9112 3.2) */
        }
        CHECK(h->method_id >= FP_M_OTHER && h->method_id <= FP_M_PATCH);
        if (h->method_id == FP_M_GET)
            CHECK(h->method.len == 3 && memcmp(buf + h->method.off, "GET", 3) == 0);
        if (h->method_id == FP_M_CONNECT)
            CHECK(h->method.len == 7 && memcmp(buf + h->method.off, "CONNECT", 7) == 0);
        /* HTTP/1.1 requests need exactly one Host (RFC 9112 3.2) */
        if (h->minor == 1) CHECK(h->host_index >= 0);
    } else {
        CHECK(h->status >= 0 && h->status <= 999);
        check_span(h->reason, h->head_len);
        for (uint32_t i = 0; i < h->reason.len; i++) /* RFC 9112 4 */
            CHECK(is_field_char((unsigned char)buf[h->reason.off + i]));
    }

    int hosts = 0;
    for (uint32_t i = 0; i < h->num_headers; i++) {
        const fp_header *f = &h->headers[i];
        check_span(f->name, h->head_len);
        check_span(f->value, h->head_len);
        CHECK(f->name.len > 0);
        for (uint32_t k = 0; k < f->name.len; k++)
            CHECK(is_tchar((unsigned char)buf[f->name.off + k]));
        CHECK(f->id == fp_header_id(buf + f->name.off, f->name.len));
        if (f->id == FP_H_HOST) hosts++;
        for (uint32_t k = 0; k < f->value.len; k++) /* RFC 9110 5.5 */
            CHECK(is_field_char((unsigned char)buf[f->value.off + k]));
        if (f->value.len) { /* OWS trimmed both sides */
            unsigned char a = (unsigned char)buf[f->value.off];
            unsigned char z = (unsigned char)buf[f->value.off + f->value.len - 1];
            CHECK(a != ' ' && a != '\t' && z != ' ' && z != '\t');
        }
        /* exercise the list scanner on every value */
        (void)fp_list_has_token(buf, f->value, "close", 5);
        (void)fp_list_has_token(buf, f->value, "chunked", 7);
    }
    if (is_request) { /* one Host at most, and host_index finds it */
        CHECK(hosts <= 1);
        CHECK(hosts == (h->host_index >= 0));
    }
}

static void check_same_head(int64_t r1, const fp_head *a, int64_t r2, const fp_head *b)
{
    CHECK(r1 == r2);
    if (r1 <= 0) return;
    CHECK(a->num_headers == b->num_headers);
    CHECK(a->head_len == b->head_len);
    CHECK(memcmp(&a->method, &b->method, sizeof a->method) == 0);
    CHECK(memcmp(&a->target, &b->target, sizeof a->target) == 0);
    CHECK(memcmp(&a->reason, &b->reason, sizeof a->reason) == 0);
    CHECK(a->method_id == b->method_id && a->status == b->status);
    CHECK(a->minor == b->minor && a->host_index == b->host_index);
    for (uint32_t i = 0; i < a->num_headers; i++) {
        CHECK(memcmp(&a->headers[i].name, &b->headers[i].name, sizeof(fp_span)) == 0);
        CHECK(memcmp(&a->headers[i].value, &b->headers[i].value, sizeof(fp_span)) == 0);
        CHECK(a->headers[i].id == b->headers[i].id);
    }
}

static void check_framing(const char *buf, int rc, const fp_head *h, const fp_framing *f, int is_request,
                          int req_method)
{
    if (rc != 0) {
        check_error_code(rc);
        CHECK(rc <= FP_E_CL_INVALID && rc >= FP_E_TE_HTTP10); /* framing codes only */
        return;
    }
    CHECK(f->kind >= FP_BODY_NONE && f->kind <= FP_BODY_UNTIL_CLOSE);
    /* the flags describe the fields as they are (RFC 9110 7.6.1, RFC 9112 9.6):
     * a "close" option always clears keep-alive, whatever else is wrong */
    int has_cl = 0, has_te = 0, close = 0;
    for (uint32_t i = 0; i < h->num_headers; i++) {
        const fp_header *x = &h->headers[i];
        if (x->id == FP_H_CONTENT_LENGTH) has_cl = 1;
        if (x->id == FP_H_TRANSFER_ENCODING) has_te = 1;
        if (x->id == FP_H_CONNECTION && fp_list_has_token(buf, x->value, "close", 5))
            close = 1;
    }
    if (close) CHECK((f->flags & FP_F_CONN_CLOSE) && !(f->flags & FP_F_KEEP_ALIVE));
    /* a length body: every Content-Length element is 1*DIGIT of that value
     * (RFC 9110 8.6: only a list of identical values may be tolerated) */
    if (f->kind == FP_BODY_LENGTH) {
        for (uint32_t i = 0; i < h->num_headers; i++) {
            const fp_header *x = &h->headers[i];
            if (x->id != FP_H_CONTENT_LENGTH) continue;
            const char *v = buf + x->value.off, *e = v + x->value.len;
            while (v <= e) {
                const char *c = v;
                while (c < e && *c != ',') c++;
                const char *a = v, *b = c;
                while (a < b && (*a == ' ' || *a == '\t')) a++;
                while (b > a && (b[-1] == ' ' || b[-1] == '\t')) b--;
                CHECK(a < b);
                uint64_t n = 0;
                for (; a < b; a++) {
                    CHECK(*a >= '0' && *a <= '9');
                    CHECK(n <= (UINT64_MAX - 9) / 10);
                    n = n * 10 + (uint64_t)(*a - '0');
                }
                CHECK(n == f->length);
                v = c + 1;
            }
        }
    }
    CHECK(!!(f->flags & FP_F_HAS_CL) == has_cl);
    CHECK(!!(f->flags & FP_F_HAS_TE) == has_te);
    if (f->kind == FP_BODY_CHUNKED) CHECK(f->flags & FP_F_HAS_TE);
    if (f->kind == FP_BODY_LENGTH) CHECK(f->flags & FP_F_HAS_CL);
    if (is_request) {
        /* RFC 9112 6.3: a request body is never delimited by close */
        CHECK(f->kind != FP_BODY_UNTIL_CLOSE);
        /* RFC 9112 6.1: TE with CL in a request must be rejected here */
        CHECK(!((f->flags & FP_F_HAS_TE) && (f->flags & FP_F_HAS_CL)));
        if (h->minor == 0) CHECK(!(f->flags & FP_F_HAS_TE));
    } else {
        /* RFC 9112 6.3 rule 1: no body after HEAD, 1xx, 204, 304 */
        if (req_method == FP_M_HEAD || (h->status >= 100 && h->status < 200) ||
            h->status == 204 || h->status == 304)
            CHECK(f->kind == FP_BODY_NONE);
    }
}

/* ---- chunked decoder ------------------------------------------------- */

typedef struct {
    int status;        /* FP_CHUNK_DONE, FP_CHUNK_NEED_MORE or an FP_E_* */
    size_t consumed;   /* total bytes consumed (meaningful on DONE)        */
    size_t body_len;
    uint8_t *body;     /* concatenated data, capacity = input length        */
} chunk_result;

/* Feed one piece fully (or until DONE / error); append data to res. */
static int feed_piece(fp_chunked *d, const char *p, size_t n, chunk_result *res,
                      size_t cap)
{
    size_t pos = 0;
    /* each iteration either consumes a byte or ends the loop */
    for (size_t guard = 0; guard <= n + 2; guard++) {
        size_t consumed = (size_t)-1, off = (size_t)-1, dlen = (size_t)-1;
        int rc = fp_chunked_feed(d, p + pos, n - pos, &consumed, &off, &dlen);
        if (rc < 0) {
            check_error_code(rc);
            CHECK(rc == FP_E_CHUNK_SIZE || rc == FP_E_CHUNK_OVERFLOW ||
                  rc == FP_E_CHUNK_EXT || rc == FP_E_CHUNK_CRLF || rc == FP_E_TRAILER);
            return rc;
        }
        CHECK(consumed <= n - pos);
        if (rc == FP_CHUNK_NEED_MORE) {
            CHECK(consumed == n - pos); /* "everything was consumed" */
            res->consumed += consumed;
            return FP_CHUNK_NEED_MORE;
        }
        if (rc == FP_CHUNK_DONE) {
            res->consumed += consumed;
            pos += consumed;
            return FP_CHUNK_DONE;
        }
        CHECK(rc == FP_CHUNK_DATA);
        CHECK(dlen > 0);
        CHECK(off <= n - pos && dlen <= n - pos - off); /* data inside the buffer */
        CHECK(off + dlen <= consumed);                    /* and inside what was used */
        CHECK(res->body_len + dlen <= cap);
        memcpy(res->body + res->body_len, p + pos + off, dlen);
        res->body_len += dlen;
        res->consumed += consumed;
        pos += consumed;
        CHECK(consumed > 0);
    }
    __builtin_trap(); /* no progress */
}

static void chunked_whole(const uint8_t *data, size_t n, uint32_t max_ext,
                          uint32_t max_trailer, chunk_result *res)
{
    fp_chunked d;
    fp_chunked_init(&d, max_ext, max_trailer);
    char *buf = dup_exact(data, n);
    res->consumed = res->body_len = 0;
    res->status = feed_piece(&d, buf, n, res, n);
    if (res->status == FP_CHUNK_DONE) { /* a finished decoder takes nothing more */
        size_t consumed = 1, off, dlen;
        CHECK(fp_chunked_feed(&d, buf + res->consumed, n - res->consumed, &consumed, &off,
                              &dlen) == FP_CHUNK_DONE);
        CHECK(consumed == 0);
    }
    free(buf);
}

static void chunked_pieces(const uint8_t *data, size_t n, uint32_t max_ext,
                           uint32_t max_trailer, int bytewise, uint64_t seed,
                           chunk_result *res)
{
    fp_chunked d;
    fp_chunked_init(&d, max_ext, max_trailer);
    res->consumed = res->body_len = 0;
    res->status = FP_CHUNK_NEED_MORE;
    size_t pos = 0;
    while (pos < n) {
        size_t piece = 1;
        if (!bytewise) {
            uint64_t r = rng_next(&seed);
            /* mostly small pieces, sometimes large ones */
            piece = (r & 3) ? 1 + (size_t)((r >> 8) % 16) : 1 + (size_t)((r >> 8) % 512);
        }
        if (piece > n - pos) piece = n - pos;
        char *buf = dup_exact(data + pos, piece);
        size_t before = res->consumed;
        int st = feed_piece(&d, buf, piece, res, n);
        free(buf);
        res->status = st;
        if (st != FP_CHUNK_NEED_MORE) return;
        CHECK(res->consumed - before == piece);
        pos += piece;
    }
}

/* Decode data[0..n) whole and in pieces; both must agree. */
static void fuzz_chunked(const uint8_t *data, size_t n, uint8_t ctl)
{
    uint32_t max_ext = (ctl & 0x08) ? 8 : 4096;
    uint32_t max_trailer = (ctl & 0x10) ? 32 : 16384;
    uint8_t *b1 = (uint8_t *)malloc(n + 1), *b2 = (uint8_t *)malloc(n + 1);
    CHECK(b1 && b2);
    chunk_result whole = {0, 0, 0, b1}, pieces = {0, 0, 0, b2};
    chunked_whole(data, n, max_ext, max_trailer, &whole);
    chunked_pieces(data, n, max_ext, max_trailer, ctl & 0x80, seed_of(data, n), &pieces);

    CHECK(whole.status == pieces.status);
    CHECK(whole.consumed <= n);
    if (whole.status == FP_CHUNK_DONE) CHECK(whole.consumed == pieces.consumed);
    if (whole.status == FP_CHUNK_NEED_MORE) CHECK(whole.consumed == n);
    /* same body bytes; on an error either run may stop emitting data at a
     * slightly different point (a decoder may check the CRLF after a chunk
     * before or after handing out its data), but what both emitted agrees */
    if (whole.status >= 0) CHECK(whole.body_len == pieces.body_len);
    size_t common = whole.body_len < pieces.body_len ? whole.body_len : pieces.body_len;
    CHECK(memcmp(b1, b2, common) == 0);
    CHECK(whole.body_len <= n);
    free(b1);
    free(b2);
}

/* ---- heads ------------------------------------------------------------- */

static int64_t parse(int is_request, const char *buf, size_t len, fp_head *h,
                     fp_header *slots, const fp_limits *lim, size_t *scanned)
{
    memset(h, 0, sizeof *h);
    memset(slots, 0xA5, sizeof(fp_header) * MAX_SLOTS);
    h->headers = slots;
    h->max_slots = MAX_SLOTS;
    return is_request ? fp_parse_request(buf, len, h, lim, scanned)
                      : fp_parse_response(buf, len, h, lim, scanned);
}

static void set_limits(uint8_t ctl, fp_limits *lim)
{
    switch ((ctl >> 3) & 3) {
    case 0: *lim = (fp_limits){8192, 65536, 100}; break;  /* roomy; slots < limit */
    case 1: *lim = (fp_limits){64, 256, 8}; break;        /* tight */
    case 2: *lim = (fp_limits){16, 4096, 3}; break;       /* tiny line */
    default: *lim = (fp_limits){4096, 128, 64}; break;    /* tiny head */
    }
}

static void check_round_trip(const char *buf, const fp_head *h, int is_request,
                             int req_method, int rc1, const fp_framing *f1);

static void fuzz_head(const uint8_t *data, size_t n, uint8_t ctl, int is_request)
{
    static const int methods[4] = {FP_M_GET, FP_M_HEAD, FP_M_CONNECT, FP_M_POST};
    int req_method = methods[(ctl >> 5) & 3];
    int simd_first = (ctl >> 2) & 1;
    fp_limits lim;
    set_limits(ctl, &lim);
    fp_header s1[MAX_SLOTS], s2[MAX_SLOTS];
    fp_head h1, h2;

    char *buf = dup_exact(data, n);
    int had_simd = fp_set_simd(simd_first);
    int64_t r1 = parse(is_request, buf, n, &h1, s1, &lim, NULL);
    check_head(r1, buf, n, &h1, &lim, is_request);
    if (fp_simd_available()) { /* the other scanning path must agree */
        fp_set_simd(!simd_first);
        int64_t r2 = parse(is_request, buf, n, &h2, s2, &lim, NULL);
        check_same_head(r1, &h1, r2, &h2);
    }
    fp_set_simd(had_simd);

    if (r1 > 0) {
        fp_framing f;
        memset(&f, 0xA5, sizeof f);
        int rc = is_request ? fp_request_framing(buf, &h1, &f)
                            : fp_response_framing(buf, &h1, req_method, &f);
        check_framing(buf, rc, &h1, &f, is_request, req_method);
        check_round_trip(buf, &h1, is_request, req_method, rc, &f);
        if (rc == 0 && f.kind == FP_BODY_CHUNKED)
            fuzz_chunked(data + h1.head_len, n - h1.head_len, ctl);
    }
    free(buf);
}

/* Re-serialise an accepted head the way the proxy does (canonical start line,
 * "Name: value" CRLF) and parse it again: it must be accepted with the same
 * fields and the same framing, or the next hop could read it differently. */
static void check_round_trip(const char *buf, const fp_head *h, int is_request,
                             int req_method, int rc1, const fp_framing *f1)
{
    size_t cap = 64 + (size_t)h->head_len * 2 + (size_t)h->num_headers * 4;
    char *tmp = (char *)malloc(cap), *w = tmp;
    CHECK(tmp != NULL);
#define PUT(p, n) do { CHECK((size_t)(w - tmp) + (n) <= cap); memcpy(w, (p), (n)); w += (n); } while (0)
    if (is_request) {
        PUT(buf + h->method.off, h->method.len);
        PUT(" ", 1);
        PUT(buf + h->target.off, h->target.len);
        PUT(h->minor ? " HTTP/1.1\r\n" : " HTTP/1.0\r\n", 11);
    } else {
        char line[16];
        line[0] = (char)('0' + h->status / 100);
        line[1] = (char)('0' + h->status / 10 % 10);
        line[2] = (char)('0' + h->status % 10);
        line[3] = ' ';
        PUT(h->minor ? "HTTP/1.1 " : "HTTP/1.0 ", 9);
        PUT(line, 4);
        PUT(buf + h->reason.off, h->reason.len);
        PUT("\r\n", 2);
    }
    for (uint32_t i = 0; i < h->num_headers; i++) {
        PUT(buf + h->headers[i].name.off, h->headers[i].name.len);
        PUT(": ", 2);
        PUT(buf + h->headers[i].value.off, h->headers[i].value.len);
        PUT("\r\n", 2);
    }
    PUT("\r\n", 2);
#undef PUT
    size_t n = (size_t)(w - tmp);
    char *out = dup_exact((const uint8_t *)tmp, n);
    free(tmp);

    fp_limits big = {1u << 20, 1u << 20, MAX_SLOTS};
    fp_header slots[MAX_SLOTS];
    fp_head g;
    int64_t r = parse(is_request, out, n, &g, slots, &big, NULL);
    CHECK(r == (int64_t)n);
    CHECK(g.num_headers == h->num_headers && g.minor == h->minor);
    CHECK(g.method_id == h->method_id && g.status == h->status);
    CHECK(g.method.len == h->method.len && g.target.len == h->target.len);
    CHECK(memcmp(out + g.method.off, buf + h->method.off, g.method.len) == 0);
    CHECK(memcmp(out + g.target.off, buf + h->target.off, g.target.len) == 0);
    CHECK(g.reason.len == h->reason.len);
    CHECK(memcmp(out + g.reason.off, buf + h->reason.off, g.reason.len) == 0);
    CHECK(g.host_index == h->host_index);
    for (uint32_t i = 0; i < g.num_headers; i++) {
        const fp_header *a = &g.headers[i], *b = &h->headers[i];
        CHECK(a->id == b->id && a->name.len == b->name.len && a->value.len == b->value.len);
        CHECK(memcmp(out + a->name.off, buf + b->name.off, a->name.len) == 0);
        CHECK(memcmp(out + a->value.off, buf + b->value.off, a->value.len) == 0);
    }
    fp_framing f2;
    int rc2 = is_request ? fp_request_framing(out, &g, &f2)
                         : fp_response_framing(out, &g, req_method, &f2);
    CHECK(rc1 == rc2);
    if (rc1 == 0)
        CHECK(f1->kind == f2.kind && f1->flags == f2.flags && f1->length == f2.length);
    free(out);
}

/* Feed growing prefixes with the `scanned` hint, each in an exact-size copy;
 * the first non-INCOMPLETE answer must equal the one-shot parse of that
 * prefix, and once complete, equal the parse of the whole input. */
static void fuzz_incremental(const uint8_t *data, size_t n, uint8_t ctl)
{
    fp_limits lim;
    set_limits(ctl, &lim);
    fp_header s1[MAX_SLOTS], s2[MAX_SLOTS];
    fp_head h1, h2;
    uint64_t seed = seed_of(data, n);
    size_t scanned = 0, len = 0;
    int64_t r = FP_INCOMPLETE;
    int steps = 0;

    while (len < n) {
        size_t step = 1 + (size_t)(rng_next(&seed) % (steps < 8 ? 64 : 1024));
        len = step > n - len ? n : len + step;
        steps++;
        char *buf = dup_exact(data, len);
        r = parse(1, buf, len, &h1, s1, &lim, &scanned);
        check_head(r, buf, len, &h1, &lim, 1);
        /* `scanned` is an opaque resume hint (fp_http1.c packs a flag into
         * bit 0), so its value is not checked, only that it changes nothing */
        if (r != FP_INCOMPLETE) {
            /* same prefix without the hint: same answer */
            int64_t r2 = parse(1, buf, len, &h2, s2, &lim, NULL);
            check_same_head(r, &h1, r2, &h2);
            free(buf);
            break;
        }
        free(buf);
    }
    if (r != FP_INCOMPLETE && len < n) {
        char *buf = dup_exact(data, n);
        int64_t r2 = parse(1, buf, n, &h2, s2, &lim, NULL);
        if (r > 0) /* complete: more bytes after the head change nothing */
            check_same_head(r, &h1, r2, &h2);
        else /* a prefix that is already wrong cannot become right */
            CHECK(is_error(r2));
        free(buf);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    uint8_t ctl = data[0];
    data++;
    size--;
    switch (ctl & 3) {
    case 0: fuzz_head(data, size, ctl, 1); break;
    case 1: fuzz_head(data, size, ctl, 0); break;
    case 2: fuzz_chunked(data, size, ctl); break;
    default: fuzz_incremental(data, size, ctl); break;
    }
    return 0;
}
