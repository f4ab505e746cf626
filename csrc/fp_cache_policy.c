/* fp_cache_policy.c - RFC 9111 rules for a shared cache; see the header. */
#include "fp_cache_policy.h"

#include <string.h>

#include "fp_cache.h"

static int lower(int ch) { return ch >= 'A' && ch <= 'Z' ? ch + 32 : ch; }
static int is_ows(int ch) { return ch == ' ' || ch == '\t'; }

static int eq_ci(const char *a, size_t n, const char *lit)
{
    size_t m = strlen(lit);
    if (n != m) return 0;
    for (size_t i = 0; i < n; i++)
        if (lower((unsigned char)a[i]) != lit[i]) return 0;
    return 1;
}

void fp_cc_init(fp_cc *cc)
{
    cc->flags = 0;
    cc->max_age = cc->s_maxage = cc->max_stale = cc->min_fresh = cc->swr = cc->sie = -1;
}

/* delta-seconds (1.2.2): 1*DIGIT; too large = 2^31; anything else = -1. */
static int64_t delta(const char *v, size_t n)
{
    if (n == 0) return -1;
    int64_t x = 0;
    for (size_t i = 0; i < n; i++) {
        if (v[i] < '0' || v[i] > '9') return -1;
        if (x < FP_DELTA_MAX) x = x * 10 + (v[i] - '0');
    }
    return x > FP_DELTA_MAX ? FP_DELTA_MAX : x;
}

static void set_delta(fp_cc *cc, uint32_t bit, int64_t *slot, const char *v, size_t n, int has_v)
{
    if (cc->flags & bit) return;  /* first occurrence wins (4.2.1) */
    int64_t d = has_v ? delta(v, n) : -1;
    if (d < 0) {
        cc->flags |= FP_CC_INVALID;
        return;
    }
    cc->flags |= bit;
    *slot = d;
}

void fp_cc_parse(fp_cc *cc, const char *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        while (i < len && (is_ows(s[i]) || s[i] == ',')) i++;
        size_t ns = i;
        while (i < len && s[i] != '=' && s[i] != ',' && !is_ows(s[i])) i++;
        size_t nn = i - ns;
        while (i < len && is_ows(s[i])) i++;
        const char *v = NULL;
        size_t vn = 0;
        int has_v = 0;
        char buf[24];
        if (i < len && s[i] == '=') {
            i++;
            while (i < len && is_ows(s[i])) i++;
            has_v = 1;
            if (i < len && s[i] == '"') {  /* quoted-string: unescape into buf (5.2) */
                i++;
                size_t bn = 0;
                while (i < len && s[i] != '"') {
                    if (s[i] == '\\' && i + 1 < len) i++;
                    if (bn < sizeof buf) buf[bn] = s[i];
                    bn++;
                    i++;
                }
                if (i < len) i++;
                v = buf;
                vn = bn <= sizeof buf ? bn : 0;  /* a long quoted value is no delta */
                if (bn > sizeof buf) v = "x", vn = 1;
            } else {
                v = s + i;
                while (i < len && s[i] != ',' && !is_ows(s[i])) i++;
                vn = (size_t)(s + i - v);
            }
        }
        while (i < len && s[i] != ',') i++;  /* ignore junk up to the next member */
        if (nn == 0) continue;
        const char *n = s + ns;
        if (eq_ci(n, nn, "no-store")) cc->flags |= FP_CC_NO_STORE;
        else if (eq_ci(n, nn, "no-cache")) cc->flags |= FP_CC_NO_CACHE;
        else if (eq_ci(n, nn, "private")) cc->flags |= FP_CC_PRIVATE;
        else if (eq_ci(n, nn, "public")) cc->flags |= FP_CC_PUBLIC;
        else if (eq_ci(n, nn, "must-revalidate")) cc->flags |= FP_CC_MUST_REVALIDATE;
        else if (eq_ci(n, nn, "proxy-revalidate")) cc->flags |= FP_CC_PROXY_REVALIDATE;
        else if (eq_ci(n, nn, "no-transform")) cc->flags |= FP_CC_NO_TRANSFORM;
        else if (eq_ci(n, nn, "only-if-cached")) cc->flags |= FP_CC_ONLY_IF_CACHED;
        else if (eq_ci(n, nn, "must-understand")) cc->flags |= FP_CC_MUST_UNDERSTAND;
        else if (eq_ci(n, nn, "max-age")) set_delta(cc, FP_CC_MAX_AGE, &cc->max_age, v, vn, has_v);
        else if (eq_ci(n, nn, "s-maxage"))
            set_delta(cc, FP_CC_S_MAXAGE, &cc->s_maxage, v, vn, has_v);
        else if (eq_ci(n, nn, "min-fresh"))
            set_delta(cc, FP_CC_MIN_FRESH, &cc->min_fresh, v, vn, has_v);
        else if (eq_ci(n, nn, "stale-while-revalidate"))
            set_delta(cc, FP_CC_SWR, &cc->swr, v, vn, has_v);
        else if (eq_ci(n, nn, "stale-if-error"))
            set_delta(cc, FP_CC_SIE, &cc->sie, v, vn, has_v);
        else if (eq_ci(n, nn, "max-stale")) {
            /* 5.2.1.2: without a value, any staleness is accepted. */
            if (!(cc->flags & FP_CC_MAX_STALE)) {
                if (!has_v) {
                    cc->flags |= FP_CC_MAX_STALE;
                    cc->max_stale = -1;
                } else {
                    set_delta(cc, FP_CC_MAX_STALE, &cc->max_stale, v, vn, has_v);
                }
            }
        }
        /* unknown extensions are ignored (5.2.3) */
    }
}

/* ------------------------------------------------------------------ dates */

static const char *const MONTHS[12] = {"jan", "feb", "mar", "apr", "may", "jun",
                                       "jul", "aug", "sep", "oct", "nov", "dec"};

static int month(const char *s)
{
    for (int m = 0; m < 12; m++)
        if (lower((unsigned char)s[0]) == MONTHS[m][0] &&
            lower((unsigned char)s[1]) == MONTHS[m][1] && lower((unsigned char)s[2]) == MONTHS[m][2])
            return m + 1;
    return 0;
}

/* Days since 1970-01-01 for a proleptic Gregorian date. */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static int num(const char *s, int n, int *out)
{
    int x = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return 0;
        x = x * 10 + (s[i] - '0');
    }
    *out = x;
    return 1;
}

static int hms(const char *s, int *h, int *mi, int *se)
{
    return num(s, 2, h) && s[2] == ':' && num(s + 3, 2, mi) && s[5] == ':' && num(s + 6, 2, se) &&
           *h < 24 && *mi < 60 && *se < 61;
}

static int64_t make_time(int y, int m, int d, int h, int mi, int se)
{
    static const int mdays[12] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (m < 1 || d < 1 || d > mdays[m - 1]) return -1;
    if (se == 60) se = 59;  /* a leap second: close enough */
    return days_from_civil(y, m, d) * 86400 + h * 3600 + mi * 60 + se;
}

int64_t fp_http_date(const char *s, size_t len, int64_t now)
{
    int d, y, h, mi, se, m;
    while (len && is_ows(*s)) s++, len--;
    while (len && is_ows(s[len - 1])) len--;
    /* IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT" (29 chars) */
    if (len == 29 && s[3] == ',' && s[4] == ' ' && s[7] == ' ' && s[11] == ' ' && s[16] == ' ' &&
        s[25] == ' ' && memcmp(s + 26, "GMT", 3) == 0 && num(s + 5, 2, &d) &&
        (m = month(s + 8)) && num(s + 12, 4, &y) && hms(s + 17, &h, &mi, &se))
        return make_time(y, m, d, h, mi, se);
    /* asctime: "Sun Nov  6 08:49:37 1994" (24 chars, day padded with a space) */
    if (len == 24 && s[3] == ' ' && s[7] == ' ' && s[10] == ' ' && s[19] == ' ' &&
        (m = month(s + 4)) && hms(s + 11, &h, &mi, &se) && num(s + 20, 4, &y)) {
        char dd[2] = {s[8] == ' ' ? '0' : s[8], s[9]};
        if (num(dd, 2, &d)) return make_time(y, m, d, h, mi, se);
        return -1;
    }
    /* RFC 850: "Sunday, 06-Nov-94 08:49:37 GMT" */
    const char *c = memchr(s, ',', len);
    if (c && (size_t)(s + len - c) == 24 && c[1] == ' ' && c[4] == '-' && c[8] == '-' &&
        c[11] == ' ' && c[20] == ' ' && memcmp(c + 21, "GMT", 3) == 0 && num(c + 2, 2, &d) &&
        (m = month(c + 5)) && num(c + 9, 2, &y) && hms(c + 12, &h, &mi, &se)) {
        /* RFC 9110 5.6.7: a two-digit year more than 50 years in the future
         * is the most recent past year with those digits. */
        int64_t now_year = 1970 + now / 31556952;
        int64_t full = (now_year / 100) * 100 + y;
        if (full > now_year + 50) full -= 100;
        return make_time((int)full, m, d, h, mi, se);
    }
    return -1;
}

/* ------------------------------------------------------------------ storing */

int fp_status_heuristic(int status)
{
    switch (status) {
    case 200: case 203: case 204: case 206: case 300: case 301: case 308:
    case 404: case 405: case 410: case 414: case 501:
        return 1;
    default:
        return 0;
    }
}

int fp_storable(const fp_store_query *q)
{
    const fp_cc *rs = q->resp;
    uint32_t rf = rs ? rs->flags : 0;
    if (!q->is_get) return FP_NS_METHOD;
    /* 3: final status, and one we understand (we do not combine partial
     * content, and a 304 is a validation answer, not a response to store). */
    if (q->status < 200 || q->status > 599 || q->status == 206 || q->status == 304)
        return FP_NS_STATUS;
    /* 5.2.1.5 (request) and 5.2.2.5 (response) no-store. */
    if ((q->req && (q->req->flags & FP_CC_NO_STORE)) || (rf & FP_CC_NO_STORE))
        return FP_NS_NO_STORE;
    if (rf & FP_CC_PRIVATE) return FP_NS_PRIVATE;  /* 3: shared cache */
    /* 3.5: Authorization only with must-revalidate, public or s-maxage. */
    if (q->has_authorization &&
        !(rf & (FP_CC_MUST_REVALIDATE | FP_CC_PUBLIC | FP_CC_S_MAXAGE)))
        return FP_NS_AUTHORIZATION;
    if (q->vary_star) return FP_NS_VARY_STAR;
    if (q->has_set_cookie && !q->allow_set_cookie) return FP_NS_SET_COOKIE;
    /* 3: explicit freshness, public, or a heuristically cacheable status. */
    if (!(q->has_expires || (rf & (FP_CC_MAX_AGE | FP_CC_S_MAXAGE | FP_CC_PUBLIC)) ||
          fp_status_heuristic(q->status)))
        return FP_NS_NOT_EXPLICIT;
    return FP_NS_OK;
}

int64_t fp_freshness_lifetime(const fp_cc *cc, int status, int64_t date, int64_t expires,
                              int64_t last_modified, int64_t response_time,
                              int64_t heuristic_cap)
{
    uint32_t f = cc ? cc->flags : 0;
    if (f & FP_CC_S_MAXAGE) return cc->s_maxage;  /* shared cache: s-maxage first */
    if (f & FP_CC_MAX_AGE) return cc->max_age;
    if (f & FP_CC_INVALID) return 0;              /* a malformed max-age: stale */
    if (date < 0) date = response_time;
    if (expires == -2) return 0;                  /* 5.3: invalid Expires = expired */
    if (expires >= 0) return expires > date ? expires - date : 0;
    /* 4.2.2 heuristic: statuses cacheable by default, or public. */
    if (!fp_status_heuristic(status) && !(f & FP_CC_PUBLIC)) return 0;
    if (last_modified < 0 || last_modified >= date) return 0;
    int64_t h = (date - last_modified) / 10;
    return h > heuristic_cap ? heuristic_cap : h;
}

int64_t fp_current_age(int64_t age_value, int64_t date, int64_t request_time,
                       int64_t response_time, int64_t now)
{
    int64_t apparent = date >= 0 && response_time > date ? response_time - date : 0;
    int64_t delay = response_time > request_time ? response_time - request_time : 0;
    int64_t corrected = (age_value > 0 ? age_value : 0) + delay;
    int64_t initial = apparent > corrected ? apparent : corrected;
    int64_t resident = now > response_time ? now - response_time : 0;
    return initial + resident;
}

/* ------------------------------------------------------------------ Vary */

#define VARY_MAX 16

typedef struct {
    const char *p;
    size_t n;
} span;

static uint64_t fnv(uint64_t h, const void *data, size_t n, int fold)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) {
        h ^= fold ? (unsigned)lower(p[i]) : p[i];
        h *= UINT64_C(0x100000001b3);
    }
    return h;
}

static int span_cmp(span a, span b)
{
    size_t n = a.n < b.n ? a.n : b.n;
    for (size_t i = 0; i < n; i++) {
        int x = lower((unsigned char)a.p[i]), y = lower((unsigned char)b.p[i]);
        if (x != y) return x - y;
    }
    return (int)a.n - (int)b.n;
}

/* Hash the normalised value(s) of field `name` in the request head; returns
 * the new hash, or a distinct marker when the field is absent. */
static uint64_t hash_field(uint64_t h, span name, const char *head, size_t hlen)
{
    const char *end = head + hlen;
    const char *line = memchr(head, '\n', hlen);  /* skip the request line */
    int found = 0;
    while (line && ++line < end) {
        const char *eol = memchr(line, '\n', (size_t)(end - line));
        if (!eol) eol = end;
        const char *colon = memchr(line, ':', (size_t)(eol - line));
        if (colon && span_cmp((span){line, (size_t)(colon - line)}, name) == 0) {
            const char *v = colon + 1, *ve = eol;
            if (ve > v && ve[-1] == '\r') ve--;
            /* Members trimmed, joined by "," (several lines = one list). */
            while (v < ve) {
                while (v < ve && (is_ows(*v) || *v == ',')) v++;
                const char *m = v;
                while (v < ve && *v != ',') v++;
                const char *me = v;
                while (me > m && is_ows(me[-1])) me--;
                if (me > m) {
                    h = fnv(h, found ? "," : ":", 1, 0);
                    h = fnv(h, m, (size_t)(me - m), 0);
                    found = 1;
                }
            }
            if (!found) found = 1, h = fnv(h, ":", 1, 0);  /* present but empty */
        }
        line = eol;
    }
    return found ? h : fnv(h, "\x01", 1, 0);
}

uint64_t fp_vary_key(const char *vary, size_t vlen, const char *head, size_t hlen)
{
    span names[VARY_MAX];
    int n = 0;
    for (size_t i = 0; i < vlen;) {
        while (i < vlen && (is_ows(vary[i]) || vary[i] == ',')) i++;
        size_t s = i;
        while (i < vlen && vary[i] != ',' && !is_ows(vary[i])) i++;
        if (i == s) continue;
        span sp = {vary + s, i - s};
        if (sp.n == 1 && sp.p[0] == '*') return FP_CACHE_VARY_STAR;
        int dup = 0;
        for (int k = 0; k < n; k++) dup |= span_cmp(names[k], sp) == 0;
        if (!dup && n < VARY_MAX) names[n++] = sp;
        else if (!dup) return FP_CACHE_VARY_STAR;  /* too many to honour: never match */
    }
    if (n == 0) return 0;
    /* Insertion sort: the order names are listed in does not matter. */
    for (int a = 1; a < n; a++)
        for (int b = a; b > 0 && span_cmp(names[b - 1], names[b]) > 0; b--) {
            span t = names[b];
            names[b] = names[b - 1];
            names[b - 1] = t;
        }
    uint64_t h = UINT64_C(0xcbf29ce484222325);
    for (int k = 0; k < n; k++) {
        h = fnv(h, names[k].p, names[k].n, 1);
        h = hash_field(h, names[k], head, hlen);
        h = fnv(h, "\n", 1, 0);
    }
    if (h == 0 || h == FP_CACHE_VARY_STAR) h = 1;
    return h;
}
