/* fp_scan.h - find the first byte a grammar forbids, 16 bytes at a time.
 *
 * Three scans cover the head: field values / reason phrases (stop at CTL or
 * DEL; HTAB stops too and the caller steps over it), request-targets (stop at
 * CTL, SP, DEL, any byte >= 0x80 and '#', which no request-target has) and
 * field names (the SIMD part stops at
 * the first byte outside [A-Za-z0-9_-], the scalar loop finishes with the
 * exact tchar set).  SSE2 when compiled in, else scalar; fp_set_simd() picks
 * at run time so the tests cover both paths.
 *
 * The SIMD helpers are inline: they run once or twice per header line, where
 * a call costs as much as the scan.  Each returns a pointer at or before the
 * first stop byte and reads only whole 16-byte blocks inside [p, end), so it
 * never reads past `end`; the scalar loop finds the exact position. */
#ifndef FP_SCAN_H
#define FP_SCAN_H

extern int fp_simd_on;

#if defined(__SSE2__) && !defined(FP_NO_SIMD)
#include <emmintrin.h>
#define FP_HAVE_SIMD 1

/* Bytes v with v <= max (unsigned): min(v, max) == v. */
static inline unsigned fp_le_mask(__m128i v, char max)
{
    __m128i m = _mm_set1_epi8(max);
    return (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(_mm_min_epu8(v, m), v));
}

static inline unsigned fp_value_mask(__m128i v)
{
    return fp_le_mask(v, 0x1f) |
           (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_set1_epi8(0x7f)));
}

static inline const char *fp_scan_value_simd(const char *p, const char *end)
{
    while (end - p >= 16) {
        unsigned mask = fp_value_mask(_mm_loadu_si128((const __m128i *)p));
        if (mask) return p + __builtin_ctz(mask);
        p += 16;
    }
    return p;
}

static inline const char *fp_scan_target_simd(const char *p, const char *end)
{
    while (end - p >= 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)p);
        /* movemask of v itself flags bytes >= 0x80 */
        unsigned mask = fp_le_mask(v, 0x20) | (unsigned)_mm_movemask_epi8(v) |
                        (unsigned)_mm_movemask_epi8(_mm_or_si128(
                            _mm_cmpeq_epi8(v, _mm_set1_epi8(0x7f)),
                            _mm_cmpeq_epi8(v, _mm_set1_epi8('#'))));
        if (mask) return p + __builtin_ctz(mask);
        p += 16;
    }
    return p;
}

/* Stops at the first byte outside [A-Za-z0-9_-]: for a valid name that is
 * the ':', other tchars are left to the caller's table loop. */
static inline const char *fp_scan_name_simd(const char *p, const char *end)
{
    while (end - p >= 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)p);
        /* x in [lo, lo+n) <=> (signed)(x + 0x80 - lo) < -128 + n */
        __m128i low = _mm_or_si128(v, _mm_set1_epi8(0x20));
        __m128i alpha = _mm_cmplt_epi8(_mm_add_epi8(low, _mm_set1_epi8(0x80 - 'a')),
                                       _mm_set1_epi8(-128 + 26));
        __m128i digit = _mm_cmplt_epi8(_mm_add_epi8(v, _mm_set1_epi8(0x80 - '0')),
                                       _mm_set1_epi8(-128 + 10));
        __m128i ok = _mm_or_si128(_mm_or_si128(alpha, digit),
                                  _mm_or_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8('-')),
                                               _mm_cmpeq_epi8(v, _mm_set1_epi8('_'))));
        unsigned mask = (unsigned)_mm_movemask_epi8(ok) ^ 0xffffu;
        if (mask) return p + __builtin_ctz(mask);
        p += 16;
    }
    return p;
}
#else
#define FP_HAVE_SIMD 0
static inline const char *fp_scan_value_simd(const char *p, const char *e) { (void)e; return p; }
static inline const char *fp_scan_target_simd(const char *p, const char *e) { (void)e; return p; }
static inline const char *fp_scan_name_simd(const char *p, const char *e) { (void)e; return p; }
#endif

static inline int fp_value_stop(unsigned char c) { return c < 0x20 || c == 0x7f; }
static inline int fp_target_stop(unsigned char c) { return c <= 0x20 || c >= 0x7f || c == '#'; }

/* The scalar scans test one byte at a time but the bound once per 4 bytes. */
static inline const char *fp_scan_value_scalar(const char *p, const char *end)
{
    for (; end - p >= 4; p += 4) {
        if (fp_value_stop((unsigned char)p[0])) return p;
        if (fp_value_stop((unsigned char)p[1])) return p + 1;
        if (fp_value_stop((unsigned char)p[2])) return p + 2;
        if (fp_value_stop((unsigned char)p[3])) return p + 3;
    }
    while (p < end && !fp_value_stop((unsigned char)*p)) p++;
    return p;
}

static inline const char *fp_scan_value(const char *p, const char *end)
{
    if (fp_simd_on) p = fp_scan_value_simd(p, end);
    return fp_scan_value_scalar(p, end);
}

static inline const char *fp_scan_target(const char *p, const char *end)
{
    if (fp_simd_on) p = fp_scan_target_simd(p, end);
    for (; end - p >= 4; p += 4) {
        if (fp_target_stop((unsigned char)p[0])) return p;
        if (fp_target_stop((unsigned char)p[1])) return p + 1;
        if (fp_target_stop((unsigned char)p[2])) return p + 2;
        if (fp_target_stop((unsigned char)p[3])) return p + 3;
    }
    while (p < end && !fp_target_stop((unsigned char)*p)) p++;
    return p;
}

/* tchar (RFC 9110 5.6.2) as a table: fp_tchar[c] is 1 for a token byte. */
extern const unsigned char fp_tchar[256];
int fp_is_tchar(unsigned char c);

static inline const char *fp_scan_name_scalar(const char *p, const char *end)
{
    for (; end - p >= 4; p += 4) {
        if (!fp_tchar[(unsigned char)p[0]]) return p;
        if (!fp_tchar[(unsigned char)p[1]]) return p + 1;
        if (!fp_tchar[(unsigned char)p[2]]) return p + 2;
        if (!fp_tchar[(unsigned char)p[3]]) return p + 3;
    }
    while (p < end && fp_tchar[(unsigned char)*p]) p++;
    return p;
}

#endif
