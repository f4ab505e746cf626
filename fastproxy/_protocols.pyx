# cython: language_level=3
"""The data plane: client (downstream) and upstream protocols.

Per request the only Python objects made on the normal path are the bytes
handed to transport.write(): heads are parsed by csrc/fp_http1.c into slots
inside the protocol object, routed by _tables, and re-serialised by
csrc/fp_rewrite.c into a C buffer.  Bodies stream with backpressure: each
side pauses the other's reading while its own write buffer is over the
transport's high-water mark.
"""

import asyncio
import json
import os
import time

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from libc.stdint cimport int64_t, uint8_t, uint32_t, uint64_t
from libc.string cimport memchr, memcpy, memmove

from fastproxy.fp_cache cimport fp_cache_meta, fp_cache_put
from fastproxy.fp_cache_policy cimport fp_cc
from fastproxy._compress cimport (
    Policy, Transform, add_vary, request_codings, response_transform,
)
from fastproxy._conn cimport Conn, coarse_now, monotonic
from fastproxy._runtime cimport Runtime
from fastproxy._tables cimport (
    HOST_PASS, HOST_UPSTREAM, HeaderRules, Route, Server, Upstream, upgrade_allowed,
)
from fastproxy.fp_encoding cimport fp_enc_req
from fastproxy.fp_http1 cimport *
from fastproxy.fp_known_headers cimport FP_H_REFERER, FP_H_USER_AGENT
from fastproxy.fp_peer cimport (
    FP_PEER_EV_BREAKER_CLOSE, FP_PEER_EV_BREAKER_OPEN, FP_PEER_EV_BREAKER_REOPEN,
    FP_PEER_EV_NONE, FP_PEER_EV_PASSIVE_OUT, FP_PEER_FAIL, FP_PEER_NEUTRAL, FP_PEER_OK,
)
from fastproxy.fp_path cimport fp_normalize_path
from fastproxy.fp_sock cimport (
    fp_sock_accept, fp_sock_cork, fp_sock_name, fp_sock_peer_ip, fp_sock_send, fp_sock_tcp_gone,
)
from fastproxy.fp_rewrite cimport *
from fastproxy.fp_stats cimport fp_stats_class, fp_stats_time

DEF SLOTS = 256
DEF PIPELINE_LIMIT = 65536     # unprocessed client bytes held while a request is busy
DEF POOL_GRACE = 1.0           # seconds an idle connection above `keepalive` may linger
DEF LINGER_TIMEOUT = 5.0       # lingering close: quiet this long, close (nginx's default)
DEF LINGER_TIME = 30.0         # lingering close: never longer than this in all

cdef enum:                     # client states
    C_HEAD = 0                 # waiting for (the rest of) a request head
    C_BODY = 1                 # streaming the request body upstream
    C_WAIT = 2                 # request fully sent; response in progress
    C_TUNNEL = 3               # after a 101: bytes both ways
    C_CLOSED = 4
    C_LINGER = 5               # answer sent and FIN too: reading and dropping (linger())

cdef enum:                     # upstream states
    U_IDLE = 0                 # in the keep-alive pool
    U_HEAD = 1
    U_BODY = 2
    U_TUNNEL = 3
    U_CLOSED = 4

cdef enum:                     # what a deadline means
    T_NONE = 0
    T_IDLE = 1                 # client keep-alive idle: close quietly
    T_HEADER = 2               # client head too slow: 408
    T_BODY = 3                 # client body too slow: 408
    T_TUNNEL = 4               # websocket idle
    T_READ = 5                 # upstream response too slow: 504
    T_POOL = 6                 # pooled upstream idle: close
    T_SEND = 7                 # upstream not taking the request body: 504
    T_LINGER = 8               # lingering close: the client went quiet, or LINGER_TIME is up

cdef bytes EMPTY = b""
cdef bytes TEXT = b"text/plain; charset=utf-8"
# RFC 9110 15.5.6: a 405 lists what is allowed
cdef bytes ALLOW = b"Allow: GET, HEAD, POST, PUT, DELETE, OPTIONS, PATCH, TRACE\r\n"
cdef int PID = os.getpid()


def _refresh_pid():
    global PID
    PID = os.getpid()


os.register_at_fork(after_in_child=_refresh_pid)   # workers are forked after import


cdef inline fp_str S(bytes b):
    cdef fp_str s
    s.p = b
    s.n = len(b)
    return s


cdef inline fp_str SP(const char *p, size_t n):
    cdef fp_str s
    s.p = p
    s.n = <uint32_t>n
    return s


cdef inline bint idempotent(int m):
    return m == FP_M_GET or m == FP_M_HEAD or m == FP_M_OPTIONS or m == FP_M_TRACE \
        or m == FP_M_PUT or m == FP_M_DELETE


cdef int put_chunk(fp_wbuf *w, const char *p, size_t n) except -1:
    """Append one chunk of the chunked coding: size CRLF data CRLF."""
    if fp_wbuf_u64(w, n, 16) or fp_wbuf_put(w, b"\r\n", 2) or fp_wbuf_put(w, p, n) \
            or fp_wbuf_put(w, b"\r\n", 2):
        raise MemoryError()
    return 0


# The two protocol classes, one file each (they call each other's cdef
# methods, so they stay one extension module).
include "_readloop.pxi"
include "_client.pxi"
include "_client_forward.pxi"
include "_socktransport.pxi"
include "_upstream.pxi"
include "_cache_path.pxi"
include "_cache_stale.pxi"
include "_access_log.pxi"


async def open_upstream(Runtime rt, Server server, Upstream upstream, ClientProtocol client):
    """Connect to `server` for `client` (new connections only; reuse is sync)."""
    loop = rt.loop
    try:
        _, up = await asyncio.wait_for(
            loop.create_connection(lambda: UpstreamProtocol(rt, server, upstream),
                                   server.host, server.port, **tls_args(server)),
            upstream.connect_timeout)
    except asyncio.TimeoutError:
        client.upstream_failed(504, f"connect timeout after {upstream.connect_timeout}s", True)
        return
    except OSError as e:
        client.upstream_failed(502, f"connect failed: {e.strerror or e}", True)
        return
    connected(client, up)


cdef dict tls_args(Server server):
    # TLS to this server (tls.attach_upstream_tls): its context and SNI name
    if server.ssl is None:
        return {}
    return {"ssl": server.ssl, "server_hostname": server.server_hostname}


cdef connected(ClientProtocol client, UpstreamProtocol up):
    if client.closed or not client.connecting:
        up.close_transport()
    elif up.closed:
        client.upstream_failed(502, "upstream closed the connection at once", True)
    else:
        attach(client, up, False)


cdef bytes swap_host(bytes head, bytes old, bytes new):
    """The Host line fp_rewrite_request writes first, for another server."""
    cdef Py_ssize_t eol = head.find(b"\r\n") + 2
    line = b"Host: " + old + b"\r\n"
    if head[eol:eol + len(line)] != line:
        return head
    return head[:eol] + b"Host: " + new + b"\r\n" + head[eol + len(line):]


def trim_pools(Runtime rt):
    """Close the longest-idle pooled connections above each upstream's
    `keepalive`, once they have been idle for POOL_GRACE seconds."""
    cdef double cutoff = coarse_now() - POOL_GRACE
    cdef Upstream u
    cdef Server srv
    cdef UpstreamProtocol up
    for u in rt.router.upstreams.values():
        for srv in u.unique_servers():
            idle = srv.idle
            while len(idle) > u.keepalive:
                up = <UpstreamProtocol>idle[0]          # oldest first
                if up.idle_since > cutoff:
                    break
                del idle[0]
                up.pooled = False
                up.state = U_CLOSED
                up.deadline = 0
                up.close_transport()


cdef class ClientFactory:
    """A ClientProtocol per accepted connection, made in C: a lambda would run
    a Python frame and parse __init__'s arguments for every connection."""
    cdef Runtime rt
    cdef object listener

    def __call__(self):
        return self.make()

    cdef ClientProtocol make(self):
        cdef ClientProtocol c = ClientProtocol.__new__(ClientProtocol)
        c.setup(self.rt, self.listener)
        return c


def make_client_factory(Runtime rt, listener=None):
    """Protocol factory for loop.create_server; also hooks the pool trimmer
    into the runtime's sweep.  `listener`: a tls.ListenerRuntime (TLS or
    redirect-to-https listeners), None for a plain one."""
    cdef ClientFactory f = ClientFactory.__new__(ClientFactory)
    rt.pool_trimmer = trim_pools
    f.rt = rt
    f.listener = listener
    return f
