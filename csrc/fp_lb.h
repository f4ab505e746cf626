/* fp_lb.h - load balancing: the per-upstream table the data plane reads
 * once per request, and one algorithm per C file behind a small table of
 * function pointers.  Python builds the table once per config (Upstream in
 * fastproxy/_tables.pyx); the C side never allocates per request.
 *
 * Servers are indexed 0..n-1, primaries first (0..n_primary-1), then the
 * backups.  What all workers must agree on about a server -- requests in
 * flight, passive health, circuit breaker, slow start -- is its fp_peer
 * (csrc/fp_peer.h), which `peer[i]` points at: in the shared stats region,
 * or in a private array for an embedded single-process proxy.  A server is
 * usable when its `down` flag byte is 0 (FP_DOWN_* bits written by the
 * master: health checks, drain, disable; `down` == NULL or down[i] == NULL:
 * no flags), it is not excluded for this pick (`exclude`, bit i: a retry
 * skips the servers already tried), its fp_peer lets a request through
 * (not passively out, breaker not open), and max_conns[i] == 0 or its
 * requests in flight (all workers) are below max_conns[i].
 * fp_lb_pick tries the primaries, then (only if no primary is usable) the
 * backups, and returns -1 when no server at all is usable.
 */
#ifndef FP_LB_H
#define FP_LB_H

#include <stddef.h>
#include <stdint.h>

#include "fp_http1.h"
#include "fp_peer.h"

#ifdef __cplusplus
extern "C" {
#endif

enum { FP_LB_ROUND_ROBIN = 0, FP_LB_LEAST_CONN, FP_LB_IP_HASH, FP_LB_HASH, FP_LB_RANDOM,
       FP_LB_METHODS };

/* hash_key kinds for FP_LB_HASH */
enum { FP_LB_KEY_NONE = 0, FP_LB_KEY_HEADER, FP_LB_KEY_COOKIE, FP_LB_KEY_QUERY, FP_LB_KEY_PATH };

/* virtual nodes on the consistent-hash ring per unit of weight */
#define FP_LB_VNODES 160
/* ring size limit per group (huge weights are scaled down to fit) */
#define FP_LB_MAX_NODES (1u << 20)

typedef struct {
    uint64_t point;
    uint32_t server;
} fp_lb_vnode;

typedef struct {
    fp_lb_vnode *nodes;    /* sorted by point */
    uint32_t n;
} fp_lb_ring;

typedef struct fp_lb fp_lb;

/* One algorithm: pick among servers [lo, hi); key/klen is the hash key
 * (NULL when the request has none).  Returns a server index or -1. */
typedef int (*fp_lb_pick_fn)(fp_lb *lb, uint32_t lo, uint32_t hi, const char *key,
                             size_t klen);

struct fp_lb {
    int32_t method;        /* FP_LB_* */
    uint32_t n;            /* servers */
    uint32_t n_primary;    /* servers [0, n_primary) are primaries */
    int32_t *weight;       /* >= 1 */
    int32_t *max_conns;    /* 0 = unlimited */
    int64_t *slow_start;   /* ms of weight ramp after a recovery, 0 = none */
    int64_t *current;      /* smooth weighted round-robin state */
    fp_peer **peer;        /* shared per-server state (fp_peer.h) */
    fp_peer_policy pol;    /* passive health, breaker and slow start settings */
    const uint8_t **down;  /* FP_DOWN_* flag bytes, or NULL: no flags */
    uint64_t exclude;      /* servers (bit i, i < 64) this pick must skip */
    int64_t now;           /* fp_peer_now_ms() at the start of this pick */
    uint32_t rr;           /* round-robin cursor (least_conn ties) */
    uint64_t rng;          /* xorshift64* state, never 0 */
    fp_lb_ring ring[2];    /* consistent-hash rings: primaries, backups */
};

/* Allocate arrays for n servers (zeroed; weights 1).  0 on success, -1 on
 * out of memory.  fp_lb_free releases everything (also after a failure). */
int fp_lb_init(fp_lb *lb, int32_t method, uint32_t n, uint32_t n_primary, uint64_t seed);
void fp_lb_free(fp_lb *lb);

/* Build the rings of both groups from the servers' names (the address as
 * configured, so a server keeps its points when others come and go). */
int fp_lb_build_rings(fp_lb *lb, const char *const *names, const size_t *name_lens);

int fp_lb_pick(fp_lb *lb, const char *key, size_t klen);

static inline int fp_lb_usable(const fp_lb *lb, uint32_t i) {
    if (lb->down != NULL && lb->down[i] != NULL &&
        *(const volatile uint8_t *)lb->down[i])
        return 0;
    if (i < 64 && (lb->exclude >> i) & 1)
        return 0;
    if (!fp_peer_usable(lb->peer[i], &lb->pol, lb->now))
        return 0;
    return lb->max_conns[i] == 0 || fp_peer_inflight(lb->peer[i]) < lb->max_conns[i];
}

/* Requests in flight to server i, across workers. */
static inline int64_t fp_lb_load(const fp_lb *lb, uint32_t i) {
    return fp_peer_inflight(lb->peer[i]);
}

/* Server i's weight for this pick (slow start may hold it below weight[i]). */
static inline int32_t fp_lb_weight(const fp_lb *lb, uint32_t i) {
    return fp_peer_weight(lb->peer[i], lb->slow_start[i], lb->weight[i], lb->now);
}

/* the algorithms (fp_lb_rr.c, fp_lb_least.c, fp_lb_hash.c, fp_lb_random.c) */
int fp_lb_rr_pick(fp_lb *lb, uint32_t lo, uint32_t hi, const char *key, size_t klen);
int fp_lb_least_pick(fp_lb *lb, uint32_t lo, uint32_t hi, const char *key, size_t klen);
int fp_lb_hash_pick(fp_lb *lb, uint32_t lo, uint32_t hi, const char *key, size_t klen);
int fp_lb_random_pick(fp_lb *lb, uint32_t lo, uint32_t hi, const char *key, size_t klen);

/* 64-bit FNV-1a followed by a murmur3-style finaliser (fp_lb_hash.c). */
uint64_t fp_lb_hash64(const char *p, size_t n);
uint64_t fp_lb_mix64(uint64_t x);

/* Find the hash key of a request (fp_lb_key.c).  kind: FP_LB_KEY_*; name:
 * the header, cookie or query parameter name (ignored for PATH).  buf/h:
 * the parsed head (spans relative to buf); target: the request-target.
 * Returns 1 and sets *out and *olen when the key is present, 0 otherwise.
 * Header and cookie names match case-insensitively / exactly respectively;
 * query names and values are compared and hashed as sent (no %-decoding). */
int fp_lb_key(int kind, const char *name, size_t nlen, const char *buf,
              const fp_head *h, const char *target, size_t tlen, const char **out,
              size_t *olen);

#ifdef __cplusplus
}
#endif
#endif
