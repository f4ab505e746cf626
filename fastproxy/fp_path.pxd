# Mirror of csrc/fp_path.h: path normalisation for route matching.
from libc.stdint cimport int64_t


cdef extern from "fp_path.h" nogil:
    enum:
        FP_PATH_BAD_ESCAPE
        FP_PATH_NUL
        FP_PATH_ABOVE_ROOT
        FP_PATH_NOT_ABS
    int64_t fp_normalize_path(const char *path, size_t len, char *out)
