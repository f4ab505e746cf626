/* fp_encoding.h - content-coding decisions for response compression:
 * Accept-Encoding negotiation (RFC 9110 12.5.3), the "may this response be
 * compressed" checks on a parsed response head, and the head patch that
 * announces a new coding (Content-Encoding, Vary, weak ETag).  Pure C11, no
 * allocation except the patch's scratch buffer; the codecs themselves live
 * in Python libraries (zlib, brotli, zstandard) driven by fastproxy/_compress.
 */
#ifndef FP_ENCODING_H
#define FP_ENCODING_H

#include <stddef.h>
#include <stdint.h>

#include "fp_http1.h"
#include "fp_wbuf.h"

/* Content codings we know, as small integers (also the bit numbers of an
 * accept mask).  0 = identity: "no transformation". */
enum { FP_ENC_IDENTITY = 0, FP_ENC_GZIP = 1, FP_ENC_BR = 2, FP_ENC_ZSTD = 3, FP_ENC_COUNT = 4 };
#define FP_ENC_UNKNOWN (-1)

/* Coding id of a name (any case; "x-gzip" is gzip), FP_ENC_UNKNOWN else. */
int fp_enc_id(const char *name, size_t n);
/* Canonical token of an id ("gzip", "br", "zstd", "identity"). */
const char *fp_enc_name(int id);

/* Accumulated Accept-Encoding: q-value in thousandths per coding, -1 when
 * the coding was not named.  Several fields combine (RFC 9110 5.3). */
typedef struct {
    int16_t q[FP_ENC_COUNT];
    int16_t star;          /* "*"; -1 when absent */
    int present;           /* an Accept-Encoding field was seen */
} fp_accept;

void fp_accept_init(fp_accept *a);
void fp_accept_feed(fp_accept *a, const char *v, size_t n);
/* Effective q of a coding (thousandths): named > "*" > default.  With no
 * field at all, identity is 1000 and every other coding 0 (we then do not
 * compress, as RFC 9110 12.5.3 allows). */
int fp_accept_q(const fp_accept *a, int id);
/* The coding to send among pref[0..npref) (server preference order): the
 * highest q > 0, ties to the earlier in pref.  FP_ENC_IDENTITY when none is
 * acceptable, or when identity is named (or "*" given) with a strictly
 * higher q; an unnamed identity never outranks a listed coding. */
int fp_accept_choose(const fp_accept *a, const uint8_t *pref, int npref);

/* Per route, compiled from [compression]. */
typedef struct {
    uint8_t pref[FP_ENC_COUNT];  /* enabled codings, server preference order */
    int npref;
    uint64_t min_length;         /* skip bodies known to be shorter          */
    const char *types;           /* comma-separated, lower case, e.g.
                                    "text/ANY,application/json" (ANY = star) */
    uint32_t types_len;
} fp_enc_policy;

/* What a request asks for, decided when its head is parsed (the head's
 * bytes are gone by the time the response arrives). */
typedef struct {
    int choice;        /* coding to compress with, FP_ENC_IDENTITY = none */
    uint32_t accept;   /* bit per coding the client takes (q > 0)          */
    int keep;          /* never transform: Range, or Cache-Control:
                          no-transform in the request                     */
} fp_enc_req;

void fp_enc_request(const char *buf, const fp_head *h, const fp_enc_policy *pol,
                    fp_enc_req *out);

/* Reasons a response is left alone (0 = compress it). */
enum {
    FP_ENC_OK = 0,
    FP_ENC_SKIP_NO_TRANSFORM = 1,  /* Cache-Control: no-transform */
    FP_ENC_SKIP_ENCODED = 2,       /* already has a Content-Encoding */
    FP_ENC_SKIP_TYPE = 3,          /* Content-Type not listed (or absent) */
    FP_ENC_SKIP_SHORT = 4          /* Content-Length below min_length */
};

/* Check a final response head against the policy.  *upstream_coding gets
 * the response's Content-Encoding: FP_ENC_IDENTITY when absent (or only
 * "identity"), a single known coding's id, FP_ENC_UNKNOWN otherwise
 * (unknown or stacked codings: never touched). */
int fp_enc_response(const char *buf, const fp_head *h, const fp_framing *fr,
                    const fp_enc_policy *pol, int *upstream_coding);

/* Is the media type of a Content-Type value in the comma-separated list
 * (entries "type/subtype", or "type/" then a star for every
 * subtype; lower case)? */
int fp_enc_type_listed(const char *ct, size_t n, const char *list, size_t list_len);

enum {
    FP_PATCH_DECODED = 1,     /* the body was decoded: drop Content-Encoding */
    FP_PATCH_VARY_ONLY = 2    /* body untouched: only merge Vary           */
};

/* Rewrite the serialised head o->data[start..o->len) (ours: CRLF lines,
 * ending with the empty line).  Always: merge every Vary into one with
 * Accept-Encoding.  Unless FP_PATCH_VARY_ONLY (a transformed body): drop
 * Content-Length and Accept-Ranges, and Content-Encoding when decoded or
 * when adding one; turn a strong ETag weak; add Content-Encoding: `coding`
 * unless it is FP_ENC_IDENTITY.  0, or -1 on allocation failure. */
int fp_enc_patch_head(fp_wbuf *o, size_t start, int coding, int flags);

#endif
