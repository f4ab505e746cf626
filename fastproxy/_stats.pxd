# The shared stats region and the index tables that give routes and
# upstream servers their stable counter slots (see csrc/fp_stats.h).
from libc.stdint cimport uint8_t

from fastproxy.fp_peer cimport fp_peer
from fastproxy.fp_stats cimport fp_stats_region, fp_worker_stats


cdef class StatsRegion:
    cdef fp_stats_region *region
    cdef size_t size
    cdef fp_worker_stats *slot_ptr(self, int i)
    cdef const uint8_t *down_ptr(self)
    cdef fp_peer *peers_ptr(self)
    cdef _write_flags(self, int index, uint8_t after)
