# Mirror of csrc/fp_peer.h: per-server state all workers share (in flight,
# passive health, circuit breaker, slow start).
from libc.stdint cimport int32_t, int64_t, uint32_t, uint64_t


cdef extern from "fp_peer.h" nogil:
    enum:
        FP_BRK_CLOSED
        FP_BRK_OPEN
        FP_BRK_HALF_OPEN

    enum:
        FP_PEER_EV_NONE
        FP_PEER_EV_PASSIVE_OUT
        FP_PEER_EV_BREAKER_OPEN
        FP_PEER_EV_BREAKER_REOPEN
        FP_PEER_EV_BREAKER_CLOSE

    enum:
        FP_PEER_NEUTRAL
        FP_PEER_OK
        FP_PEER_FAIL

    ctypedef struct fp_peer:
        int64_t inflight
        int64_t fail_window_ms
        int64_t out_until_ms
        int64_t open_until_ms
        int64_t recovered_ms
        int64_t win_start_ms
        uint32_t fails
        uint32_t consecutive
        uint32_t win_requests
        uint32_t win_errors
        int32_t breaker
        int32_t trials
        uint64_t trips

    ctypedef struct fp_peer_policy:
        uint32_t max_fails
        int64_t fail_timeout_ms
        uint32_t brk_consecutive
        uint32_t brk_error_pct
        uint32_t brk_min_requests
        int64_t brk_window_ms
        int64_t brk_open_ms
        uint32_t brk_trials

    int64_t fp_peer_now_ms()
    bint fp_peer_usable(const fp_peer *p, const fp_peer_policy *pol, int64_t now)
    int64_t fp_peer_inflight(const fp_peer *p)
    int32_t fp_peer_weight(const fp_peer *p, int64_t slow_start_ms, int32_t weight,
                           int64_t now)
    int fp_peer_acquire(fp_peer *p, const fp_peer_policy *pol, int64_t now)
    int fp_peer_release(fp_peer *p, const fp_peer_policy *pol, int trial, int outcome,
                        int64_t now)
    void fp_peer_forget(fp_peer *p, int64_t n)


cdef inline dict peer_state(const fp_peer *p):
    """One server's shared state as /status shows it (an open breaker whose
    cool-down is over reads as half-open: the next pick makes it a trial)."""
    cdef int64_t now = fp_peer_now_ms()
    cdef int32_t b = p.breaker
    if b != FP_BRK_CLOSED and p.open_until_ms <= now:
        b = FP_BRK_HALF_OPEN
    return {"inflight": p.inflight, "passive_out": p.out_until_ms > now,
            "breaker": ("closed", "open", "half_open")[b], "trips": p.trips}
