/* fp_peer.c - passive health, circuit breaker and slow start for one
 * upstream server, shared by all workers (see fp_peer.h for the model). */
#include "fp_peer.h"

#include <time.h>

#define LOAD(x) __atomic_load_n(&(x), __ATOMIC_RELAXED)
#define STORE(x, v) __atomic_store_n(&(x), (v), __ATOMIC_RELAXED)
#define ADD(x, v) __atomic_add_fetch(&(x), (v), __ATOMIC_RELAXED)

/* The coarse clock (a tick, 1-4 ms, behind; about 7 ns a read against 35):
 * the windows timed here are seconds long, and a proxied request reads this
 * clock three times. */
int64_t fp_peer_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int cas32(int32_t *p, int32_t expect, int32_t want) {
    return __atomic_compare_exchange_n(p, &expect, want, 0, __ATOMIC_ACQ_REL,
                                       __ATOMIC_RELAXED);
}

static int cas64(int64_t *p, int64_t expect, int64_t want) {
    return __atomic_compare_exchange_n(p, &expect, want, 0, __ATOMIC_ACQ_REL,
                                       __ATOMIC_RELAXED);
}

int32_t fp_peer_weight(const fp_peer *p, int64_t slow_start_ms, int32_t weight, int64_t now) {
    if (slow_start_ms <= 0)
        return weight;
    int64_t since = LOAD(p->recovered_ms);
    int64_t out = LOAD(p->out_until_ms);
    if (out <= now && out > since)
        since = out;                   /* back from a passive time-out */
    if (since <= 0 || now - since >= slow_start_ms)
        return weight;
    int64_t elapsed = now > since ? now - since : 0;
    /* from 10% to 100% over slow_start */
    int64_t w = (int64_t)weight * (slow_start_ms + 9 * elapsed) / (10 * slow_start_ms);
    return w < 1 ? 1 : (int32_t)w;
}

int fp_peer_acquire(fp_peer *p, const fp_peer_policy *pol, int64_t now) {
    ADD(p->inflight, 1);
    int32_t b = LOAD(p->breaker);
    if (b == FP_BRK_CLOSED || pol->brk_open_ms <= 0)
        return 0;
    if (b == FP_BRK_OPEN) {
        if (LOAD(p->open_until_ms) > now)
            return 0;                  /* picked anyway (no other server): not a trial */
        cas32(&p->breaker, FP_BRK_OPEN, FP_BRK_HALF_OPEN);
    }
    ADD(p->trials, 1);
    return 1;
}

/* Count an outcome in the breaker's error-rate window. */
static void window_count(fp_peer *p, const fp_peer_policy *pol, int failed, int64_t now) {
    int64_t start = LOAD(p->win_start_ms);
    if (now - start >= pol->brk_window_ms && cas64(&p->win_start_ms, start, now)) {
        STORE(p->win_requests, 0);
        STORE(p->win_errors, 0);
    }
    ADD(p->win_requests, 1);
    if (failed)
        ADD(p->win_errors, 1);
}

static int open_breaker(fp_peer *p, const fp_peer_policy *pol, int32_t from, int64_t now) {
    STORE(p->open_until_ms, now + pol->brk_open_ms);
    if (!cas32(&p->breaker, from, FP_BRK_OPEN))
        return 0;                      /* another worker did it */
    STORE(p->consecutive, 0);
    ADD(p->trips, 1);
    return 1;
}

static int breaker_fail(fp_peer *p, const fp_peer_policy *pol, int trial, int64_t now) {
    int32_t b = LOAD(p->breaker);
    if (trial || b == FP_BRK_HALF_OPEN)
        return open_breaker(p, pol, FP_BRK_HALF_OPEN, now) ? FP_PEER_EV_BREAKER_REOPEN
                                                           : FP_PEER_EV_NONE;
    if (b != FP_BRK_CLOSED)
        return FP_PEER_EV_NONE;
    uint32_t c = ADD(p->consecutive, 1);
    window_count(p, pol, 1, now);
    uint32_t req = LOAD(p->win_requests), err = LOAD(p->win_errors);
    int trip = (pol->brk_consecutive && c >= pol->brk_consecutive) ||
               (pol->brk_error_pct && req >= pol->brk_min_requests &&
                (uint64_t)err * 100 >= (uint64_t)pol->brk_error_pct * req);
    if (trip && open_breaker(p, pol, FP_BRK_CLOSED, now))
        return FP_PEER_EV_BREAKER_OPEN;
    return FP_PEER_EV_NONE;
}

static int passive_fail(fp_peer *p, const fp_peer_policy *pol, int64_t now) {
    if (pol->max_fails == 0)
        return FP_PEER_EV_NONE;
    int64_t start = LOAD(p->fail_window_ms);
    if (now - start >= pol->fail_timeout_ms && cas64(&p->fail_window_ms, start, now))
        STORE(p->fails, 0);
    uint32_t n = ADD(p->fails, 1);
    if (n < pol->max_fails)
        return FP_PEER_EV_NONE;
    int64_t out = LOAD(p->out_until_ms);
    if (out > now || !cas64(&p->out_until_ms, out, now + pol->fail_timeout_ms))
        return FP_PEER_EV_NONE;        /* already out, or another worker took it out */
    STORE(p->fails, 0);
    STORE(p->fail_window_ms, now + pol->fail_timeout_ms);
    ADD(p->trips, 1);
    return FP_PEER_EV_PASSIVE_OUT;
}

int fp_peer_release(fp_peer *p, const fp_peer_policy *pol, int trial, int outcome,
                    int64_t now) {
    ADD(p->inflight, -1);
    if (trial)
        ADD(p->trials, -1);
    if (outcome == FP_PEER_NEUTRAL)
        return FP_PEER_EV_NONE;
    if (outcome == FP_PEER_OK) {
        if (pol->brk_open_ms <= 0)
            return FP_PEER_EV_NONE;
        STORE(p->consecutive, 0);
        if (trial && cas32(&p->breaker, FP_BRK_HALF_OPEN, FP_BRK_CLOSED)) {
            STORE(p->recovered_ms, now);
            STORE(p->win_start_ms, now);
            STORE(p->win_requests, 0);
            STORE(p->win_errors, 0);
            return FP_PEER_EV_BREAKER_CLOSE;
        }
        if (pol->brk_error_pct)
            window_count(p, pol, 0, now);
        return FP_PEER_EV_NONE;
    }
    int ev = FP_PEER_EV_NONE;
    if (pol->brk_open_ms > 0)
        ev = breaker_fail(p, pol, trial, now);
    int pev = passive_fail(p, pol, now);
    return ev != FP_PEER_EV_NONE ? ev : pev;
}
