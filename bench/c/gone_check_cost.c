/* gone_check_cost.c - what asking the kernel whether a TCP connection is
 * still there costs: the check a TLS listener makes before every request
 * after a connection's first (fp_sock_tcp_gone, csrc/fp_sock.c).
 *
 *   gcc -O2 -o /tmp/gone_check_cost bench/c/gone_check_cost.c
 *   taskset -c 1 /tmp/gone_check_cost [CALLS]
 *
 * On one healthy loopback connection, CALLS (default 1,000,000) of each:
 *   poll      poll() of the socket with no events asked for (POLLERR and
 *             POLLHUP are always reported): what fp_sock_tcp_gone does
 *   tcp_info  getsockopt(TCP_INFO), reading tcpi_state: the alternative
 * and prints nanoseconds per call. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e9 + t.tv_nsec;
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 1000000;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    int l = socket(AF_INET, SOCK_STREAM, 0);
    if (l < 0 || bind(l, (struct sockaddr *)&a, al) || listen(l, 1) ||
        getsockname(l, (struct sockaddr *)&a, &al)) {
        perror("listen");
        return 1;
    }
    int c = socket(AF_INET, SOCK_STREAM, 0);
    if (c < 0 || connect(c, (struct sockaddr *)&a, al)) {
        perror("connect");
        return 1;
    }
    int s = accept(l, NULL, NULL);
    long gone = 0;
    double t0 = now_ns();
    for (long i = 0; i < n; i++) {
        struct pollfd p = {s, 0, 0};
        gone += poll(&p, 1, 0) == 1 && (p.revents & (POLLERR | POLLHUP));
    }
    double t1 = now_ns();
    for (long i = 0; i < n; i++) {
        struct tcp_info ti;
        socklen_t tl = sizeof ti;
        gone += getsockopt(s, IPPROTO_TCP, TCP_INFO, &ti, &tl) == 0 && ti.tcpi_state == TCP_CLOSE;
    }
    double t2 = now_ns();
    printf("poll      %.0f ns per call\ntcp_info  %.0f ns per call\n(%ld gone: expect 0)\n",
           (t1 - t0) / n, (t2 - t1) / n, gone);
    close(c);
    close(s);
    close(l);
    return 0;
}
