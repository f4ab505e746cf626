/* fp_sock.h - the few socket calls the data plane makes itself, beside
 * uvloop's transports: the peer's address as text, and a write that may
 * leave the FIN to ride with it. */
#ifndef FP_SOCK_H
#define FP_SOCK_H

#include <stddef.h>

/* The peer's IP address of a connected TCP socket as text (inet_ntop form,
 * IPv4-mapped IPv6 addresses as "::ffff:a.b.c.d"), NUL-terminated in out.
 * Returns its length, or -1 (not an IP socket, or getpeername failed). */
int fp_sock_peer_ip(int fd, char *out, size_t cap);

/* One non-blocking send of p[0:n].  more != 0: MSG_MORE -- the caller
 * closes the socket next, and the kernel then sends these bytes' last
 * segment with the FIN in it.  Returns the bytes taken: short (0 on any
 * error) when the socket is full or failed; the caller hands the rest to
 * its transport, which reports errors its usual way. */
size_t fp_sock_send(int fd, const char *p, size_t n, int more);

#endif
