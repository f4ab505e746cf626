cdef extern from "fp_sock.h" nogil:
    size_t fp_sock_send(int fd, const char *p, size_t n, int more)
