/* fp_sock.c - see fp_sock.h. */
#include "fp_sock.h"

#include <errno.h>
#include <sys/socket.h>

size_t fp_sock_send(int fd, const char *p, size_t n, int more)
{
    int flags = MSG_NOSIGNAL | MSG_DONTWAIT | (more ? MSG_MORE : 0);
    for (;;) {
        ssize_t r = send(fd, p, n, flags);
        if (r >= 0) return (size_t)r;
        if (errno != EINTR) return 0;
    }
}
