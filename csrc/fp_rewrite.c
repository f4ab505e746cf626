/* fp_rewrite.c - head re-serialisation for the next hop (see fp_rewrite.h). */
#include "fp_rewrite.h"
#include "fp_known_headers.h"

#include <stdio.h>
#include <time.h>

static int lower(int c) { return (c >= 'A' && c <= 'Z') ? c | 0x20 : c; }

static int name_eq(const char *a, size_t an, const char *b, size_t bn)
{
    if (an != bn) return 0;
    for (size_t i = 0; i < an; i++)
        if (lower((unsigned char)a[i]) != lower((unsigned char)b[i])) return 0;
    return 1;
}

/* The next token of a Connection value in [v, e): sets *t and *n (n may be 0
 * at the end) and returns where to continue. */
static const char *next_token(const char *v, const char *e, const char **t, size_t *n)
{
    while (v < e && (*v == ' ' || *v == '\t' || *v == ',')) v++;
    *t = v;
    while (v < e && *v != ',' && *v != ' ' && *v != '\t') v++;
    *n = (size_t)(v - *t);
    return v;
}

/* Is `name` listed in any Connection field of the head?  (RFC 9110 7.6.1:
 * the fields it names are hop-by-hop too.) */
static int named_by_connection(const char *buf, const fp_head *h, const char *name,
                               size_t n)
{
    const char *t;
    size_t tn;
    for (uint32_t i = 0; i < h->num_headers; i++) {
        const fp_header *f = &h->headers[i];
        if (f->id != FP_H_CONNECTION) continue;
        const char *v = buf + f->value.off, *e = v + f->value.len;
        while (v < e) {
            v = next_token(v, e, &t, &tn);
            if (tn && name_eq(t, tn, name, n)) return 1;
        }
    }
    return 0;
}

/* The field names listed by Connection, collected once per head (the
 * rewrite asks for every field).  close, keep-alive and upgrade are left
 * out: they name nothing, or fields that are hop-by-hop anyway.  More than
 * FP_CONN_MAX names falls back to scanning. */
#define FP_CONN_MAX 16
typedef struct {
    fp_str name[FP_CONN_MAX];
    int n;
    int overflow;
} conn_list;

static void collect_connection(const char *buf, const fp_head *h, conn_list *cl)
{
    cl->n = 0;
    cl->overflow = 0;
    for (uint32_t i = 0; i < h->num_headers; i++) {
        const fp_header *f = &h->headers[i];
        if (f->id != FP_H_CONNECTION) continue;
        const char *v = buf + f->value.off, *e = v + f->value.len;
        while (v < e) {
            const char *t;
            size_t n;
            v = next_token(v, e, &t, &n);
            if (n == 0 || name_eq(t, n, "close", 5) || name_eq(t, n, "keep-alive", 10) ||
                name_eq(t, n, "upgrade", 7)) continue;
            if (cl->n == FP_CONN_MAX) { cl->overflow = 1; return; }
            cl->name[cl->n].p = t;
            cl->name[cl->n].n = (uint32_t)n;
            cl->n++;
        }
    }
}

static int in_connection(const conn_list *cl, const char *buf, const fp_head *h,
                         const char *name, size_t n)
{
    if (cl->overflow) return named_by_connection(buf, h, name, n);
    for (int i = 0; i < cl->n; i++)
        if (name_eq(cl->name[i].p, cl->name[i].n, name, n)) return 1;
    return 0;
}

static int in_rules(const fp_kv *kv, uint32_t n, const char *name, size_t len)
{
    for (uint32_t i = 0; i < n; i++)
        if (name_eq(kv[i].name, kv[i].name_len, name, len)) return 1;
    return 0;
}

static int put_field(fp_wbuf *o, const char *n, size_t nl, const char *v, size_t vl)
{
    if (fp_wbuf_reserve(o, nl + vl + 4)) return -1;
    memcpy(o->data + o->len, n, nl);
    o->len += nl;
    o->data[o->len++] = ':';
    o->data[o->len++] = ' ';
    memcpy(o->data + o->len, v, vl);
    o->len += vl;
    o->data[o->len++] = '\r';
    o->data[o->len++] = '\n';
    return 0;
}

static int put_rules(fp_wbuf *o, const fp_rules *r)
{
    if (r == NULL) return 0;
    for (uint32_t i = 0; i < r->n_set; i++)
        if (put_field(o, r->set[i].name, r->set[i].name_len, r->set[i].value,
                      r->set[i].value_len)) return -1;
    for (uint32_t i = 0; i < r->n_add; i++)
        if (put_field(o, r->add[i].name, r->add[i].name_len, r->add[i].value,
                      r->add[i].value_len)) return -1;
    return 0;
}

/* Fields every hop strips; Upgrade survives only an upgrade. */
static int hop_by_hop(int id, int upgrade)
{
    switch (id) {
    case FP_H_CONNECTION: case FP_H_KEEP_ALIVE: case FP_H_PROXY_CONNECTION:
    case FP_H_TE: case FP_H_TRAILER: case FP_H_TRANSFER_ENCODING:
        return 1;
    case FP_H_UPGRADE:
        return !upgrade;
    }
    return 0;
}

/* Common filter: 1 when field i must not be copied. */
static int dropped(const char *buf, const fp_head *h, const fp_header *f, int upgrade,
                   const conn_list *cl, const fp_rules *r, const fp_rules *r2)
{
    if (hop_by_hop(f->id, upgrade)) return 1;
    const char *n = buf + f->name.off;
    /* On an upgrade, Connection names Upgrade: that one must survive. */
    int keep_upgrade = upgrade && f->id == FP_H_UPGRADE;
    if (cl->n && !keep_upgrade && in_connection(cl, buf, h, n, f->name.len)) return 1;
    if (r && (in_rules(r->remove, r->n_remove, n, f->name.len) ||
              in_rules(r->set, r->n_set, n, f->name.len))) return 1;
    if (r2 && (in_rules(r2->remove, r2->n_remove, n, f->name.len) ||
               in_rules(r2->set, r2->n_set, n, f->name.len))) return 1;
    return 0;
}

/* Join every value of field `id` with ", " then append `extra` (if any). */
static int put_joined(fp_wbuf *o, const char *buf, const fp_head *h, const conn_list *cl,
                      int id, const char *name, size_t nl, int keep_old, fp_str extra)
{
    int any = 0;
    if (fp_wbuf_put(o, name, nl) || fp_wbuf_lit(o, ": ")) return -1;
    if (keep_old && !in_connection(cl, buf, h, name, nl)) {
        for (uint32_t i = 0; i < h->num_headers; i++) {
            const fp_header *f = &h->headers[i];
            if (f->id != id || f->value.len == 0) continue;
            if (any && fp_wbuf_lit(o, ", ")) return -1;
            if (fp_wbuf_put(o, buf + f->value.off, f->value.len)) return -1;
            any = 1;
        }
    }
    if (extra.n) {
        if (any && fp_wbuf_lit(o, ", ")) return -1;
        if (fp_wbuf_put(o, extra.p, extra.n)) return -1;
    }
    return fp_wbuf_lit(o, "\r\n");
}

static int first_value(const char *buf, const fp_head *h, const conn_list *cl, int id,
                       fp_str *v)
{
    const char *name = fp_header_name(id);
    if (in_connection(cl, buf, h, name, strlen(name))) return 0;
    for (uint32_t i = 0; i < h->num_headers; i++)
        if (h->headers[i].id == id) {
            v->p = buf + h->headers[i].value.off;
            v->n = h->headers[i].value.len;
            return 1;
        }
    return 0;
}

static int put_framing(fp_wbuf *o, int kind, uint64_t length)
{
    if (kind == FP_BODY_LENGTH) {
        if (fp_wbuf_lit(o, "Content-Length: ") || fp_wbuf_u64(o, length, 10) ||
            fp_wbuf_lit(o, "\r\n")) return -1;
    } else if (kind == FP_BODY_CHUNKED) {
        if (fp_wbuf_lit(o, "Transfer-Encoding: chunked\r\n")) return -1;
    }
    return 0;
}

/* A configured set/remove rule for a name overrides what we generate. */
static int ruled(const fp_rules *r, const char *name, size_t n)
{
    return r && (in_rules(r->remove, r->n_remove, name, n) || in_rules(r->set, r->n_set, name, n));
}

#define NAME(s) s, sizeof(s) - 1

/* Forwarding fields (X-Forwarded-*, X-Real-IP, Forwarded, Via). */
static int put_forwarding(fp_wbuf *o, const char *buf, const fp_head *h, const conn_list *cl,
                          const fp_req_rw *rw)
{
    int trusted = (rw->flags & FP_RW_TRUSTED) != 0;
    const fp_rules *r = rw->rules;
    fp_str v;
    if (rw->flags & FP_RW_X_FORWARDED) {
        int keep = trusted && !(rw->flags & FP_RW_XFF_REPLACE);
        if (!ruled(r, NAME("X-Forwarded-For")) &&
            put_joined(o, buf, h, cl, FP_H_X_FORWARDED_FOR, NAME("X-Forwarded-For"), keep,
                       rw->client_ip)) return -1;
        if (!(trusted && first_value(buf, h, cl, FP_H_X_REAL_IP, &v))) v = rw->client_ip;
        if (!ruled(r, NAME("X-Real-IP")) && put_field(o, NAME("X-Real-IP"), v.p, v.n))
            return -1;
        if (!(trusted && first_value(buf, h, cl, FP_H_X_FORWARDED_PROTO, &v))) v = rw->proto;
        if (!ruled(r, NAME("X-Forwarded-Proto")) &&
            put_field(o, NAME("X-Forwarded-Proto"), v.p, v.n)) return -1;
        if (!(trusted && first_value(buf, h, cl, FP_H_X_FORWARDED_HOST, &v))) v = rw->orig_host;
        if (v.n && !ruled(r, NAME("X-Forwarded-Host")) &&
            put_field(o, NAME("X-Forwarded-Host"), v.p, v.n)) return -1;
    }
    if (rw->flags & FP_RW_FORWARDED) {
        /* RFC 7239: for=, host=, proto=; IPv6 nodes are quoted and bracketed. */
        char tmp[512];
        size_t n = 0;
        int v6 = memchr(rw->client_ip.p, ':', rw->client_ip.n) != NULL;
        uint32_t hn = rw->orig_host.n < 200 ? rw->orig_host.n : 0;
        if (rw->client_ip.n < 100) {
            memcpy(tmp + n, v6 ? "for=\"[" : "for=", v6 ? 6 : 4);
            n += v6 ? 6 : 4;
            memcpy(tmp + n, rw->client_ip.p, rw->client_ip.n);
            n += rw->client_ip.n;
            if (v6) { memcpy(tmp + n, "]\"", 2); n += 2; }
        }
        if (hn) {
            memcpy(tmp + n, ";host=\"", 7); n += 7;
            memcpy(tmp + n, rw->orig_host.p, hn); n += hn;
            tmp[n++] = '"';
        }
        if (rw->proto.n < 16) {
            memcpy(tmp + n, ";proto=", 7); n += 7;
            memcpy(tmp + n, rw->proto.p, rw->proto.n); n += rw->proto.n;
        }
        if (!ruled(r, NAME("Forwarded")) &&
            put_joined(o, buf, h, cl, FP_H_FORWARDED, NAME("Forwarded"), trusted,
                       (fp_str){tmp, (uint32_t)n})) return -1;
    }
    if ((rw->flags & FP_RW_VIA) && !ruled(r, NAME("Via")))
        if (put_joined(o, buf, h, cl, FP_H_VIA, NAME("Via"), 1, rw->via)) return -1;
    return 0;
}

static int forwarding_id(int id)
{
    return id == FP_H_X_FORWARDED_FOR || id == FP_H_X_REAL_IP || id == FP_H_X_FORWARDED_PROTO ||
           id == FP_H_X_FORWARDED_HOST;
}

int fp_rewrite_request(fp_wbuf *o, const char *buf, const fp_head *h, const fp_req_rw *rw)
{
    int upgrade = (rw->flags & FP_RW_UPGRADE) != 0;
    conn_list cl;
    collect_connection(buf, h, &cl);
    const fp_rules *r = rw->rules;
    if (fp_wbuf_reserve(o, h->head_len + 256)) return -1;
    if (fp_wbuf_put(o, buf + h->method.off, h->method.len) || fp_wbuf_lit(o, " ") ||
        fp_wbuf_put(o, rw->target.p, rw->target.n) || fp_wbuf_lit(o, " HTTP/1.1\r\n"))
        return -1;
    /* RFC 9112 3.2: always a Host, empty when the target has no authority. */
    if (put_field(o, "Host", 4, rw->host.p, rw->host.n)) return -1;
    for (uint32_t i = 0; i < h->num_headers; i++) {
        const fp_header *f = &h->headers[i];
        if (f->id == FP_H_HOST || f->id == FP_H_CONTENT_LENGTH) continue;
        if ((rw->flags & FP_RW_X_FORWARDED) && forwarding_id(f->id)) continue;
        /* Forwarded is identity, like X-Forwarded-*: only a trusted peer's
         * survives (and is appended to when we add our own). */
        if (f->id == FP_H_FORWARDED &&
            ((rw->flags & FP_RW_FORWARDED) || !(rw->flags & FP_RW_TRUSTED))) continue;
        if ((rw->flags & FP_RW_VIA) && f->id == FP_H_VIA) continue;
        if (dropped(buf, h, f, upgrade, &cl, r, rw->conn_rules)) continue;
        if (put_field(o, buf + f->name.off, f->name.len, buf + f->value.off, f->value.len))
            return -1;
    }
    if (put_forwarding(o, buf, h, &cl, rw) || put_rules(o, r) ||
        put_rules(o, rw->conn_rules) || put_framing(o, rw->body_kind, rw->length)) return -1;
    if (upgrade && fp_wbuf_lit(o, "Connection: upgrade\r\n")) return -1;
    return fp_wbuf_lit(o, "\r\n");
}

const char *fp_date_now(void)
{
    static const char days[] = "SunMonTueWedThuFriSat";
    static const char months[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
    static _Thread_local time_t made = -1;
    static _Thread_local char buf[FP_DATE_LEN + 1];
    time_t now = time(NULL);
    if (now != made) {
        struct tm tm;
        gmtime_r(&now, &tm);
        snprintf(buf, sizeof buf, "%.3s, %02d %.3s %04d %02d:%02d:%02d GMT",
                 days + 3 * tm.tm_wday, tm.tm_mday, months + 3 * tm.tm_mon, tm.tm_year + 1900,
                 tm.tm_hour, tm.tm_min, tm.tm_sec);
        made = now;
    }
    return buf;
}

static int all_digits(const char *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (v[i] < '0' || v[i] > '9') return 0;
    return n > 0;
}

static int put_date(fp_wbuf *o)
{
    return fp_wbuf_lit(o, "Date: ") || fp_wbuf_put(o, fp_date_now(), FP_DATE_LEN) ||
           fp_wbuf_lit(o, "\r\n");
}

int fp_rewrite_response(fp_wbuf *o, const char *buf, const fp_head *h, const fp_resp_rw *rw)
{
    /* RFC 9110 6.6.1: a recipient with a clock MUST add Date to a response
     * without one that it forwards (1xx need none) */
    int want_date = (rw->flags & FP_RW_DATE) && h->status >= 200;
    int upgrade = (rw->flags & FP_RW_UPGRADE) != 0;
    conn_list cl;
    collect_connection(buf, h, &cl);
    const fp_rules *r = rw->rules;
    /* We frame the body ourselves unless it has none (HEAD, 204, 304):
     * then the origin's Content-Length still describes the resource. */
    int own_framing = rw->body_kind != FP_BODY_NONE;
    if (fp_wbuf_reserve(o, h->head_len + 128)) return -1;
    if (fp_wbuf_lit(o, "HTTP/1.1 ") || fp_wbuf_u64(o, (uint64_t)h->status, 10) ||
        fp_wbuf_lit(o, " ") || fp_wbuf_put(o, buf + h->reason.off, h->reason.len) ||
        fp_wbuf_lit(o, "\r\n")) return -1;
    for (uint32_t i = 0; i < h->num_headers; i++) {
        const fp_header *f = &h->headers[i];
        if (f->id == FP_H_DATE) want_date = 0;   /* (even if a rule removes it) */
        /* RFC 9110 8.6: never on 1xx or 204, and never forwarded unless
         * 1*DIGIT (a bodiless HEAD or 304 answer keeps a valid one) */
        if (f->id == FP_H_CONTENT_LENGTH &&
            (own_framing || h->status < 200 || h->status == 204 ||
             !all_digits(buf + f->value.off, f->value.len))) continue;
        if ((rw->flags & FP_RW_VIA) && f->id == FP_H_VIA) continue;
        if (dropped(buf, h, f, upgrade, &cl, r, rw->conn_rules)) continue;
        if (put_field(o, buf + f->name.off, f->name.len, buf + f->value.off, f->value.len))
            return -1;
    }
    if (rw->flags & FP_RW_VIA) {
        fp_req_rw via = {0};
        via.flags = FP_RW_VIA;
        via.via = rw->via;
        via.rules = r;
        if (put_forwarding(o, buf, h, &cl, &via)) return -1;
    }
    if (want_date && put_date(o)) return -1;
    if (put_rules(o, r) || put_rules(o, rw->conn_rules) ||
        put_framing(o, rw->body_kind, rw->length)) return -1;
    if (upgrade) {
        if (fp_wbuf_lit(o, "Connection: upgrade\r\n")) return -1;
    } else if (rw->flags & FP_RW_CLOSE) {
        if (fp_wbuf_lit(o, "Connection: close\r\n")) return -1;
    } else if (rw->client_minor == 0) {
        if (fp_wbuf_lit(o, "Connection: keep-alive\r\n")) return -1;
    }
    return fp_wbuf_lit(o, "\r\n");
}

const char *fp_reason_phrase(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 204: return "No Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 417: return "Expectation Failed";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    }
    return "Unknown";
}

int fp_simple_response(fp_wbuf *o, int status, fp_str extra, fp_str ctype, fp_str body,
                       int close, int head_only)
{
    const char *reason = fp_reason_phrase(status);
    if (fp_wbuf_lit(o, "HTTP/1.1 ") || fp_wbuf_u64(o, (uint64_t)status, 10) ||
        fp_wbuf_lit(o, " ") || fp_wbuf_put(o, reason, strlen(reason)) ||
        fp_wbuf_lit(o, "\r\n")) return -1;
    /* RFC 9110 6.6.1: answering as the origin, with a clock: Date */
    if (status >= 200 && put_date(o)) return -1;
    if (ctype.n && put_field(o, "Content-Type", 12, ctype.p, ctype.n)) return -1;
    if (extra.n && fp_wbuf_put(o, extra.p, extra.n)) return -1;
    if (status < 200 || status == 204 || status == 304) {
        body.n = 0;                 /* RFC 9110 6.4.1: these have no content */
    } else if (put_framing(o, FP_BODY_LENGTH, body.n)) return -1;
    if (close && fp_wbuf_lit(o, "Connection: close\r\n")) return -1;
    if (fp_wbuf_lit(o, "\r\n")) return -1;
    if (!head_only && body.n && fp_wbuf_put(o, body.p, body.n)) return -1;
    return 0;
}
