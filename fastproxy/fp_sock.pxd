cdef extern from "fp_sock.h" nogil:
    size_t fp_sock_send(int fd, const char *a, size_t an, const char *b, size_t bn, int more)
    void fp_sock_cork(int fd)
    int fp_sock_peer_ip(int fd, char *out, size_t cap)
    int fp_sock_accept(int lfd, char *ip, size_t cap, int *iplen, int *port)
    int fp_sock_name(int fd, char *out, size_t cap, int *port)
    int fp_sock_tcp_gone(int fd)
