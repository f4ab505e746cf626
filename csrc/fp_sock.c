/* fp_sock.c - see fp_sock.h. */
#define _GNU_SOURCE             /* accept4 */
#include "fp_sock.h"

#include <arpa/inet.h>
#include <errno.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/uio.h>

size_t fp_sock_send(int fd, const char *a, size_t an, const char *b, size_t bn, int more)
{
    struct iovec v[2] = {{(void *)a, an}, {(void *)b, bn}};
    struct msghdr m = {0};
    m.msg_iov = v;
    m.msg_iovlen = bn ? 2 : 1;
    for (;;) {
        ssize_t r = sendmsg(fd, &m, MSG_NOSIGNAL | MSG_DONTWAIT | (more ? MSG_MORE : 0));
        if (r >= 0) return (size_t)r;   /* short: the socket is full, no retry */
        if (errno != EINTR) return 0;
    }
}

void fp_sock_cork(int fd)
{
    int on = 1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_CORK, &on, sizeof on);
}

/* The IP address of ss as text (see fp_sock_peer_ip); its port in *port. */
static int addr_ip(const struct sockaddr_storage *ss, char *out, size_t cap, int *port)
{
    if (ss->ss_family == AF_INET) {
        /* Four decimal octets by hand: glibc's inet_ntop formats IPv4 with
         * sprintf, a tenth of a new connection's own user-space work. */
        const struct sockaddr_in *sin = (const struct sockaddr_in *)ss;
        const unsigned char *a = (const unsigned char *)&sin->sin_addr;
        if (cap < 16) return -1;
        char *p = out;
        for (int i = 0; i < 4; i++) {
            unsigned v = a[i];
            if (v >= 100) *p++ = (char)('0' + v / 100);
            if (v >= 10) *p++ = (char)('0' + v / 10 % 10);
            *p++ = (char)('0' + v % 10);
            if (i < 3) *p++ = '.';
        }
        if (port) *port = ntohs(sin->sin_port);
        return (int)(p - out);
    }
    if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)ss;
        if (!inet_ntop(AF_INET6, &sin6->sin6_addr, out, (socklen_t)cap)) return -1;
        if (port) *port = ntohs(sin6->sin6_port);
        return (int)strlen(out);
    }
    return -1;
}

int fp_sock_peer_ip(int fd, char *out, size_t cap)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (getpeername(fd, (struct sockaddr *)&ss, &len) != 0) return -1;
    return addr_ip(&ss, out, cap, NULL);
}

int fp_sock_accept(int lfd, char *ip, size_t cap, int *iplen, int *port)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    int fd;
    do {
        fd = accept4(lfd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0) return -1;
    *port = 0;
    *iplen = addr_ip(&ss, ip, cap, port);
    if (*iplen >= 0) {
        /* What asyncio and nginx's keep-alive connections do: a proxied
         * answer may leave in several writes, and Nagle would hold the
         * second one for the client's delayed ACK. */
        int on = 1;
        (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
    }
    return fd;
}

int fp_sock_name(int fd, char *out, size_t cap, int *port)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0) return -1;
    return addr_ip(&ss, out, cap, port);
}

int fp_sock_tcp_gone(int fd)
{
    struct pollfd p = {fd, 0, 0};
    return poll(&p, 1, 0) == 1 && (p.revents & (POLLERR | POLLHUP)) != 0;
}
