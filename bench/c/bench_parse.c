/* bench_parse.c - time fp_parse_request / fp_parse_response in a C loop.
 *
 * Usage: bench_parse REQUEST_FILE RESPONSE_FILE [ITERATIONS] [REPEATS]
 * (bench/bench_c_parse.py writes the files from bench/samples.py, builds this
 * with csrc/ and runs it pinned to one CPU).
 *
 * For each scanning path (SIMD when compiled in, then scalar via fp_set_simd)
 * and each message it times ITERATIONS parses REPEATS times with
 * clock_gettime(CLOCK_MONOTONIC) and prints the best and the median repeat in
 * ns per parse, plus the same loop with the framing call added.  The buffer
 * is parsed whole each time (scanned = NULL), as for a head that arrived in
 * one read.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fp_http1.h"

#define SLOTS 64

static volatile uint64_t sink;

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) { perror(path); exit(2); }
    char *buf = NULL;
    size_t cap = 0, n = 0, got;
    do {
        if (n == cap) {
            cap = cap ? cap * 2 : 4096;
            buf = realloc(buf, cap);
            if (!buf) { perror("realloc"); exit(2); }
        }
        got = fread(buf + n, 1, cap - n, f);
        n += got;
    } while (got > 0);
    fclose(f);
    *len = n;
    return buf;
}

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* One timed loop; returns ns per iteration. */
static double run(int request, int framing, const char *buf, size_t len, long iters)
{
    fp_header slots[SLOTS];
    fp_head h;
    fp_framing fr;
    const fp_limits lim = {8192, 65536, 100};
    uint64_t acc = 0;
    double t0 = now_ns();
    for (long i = 0; i < iters; i++) {
        h.headers = slots;
        h.max_slots = SLOTS;
        int64_t r = request ? fp_parse_request(buf, len, &h, &lim, NULL)
                            : fp_parse_response(buf, len, &h, &lim, NULL);
        if (r <= 0) {
            fprintf(stderr, "parse failed: %lld (%s)\n", (long long)r, fp_error_name((int)r));
            exit(1);
        }
        acc += (uint64_t)r + h.num_headers;
        if (framing) {
            int rc = request ? fp_request_framing(buf, &h, &fr)
                             : fp_response_framing(buf, &h, FP_M_GET, &fr);
            if (rc) {
                fprintf(stderr, "framing failed: %s\n", fp_error_name(rc));
                exit(1);
            }
            acc += fr.length + (uint64_t)fr.kind;
        }
    }
    double t1 = now_ns();
    sink += acc;
    return (t1 - t0) / (double)iters;
}

static void bench(const char *what, int request, int framing, const char *buf, size_t len,
                  long iters, int repeats, const char *path)
{
    double *t = malloc(sizeof(double) * (size_t)repeats);
    if (!t) exit(2);
    run(request, framing, buf, len, iters / 10 + 1); /* warm caches and branch predictors */
    for (int k = 0; k < repeats; k++) t[k] = run(request, framing, buf, len, iters);
    qsort(t, (size_t)repeats, sizeof(double), cmp_double);
    double best = t[0], median = t[repeats / 2];
    printf("%-9s %-16s %-7s %5zu B  best %7.1f ns  median %7.1f ns  %6.2f GB/s\n", what,
           framing ? "parse+framing" : "parse", path, len, best, median, (double)len / best);
    free(t);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s REQUEST_FILE RESPONSE_FILE [ITERATIONS] [REPEATS]\n",
                argv[0]);
        return 2;
    }
    size_t qlen, slen;
    char *req = read_file(argv[1], &qlen);
    char *resp = read_file(argv[2], &slen);
    long iters = argc > 3 ? atol(argv[3]) : 200000;
    int repeats = argc > 4 ? atoi(argv[4]) : 21;
    if (iters < 1 || repeats < 1) return 2;

    printf("iterations %ld x %d repeats; simd compiled in: %s\n", iters, repeats,
           fp_simd_available() ? "yes" : "no");
    for (int pass = 0; pass < 2; pass++) {
        int simd = pass == 0;
        if (simd && !fp_simd_available()) continue;
        fp_set_simd(simd);
        const char *path = simd ? "simd" : "scalar";
        bench("request", 1, 0, req, qlen, iters, repeats, path);
        bench("request", 1, 1, req, qlen, iters, repeats, path);
        bench("response", 0, 0, resp, slen, iters, repeats, path);
        bench("response", 0, 1, resp, slen, iters, repeats, path);
    }
    free(req);
    free(resp);
    return 0;
}
