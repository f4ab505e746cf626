cdef extern from "fp_sock.h" nogil:
    int fp_sock_peer_ip(int fd, char *out, size_t cap)
    size_t fp_sock_send(int fd, const char *p, size_t n, int more)
