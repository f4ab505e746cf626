/* epoll_floor.c - the least a server can spend on a keep-alive answer here:
 * one epoll loop, one read(2) per request, and the answer in one system call,
 * with no parsing at all.  bench/uvloop_floor.py runs it beside a plain
 * uvloop server, pinned and loaded the same way as the proxies in
 * bench/vs_nginx.py, so a cache hit's CPU cost can be read against both.
 *
 *   gcc -O2 -o /tmp/epoll_floor bench/c/epoll_floor.c
 *   /tmp/epoll_floor PORT BODY_BYTES [send|sendfile]
 *
 * sendfile: head and body lie next to each other in a memfd (as a cache
 * entry's ready head and body do in the cache region) and leave in one
 * sendfile(2).  send: the same bytes from the mapping by send(2).  The
 * default is what fastproxy does with a keep-alive hit, and the cheaper of
 * the two at each size (bench/c/send_cost.c): sendfile from 16 KiB of body
 * (FP_CACHE_PAGED_MIN), send below.
 * Every read is taken as one whole request (wrk sends one at a time). */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <unistd.h>

#define PAGE 4096
#define MAX_EVENTS 64

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s PORT BODY_BYTES [send|sendfile]\n", argv[0]);
        return 2;
    }
    int port = atoi(argv[1]);
    size_t body = strtoul(argv[2], NULL, 10);
    int use_sendfile = argc < 4 ? body >= 16384 : strcmp(argv[3], "send") != 0;

    char head[256];
    int hlen = snprintf(head, sizeof head,
                        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nAge: 0\r\n"
                        "X-Cache: HIT\r\nContent-Length: %zu\r\n\r\n", body);
    size_t map_len = PAGE + ((body + PAGE - 1) / PAGE) * PAGE;
    int mfd = memfd_create("epoll_floor", 0);
    if (mfd < 0 || ftruncate(mfd, (off_t)map_len) < 0) {
        perror("memfd");
        return 1;
    }
    char *map = mmap(NULL, map_len, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
    if (map == MAP_FAILED) {
        perror("mmap");
        return 1;
    }
    /* the head ends where the body's first page begins */
    memcpy(map + PAGE - hlen, head, (size_t)hlen);
    memset(map + PAGE, 'x', body);
    const off_t answer_off = PAGE - hlen;
    const size_t answer_len = (size_t)hlen + body;

    int one = 1;
    int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                               .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (bind(ls, (struct sockaddr *)&addr, sizeof addr) < 0 || listen(ls, 511) < 0) {
        perror("bind/listen");
        return 1;
    }
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = ls};
    epoll_ctl(ep, EPOLL_CTL_ADD, ls, &ev);

    static char req[65536];
    struct epoll_event ready[MAX_EVENTS];
    for (;;) {
        int n = epoll_wait(ep, ready, MAX_EVENTS, -1);
        for (int i = 0; i < n; i++) {
            int fd = ready[i].data.fd;
            if (fd == ls) {
                int c;
                while ((c = accept4(ls, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                    setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    ev.data.fd = c;
                    epoll_ctl(ep, EPOLL_CTL_ADD, c, &ev);
                }
                continue;
            }
            ssize_t got = read(fd, req, sizeof req);
            if (got < 0 && errno == EAGAIN)
                continue;
            if (got <= 0) {
                close(fd);      /* EOF or an error */
                continue;
            }
            if (use_sendfile) {
                off_t off = answer_off;
                if (sendfile(fd, mfd, &off, answer_len) < 0)
                    close(fd);
            } else if (send(fd, map + answer_off, answer_len, 0) < 0) {
                close(fd);
            }
        }
    }
}
