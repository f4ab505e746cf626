/* fp_cache_path.h - the HTTP request path of the cache (RFC 9111), the C
 * half: reading a response head into fp_cache_meta, the stored head (the
 * head as sent to the client minus its hop-by-hop framing), judging a stored
 * entry against a request (4.2, 5.2.1) and writing a hit.  The Cython half is
 * fastproxy/_cache_path.pxi.  Pure C, no allocation beyond fp_wbuf. */
#ifndef FP_CACHE_PATH_H
#define FP_CACHE_PATH_H

#include <stddef.h>
#include <stdint.h>

#include "fp_cache.h"
#include "fp_cache_policy.h"
#include "fp_http1.h"
#include "fp_wbuf.h"

/* Verdicts of fp_cpath_judge. */
#define FP_CP_FRESH 0      /* serve it (4.2)                                   */
#define FP_CP_STALE 1      /* go to the origin (validate when possible)        */
#define FP_CP_STALE_OK 2   /* stale, but the request's max-stale accepts it    */
#define FP_CP_SWR 3        /* stale within stale-while-revalidate (RFC 5861)   */

/* A meta flag above the Cache-Control bits: the entry has validators. */
#define FP_CP_HAS_VALIDATOR (1u << 24)

/* What a response head says, for storing it. */
typedef struct {
    fp_cc cc;
    int has_expires, has_set_cookie, vary_star, has_authorization_ok;
    int64_t date, expires, last_modified, age;
    char vary[512];        /* the Vary field values joined with ","          */
    size_t vary_len;       /* > sizeof vary - 1: too long, do not store       */
    int has_validator;     /* ETag or Last-Modified                           */
} fp_cpath_resp;

void fp_cpath_read_response(const char *buf, const fp_head *h, int64_t now,
                            fp_cpath_resp *out);

/* Request Cache-Control (5.2.1) and Pragma: no-cache (5.4, only without
 * Cache-Control): into cc.  *has_auth: an Authorization field. */
void fp_cpath_read_request(const char *buf, const fp_head *h, fp_cc *cc, int *has_auth);

/* The head to store: `head` (a serialised response head, CRLF, ending with
 * the blank line) without Transfer-Encoding, Content-Length, Connection,
 * Keep-Alive, Age and X-Cache lines and without the blank line. */
int fp_cpath_stored_head(fp_wbuf *o, const char *head, size_t n);

/* Values of field `name` (lower case) in a stored head, joined with ",". */
size_t fp_cpath_field(const char *head, size_t n, const char *name, size_t nlen, char *out,
                      size_t cap);

/* The Vary secondary key of a request: fp_vary_key, except with `drop_ae`
 * Accept-Encoding is taken out of the Vary list and `coding` (the content
 * coding this request negotiates) mixed in instead, so every client that gets
 * the same coding shares one stored variant. */
uint64_t fp_cpath_vary(const char *vary, size_t vlen, const char *req, size_t rlen, int drop_ae,
                       unsigned coding);

/* Judge a stored entry for a request (4.2 freshness, 4.2.4 serving stale,
 * 5.2.1 request directives).  *age: the current age (4.2.3). */
int fp_cpath_judge(const fp_cache_meta *m, const fp_cc *req, int64_t now, int64_t *age);

/* A cache key's fixed part into o (from its start): "GET " scheme "://"
 * host (lower-cased) target. */
int fp_cpath_key(fp_wbuf *o, const char *scheme, size_t sl, const char *host, size_t hl,
                 const char *target, size_t tl);

/* A hit: stored head + Age + X-Cache (xc may be NULL) + Content-Length +
 * connection handling + blank line, then the body unless head_only.  A 304
 * (status304) answers a conditional request from a fresh entry. */
int fp_cpath_write_hit(fp_wbuf *o, const fp_cache_hit *hit, int64_t age, const char *xc,
                       int close, int client_minor, int head_only);

/* Write a 304 (Not Modified) from a stored head: status line 304, the fields
 * RFC 9110 15.4.5 asks for (Cache-Control, Content-Location, Date, ETag,
 * Expires, Vary, Last-Modified kept too), Age, X-Cache. */
int fp_cpath_write_304(fp_wbuf *o, const fp_cache_hit *hit, int64_t age, const char *xc,
                       int close, int client_minor);

/* Send a hit on a non-blocking socket: the head (copied, MSG_MORE so it
 * leaves with the body), then the body straight from the region's memfd
 * with sendfile(2) -- no copy into the process, none into the socket.
 * hlen 0: the file range alone (a ready head + body, fp_cache_ready_head).
 * Returns the bytes sent (head first, then body); short on EAGAIN or an
 * error, and the caller hands the rest to its transport, which reports
 * errors its usual way. */
size_t fp_cpath_send_file(int sock, const char *head, size_t hlen, int fd, int64_t off,
                          size_t blen);

/* Append the body bytes in data (HTTP/1.1 chunks of our own making when
 * chunked != 0, else raw) to a store in progress. */
int fp_cpath_append(fp_cache *c, fp_cache_put *p, const char *data, size_t n, int chunked);

/* Does a conditional request (If-None-Match, else If-Modified-Since) match
 * the stored head (RFC 9110 13.1.2, 13.1.3; weak comparison)? */
int fp_cpath_not_modified(const char *req, const fp_head *h, const fp_cache_hit *hit,
                          int64_t now);

/* A 304's head (as serialised for the client) refreshing a stored head
 * (3.2): stored fields the 304 also has are replaced by its values;
 * Set-Cookie only when keep_set_cookie (else the stored ones stay). */
int fp_cpath_merge_304(fp_wbuf *o, const char *stored, size_t sn, const char *fresh, size_t fn,
                       int keep_set_cookie);

/* Does the 304 `fresh` update the stored head (4.3.4)?  An ETag in the 304
 * must match the stored one (strongly, when the 304's is strong); else a
 * Last-Modified in both must be equal; a 304 with neither selects it. */
int fp_cpath_304_selects(const char *stored, size_t sn, const char *fresh, size_t fn);

/* fp_cpath_read_response for a stored head (fields found by name). */
void fp_cpath_read_stored(const char *head, size_t n, int64_t now, fp_cpath_resp *out);

/* Every `name` (lower case) field line of a head into o, as it is. */
int fp_cpath_put_fields(fp_wbuf *o, const char *head, size_t n, const char *name, size_t nl);

#endif
