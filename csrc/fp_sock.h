/* fp_sock.h - the data plane's own socket calls for client connections:
 * a write that may leave the FIN to ride with it, the accept of fastproxy's
 * own listener (fastproxy/_socktransport.pxi), and the addresses, read
 * without a Python object per connection. */
#ifndef FP_SOCK_H
#define FP_SOCK_H

#include <stddef.h>

/* One non-blocking sendmsg of a[0:an] then b[0:bn] (bn may be 0): a cache
 * hit's head and its body read straight from the pinned region, or a
 * proxied response's bytes.  more != 0: MSG_MORE -- the caller closes the
 * socket next, and the kernel then sends these bytes' last segment with
 * the FIN in it.  Returns the bytes taken: short (0 on any error) when the
 * socket is full or failed; the caller hands the rest to its transport,
 * which reports errors its usual way. */
size_t fp_sock_send(int fd, const char *a, size_t an, const char *b, size_t bn, int more);

/* Cork the socket until it is closed: partial segments wait for the FIN.
 * MSG_MORE alone holds them only until the next push, and with TCP_NODELAY
 * an ACK arriving for earlier data is one (best effort: errors ignored). */
void fp_sock_cork(int fd);

/* The peer's IP address as text ("192.0.2.1", "2001:db8::1"), as
 * inet_ntop writes it, into out (cap >= 46 for any address).  Returns its
 * length, or -1 when the socket is not IPv4/IPv6 or getpeername fails. */
int fp_sock_peer_ip(int fd, char *out, size_t cap);

/* accept4() one connection from listening socket lfd, non-blocking and
 * close-on-exec, with TCP_NODELAY set; its peer's IP address as text in
 * ip[0:*iplen] (*iplen -1: not IPv4/IPv6) and its port in *port.  Returns
 * the new socket, or -1 with errno (EAGAIN: none waiting). */
int fp_sock_accept(int lfd, char *ip, size_t cap, int *iplen, int *port);

/* The socket's own address, as fp_sock_peer_ip gives the peer's. */
int fp_sock_name(int fd, char *out, size_t cap, int *port);

/* 1 when the connection is over in the kernel while its socket is still
 * open here: reset by the peer or timed out (an error pending, or state
 * CLOSE), or shut down both ways; 0 otherwise.  One poll() with no events
 * asked for, which reports just that (POLLERR, POLLHUP) and consumes
 * nothing: 0.3 us here, against 0.6 us for getsockopt(TCP_INFO)
 * (bench/c/gone_check_cost.c). */
int fp_sock_tcp_gone(int fd);

#endif
