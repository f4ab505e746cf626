/* fp_sock.c - see fp_sock.h. */
#include "fp_sock.h"

#include <arpa/inet.h>
#include <errno.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
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

int fp_sock_peer_ip(int fd, char *out, size_t cap)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (getpeername(fd, (struct sockaddr *)&ss, &len) != 0) return -1;
    if (ss.ss_family == AF_INET) {
        /* Four decimal octets by hand: glibc's inet_ntop formats IPv4 with
         * sprintf, a tenth of a new connection's own user-space work. */
        const unsigned char *a = (const unsigned char *)&((struct sockaddr_in *)&ss)->sin_addr;
        if (cap < 16) return -1;
        char *p = out;
        for (int i = 0; i < 4; i++) {
            unsigned v = a[i];
            if (v >= 100) *p++ = (char)('0' + v / 100);
            if (v >= 10) *p++ = (char)('0' + v / 10 % 10);
            *p++ = (char)('0' + v % 10);
            if (i < 3) *p++ = '.';
        }
        return (int)(p - out);
    }
    if (ss.ss_family == AF_INET6) {
        if (!inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, out, (socklen_t)cap))
            return -1;
        return (int)strlen(out);
    }
    return -1;
}
