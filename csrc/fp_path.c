/* fp_path.c - path normalisation for route matching (see fp_path.h). */
#include "fp_path.h"

static int hexv(unsigned char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    c |= 0x20;
    return (c >= 'a' && c <= 'f') ? c - 'a' + 10 : -1;
}

static int unreserved(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '-' || c == '.' || c == '_' || c == '~';
}

int64_t fp_normalize_path(const char *in, size_t len, char *out)
{
    if (len == 0 || in[0] != '/') return FP_PATH_NOT_ABS;
    size_t o = 0;        /* out[0..o) is normalised so far, always starts '/' */
    size_t i = 0;
    out[o++] = '/';
    while (i < len) {
        while (i < len && in[i] == '/') i++;    /* merge slashes */
        if (i == len) break;
        /* Decode one segment into out[o..), remembering where it began. */
        size_t seg = o;
        while (i < len && in[i] != '/') {
            unsigned char c = (unsigned char)in[i];
            if (c == '%') {
                if (i + 2 >= len) return FP_PATH_BAD_ESCAPE;
                int hi = hexv((unsigned char)in[i + 1]), lo = hexv((unsigned char)in[i + 2]);
                if (hi < 0 || lo < 0) return FP_PATH_BAD_ESCAPE;
                unsigned char d = (unsigned char)(hi * 16 + lo);
                if (d == 0) return FP_PATH_NUL;
                if (unreserved(d)) {
                    out[o++] = (char)d;
                } else {
                    out[o++] = '%';
                    out[o++] = "0123456789ABCDEF"[hi];
                    out[o++] = "0123456789ABCDEF"[lo];
                }
                i += 3;
            } else {
                out[o++] = (char)c;
                i++;
            }
        }
        size_t n = o - seg;
        int trailing = (i == len);              /* no '/' after this segment */
        if (n == 1 && out[seg] == '.') {
            o = seg;                            /* "." : drop */
        } else if (n == 2 && out[seg] == '.' && out[seg + 1] == '.') {
            /* "..": drop it and the previous segment; above root is refused */
            if (seg == 1) return FP_PATH_ABOVE_ROOT;
            o = seg - 1;                        /* the '/' before ".."       */
            while (o > 0 && out[o - 1] != '/') o--;
        } else {
            if (!trailing) out[o++] = '/';
        }
    }
    /* A path ending in "/", "." or ".." keeps its trailing slash: the
     * segment loop leaves out[o-1] == '/' in exactly those cases. */
    return (int64_t)o;
}
