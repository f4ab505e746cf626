/* fp_scan.c - SSE2 versions of the byte-class scans in fp_scan.h.
 * Each returns a pointer at or before the first stop byte: it consumes only
 * whole 16-byte blocks free of stop bytes, leaving the rest (and the exact
 * position) to the scalar loop, so it never reads past `end`. */
#include "fp_http1.h"
#include "fp_scan.h"

#if defined(__SSE2__) && !defined(FP_NO_SIMD)
#include <emmintrin.h>
#define FP_HAVE_SIMD 1
int fp_simd_on = 1;

const char *fp_scan_value_simd(const char *p, const char *end)
{
    const __m128i ctl_max = _mm_set1_epi8(0x1f), del = _mm_set1_epi8(0x7f);
    while (end - p >= 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)p);
        /* unsigned v <= 0x1f  <=>  min(v, 0x1f) == v */
        __m128i ctl = _mm_cmpeq_epi8(_mm_min_epu8(v, ctl_max), v);
        __m128i bad = _mm_or_si128(ctl, _mm_cmpeq_epi8(v, del));
        int mask = _mm_movemask_epi8(bad);
        if (mask) return p + __builtin_ctz((unsigned)mask);
        p += 16;
    }
    return p;
}

const char *fp_scan_target_simd(const char *p, const char *end)
{
    const __m128i sp = _mm_set1_epi8(0x20), del = _mm_set1_epi8(0x7f);
    while (end - p >= 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)p);
        __m128i low = _mm_cmpeq_epi8(_mm_min_epu8(v, sp), v); /* v <= 0x20 */
        __m128i bad = _mm_or_si128(low, _mm_cmpeq_epi8(v, del));
        /* movemask of v itself flags bytes >= 0x80 */
        int mask = _mm_movemask_epi8(bad) | _mm_movemask_epi8(v);
        if (mask) return p + __builtin_ctz((unsigned)mask);
        p += 16;
    }
    return p;
}
#else
#define FP_HAVE_SIMD 0
int fp_simd_on = 0;
const char *fp_scan_value_simd(const char *p, const char *end) { (void)end; return p; }
const char *fp_scan_target_simd(const char *p, const char *end) { (void)end; return p; }
#endif

int fp_simd_available(void) { return FP_HAVE_SIMD; }

int fp_set_simd(int on)
{
    int prev = fp_simd_on;
    fp_simd_on = FP_HAVE_SIMD && on;
    return prev;
}
