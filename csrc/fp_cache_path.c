/* fp_cache_path.c - see fp_cache_path.h.  RFC 9111 section numbers in the
 * comments. */
#include "fp_cache_path.h"

#include <errno.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/socket.h>

#include "fp_known_headers.h"

static int lower(int ch) { return (ch >= 'A' && ch <= 'Z') ? ch + 32 : ch; }

static int ieq(const char *a, size_t an, const char *b, size_t bn)
{
    if (an != bn) return 0;
    for (size_t i = 0; i < an; i++)
        if (lower((unsigned char)a[i]) != lower((unsigned char)b[i])) return 0;
    return 1;
}

static void join(char *dst, size_t cap, size_t *len, const char *v, size_t n)
{
    /* *len may exceed cap - 1: then the value is "too long" and unused. */
    if (*len && *len < cap) dst[(*len)++] = ',';
    else if (*len) (*len)++;
    if (*len + n < cap) memcpy(dst + *len, v, n);
    *len += n;
}

static void resp_init(fp_cpath_resp *out)
{
    memset(out, 0, sizeof *out);
    fp_cc_init(&out->cc);
    out->date = out->expires = out->last_modified = -1;
}

static void resp_done(fp_cpath_resp *out)
{
    if (out->vary_len && out->vary_len < sizeof out->vary)
        out->vary_star = fp_vary_key(out->vary, out->vary_len, "", 0) == FP_CACHE_VARY_STAR;
}

/* One field (id: FP_H_*) of a response head into out. */
static void take_field(fp_cpath_resp *out, int id, const char *v, size_t n, int64_t now)
{
    switch (id) {
    case FP_H_CACHE_CONTROL: fp_cc_parse(&out->cc, v, n); break;
    case FP_H_EXPIRES:
        /* 5.3: an invalid Expires means "already expired" (-2) */
        if (!out->has_expires) {
            out->expires = fp_http_date(v, n, now);
            if (out->expires < 0) out->expires = -2;
        }
        out->has_expires = 1;
        break;
    case FP_H_DATE:
        if (out->date < 0) out->date = fp_http_date(v, n, now);
        break;
    case FP_H_LAST_MODIFIED:
        if (out->last_modified < 0) out->last_modified = fp_http_date(v, n, now);
        out->has_validator = 1;
        break;
    case FP_H_ETAG: out->has_validator = 1; break;
    case FP_H_AGE: {
        /* 5.1: a non-negative integer; anything else is ignored */
        int64_t a = 0;
        size_t j = 0;
        for (; j < n && v[j] >= '0' && v[j] <= '9'; j++)
            if (a < FP_DELTA_MAX) a = a * 10 + (v[j] - '0');
        if (j == n && n) out->age = a > FP_DELTA_MAX ? FP_DELTA_MAX : a;
        break;
    }
    case FP_H_SET_COOKIE: out->has_set_cookie = 1; break;
    case FP_H_VARY:
        join(out->vary, sizeof out->vary, &out->vary_len, v, n);
        break;
    default: break;
    }
}

void fp_cpath_read_response(const char *buf, const fp_head *h, int64_t now,
                            fp_cpath_resp *out)
{
    resp_init(out);
    for (uint32_t i = 0; i < h->num_headers; i++) {
        const fp_header *f = &h->headers[i];
        take_field(out, f->id, buf + f->value.off, f->value.len, now);
    }
    resp_done(out);
}

void fp_cpath_read_request(const char *buf, const fp_head *h, fp_cc *cc, int *has_auth)
{
    int seen_cc = 0, pragma_nc = 0;
    fp_cc_init(cc);
    *has_auth = 0;
    for (uint32_t i = 0; i < h->num_headers; i++) {
        const fp_header *f = &h->headers[i];
        if (f->id == FP_H_CACHE_CONTROL) {
            fp_cc_parse(cc, buf + f->value.off, f->value.len);
            seen_cc = 1;
        } else if (f->id == FP_H_PRAGMA) {
            if (fp_list_has_token(buf, f->value, "no-cache", 8)) pragma_nc = 1;
        } else if (f->id == FP_H_AUTHORIZATION) {
            *has_auth = 1;
        }
    }
    /* 5.4: Pragma: no-cache counts only when Cache-Control is absent */
    if (pragma_nc && !seen_cc) cc->flags |= FP_CC_NO_CACHE;
}

/* Runs the block for every field line of a CRLF head after the status line. */
#define EACH_LINE(head, n, ...)                                                    \
    do {                                                                           \
        const char *_e = (head) + (n), *_p = memchr((head), '\n', (n));            \
        _p = _p ? _p + 1 : _e;                                                     \
        while (_p < _e) {                                                          \
            const char *_nl = memchr(_p, '\n', (size_t)(_e - _p));                 \
            const char *line = _p, *lend = _nl ? _nl + 1 : _e;                     \
            size_t llen = (size_t)(lend - line);                                   \
            const char *colon = memchr(line, ':', llen);                           \
            _p = lend;                                                             \
            if (colon == NULL) continue;                                           \
            size_t nlen = (size_t)(colon - line);                                  \
            __VA_ARGS__                                                            \
        }                                                                          \
    } while (0)

/* The value of a field line whose ':' is at colon and which ends at lend,
 * without the whitespace and line end around it: its start, and *n. */
static const char *line_value(const char *colon, const char *lend, size_t *n)
{
    const char *v = colon + 1;
    while (v < lend && (*v == ' ' || *v == '\t')) v++;
    while (lend > v && (lend[-1] == '\r' || lend[-1] == '\n' || lend[-1] == ' ' ||
                        lend[-1] == '\t'))
        lend--;
    *n = (size_t)(lend - v);
    return v;
}

static int hop(const char *name, size_t n)
{
    return ieq(name, n, "transfer-encoding", 17) || ieq(name, n, "content-length", 14) ||
           ieq(name, n, "connection", 10) || ieq(name, n, "keep-alive", 10) ||
           ieq(name, n, "age", 3) || ieq(name, n, "x-cache", 7);
}

int fp_cpath_stored_head(fp_wbuf *o, const char *head, size_t n)
{
    const char *nl = memchr(head, '\n', n);
    if (nl == NULL) return -1;
    if (fp_wbuf_put(o, head, (size_t)(nl + 1 - head))) return -1;
    EACH_LINE(head, n, {
        if (!hop(line, nlen) && fp_wbuf_put(o, line, llen)) return -1;
    });
    return 0;
}

size_t fp_cpath_field(const char *head, size_t n, const char *name, size_t nl, char *out,
                      size_t cap)
{
    size_t len = 0;
    EACH_LINE(head, n, {
        if (ieq(line, nlen, name, nl)) {
            size_t vn;
            const char *v = line_value(colon, line + llen, &vn);
            join(out, cap, &len, v, vn);
        }
    });
    return len;
}

uint64_t fp_cpath_vary(const char *vary, size_t vlen, const char *req, size_t rlen, int drop_ae,
                       unsigned coding)
{
    if (!drop_ae) return fp_vary_key(vary, vlen, req, rlen);
    char kept[512];
    size_t k = 0, i = 0;
    int had_ae = 0;
    while (i < vlen) {
        size_t s = i;
        while (i < vlen && vary[i] != ',') i++;
        size_t a = s, b = i;
        while (a < b && (vary[a] == ' ' || vary[a] == '\t')) a++;
        while (b > a && (vary[b - 1] == ' ' || vary[b - 1] == '\t')) b--;
        i++;
        if (b == a) continue;
        if (ieq(vary + a, b - a, "accept-encoding", 15)) {
            had_ae = 1;
            continue;
        }
        if (k + (b - a) + 1 >= sizeof kept) return fp_vary_key(vary, vlen, req, rlen);
        if (k) kept[k++] = ',';
        memcpy(kept + k, vary + a, b - a);
        k += b - a;
    }
    uint64_t h = k ? fp_vary_key(kept, k, req, rlen) : 0;
    if (!had_ae || h == FP_CACHE_VARY_STAR) return h;
    /* mix the negotiated coding in; never 0 (= no Vary) nor VARY_STAR */
    h ^= (uint64_t)(coding + 1) * UINT64_C(0x9e3779b97f4a7c15);
    if (h == 0 || h == FP_CACHE_VARY_STAR) h = 1;
    return h;
}

int fp_cpath_judge(const fp_cache_meta *m, const fp_cc *req, int64_t now, int64_t *age_out)
{
    int64_t age = fp_current_age(m->age_value, m->date, m->request_time, m->response_time, now);
    int64_t left = m->freshness - age;  /* > 0: fresh (4.2) */
    *age_out = age;
    /* 5.2.2.4 response no-cache, 5.2.1.4 request no-cache: validate first */
    if ((m->flags & FP_CC_NO_CACHE) || (req->flags & FP_CC_NO_CACHE)) return FP_CP_STALE;
    /* 5.2.1.1 max-age: the client will not take anything older */
    if ((req->flags & FP_CC_MAX_AGE) && age > req->max_age) return FP_CP_STALE;
    if (left > 0) {
        /* 5.2.1.3 min-fresh */
        if ((req->flags & FP_CC_MIN_FRESH) && left < req->min_fresh) return FP_CP_STALE;
        return FP_CP_FRESH;
    }
    /* 4.2.4: never stale with must-revalidate, proxy-revalidate or s-maxage
     * (5.2.2.2, 5.2.2.8, 5.2.2.10: the latter two bind shared caches) */
    if (m->flags & (FP_CC_MUST_REVALIDATE | FP_CC_PROXY_REVALIDATE | FP_CC_S_MAXAGE))
        return FP_CP_STALE;
    /* 5.2.1.2 max-stale (no value: any staleness) */
    if ((req->flags & FP_CC_MAX_STALE) && (req->max_stale < 0 || -left <= req->max_stale))
        return FP_CP_STALE_OK;
    if (m->swr >= 0 && -left <= m->swr) return FP_CP_SWR;
    return FP_CP_STALE;
}

/* The hit's own fields after the stored head, written at p (the caller
 * reserved TAIL_MAX): Age, X-Cache, connection handling.  A hit writes one
 * every request, so no per-piece bounds checks here. */
#define TAIL_MAX 128
#define PUT_LIT(p, s) (memcpy((p), (s), sizeof(s) - 1), (p) + sizeof(s) - 1)

static char *put_dec(char *p, uint64_t v)
{
    if (v < 10) {           /* Age, mostly */
        *p = (char)('0' + v);
        return p + 1;
    }
    int n = 1;
    for (uint64_t t = v; t >= 10; t /= 10) n++;
    char *e = p + n;
    do {
        *--e = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    return p + n;
}

static char *put_tail(char *p, int64_t age, const char *xc, int close, int client_minor)
{
    p = put_dec(PUT_LIT(p, "Age: "), (uint64_t)(age < 0 ? 0 : age));
    p = PUT_LIT(p, "\r\n");
    if (xc) {               /* one of _cache_path.pxi's X-Cache names: short */
        size_t n = strnlen(xc, 24);
        p = PUT_LIT(p, "X-Cache: ");
        memcpy(p, xc, n);
        p = PUT_LIT(p + n, "\r\n");
    }
    if (close) return PUT_LIT(p, "Connection: close\r\n");
    if (client_minor == 0) return PUT_LIT(p, "Connection: keep-alive\r\n");
    return p;
}

int fp_cpath_write_hit(fp_wbuf *o, const fp_cache_hit *hit, int64_t age, const char *xc,
                       int close, int client_minor, int head_only)
{
    if (fp_wbuf_reserve(o, hit->head_len + TAIL_MAX + (head_only ? 0 : hit->body_len)))
        return -1;
    char *p = o->data + o->len;
    memcpy(p, hit->head, hit->head_len);
    p = put_tail(p + hit->head_len, age, xc, close, client_minor);
    /* 204 and 304 have no content; everything else is framed by length */
    if (hit->meta.status != 204 && hit->meta.status != 304)
        p = PUT_LIT(put_dec(PUT_LIT(p, "Content-Length: "), hit->body_len), "\r\n");
    p = PUT_LIT(p, "\r\n");
    if (!head_only) {
        memcpy(p, hit->body, hit->body_len);
        p += hit->body_len;
    }
    o->len = (size_t)(p - o->data);
    return 0;
}

/* ASCII lower case of n bytes into dst, eight at a time (a byte >= 0x80 is
 * kept as it is): the host of every cache key. */
static void lower_copy(char *dst, const char *src, size_t n)
{
    const uint64_t ones = UINT64_C(0x0101010101010101);
    if (n < 8) {
        for (size_t i = 0; i < n; i++) dst[i] = (char)lower((unsigned char)src[i]);
        return;
    }
    for (size_t i = 0;; i += 8) {
        if (i + 8 > n) i = n - 8;   /* the last word overlaps: same bytes, same result */
        uint64_t w, low7;
        memcpy(&w, src + i, 8);
        low7 = w & (0x7f * ones);
        /* high bit of each byte: 'A' <= b <= 'Z' and b < 0x80 */
        uint64_t upper = ((low7 + (0x80 - 'A') * ones) ^ (low7 + (0x80 - 'Z' - 1) * ones)) &
                         ~w & (0x80 * ones);
        w |= upper >> 2;            /* 0x80 >> 2 == 0x20: the case bit */
        memcpy(dst + i, &w, 8);
        if (i + 8 == n) return;
    }
}

int fp_cpath_key(fp_wbuf *o, const char *scheme, size_t sl, const char *host, size_t hl,
                 const char *target, size_t tl)
{
    o->len = 0;
    if (fp_wbuf_reserve(o, 7 + sl + hl + tl)) return -1;
    char *p = PUT_LIT(o->data, "GET ");
    memcpy(p, scheme, sl);
    p = PUT_LIT(p + sl, "://");
    lower_copy(p, host, hl);
    memcpy(p + hl, target, tl);
    o->len = (size_t)(p + hl + tl - o->data);
    return 0;
}

static int keep_in_304(const char *name, size_t n)
{
    /* RFC 9110 15.4.5: fields a 200 would have sent that a 304 must carry */
    return ieq(name, n, "cache-control", 13) || ieq(name, n, "content-location", 16) ||
           ieq(name, n, "date", 4) || ieq(name, n, "etag", 4) || ieq(name, n, "expires", 7) ||
           ieq(name, n, "vary", 4) || ieq(name, n, "last-modified", 13);
}

int fp_cpath_write_304(fp_wbuf *o, const fp_cache_hit *hit, int64_t age, const char *xc,
                       int close, int client_minor)
{
    const char *head = (const char *)hit->head;
    size_t n = hit->head_len;
    if (fp_wbuf_lit(o, "HTTP/1.1 304 Not Modified\r\n")) return -1;
    EACH_LINE(head, n, {
        if (keep_in_304(line, nlen) && fp_wbuf_put(o, line, llen)) return -1;
    });
    if (fp_wbuf_reserve(o, TAIL_MAX)) return -1;
    o->len = (size_t)(PUT_LIT(put_tail(o->data + o->len, age, xc, close, client_minor), "\r\n") -
                      o->data);
    return 0;
}

int fp_cpath_append(fp_cache *c, fp_cache_put *p, const char *d, size_t n, int chunked)
{
    if (!chunked) return n ? fp_cache_append(c, p, d, n) : FP_CACHE_OK;
    /* our own chunk framing (put_chunk, Transform): size CRLF data CRLF */
    size_t i = 0;
    while (i < n) {
        uint64_t sz = 0;
        while (i < n && d[i] != '\r') {
            char ch = d[i++];
            int v = ch >= '0' && ch <= '9' ? ch - '0' : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10
                    : ch >= 'A' && ch <= 'F' ? ch - 'A' + 10 : -1;
            if (v < 0) return FP_CACHE_EINVAL;
            sz = sz * 16 + (uint64_t)v;
        }
        i += 2;
        if (sz == 0) return FP_CACHE_OK;  /* last-chunk */
        if (i + sz > n) return FP_CACHE_EINVAL;
        int r = fp_cache_append(c, p, d + i, (size_t)sz);
        if (r != FP_CACHE_OK) return r;
        i += (size_t)sz + 2;
    }
    return FP_CACHE_OK;
}

/* If-None-Match: "*" (RFC 9110 13.1.2), with optional whitespace around. */
static int is_star(const char *v, size_t n)
{
    while (n && (v[n - 1] == ' ' || v[n - 1] == '\t')) n--;
    while (n && (*v == ' ' || *v == '\t')) v++, n--;
    return n == 1 && *v == '*';
}

/* Weak comparison of entity tags (RFC 9110 8.8.3.2) over a list. */
static int etag_in(const char *list, size_t ln, const char *tag, size_t tn)
{
    if (tn > 2 && tag[0] == 'W' && tag[1] == '/') tag += 2, tn -= 2;
    size_t i = 0;
    while (i < ln) {
        while (i < ln && (list[i] == ' ' || list[i] == '\t' || list[i] == ',')) i++;
        if (i < ln && list[i] == '*') return 1;
        size_t s = i;
        if (i + 1 < ln && list[i] == 'W' && list[i + 1] == '/') s = i += 2;
        if (i < ln && list[i] == '"') {
            i++;
            while (i < ln && list[i] != '"') i++;
            if (i < ln) i++;
        } else {
            while (i < ln && list[i] != ',') i++;
        }
        if (i - s == tn && memcmp(list + s, tag, tn) == 0) return 1;
    }
    return 0;
}

int fp_cpath_not_modified(const char *req, const fp_head *h, const fp_cache_hit *hit,
                          int64_t now)
{
    char v[256];
    int inm = -1, ims = -1;
    int64_t since = -1;
    for (uint32_t i = 0; i < h->num_headers; i++) {
        const fp_header *f = &h->headers[i];
        if (f->id == FP_H_IF_NONE_MATCH) {
            size_t n = fp_cpath_field((const char *)hit->head, hit->head_len, "etag", 4, v,
                                      sizeof v);
            /* 13.1.2: "*" matches any current representation, tagged or not */
            int m = n == 0 ? is_star(req + f->value.off, f->value.len)
                           : n < sizeof v && etag_in(req + f->value.off, f->value.len, v, n);
            inm = (inm == 1) || m;
        } else if (f->id == FP_H_IF_MODIFIED_SINCE && since < 0) {
            since = fp_http_date(req + f->value.off, f->value.len, now);
            ims = 0;
        }
    }
    /* 13.2.2: If-None-Match wins over If-Modified-Since */
    if (inm >= 0) return inm;
    if (ims < 0 || since < 0) return 0;
    /* RFC 9111 4.3.2: Last-Modified, else Date, else when it was received */
    int64_t lm = hit->meta.last_modified >= 0 ? hit->meta.last_modified
                 : hit->meta.date >= 0        ? hit->meta.date
                                              : hit->meta.response_time;
    return lm >= 0 && lm <= since;
}

static int has_field(const char *head, size_t n, const char *name, size_t nl)
{
    EACH_LINE(head, n, {
        if (ieq(line, nlen, name, nl)) return 1;
    });
    return 0;
}

void fp_cpath_read_stored(const char *head, size_t hn, int64_t now, fp_cpath_resp *out)
{
    resp_init(out);
    EACH_LINE(head, hn, {
        int id = fp_header_id(line, nlen);   /* take_field ignores the rest */
        if (id != FP_H_UNKNOWN) {
            size_t vn;
            const char *v = line_value(colon, line + llen, &vn);
            take_field(out, id, v, vn, now);
        }
    });
    resp_done(out);
}

/* An entity tag's opaque part and whether it is weak (RFC 9110 8.8.3). */
static const char *opaque_tag(const char *t, size_t n, size_t *on, int *weak)
{
    *weak = n > 2 && t[0] == 'W' && t[1] == '/';
    if (*weak) t += 2, n -= 2;
    *on = n;
    return t;
}

int fp_cpath_304_selects(const char *stored, size_t sn, const char *fresh, size_t fn)
{
    char a[256], b[256];
    size_t an = fp_cpath_field(fresh, fn, "etag", 4, a, sizeof a);
    if (an >= sizeof a) return 0;
    if (an) {
        size_t bn = fp_cpath_field(stored, sn, "etag", 4, b, sizeof b), ao, bo;
        int aw, bw;
        if (bn == 0 || bn >= sizeof b) return 0;
        const char *at = opaque_tag(a, an, &ao, &aw), *bt = opaque_tag(b, bn, &bo, &bw);
        if (ao != bo || memcmp(at, bt, ao) != 0) return 0;
        /* a strong validator selects only the response it strongly matches */
        return aw || !bw;
    }
    an = fp_cpath_field(fresh, fn, "last-modified", 13, a, sizeof a);
    if (an && an < sizeof a) {
        size_t bn = fp_cpath_field(stored, sn, "last-modified", 13, b, sizeof b);
        if (bn && bn < sizeof b) return an == bn && memcmp(a, b, an) == 0;
    }
    /* No validator in the 304 (4.3.4 would select only a stored response
     * without one): it answers the validators we sent for this entry. */
    return 1;
}

int fp_cpath_merge_304(fp_wbuf *o, const char *stored, size_t sn, const char *fresh, size_t fn,
                       int keep_set_cookie)
{
    /* RFC 9111 3.2 / 4.3.4: the 304's fields replace the stored ones of the
     * same name; the rest of the stored head stays.  Set-Cookie is one
     * client's: kept only when the cache may store it. */
    const char *nl = memchr(stored, '\n', sn);
    if (nl == NULL || fp_wbuf_put(o, stored, (size_t)(nl + 1 - stored))) return -1;
    EACH_LINE(stored, sn, {
        int replaced = has_field(fresh, fn, line, nlen) &&
                       (keep_set_cookie || !ieq(line, nlen, "set-cookie", 10));
        if (!replaced && fp_wbuf_put(o, line, llen)) return -1;
    });
    EACH_LINE(fresh, fn, {
        if (llen > 2 && !hop(line, nlen) && (keep_set_cookie || !ieq(line, nlen, "set-cookie", 10))
            && fp_wbuf_put(o, line, llen)) return -1;
    });
    return 0;
}

int fp_cpath_put_fields(fp_wbuf *o, const char *head, size_t n, const char *name, size_t nl)
{
    EACH_LINE(head, n, {
        if (ieq(line, nlen, name, nl) && fp_wbuf_put(o, line, llen)) return -1;
    });
    return 0;
}

size_t fp_cpath_send_file(int sock, const char *head, size_t hlen, int fd, int64_t off,
                          size_t blen)
{
    size_t done = 0;
    while (done < hlen) {
        ssize_t n = send(sock, head + done, hlen - done, MSG_MORE | MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) done += (size_t)n;
        else if (n < 0 && errno == EINTR) continue;
        else return done;
    }
    off_t at = (off_t)off;
    size_t left = blen;
    while (left) {
        ssize_t n = sendfile(sock, fd, &at, left);
        if (n > 0) left -= (size_t)n;
        else if (n < 0 && errno == EINTR) continue;
        else break;
    }
    return hlen + blen - left;
}
