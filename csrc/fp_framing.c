/* fp_framing.c - the message body length, decided in one place
 * (RFC 9112 section 6.3), plus the Connection/Upgrade/Expect summary the
 * proxy needs from a head. */
#include "fp_http1.h"
#include "fp_known_headers.h"

#include <stdint.h>

static int lower(int c) { return (c >= 'A' && c <= 'Z') ? c | 0x20 : c; }
static int ows(int c) { return c == ' ' || c == '\t'; }

static int eq_token(const char *a, size_t alen, const char *tok, size_t tlen)
{
    if (alen != tlen) return 0;
    for (size_t i = 0; i < alen; i++)
        if (lower((unsigned char)a[i]) != tok[i]) return 0;
    return 1;
}

/* Walk the elements of a comma-separated list: returns 1 with the next
 * element (OWS trimmed, possibly empty) in [*s, *s + *n), 0 at the end. */
static int next_elem(const char *v, size_t vlen, size_t *pos, const char **s, size_t *n)
{
    if (*pos > vlen) return 0;
    size_t i = *pos, j = i;
    while (j < vlen && v[j] != ',') j++;
    size_t a = i, b = j;
    while (a < b && ows(v[a])) a++;
    while (b > a && ows(v[b - 1])) b--;
    *s = v + a;
    *n = b - a;
    *pos = j + 1;
    return 1;
}

int fp_list_has_token(const char *buf, fp_span v, const char *token, size_t tlen)
{
    size_t pos = 0, n;
    const char *s;
    while (next_elem(buf + v.off, v.len, &pos, &s, &n))
        if (eq_token(s, n, token, tlen)) return 1;
    return 0;
}

#define T(s) s, sizeof(s) - 1

typedef struct {
    int has_cl, has_te, te_elems, te_last_chunked, te_chunked_early, te_unknown;
    int conn_close, conn_keep_alive, conn_upgrade, conn_other, has_upgrade, expect;
    uint64_t cl;
} summary;

/* Content-Length = 1*DIGIT; a list of identical values is tolerated
 * (RFC 9110 8.6), anything else is an error. */
static int add_content_length(summary *s, const char *v, size_t vlen)
{
    size_t pos = 0, n;
    const char *e;
    while (next_elem(v, vlen, &pos, &e, &n)) {
        if (n == 0) return FP_E_CL_INVALID;
        uint64_t x = 0;
        for (size_t i = 0; i < n; i++) {
            if (e[i] < '0' || e[i] > '9') return FP_E_CL_INVALID;
            uint64_t d = (uint64_t)(e[i] - '0');
            if (x > (UINT64_C(0x7fffffffffffffff) - d) / 10) return FP_E_CL_INVALID;
            x = x * 10 + d;
        }
        if (s->has_cl && x != s->cl) return FP_E_CL_CONFLICT;
        s->has_cl = 1;
        s->cl = x;
    }
    return 0;
}

static void add_transfer_encoding(summary *s, const char *v, size_t vlen)
{
    size_t pos = 0, n;
    const char *e;
    s->has_te = 1;
    while (next_elem(v, vlen, &pos, &e, &n)) {
        if (n == 0) continue;
        size_t k = 0;                       /* coding name before parameters */
        while (k < n && e[k] != ';' && !ows(e[k])) k++;
        if (s->te_last_chunked) s->te_chunked_early = 1;
        s->te_elems++;
        s->te_last_chunked = (k == n) && eq_token(e, k, T("chunked"));
        if (!s->te_last_chunked) s->te_unknown = 1;
    }
}

static void add_connection(summary *s, const char *v, size_t vlen)
{
    size_t pos = 0, n;
    const char *e;
    while (next_elem(v, vlen, &pos, &e, &n)) {
        if (n == 0) continue;
        if (eq_token(e, n, T("close"))) s->conn_close = 1;
        else if (eq_token(e, n, T("keep-alive"))) s->conn_keep_alive = 1;
        else if (eq_token(e, n, T("upgrade"))) s->conn_upgrade = 1;
        else s->conn_other = 1;
    }
}

/* Read every field even after a bad Content-Length: a bodiless response
 * ignores its Content-Length but must still honour Connection: close.
 * Returns the first Content-Length error, 0 otherwise. */
static int summarize(const char *buf, const fp_head *h, summary *s)
{
    int first_err = 0;
    *s = (summary){0};
    for (uint32_t i = 0; i < h->num_headers; i++) {
        const fp_header *f = &h->headers[i];
        const char *v = buf + f->value.off;
        int rc = 0;
        switch (f->id) {
        case FP_H_CONTENT_LENGTH:
            rc = add_content_length(s, v, f->value.len);
            s->has_cl = 1;
            break;
        case FP_H_TRANSFER_ENCODING: add_transfer_encoding(s, v, f->value.len); break;
        case FP_H_CONNECTION: add_connection(s, v, f->value.len); break;
        case FP_H_UPGRADE: s->has_upgrade = 1; break;
        case FP_H_EXPECT:
            if (eq_token(v, f->value.len, T("100-continue"))) s->expect = 1;
            break;
        }
        if (rc && !first_err) first_err = rc;
    }
    return first_err;
}

static uint32_t flags_of(const summary *s, int minor)
{
    uint32_t fl = 0;
    int keep = minor >= 1 ? !s->conn_close : (s->conn_keep_alive && !s->conn_close);
    if (keep) fl |= FP_F_KEEP_ALIVE;
    /* RFC 9110 7.8 and 10.1.1: Upgrade and Expect are ignored in HTTP/1.0. */
    if (minor >= 1 && s->conn_upgrade && s->has_upgrade) fl |= FP_F_UPGRADE;
    if (minor >= 1 && s->expect) fl |= FP_F_EXPECT_CONTINUE;
    if (s->conn_close) fl |= FP_F_CONN_CLOSE;
    if (s->has_te) fl |= FP_F_HAS_TE;
    if (s->has_cl) fl |= FP_F_HAS_CL;
    if (s->conn_other) fl |= FP_F_CONN_TOKENS;
    return fl;
}

int fp_request_framing(const char *buf, const fp_head *h, fp_framing *out)
{
    summary s;
    int rc = summarize(buf, h, &s);
    if (rc) return rc;
    out->flags = flags_of(&s, h->minor);
    out->length = 0;
    if (s.has_te) {
        /* A request TE in HTTP/1.0, or with CL, is a smuggling vector
         * (RFC 9112 6.1, 6.3 rule 3): refuse rather than pick a side. */
        if (h->minor == 0) return FP_E_TE_HTTP10;
        if (s.has_cl) return FP_E_TE_WITH_CL;
        /* Rule 4: the final coding must be chunked, exactly once. */
        if (s.te_elems == 0 || !s.te_last_chunked || s.te_chunked_early)
            return FP_E_TE_NOT_CHUNKED;
        if (s.te_unknown) return FP_E_TE_UNSUPPORTED; /* we only do chunked */
        out->kind = FP_BODY_CHUNKED;
        return 0;
    }
    if (s.has_cl) {
        out->kind = FP_BODY_LENGTH;
        out->length = s.cl;
        return 0;
    }
    out->kind = FP_BODY_NONE;                   /* rule 7 */
    return 0;
}

int fp_response_framing(const char *buf, const fp_head *h, int req_method_id,
                        fp_framing *out)
{
    summary s;
    int rc = summarize(buf, h, &s);
    out->length = 0;
    int st = h->status;
    /* Rule 1: these never have a body, whatever the fields say. */
    if (req_method_id == FP_M_HEAD || (st >= 100 && st < 200) || st == 204 || st == 304) {
        out->flags = flags_of(&s, h->minor);    /* its Content-Length is moot */
        out->kind = FP_BODY_NONE;
        return 0;
    }
    if (rc) return rc;
    out->flags = flags_of(&s, h->minor);
    if (req_method_id == FP_M_CONNECT && st >= 200 && st < 300) {
        out->kind = FP_BODY_UNTIL_CLOSE;        /* rule 2: a tunnel */
        out->flags &= ~(uint32_t)FP_F_KEEP_ALIVE;
        return 0;
    }
    if (s.has_te) {
        /* Rule 3: TE overrides CL, but the sender is suspect: close after.
         * HTTP/1.0 with TE is faulty framing (RFC 9112 6.1): close after. */
        if (s.has_cl || h->minor == 0) out->flags &= ~(uint32_t)FP_F_KEEP_ALIVE;
        if (s.te_last_chunked && !s.te_chunked_early && !s.te_unknown) {
            out->kind = FP_BODY_CHUNKED;
            return 0;
        }
        /* Rule 4 would read it to the close, but a coding we cannot undo
         * (gzip alone, chunked twice, chunked not last) would reach the
         * client as if it were the content: a 502 instead. */
        return FP_E_TE_UNSUPPORTED;
    }
    if (s.has_cl) {
        out->kind = FP_BODY_LENGTH;
        out->length = s.cl;
        return 0;
    }
    out->kind = FP_BODY_UNTIL_CLOSE;            /* rule 8 */
    out->flags &= ~(uint32_t)FP_F_KEEP_ALIVE;
    return 0;
}
