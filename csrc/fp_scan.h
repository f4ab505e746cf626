/* fp_scan.h - find the first byte a grammar forbids, 16 bytes at a time.
 *
 * Two scans cover the head: field values / reason phrases (stop at CTL or
 * DEL; HTAB stops too and the caller steps over it) and request-targets (stop
 * at CTL, SP, DEL or any byte >= 0x80).  SSE2 when compiled in, else scalar;
 * fp_set_simd() picks at run time so the tests cover both paths. */
#ifndef FP_SCAN_H
#define FP_SCAN_H

extern int fp_simd_on;

const char *fp_scan_value_simd(const char *p, const char *end);
const char *fp_scan_target_simd(const char *p, const char *end);

static inline int fp_value_stop(unsigned char c) { return c < 0x20 || c == 0x7f; }
static inline int fp_target_stop(unsigned char c) { return c <= 0x20 || c >= 0x7f; }

static inline const char *fp_scan_value(const char *p, const char *end)
{
    if (fp_simd_on) p = fp_scan_value_simd(p, end);
    while (p < end && !fp_value_stop((unsigned char)*p)) p++;
    return p;
}

static inline const char *fp_scan_target(const char *p, const char *end)
{
    if (fp_simd_on) p = fp_scan_target_simd(p, end);
    while (p < end && !fp_target_stop((unsigned char)*p)) p++;
    return p;
}

int fp_is_tchar(unsigned char c);

#endif
