/* fp_sock.c - see fp_sock.h. */
#include "fp_sock.h"

#include <errno.h>
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
