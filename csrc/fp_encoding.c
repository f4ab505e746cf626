/* fp_encoding.c - content-coding negotiation and head patching (see fp_encoding.h). */
#include "fp_encoding.h"

#include <string.h>

#include "fp_known_headers.h"

static int low(int c) { return (c >= 'A' && c <= 'Z') ? c | 0x20 : c; }

static int ieq(const char *a, size_t an, const char *b, size_t bn)
{
    if (an != bn) return 0;
    for (size_t i = 0; i < an; i++)
        if (low((unsigned char)a[i]) != low((unsigned char)b[i])) return 0;
    return 1;
}

static int ows(char c) { return c == ' ' || c == '\t'; }

int fp_enc_id(const char *p, size_t n)
{
    if (ieq(p, n, "gzip", 4) || ieq(p, n, "x-gzip", 6)) return FP_ENC_GZIP;
    if (ieq(p, n, "br", 2)) return FP_ENC_BR;
    if (ieq(p, n, "zstd", 4)) return FP_ENC_ZSTD;
    if (ieq(p, n, "identity", 8)) return FP_ENC_IDENTITY;
    return FP_ENC_UNKNOWN;
}

const char *fp_enc_name(int id)
{
    switch (id) {
    case FP_ENC_GZIP: return "gzip";
    case FP_ENC_BR: return "br";
    case FP_ENC_ZSTD: return "zstd";
    }
    return "identity";
}

void fp_accept_init(fp_accept *a)
{
    for (int i = 0; i < FP_ENC_COUNT; i++) a->q[i] = -1;
    a->star = -1;
    a->present = 0;
}

/* qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] ), in
 * thousandths; -1 when malformed. */
static int parse_q(const char *p, size_t n)
{
    if (n == 0 || (p[0] != '0' && p[0] != '1')) return -1;
    int v = (p[0] - '0') * 1000;
    if (n == 1) return v;
    if (p[1] != '.' || n > 5) return -1;
    int scale = 100;
    for (size_t i = 2; i < n; i++, scale /= 10) {
        if (p[i] < '0' || p[i] > '9') return -1;
        v += (p[i] - '0') * scale;
    }
    return v > 1000 ? -1 : v;
}

/* One list element "coding *( OWS ; OWS param )" in [p, e). */
static void feed_element(fp_accept *a, const char *p, const char *e)
{
    const char *t = p;
    while (p < e && *p != ';' && !ows(*p)) p++;
    size_t tn = (size_t)(p - t);
    int q = 1000;
    if (tn == 0) return;
    while (p < e) {
        while (p < e && (ows(*p) || *p == ';')) p++;
        const char *name = p;
        while (p < e && *p != '=' && *p != ';' && !ows(*p)) p++;
        size_t nn = (size_t)(p - name);
        if (p < e && *p == '=') {
            const char *v = ++p;
            while (p < e && *p != ';' && !ows(*p)) p++;
            if (ieq(name, nn, "q", 1)) {
                q = parse_q(v, (size_t)(p - v));
                if (q < 0) return;          /* a bad weight: ignore the element */
            }
        } else if (nn == 0) {
            break;
        }
    }
    int16_t *slot;
    if (tn == 1 && t[0] == '*') {
        slot = &a->star;
    } else {
        int id = fp_enc_id(t, tn);
        if (id == FP_ENC_UNKNOWN) return;
        slot = &a->q[id];
    }
    if (q > *slot) *slot = (int16_t)q;      /* named twice: the higher weight */
}

void fp_accept_feed(fp_accept *a, const char *v, size_t n)
{
    const char *e = v + n;
    a->present = 1;
    while (v < e) {
        while (v < e && (ows(*v) || *v == ',')) v++;
        const char *s = v;
        while (v < e && *v != ',') v++;
        const char *t = v;
        while (t > s && ows(t[-1])) t--;
        if (t > s) feed_element(a, s, t);
    }
}

int fp_accept_q(const fp_accept *a, int id)
{
    if (id < 0 || id >= FP_ENC_COUNT) return 0;
    if (a->q[id] >= 0) return a->q[id];
    if (a->star >= 0) return a->star;
    return id == FP_ENC_IDENTITY ? 1000 : 0;
}

int fp_accept_choose(const fp_accept *a, const uint8_t *pref, int npref)
{
    int best = FP_ENC_IDENTITY, best_q = 0;
    for (int i = 0; i < npref; i++) {
        int q = fp_accept_q(a, pref[i]);
        if (q > best_q) {
            best = pref[i];
            best_q = q;
        }
    }
    /* Identity is acceptable by default but has no weight of its own: it
     * wins only when named (or covered by "*") with a strictly higher q. */
    int id_q = a->q[FP_ENC_IDENTITY] >= 0 ? a->q[FP_ENC_IDENTITY] : a->star;
    if (best != FP_ENC_IDENTITY && id_q > best_q) return FP_ENC_IDENTITY;
    return best;
}

void fp_enc_request(const char *buf, const fp_head *h, const fp_enc_policy *pol,
                    fp_enc_req *out)
{
    fp_accept a;
    fp_accept_init(&a);
    out->keep = 0;
    for (uint32_t i = 0; i < h->num_headers; i++) {
        const fp_header *f = &h->headers[i];
        if (f->id == FP_H_ACCEPT_ENCODING)
            fp_accept_feed(&a, buf + f->value.off, f->value.len);
        else if (f->id == FP_H_RANGE)
            out->keep = 1;
        else if (f->id == FP_H_CACHE_CONTROL &&
                 fp_list_has_token(buf, f->value, "no-transform", 12))
            out->keep = 1;          /* RFC 9111 5.2.1.6: the client asks for none */
    }
    out->accept = 0;
    for (int id = 0; id < FP_ENC_COUNT; id++)
        if (fp_accept_q(&a, id) > 0) out->accept |= 1u << id;
    out->choice = fp_accept_choose(&a, pol->pref, pol->npref);
}

int fp_enc_type_listed(const char *ct, size_t n, const char *list, size_t ln)
{
    const char *e = ct + n;
    while (ct < e && ows(*ct)) ct++;
    const char *t = ct;
    while (ct < e && *ct != ';' && !ows(*ct)) ct++;
    size_t tn = (size_t)(ct - t);
    const char *slash = memchr(t, '/', tn);
    if (tn == 0 || slash == NULL) return 0;
    size_t major = (size_t)(slash - t);
    const char *l = list, *le = list + ln;
    while (l < le) {
        const char *s = l;
        while (l < le && *l != ',') l++;
        size_t sn = (size_t)(l - s);
        if (l < le) l++;
        if (sn == 3 && memcmp(s, "*/*", 3) == 0) return 1;
        if (sn >= 2 && s[sn - 1] == '*' && s[sn - 2] == '/') {
            if (ieq(t, major, s, sn - 2)) return 1;
        } else if (ieq(t, tn, s, sn)) {
            return 1;
        }
    }
    return 0;
}

/* Content-Encoding list -> one coding id (see fp_enc_response). */
static int content_coding(const char *v, size_t n, int seen)
{
    const char *e = v + n;
    int id = seen;
    while (v < e) {
        while (v < e && (ows(*v) || *v == ',')) v++;
        const char *t = v;
        while (v < e && *v != ',' && !ows(*v)) v++;
        if (v == t) continue;
        int c = fp_enc_id(t, (size_t)(v - t));
        if (c == FP_ENC_IDENTITY) continue;
        if (c == FP_ENC_UNKNOWN || id != FP_ENC_IDENTITY) return FP_ENC_UNKNOWN;
        id = c;
    }
    return id;
}

int fp_enc_response(const char *buf, const fp_head *h, const fp_framing *fr,
                    const fp_enc_policy *pol, int *upstream_coding)
{
    int flags = 0, typed = 0, coding = FP_ENC_IDENTITY;
    for (uint32_t i = 0; i < h->num_headers; i++) {
        const fp_header *f = &h->headers[i];
        if (f->id == FP_H_CACHE_CONTROL) {
            if (fp_list_has_token(buf, f->value, "no-transform", 12))
                flags |= 1 << FP_ENC_SKIP_NO_TRANSFORM;
        } else if (f->id == FP_H_CONTENT_ENCODING) {
            if (coding != FP_ENC_UNKNOWN)
                coding = content_coding(buf + f->value.off, f->value.len, coding);
        } else if (f->id == FP_H_CONTENT_TYPE && !typed) {
            typed = 1;
            if (!fp_enc_type_listed(buf + f->value.off, f->value.len, pol->types,
                                    pol->types_len))
                flags |= 1 << FP_ENC_SKIP_TYPE;
        }
    }
    if (!typed) flags |= 1 << FP_ENC_SKIP_TYPE;
    if (coding != FP_ENC_IDENTITY) flags |= 1 << FP_ENC_SKIP_ENCODED;
    if (fr->kind == FP_BODY_LENGTH && fr->length < pol->min_length)
        flags |= 1 << FP_ENC_SKIP_SHORT;
    *upstream_coding = coding;
    return flags;
}

/* ---- head patch ---------------------------------------------------------- */

static int has_token(const char *v, size_t n, const char *tok, size_t tn)
{
    const char *e = v + n;
    while (v < e) {
        while (v < e && (ows(*v) || *v == ',')) v++;
        const char *t = v;
        while (v < e && *v != ',') v++;
        const char *te = v;
        while (te > t && ows(te[-1])) te--;
        if (ieq(t, (size_t)(te - t), tok, tn)) return 1;
    }
    return 0;
}

int fp_enc_patch_head(fp_wbuf *o, size_t start, int coding, int flags)
{
    int body = !(flags & FP_PATCH_VARY_ONLY);
    int drop_ce = body && ((flags & FP_PATCH_DECODED) || coding != FP_ENC_IDENTITY);
    fp_wbuf t = {0};
    const char *p = o->data + start, *e = o->data + o->len;
    const char *line_end = memchr(p, '\n', (size_t)(e - p));
    int vary_any = 0, vary_star = 0, vary_ae = 0, rc = -1;
    if (line_end == NULL) return -1;
    if (fp_wbuf_reserve(&t, (size_t)(e - p) + 96)) return -1;
    fp_wbuf_put(&t, p, (size_t)(line_end + 1 - p));
    /* Pass 1: every line but the ones we replace; Vary is gathered. */
    for (p = line_end + 1; p < e; p = line_end + 1) {
        line_end = memchr(p, '\n', (size_t)(e - p));
        if (line_end == NULL || line_end - p <= 1) break;       /* the empty line */
        const char *colon = memchr(p, ':', (size_t)(line_end - p));
        if (colon == NULL) continue;
        size_t nn = (size_t)(colon - p);
        const char *v = colon + 1, *ve = line_end - 1;           /* before CR */
        while (v < ve && ows(*v)) v++;
        if ((body && (ieq(p, nn, "content-length", 14) || ieq(p, nn, "accept-ranges", 13))) ||
            (drop_ce && ieq(p, nn, "content-encoding", 16)))
            continue;
        if (ieq(p, nn, "vary", 4)) {
            vary_star |= has_token(v, (size_t)(ve - v), "*", 1);
            vary_ae |= has_token(v, (size_t)(ve - v), "accept-encoding", 15);
            continue;
        }
        if (body && ieq(p, nn, "etag", 4) && v < ve && *v == '"') {
            if (fp_wbuf_lit(&t, "ETag: W/") || fp_wbuf_put(&t, v, (size_t)(ve - v)) ||
                fp_wbuf_lit(&t, "\r\n")) goto out;
            continue;
        }
        if (fp_wbuf_put(&t, p, (size_t)(line_end + 1 - p))) goto out;
    }
    if (body && coding != FP_ENC_IDENTITY) {
        const char *name = fp_enc_name(coding);
        if (fp_wbuf_lit(&t, "Content-Encoding: ") || fp_wbuf_put(&t, name, strlen(name)) ||
            fp_wbuf_lit(&t, "\r\n")) goto out;
    }
    /* Pass 2: one Vary with every value seen, plus Accept-Encoding. */
    if (fp_wbuf_lit(&t, "Vary: ")) goto out;
    p = o->data + start;
    for (p = memchr(p, '\n', (size_t)(e - p)) + 1; p < e; p = line_end + 1) {
        line_end = memchr(p, '\n', (size_t)(e - p));
        if (line_end == NULL || line_end - p <= 1) break;
        const char *colon = memchr(p, ':', (size_t)(line_end - p));
        if (colon == NULL || !ieq(p, (size_t)(colon - p), "vary", 4)) continue;
        const char *v = colon + 1, *ve = line_end - 1;
        while (v < ve && ows(*v)) v++;
        if (v == ve) continue;
        if (vary_any && fp_wbuf_lit(&t, ", ")) goto out;
        if (fp_wbuf_put(&t, v, (size_t)(ve - v))) goto out;
        vary_any = 1;
    }
    if (!vary_star && !vary_ae) {
        if (vary_any && fp_wbuf_lit(&t, ", ")) goto out;
        if (fp_wbuf_lit(&t, "Accept-Encoding")) goto out;
    }
    if (fp_wbuf_lit(&t, "\r\n\r\n")) goto out;
    o->len = start;
    rc = fp_wbuf_put(o, t.data, t.len);
out:
    fp_wbuf_free(&t);
    return rc;
}
