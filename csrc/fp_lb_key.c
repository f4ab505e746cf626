/* fp_lb_key.c - the hash key of a request for balance = "hash": a header
 * value (the first field of that name), a cookie value (from any Cookie
 * field), a query parameter value (the first of that name, as sent), or the
 * path (the target without its query; absolute-form loses scheme and
 * authority).  Works on the parser's spans; no allocation. */
#include <string.h>

#include "fp_lb.h"

static int ieq(const char *a, const char *b, size_t n) {
    for (size_t i = 0; i < n; i++) {
        unsigned char x = (unsigned char)a[i], y = (unsigned char)b[i];
        if ((unsigned)(x - 'A') < 26u)
            x |= 0x20;
        if ((unsigned)(y - 'A') < 26u)
            y |= 0x20;
        if (x != y)
            return 0;
    }
    return 1;
}

/* origin-form path and query of a target ("http://h/p?q" -> "/p?q") */
static void origin_form(const char **t, size_t *tlen) {
    const char *p = *t;
    size_t n = *tlen;
    if (n && p[0] != '/') {
        const char *s = memchr(p, ':', n);
        if (s && (size_t)(p + n - s) >= 3 && s[1] == '/' && s[2] == '/') {
            const char *auth = s + 3;
            size_t rest = n - (size_t)(auth - p);
            const char *slash = memchr(auth, '/', rest);
            const char *q = memchr(auth, '?', rest);
            if (!slash || (q && q < slash))
                slash = q;
            *t = slash ? slash : p + n;
            *tlen = slash ? (size_t)(p + n - slash) : 0;
        }
    }
}

static int cookie_in(const char *v, size_t n, const char *name, size_t nlen,
                     const char **out, size_t *olen) {
    size_t i = 0;
    while (i < n) {
        while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ';'))
            i++;
        size_t start = i;
        while (i < n && v[i] != ';')
            i++;
        size_t end = i;
        while (end > start && (v[end - 1] == ' ' || v[end - 1] == '\t'))
            end--;
        const char *eq = memchr(v + start, '=', end - start);
        if (!eq)
            continue;
        size_t klen = (size_t)(eq - (v + start));
        while (klen && (v[start + klen - 1] == ' ' || v[start + klen - 1] == '\t'))
            klen--;
        if (klen == nlen && memcmp(v + start, name, nlen) == 0) {
            const char *val = eq + 1;
            size_t vlen = (size_t)(v + end - val);
            while (vlen && (*val == ' ' || *val == '\t')) {
                val++;
                vlen--;
            }
            if (vlen >= 2 && val[0] == '"' && val[vlen - 1] == '"') {
                val++;
                vlen -= 2;
            }
            *out = val;
            *olen = vlen;
            return 1;
        }
    }
    return 0;
}

int fp_lb_key(int kind, const char *name, size_t nlen, const char *buf, const fp_head *h,
              const char *target, size_t tlen, const char **out, size_t *olen) {
    if (kind == FP_LB_KEY_HEADER || kind == FP_LB_KEY_COOKIE) {
        for (uint32_t i = 0; i < h->num_headers; i++) {
            const fp_header *f = &h->headers[i];
            const char *fname = buf + f->name.off;
            if (kind == FP_LB_KEY_HEADER) {
                if (f->name.len == nlen && ieq(fname, name, nlen)) {
                    *out = buf + f->value.off;
                    *olen = f->value.len;
                    return 1;
                }
            } else if (f->name.len == 6 && ieq(fname, "cookie", 6) &&
                       cookie_in(buf + f->value.off, f->value.len, name, nlen, out, olen)) {
                return 1;
            }
        }
        return 0;
    }
    if (kind != FP_LB_KEY_QUERY && kind != FP_LB_KEY_PATH)
        return 0;
    origin_form(&target, &tlen);
    const char *q = memchr(target, '?', tlen);
    if (kind == FP_LB_KEY_PATH) {
        *out = target;
        *olen = q ? (size_t)(q - target) : tlen;
        return 1;
    }
    if (!q)
        return 0;
    const char *p = q + 1, *end = target + tlen;
    const char *hash = memchr(p, '#', (size_t)(end - p));
    if (hash)
        end = hash;
    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *stop = amp ? amp : end;
        const char *eq = memchr(p, '=', (size_t)(stop - p));
        const char *kend = eq ? eq : stop;
        if ((size_t)(kend - p) == nlen && memcmp(p, name, nlen) == 0) {
            *out = eq ? eq + 1 : stop;
            *olen = eq ? (size_t)(stop - eq - 1) : 0;
            return 1;
        }
        p = stop + 1;
    }
    return 0;
}
