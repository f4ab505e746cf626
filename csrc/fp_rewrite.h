/* fp_rewrite.h - re-serialise a parsed head for the next hop: hop-by-hop
 * fields removed (RFC 9110 7.6.1), forwarding fields added, configured
 * set/add/remove rules applied, framing fields written for the new framing.
 * Output is always CRLF-terminated HTTP/1.1. */
#ifndef FP_REWRITE_H
#define FP_REWRITE_H

#include "fp_http1.h"
#include "fp_wbuf.h"

typedef struct {
    const char *name;
    uint32_t name_len;
    const char *value;
    uint32_t value_len;
} fp_kv;

typedef struct {
    const fp_kv *set;       /* replace: drop same-named fields, then add    */
    uint32_t n_set;
    const fp_kv *add;       /* append                                        */
    uint32_t n_add;
    const fp_kv *remove;    /* names only                                    */
    uint32_t n_remove;
} fp_rules;

typedef struct {
    const char *p;
    uint32_t n;
} fp_str;

enum {
    FP_RW_TRUSTED = 1 << 0,     /* peer is a trusted proxy: keep X-Forwarded-* */
    FP_RW_XFF_REPLACE = 1 << 1, /* X-Forwarded-For = client only, even trusted */
    FP_RW_FORWARDED = 1 << 2,   /* add RFC 7239 Forwarded                       */
    FP_RW_VIA = 1 << 3,         /* append to Via                                */
    FP_RW_UPGRADE = 1 << 4,     /* keep Upgrade, send Connection: upgrade       */
    FP_RW_CLOSE = 1 << 5,       /* response: send Connection: close             */
    FP_RW_X_FORWARDED = 1 << 6, /* add X-Forwarded-For/-Proto/-Host, X-Real-IP  */
    FP_RW_DATE = 1 << 7         /* response: add Date when it has none          */
};

typedef struct {
    uint32_t flags;
    fp_str target;     /* request-target to send (origin-form)             */
    fp_str host;       /* Host to send                                      */
    fp_str orig_host;  /* the client's Host, for X-Forwarded-Host           */
    fp_str client_ip;
    fp_str proto;      /* "http" or "https"                                 */
    fp_str via;        /* e.g. "1.1 fastproxy"                              */
    int body_kind;     /* FP_BODY_NONE / LENGTH / CHUNKED to the upstream  */
    uint64_t length;
    const fp_rules *rules;
    const fp_rules *conn_rules; /* the listener's/connection's (TLS), or NULL */
} fp_req_rw;

typedef struct {
    uint32_t flags;
    int client_minor;  /* 0: an HTTP/1.0 client                             */
    int body_kind;     /* framing toward the client: FP_BODY_*              */
    uint64_t length;
    fp_str via;
    const fp_rules *rules;
    const fp_rules *conn_rules; /* the listener's (e.g. HSTS), or NULL          */
} fp_resp_rw;

int fp_rewrite_request(fp_wbuf *out, const char *buf, const fp_head *h, const fp_req_rw *rw);
int fp_rewrite_response(fp_wbuf *out, const char *buf, const fp_head *h, const fp_resp_rw *rw);

/* The current second as an IMF-fixdate (RFC 9110 5.6.7), FP_DATE_LEN bytes, not
 * terminated; formatted once a second (per thread). */
#define FP_DATE_LEN 29
const char *fp_date_now(void);

/* Append a complete response with a short body (errors, redirects, local
 * answers).  `extra` is zero or more complete "Name: value\r\n" lines. */
int fp_simple_response(fp_wbuf *out, int status, fp_str extra, fp_str content_type,
                       fp_str body, int close, int head_only);
const char *fp_reason_phrase(int status);

#endif
