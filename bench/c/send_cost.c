/* send_cost.c - what sending one cached response costs the sender, by way
 * of sending: the choice behind FP_CACHE_SENDFILE_MIN (csrc/fp_cache.h).
 *
 *   gcc -O2 -o /tmp/send_cost bench/c/send_cost.c
 *   /tmp/send_cost BODY_BYTES [ROUNDS]
 *
 * A child pinned to CPU 0 plays wrk: 8 loopback connections, each sends a
 * 100-byte request and reads the whole answer.  The parent, pinned to CPU 1,
 * plays the proxy: it reads each request and answers with a 200-byte head and
 * BODY_BYTES of body held in a memfd mapping (as the cache region is), in
 * one of four ways, and reports its own CPU time (user + system, which on
 * loopback includes the delivery into the reader's socket) per answer:
 *   sendfile  send(head, MSG_MORE) + sendfile(memfd)    (fp_cpath_send_file)
 *   sendmsg   one sendmsg of head + body from the map   (fp_sock_send)
 *   copy      malloc + memcpy head and body, write      (a bytes object + transport)
 *   onefile   one sendfile of head + body, the head lying right before the
 *             body in the memfd                         (a ready head, fp_cache_ready_head)
 * The four alternate, ROUNDS times (default 4), so drift hits all alike. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#define CONNS 8
#define HEAD 200
#define REQ 100
#define REGION (4 << 20)

static void pin(int cpu)
{
    cpu_set_t s;
    CPU_ZERO(&s);
    CPU_SET(cpu, &s);
    sched_setaffinity(0, sizeof s, &s);
}

static double cpu_us(void)
{
    struct rusage r;
    getrusage(RUSAGE_SELF, &r);
    return (r.ru_utime.tv_sec + r.ru_stime.tv_sec) * 1e6 + r.ru_utime.tv_usec +
           r.ru_stime.tv_usec;
}

static void reader(struct sockaddr_in *a, size_t answer, int n)
{
    int fds[CONNS];
    static char buf[1 << 20], req[REQ];
    pin(0);
    memset(req, 'r', sizeof req);
    for (int i = 0; i < CONNS; i++) {
        fds[i] = socket(AF_INET, SOCK_STREAM, 0);
        if (connect(fds[i], (void *)a, sizeof *a)) _exit(1);
    }
    for (int k = 0; k < n; k++) {
        for (int i = 0; i < CONNS; i++)
            if (write(fds[i], req, REQ) != REQ) _exit(1);
        for (int i = 0; i < CONNS; i++)
            for (size_t got = 0; got < answer;) {
                ssize_t r = read(fds[i], buf, sizeof buf);
                if (r <= 0) _exit(1);
                got += (size_t)r;
            }
    }
    _exit(0);
}

static void send_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t r = write(fd, p, n);
        if (r <= 0) exit(1);
        p += r, n -= (size_t)r;
    }
}

static void answer(int how, int fd, int mfd, const char *map, const char *head, size_t blen)
{
    const off_t at = 4096;      /* page-aligned, as page-laid bodies are */
    if (how == 0) {
        send(fd, head, HEAD, MSG_MORE);
        off_t o = at;
        for (size_t left = blen; left;) {
            ssize_t r = sendfile(fd, mfd, &o, left);
            if (r <= 0) exit(1);
            left -= (size_t)r;
        }
    } else if (how == 1) {
        struct iovec v[2] = {{(void *)head, HEAD}, {(void *)(map + at), blen}};
        struct msghdr m = {.msg_iov = v, .msg_iovlen = 2};
        ssize_t r = sendmsg(fd, &m, 0);
        if (r < 0) exit(1);
        if ((size_t)r < HEAD) send_all(fd, head + r, HEAD - (size_t)r), r = HEAD;
        send_all(fd, map + at + (r - HEAD), blen - (size_t)(r - HEAD));
    } else if (how == 3) {
        off_t o = at - HEAD;
        for (size_t left = HEAD + blen; left;) {
            ssize_t r = sendfile(fd, mfd, &o, left);
            if (r <= 0) exit(1);
            left -= (size_t)r;
        }
    } else {
        char *tmp = malloc(HEAD + blen);
        memcpy(tmp, head, HEAD);
        memcpy(tmp + HEAD, map + at, blen);
        send_all(fd, tmp, HEAD + blen);
        free(tmp);
    }
}

static double run(int how, size_t blen, int n, int mfd, const char *map)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001)};
    socklen_t al = sizeof a;
    int lfd = socket(AF_INET, SOCK_STREAM, 0), cs[CONNS], one = 1;
    char head[HEAD], req[REQ];
    memset(head, 'h', sizeof head);
    if (bind(lfd, (void *)&a, sizeof a) || getsockname(lfd, (void *)&a, &al) || listen(lfd, 64))
        exit(1);
    pid_t child = fork();
    if (child == 0) reader(&a, HEAD + blen, n);
    pin(1);
    for (int i = 0; i < CONNS; i++) {
        cs[i] = accept(lfd, NULL, NULL);
        setsockopt(cs[i], IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    double t0 = cpu_us();
    for (int k = 0; k < n; k++)
        for (int i = 0; i < CONNS; i++) {
            for (size_t got = 0; got < REQ;) {
                ssize_t r = read(cs[i], req, REQ - got);
                if (r <= 0) exit(1);
                got += (size_t)r;
            }
            answer(how, cs[i], mfd, map, head, blen);
        }
    double us = (cpu_us() - t0) / ((double)n * CONNS);
    waitpid(child, NULL, 0);
    for (int i = 0; i < CONNS; i++) close(cs[i]);
    close(lfd);
    return us;
}

int main(int argc, char **argv)
{
    static const char *names[] = {"sendfile", "sendmsg", "copy", "onefile"};
    if (argc < 2) {
        fprintf(stderr, "usage: %s BODY_BYTES [ROUNDS]\n", argv[0]);
        return 2;
    }
    size_t blen = strtoul(argv[1], NULL, 10);
    int rounds = argc > 2 ? atoi(argv[2]) : 4;
    int n = (int)(800000000 / (blen + 8192) / CONNS) + 1000;
    if (blen > REGION - 8192) return 2;
    int mfd = memfd_create("send_cost", 0);
    if (mfd < 0 || ftruncate(mfd, REGION)) return 1;
    fcntl(mfd, F_SETFL, O_NOATIME); /* as the cache region's memfd */
    char *map = mmap(NULL, REGION, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
    if (map == MAP_FAILED) return 1;
    memset(map, 'b', REGION);
    double sum[4] = {0};
    for (int r = 0; r < rounds; r++)
        for (int how = 0; how < 4; how++) {
            double us = run(how, blen, n, mfd, map);
            sum[how] += us;
            printf("round %d %-8s %7zu B body: %6.2f us CPU per answer\n", r + 1, names[how],
                   blen, us);
        }
    for (int how = 0; how < 4; how++)
        printf("mean     %-8s %7zu B body: %6.2f us CPU per answer\n", names[how], blen,
               sum[how] / rounds);
    return 0;
}
