/* fp_path.h - the normalised path that routing matches on (never what is
 * forwarded: RFC 9110 7.7 keeps the client's target intact). */
#ifndef FP_PATH_H
#define FP_PATH_H

#include <stddef.h>
#include <stdint.h>

enum { FP_PATH_BAD_ESCAPE = -1, FP_PATH_NUL = -2, FP_PATH_ABOVE_ROOT = -3, FP_PATH_NOT_ABS = -4 };

/* Normalise path[0..len) (the part of an origin-form target before '?')
 * into out (capacity >= len + 1): percent-encoded unreserved characters
 * decoded, other escapes upper-cased, dot-segments removed (RFC 3986
 * 5.2.4), runs of '/' merged.  Returns the output length or FP_PATH_*:
 * a malformed escape, an encoded NUL, or a ".." climbing above the root. */
int64_t fp_normalize_path(const char *path, size_t len, char *out);

#endif
