/* fp_chunked.c - streaming decoder for the chunked transfer coding
 * (RFC 9112 section 7.1).  Data bytes are reported as spans of the caller's
 * buffer (zero copy); only the framing bytes walk the state machine.
 * Strict on framing: every line ends in CRLF, sizes are hex without sign or
 * prefix and must fit in 63 bits, extensions and trailers are bounded.  The
 * proxy re-frames bodies, so what it forwards is always canonical. */
#include "fp_http1.h"
#include "fp_scan.h"

enum {
    S_SIZE_START, S_SIZE, S_SIZE_BWS, S_EXT, S_SIZE_LF,
    S_DATA, S_DATA_CR, S_DATA_LF,
    S_TRAILER_START, S_TRAILER_NAME, S_TRAILER_VALUE, S_TRAILER_LF, S_FINAL_LF,
    S_DONE
};

void fp_chunked_init(fp_chunked *d, uint32_t max_ext, uint32_t max_trailer)
{
    d->state = S_SIZE_START;
    d->remaining = 0;
    d->ext_len = 0;
    d->trailer_len = 0;
    d->line_len = 0;
    d->digits = 0;
    d->max_ext = max_ext;
    d->max_trailer = max_trailer;
}

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    c |= 0x20;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

static int ctl(unsigned char c) { return (c < 0x20 && c != '\t') || c == 0x7f; }

int fp_chunked_feed(fp_chunked *d, const char *buf, size_t len, size_t *consumed,
                    size_t *data_off, size_t *data_len)
{
    size_t i = 0;
    *data_off = *data_len = 0;
    *consumed = 0;                      /* also on errors: nothing is usable */
    while (i < len) {
        unsigned char c = (unsigned char)buf[i];
        switch (d->state) {
        case S_DATA: {
            size_t n = len - i;
            if ((uint64_t)n > d->remaining) n = (size_t)d->remaining;
            *data_off = i;
            *data_len = n;
            d->remaining -= n;
            if (d->remaining == 0) d->state = S_DATA_CR;
            *consumed = i + n;
            return FP_CHUNK_DATA;
        }
        case S_SIZE_START:
        case S_SIZE: {
            int v = hexval(c);
            if (v >= 0) {
                if (d->remaining > (UINT64_C(0x7fffffffffffffff) >> 4))
                    return FP_E_CHUNK_OVERFLOW;
                d->remaining = (d->remaining << 4) | (uint64_t)v;
                d->state = S_SIZE;
                break;
            }
            if (d->state == S_SIZE_START) return FP_E_CHUNK_SIZE;
            if (c == ';') { d->state = S_EXT; d->ext_len = 0; break; }
            if (c == ' ' || c == '\t') { d->state = S_SIZE_BWS; break; }
            if (c == '\r') { d->state = S_SIZE_LF; break; }
            return FP_E_CHUNK_SIZE;
        }
        case S_SIZE_BWS:
            if (c == ' ' || c == '\t') break;
            if (c == ';') { d->state = S_EXT; d->ext_len = 0; break; }
            if (c == '\r') { d->state = S_SIZE_LF; break; }
            return FP_E_CHUNK_SIZE;
        case S_EXT:
            if (c == '\r') { d->state = S_SIZE_LF; break; }
            if (ctl(c) || ++d->ext_len > d->max_ext) return FP_E_CHUNK_EXT;
            break;
        case S_SIZE_LF:
            if (c != '\n') return FP_E_CHUNK_SIZE;
            d->state = d->remaining ? S_DATA : S_TRAILER_START;
            break;
        case S_DATA_CR:
            if (c != '\r') return FP_E_CHUNK_CRLF;
            d->state = S_DATA_LF;
            break;
        case S_DATA_LF:
            if (c != '\n') return FP_E_CHUNK_CRLF;
            d->state = S_SIZE_START;
            break;
        case S_TRAILER_START:
            if (c == '\r') { d->state = S_FINAL_LF; break; }
            if (!fp_is_tchar(c)) return FP_E_TRAILER;
            d->state = S_TRAILER_NAME;
            goto count;
        case S_TRAILER_NAME:
            if (c == ':') d->state = S_TRAILER_VALUE;
            else if (!fp_is_tchar(c)) return FP_E_TRAILER;
            goto count;
        case S_TRAILER_VALUE:
            if (c == '\r') d->state = S_TRAILER_LF;
            else if (ctl(c)) return FP_E_TRAILER;
            goto count;
        case S_TRAILER_LF:
            if (c != '\n') return FP_E_TRAILER;
            d->state = S_TRAILER_START;
            goto count;
        case S_FINAL_LF:
            if (c != '\n') return FP_E_TRAILER;
            d->state = S_DONE;
            *consumed = i + 1;
            return FP_CHUNK_DONE;
        case S_DONE:
            *consumed = i;
            return FP_CHUNK_DONE;
        }
        i++;
        continue;
    count:
        if (++d->trailer_len > d->max_trailer) return FP_E_TRAILER;
        i++;
    }
    *consumed = i;
    return d->state == S_DONE ? FP_CHUNK_DONE : FP_CHUNK_NEED_MORE;
}
