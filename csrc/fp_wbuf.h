/* fp_wbuf.h - a growable byte buffer for serialising heads.  Inline, tiny,
 * and the only place outside the cache that allocates in the data plane. */
#ifndef FP_WBUF_H
#define FP_WBUF_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char *data;
    size_t len;
    size_t cap;
} fp_wbuf;

static inline int fp_wbuf_reserve(fp_wbuf *b, size_t extra)
{
    if (b->len + extra <= b->cap) return 0;
    size_t nc = b->cap ? b->cap : 1024;
    while (nc < b->len + extra) nc *= 2;
    char *d = (char *)realloc(b->data, nc);
    if (d == NULL) return -1;
    b->data = d;
    b->cap = nc;
    return 0;
}

static inline int fp_wbuf_put(fp_wbuf *b, const void *p, size_t n)
{
    if (fp_wbuf_reserve(b, n)) return -1;
    memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

#define fp_wbuf_lit(b, s) fp_wbuf_put((b), (s), sizeof(s) - 1)

static inline int fp_wbuf_u64(fp_wbuf *b, uint64_t v, int base)
{
    char tmp[24];
    int i = 24;
    do {
        tmp[--i] = "0123456789abcdef"[v % (unsigned)base];
        v /= (unsigned)base;
    } while (v);
    return fp_wbuf_put(b, tmp + i, (size_t)(24 - i));
}

static inline void fp_wbuf_free(fp_wbuf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

#endif
