# Mirror of csrc/fp_lb.h: the load-balancing table and its algorithms.
# Read csrc/fp_lb.h for the contract of each function.
from libc.stdint cimport int32_t, int64_t, uint8_t, uint32_t, uint64_t

from fastproxy.fp_http1 cimport fp_head
from fastproxy.fp_peer cimport fp_peer, fp_peer_policy


cdef extern from "fp_lb.h" nogil:
    enum:
        FP_LB_ROUND_ROBIN
        FP_LB_LEAST_CONN
        FP_LB_IP_HASH
        FP_LB_HASH
        FP_LB_RANDOM

    enum:
        FP_LB_KEY_NONE
        FP_LB_KEY_HEADER
        FP_LB_KEY_COOKIE
        FP_LB_KEY_QUERY
        FP_LB_KEY_PATH

    enum:
        FP_LB_VNODES

    ctypedef struct fp_lb_vnode:
        uint64_t point
        uint32_t server

    ctypedef struct fp_lb_ring:
        fp_lb_vnode *nodes
        uint32_t n

    ctypedef struct fp_lb:
        int32_t method
        uint32_t n
        uint32_t n_primary
        int32_t *weight
        int32_t *max_conns
        int64_t *slow_start
        int64_t *current
        fp_peer **peer
        fp_peer_policy pol
        const uint8_t **down
        uint64_t exclude
        int64_t now
        uint32_t rr
        uint64_t rng
        fp_lb_ring ring[2]

    int fp_lb_init(fp_lb *lb, int32_t method, uint32_t n, uint32_t n_primary, uint64_t seed)
    void fp_lb_free(fp_lb *lb)
    int fp_lb_build_rings(fp_lb *lb, const char *const *names, const size_t *name_lens)
    int fp_lb_pick(fp_lb *lb, const char *key, size_t klen)
    bint fp_lb_usable(const fp_lb *lb, uint32_t i)
    uint64_t fp_lb_hash64(const char *p, size_t n)
    int fp_lb_key(int kind, const char *name, size_t nlen, const char *buf, const fp_head *h,
                  const char *target, size_t tlen, const char **out, size_t *olen)
