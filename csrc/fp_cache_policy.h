/* fp_cache_policy.h - RFC 9111 (HTTP Caching) rules for a SHARED cache, as
 * pure functions over bytes: Cache-Control parsing, HTTP-date parsing,
 * storability (sec. 3), freshness lifetime (4.2.1, 4.2.2), current age
 * (4.2.3) and the Vary secondary key (4.1).  No I/O, no allocation; the
 * store (fp_cache.h) never calls these, the request path does. */
#ifndef FP_CACHE_POLICY_H
#define FP_CACHE_POLICY_H

#include <stddef.h>
#include <stdint.h>

/* Directive bits (RFC 9111 5.2).  Qualified no-cache="f" / private="f" are
 * taken as their unqualified forms (the stricter reading 5.2.2.4/5.2.2.7 allow). */
#define FP_CC_NO_STORE (1u << 0)
#define FP_CC_NO_CACHE (1u << 1)
#define FP_CC_PRIVATE (1u << 2)
#define FP_CC_PUBLIC (1u << 3)
#define FP_CC_MUST_REVALIDATE (1u << 4)
#define FP_CC_PROXY_REVALIDATE (1u << 5)
#define FP_CC_NO_TRANSFORM (1u << 6)
#define FP_CC_ONLY_IF_CACHED (1u << 7)
#define FP_CC_MAX_AGE (1u << 8)        /* max_age holds a value      */
#define FP_CC_S_MAXAGE (1u << 9)
#define FP_CC_MAX_STALE (1u << 10)     /* max_stale: -1 = any staleness */
#define FP_CC_MIN_FRESH (1u << 11)
#define FP_CC_SWR (1u << 12)           /* stale-while-revalidate      */
#define FP_CC_SIE (1u << 13)           /* stale-if-error              */
#define FP_CC_MUST_UNDERSTAND (1u << 14)
#define FP_CC_INVALID (1u << 15)       /* a delta-seconds that is not one */

/* 1.2.2: delta-seconds too large to represent are taken as 2^31. */
#define FP_DELTA_MAX INT64_C(2147483648)

typedef struct {
    uint32_t flags;
    int64_t max_age, s_maxage, max_stale, min_fresh, swr, sie;  /* -1 = absent */
} fp_cc;

void fp_cc_init(fp_cc *cc);
/* Parse one Cache-Control field value into cc; call once per field line
 * (the first occurrence of a directive with a value wins, 4.2.1). */
void fp_cc_parse(fp_cc *cc, const char *v, size_t len);

/* HTTP-date (RFC 9110 5.6.7): IMF-fixdate, RFC 850, asctime.  Unix seconds,
 * or -1 if invalid.  `now` resolves RFC 850's two-digit year. */
int64_t fp_http_date(const char *s, size_t len, int64_t now);

/* RFC 9110 15.1: status codes heuristically cacheable (cacheable by default). */
int fp_status_heuristic(int status);

/* Storability for a shared cache (RFC 9111 3, 3.5).  0 = storable, else
 * one of the FP_NS_* reasons. */
#define FP_NS_OK 0
#define FP_NS_METHOD 1          /* only GET responses are stored            */
#define FP_NS_STATUS 2          /* not final, or 206/304 (not understood here) */
#define FP_NS_NO_STORE 3        /* no-store in the request or the response  */
#define FP_NS_PRIVATE 4         /* private: not for a shared cache (5.2.2.7) */
#define FP_NS_AUTHORIZATION 5   /* 3.5: request had Authorization           */
#define FP_NS_NOT_EXPLICIT 6    /* no freshness, not heuristically cacheable */
#define FP_NS_SET_COOKIE 7      /* Set-Cookie and store_set_cookie = false  */
#define FP_NS_VARY_STAR 8       /* Vary: * can never be reused (4.1)        */

typedef struct {
    int is_get;                 /* request method GET (HEAD is served from GET) */
    int status;
    const fp_cc *req;           /* request Cache-Control (may be NULL)      */
    const fp_cc *resp;          /* response Cache-Control                   */
    int has_authorization;      /* request carried Authorization           */
    int has_expires;            /* response has an Expires field (valid or not) */
    int has_set_cookie;
    int allow_set_cookie;
    int vary_star;
} fp_store_query;

int fp_storable(const fp_store_query *q);

/* Freshness lifetime in seconds (4.2.1): s-maxage, else max-age, else
 * Expires - Date; else heuristic 10% of Date - Last-Modified, capped at
 * heuristic_cap, only for heuristically cacheable statuses or `public`
 * (4.2.2).  date/expires/last_modified: -1 absent, expires -2 = present but
 * invalid (= already expired, 5.3).  response_time stands in for a missing
 * Date. */
int64_t fp_freshness_lifetime(const fp_cc *cc, int status, int64_t date, int64_t expires,
                              int64_t last_modified, int64_t response_time,
                              int64_t heuristic_cap);

/* Current age (4.2.3) from the stored times; date -1 = absent. */
int64_t fp_current_age(int64_t age_value, int64_t date, int64_t request_time,
                       int64_t response_time, int64_t now);

/* Vary secondary key (4.1): a hash of the request's values of the header
 * fields a response's Vary names (`vary`: the Vary field value(s), joined
 * with ","), read from the raw request head (request line + fields, CRLF).
 * Values are normalised (list members trimmed, OWS collapsed; names are
 * case-insensitive and taken in sorted order; a missing field differs from
 * an empty one).  0 = no Vary; FP_CACHE_VARY_STAR for `*`. */
uint64_t fp_vary_key(const char *vary, size_t vlen, const char *head, size_t hlen);

#endif
