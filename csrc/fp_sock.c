/* fp_sock.c - see fp_sock.h. */
#include "fp_sock.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

int fp_sock_peer_ip(int fd, char *out, size_t cap)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    const void *addr;
    if (getpeername(fd, (struct sockaddr *)&ss, &len) != 0) return -1;
    if (ss.ss_family == AF_INET)
        addr = &((struct sockaddr_in *)&ss)->sin_addr;
    else if (ss.ss_family == AF_INET6)
        addr = &((struct sockaddr_in6 *)&ss)->sin6_addr;
    else
        return -1;
    if (!inet_ntop(ss.ss_family, addr, out, (socklen_t)cap)) return -1;
    return (int)strlen(out);
}

size_t fp_sock_send(int fd, const char *p, size_t n, int more)
{
    int flags = MSG_NOSIGNAL | MSG_DONTWAIT | (more ? MSG_MORE : 0);
    for (;;) {
        ssize_t r = send(fd, p, n, flags);
        if (r >= 0) return (size_t)r;
        if (errno != EINTR) return 0;
    }
}
