/* fp_peer.h - what every worker must agree on about one upstream server:
 * requests in flight to it (least_conn, max_conns), passive health
 * (max_fails within fail_timeout), the circuit breaker, and when it last
 * recovered (slow_start).
 *
 * One fp_peer per server lives in the shared stats region (indexed like
 * fp_worker_stats.servers, so it keeps its meaning across reloads); an
 * embedded single-process proxy gives each upstream a private array
 * instead.  Several processes write it, so every field is read and written
 * with __atomic builtins.  Transitions (trip, open, half-open, close) use
 * compare-and-swap so exactly one worker performs and logs each one; the
 * counters that feed them are approximate under races (two workers can
 * each count the failure that trips a limit) and the code is written so
 * that such a race only ever makes a decision a request or two late.
 *
 * Times are CLOCK_MONOTONIC milliseconds, which all processes on a host
 * share.
 */
#ifndef FP_PEER_H
#define FP_PEER_H

#include <stdint.h>

enum { FP_BRK_CLOSED = 0, FP_BRK_OPEN = 1, FP_BRK_HALF_OPEN = 2 };

/* What fp_peer_release reports, for the log line and the metrics. */
enum {
    FP_PEER_EV_NONE = 0,
    FP_PEER_EV_PASSIVE_OUT = 1,   /* max_fails reached: out for fail_timeout */
    FP_PEER_EV_BREAKER_OPEN = 2,  /* breaker tripped (consecutive or error rate) */
    FP_PEER_EV_BREAKER_REOPEN = 3,/* a half-open trial failed */
    FP_PEER_EV_BREAKER_CLOSE = 4, /* a half-open trial succeeded */
};

/* Request outcome given to fp_peer_release. */
enum { FP_PEER_NEUTRAL = 0, FP_PEER_OK = 1, FP_PEER_FAIL = 2 };

typedef struct {
    int64_t inflight;          /* requests in flight to the server, all workers */
    int64_t fail_window_ms;    /* passive: start of the current counting window */
    int64_t out_until_ms;      /* passive: out of rotation until then (0: never) */
    int64_t open_until_ms;     /* breaker: open until then */
    int64_t recovered_ms;      /* health up / enable / breaker closed (slow start) */
    int64_t win_start_ms;      /* breaker error-rate window start */
    uint32_t fails;            /* passive: failures in the window */
    uint32_t consecutive;      /* breaker: consecutive failures */
    uint32_t win_requests;     /* breaker: outcomes in the window */
    uint32_t win_errors;       /* breaker: failures in the window */
    int32_t breaker;           /* FP_BRK_* */
    int32_t trials;            /* half-open trial requests in flight */
    uint64_t trips;            /* passive trips + breaker opens, ever (metrics) */
    uint8_t pad_[48];          /* 128 bytes: two cache lines per server */
} fp_peer;

_Static_assert(sizeof(fp_peer) == 128, "fp_peer is two cache lines");

/* Per upstream: compiled from its config by Python; 0 disables a part. */
typedef struct {
    uint32_t max_fails;        /* passive: failures ... */
    int64_t fail_timeout_ms;   /* ... within this window take it out this long */
    uint32_t brk_consecutive;  /* breaker: trip after this many failures in a row */
    uint32_t brk_error_pct;    /* breaker: or this % of outcomes failed ... */
    uint32_t brk_min_requests; /* ... out of at least this many ... */
    int64_t brk_window_ms;     /* ... within this window */
    int64_t brk_open_ms;       /* open this long, then half-open */
    uint32_t brk_trials;       /* half-open: trial requests allowed at once */
} fp_peer_policy;

int64_t fp_peer_now_ms(void);

/* May a new request go to this server now (passive and breaker state)?
 * Read-only: an open breaker whose time is up counts as usable while fewer
 * than brk_trials trials are in flight; fp_peer_acquire claims the trial. */
static inline int fp_peer_usable(const fp_peer *p, const fp_peer_policy *pol, int64_t now) {
    if (__atomic_load_n(&p->out_until_ms, __ATOMIC_RELAXED) > now)
        return 0;
    int32_t b = __atomic_load_n(&p->breaker, __ATOMIC_RELAXED);
    if (b == FP_BRK_CLOSED || pol->brk_open_ms <= 0)
        return 1;                      /* (a reload may have turned the breaker off) */
    if (b == FP_BRK_OPEN && __atomic_load_n(&p->open_until_ms, __ATOMIC_RELAXED) > now)
        return 0;
    return (uint32_t)__atomic_load_n(&p->trials, __ATOMIC_RELAXED) < pol->brk_trials;
}

static inline int64_t fp_peer_inflight(const fp_peer *p) {
    return __atomic_load_n(&p->inflight, __ATOMIC_RELAXED);
}

/* The weight to balance with: during slow_start_ms after a recovery it
 * grows linearly from 1/10 of `weight` (at least 1) to `weight`. */
int32_t fp_peer_weight(const fp_peer *p, int64_t slow_start_ms, int32_t weight, int64_t now);

/* A request was sent to the server: count it in flight.  Returns 1 when it
 * is a half-open trial (pass that to fp_peer_release), 0 otherwise. */
int fp_peer_acquire(fp_peer *p, const fp_peer_policy *pol, int64_t now);

/* The request is over: outcome FP_PEER_OK / FAIL / NEUTRAL (the client
 * went away; says nothing about the server).  Returns an FP_PEER_EV_*. */
int fp_peer_release(fp_peer *p, const fp_peer_policy *pol, int trial, int outcome,
                    int64_t now);

/* A worker died with n requests in flight to the server: they are over.
 * Its half-open trial, if it held one, is given back too. */
static inline void fp_peer_forget(fp_peer *p, int64_t n) {
    __atomic_add_fetch(&p->inflight, -n, __ATOMIC_RELAXED);
    __atomic_store_n(&p->trials, 0, __ATOMIC_RELAXED);
}

#endif
