"""Fixtures for the fastproxy integration tests: a real origin, a real proxy process, raw clients.

Everything runs on 127.0.0.1 with ephemeral ports, and every wait is bounded.  Helpers are
handed out as fixtures (not imported), because tests/unit has its own ``conftest.py``.

Fixtures (the interface is stable):

``scripted`` / ``raw_origin`` -> factories of origins that answer what a test's script
    says: ``scripted_origin.ScriptedOrigin`` (HTTP-level, for cache tests) and
    ``raw_origin.RawOrigin`` (byte-level, records every byte, for hostile responses).

``origin`` -> ``Origin`` (function scope)
    A threaded HTTP/1.1 origin (one thread per TCP connection, keep-alive supported).
    Attributes: ``host``, ``port``, ``address`` (``"127.0.0.1:PORT"``), ``url(path)``,
    ``requests`` (list of ``OriginRequest``, in arrival order), ``connections`` (TCP
    connections accepted so far), ``open_connections``, ``ws_frames`` (list of
    ``(opcode, masked, payload)`` received on ``/ws``), ``reset()``,
    ``wait_requests(n, timeout=5) -> list``.
    Knobs (plain attributes, set them before sending requests):
    ``close_after_response`` (bool, default False: answer every request with
    ``Connection: close`` and close), ``drop_after_response`` (bool, default False: close the
    connection after each response *without* announcing it, like a keep-alive timeout race),
    ``tls_context`` (``ssl.SSLContext`` or None: the origin speaks TLS with it),
    ``auto_continue`` (bool, default False: send
    ``100 Continue`` on every endpoint when the request has ``Expect: 100-continue``;
    ``/continue`` always does), ``extra_headers`` (list of ``(name, value)`` added to every
    response).
    ``OriginRequest`` fields: ``method``, ``target``, ``version`` (str), ``headers``
    (list of ``(name, value)`` str pairs, as received, in order), ``body`` (bytes, de-chunked;
    empty for ``/sink``), ``body_len``, ``chunked`` (request used Transfer-Encoding: chunked),
    ``raw_head`` (bytes), ``client_port`` (the proxy's source port = which upstream TCP
    connection), ``conn_id`` (1-based accept counter); helpers ``header(name)`` (first value
    or None, case-insensitive), ``header_all(name)``, ``path``.
    Endpoints (``HEAD`` works on all of them: same headers, no body; ``hdr=Name:Value`` in
    the query adds a response header, repeatable):
      /echo                  200, body = request body (Content-Length)
      /bytes?n=N             200, ``payload(N)``, Content-Length
      /chunked?n=N&parts=K   200, ``payload(N)`` as K chunks; ``trailer=Name:Value`` adds one
      /close?n=N             200, ``payload(N)``, no length: the body ends when the origin closes
      /status/NNN            status NNN, body ``b"status NNN\\n"`` (no body for 1xx/204/304);
                             ``cl=N`` sends ``Content-Length: N`` with no body (for 304)
      /slow?delay=S          sleeps S seconds, then 200 ``b"slow"``
      /stream?mib=M          M MiB of ``b"x"`` in 64 KiB writes, Content-Length (backpressure);
                             ``mode=chunked`` sends 64 KiB chunks, ``mode=close`` no length
      /sink?rate=R           reads the body without storing it (at most R MiB/s if given),
                             200 with the byte count as body
      /continue              sends ``HTTP/1.1 100 Continue`` first if Expect: 100-continue, then
                             reads the body and echoes it
      /ws                    RFC 6455 echo: 101 with Sec-WebSocket-Accept, echoes text/binary
                             frames unmasked, answers ping with pong and close with close;
                             ``/ws?lenient=1`` accepts a handshake without ``Upgrade: websocket``
      /head                  200, body ``b"hello head\\n"`` (11 bytes)
      /random?n=N            200, N pseudo-random (incompressible) bytes seeded by N,
                             ``Content-Type: text/plain``, Content-Length: the bytes of
                             ``random.Random(N).randbytes(N)``
      /events?n=N&gap=S      server-sent events: 200 ``text/event-stream``, chunked, N events
                             ``data: event I\\n\\n`` (I = 0..N-1), one chunk each, S seconds
                             apart (default 0.2); ``mode=close`` sends them with no length
      /encoded?enc=E&n=N     200, ``payload(N)`` compressed with E (``gzip``, ``br`` or
                             ``zstd``; ``x-gzip`` is sent as gzip with that name), with
                             ``Content-Encoding: E``, Content-Length and ``Content-Type:
                             text/plain``; ``fill=zero`` compresses N zero bytes instead (a
                             decompression bomb for large N); ``cut=K`` drops the last K
                             bytes of the compressed body (a truncated stream)
      /cache/ANY             (cache tests) 200, body ``f"{path} #{N}\\n"`` where N counts the
                             requests for that path (``origin.cache_hits[path]``), also in
                             ``X-Origin-Count``; ``Content-Type: text/plain``; ``n=N`` pads
                             the body to N bytes with ``.``; ``etag=E`` sends ``ETag: "E"``
                             and answers 304 when If-None-Match names it; ``echo=Name``
                             appends `` Name=<request value>``; ``status=NNN``;
                             ``delay=S`` sleeps S seconds first; ``hdr=`` as everywhere;
                             ``origin.cache_status = NNN`` makes every /cache/ answer NNN;
                             ``cut=K`` sends all but the last K body bytes, then closes
      anything else          200, body ``f"{method} {target}"``

``make_proxy(config=None, *, merge=True, argv=None, cwd=None, env=None, wait_ready=True,
ready_timeout=15) -> ProxyProcess``
    Starts ``python -m fastproxy run -c FILE`` and waits for its ``listening on`` log line.
    ``config`` is deep-merged into the default config (dicts merge recursively, other values
    replace, ``None`` deletes a key); ``merge=False`` uses ``config`` as is.  Default::

        {"server": {"listen": ["127.0.0.1:0"], "pid_file": False},
         "log": {"access": "off"},
         "upstreams": {"app": {"servers": [origin.address]}},
         "routes": [{"path_prefix": "/", "upstream": "app"}]}

    ``argv`` (list of str) runs ``python -m fastproxy *argv`` instead, writing no config
    (e.g. the demo).  ``cwd`` defaults to a fresh empty directory.  Every process is stopped
    at teardown (SIGTERM, then SIGKILL after 5 s).
    ``ProxyProcess``: ``port``, ``host``, ``addresses``, ``pid``, ``url(path)``,
    ``config_path``, ``config_text``, ``stderr_text()``, ``stdout_text()``,
    ``wait_log(regex, timeout=5) -> re.Match`` (searches stderr lines), ``rss_kib()`` (VmRSS),
    ``alive()``, ``stop(timeout=10) -> returncode`` (SIGTERM, wait, SIGKILL fallback),
    ``signal(sig)``.

``proxy`` -> ``ProxyProcess``: ``make_proxy()`` with the default config.

``toml_dumps(dict) -> str``: the tiny TOML emitter used for configs (top-level arrays of
tables become ``[[name]]``; deeper tables inside them are inline).

``raw_request(port, data, read_until_close=True, timeout=5) -> bytes``
    Connects, sends ``data`` in one write, and returns everything read until the proxy
    closes (``read_until_close=True``) or the raw bytes of exactly one response
    (``read_until_close=False``; interim 1xx responses are included).  A timeout raises
    ``RawTimeout`` (a ``TimeoutError``) whose ``.data`` holds the bytes read so far.

``http_conn(port, timeout=5, rcvbuf=None, tls=None, sni=None) -> HTTPConn`` (factory; closed
at teardown; ``rcvbuf`` sets SO_RCVBUF before connecting; ``tls`` = an ``ssl.SSLContext``
speaks TLS, e.g. ``tls_files.client_context()``, with ``sni`` as the server name)
    ``send(bytes)``, ``request(method, target, headers=(), body=None, version="HTTP/1.1",
    host="test.local", chunked=False) -> None`` (adds Host and Content-Length/chunked framing
    unless the header is given; ``chunked`` may be a list of byte chunks),
    ``read_response(method="GET", interim=False, timeout=None) -> Response``,
    ``roundtrip(method, target, **kw) -> Response``,
    ``at_eof(timeout=2) -> bool`` (True if the peer closed with no more data),
    ``sock``, ``reader`` (its receive buffer: ``read_until(sep)``, ``read_exact(n)``,
    ``read_some(max_n)``, ``read_to_eof()``, ``deadline`` = monotonic time or None),
    ``close()``.

``read_response(conn_or_socket, method="GET", interim=False, timeout=5) -> Response``
    Parses one response: status line, headers, then the body framed per RFC 9112 section 6.3
    (HEAD/1xx/204/304 have none; chunked; Content-Length; else until close).  With
    ``interim=False`` 1xx responses other than 101 are collected into ``.interim`` and the
    final response is returned; with ``interim=True`` a 1xx is returned by itself.
    ``Response``: ``version``, ``status``, ``reason``, ``headers`` (list of str pairs),
    ``body``, ``raw`` (bytes of the head and body as received), ``framing``
    (``"none"|"length"|"chunked"|"close"``), ``trailers``, ``interim``; ``header(name)``,
    ``header_all(name)``.

``tls_files`` -> ``TLSFiles``: a trustme CA (``ca``, ``ca_path``), ``issue(*names, stem=None,
ca=None) -> (cert_path, key_path)``, ``client_context(alpn=None)`` (trusts the CA, no host
check), ``connect(port, sni=None, ctx=None) -> ssl.SSLSocket``.

``payload(n) -> bytes``: the deterministic byte pattern /bytes, /chunked and /close send.

``ws_codec``: ``frame(opcode, data, mask=True, fin=True) -> bytes`` (RFC 6455; clients mask)
and ``read_frame(conn: HTTPConn, timeout=5) -> (opcode, masked, payload)``.

``read_response`` on a bare socket uses a fresh buffer each call, so for several responses
on one connection use an ``HTTPConn``.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import json
import math
import os
import random
import re
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import tomllib
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from raw_origin import RawOrigin, RawReq
from scripted_origin import Script, ScriptedOrigin
from support import LabelOrigin

from fastproxy import procinfo

# The fastproxy tree the proxy processes run from; FASTPROXY_TEST_TREE points the tests at
# another built checkout (e.g. to check that a test fails without a fix).
REPO = Path(os.environ.get("FASTPROXY_TEST_TREE") or Path(__file__).resolve().parents[2])
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_PATTERN = bytes(range(251)) * 64  # prime period, so shifted or reordered data shows


def random_bytes(n: int) -> bytes:
    """What /random?n=N sends: incompressible, reproducible."""
    return random.Random(n).randbytes(n)


@functools.cache
def _encoded(coding: str, n: int, zeros: bool) -> bytes:
    """``payload(n)`` (or n zero bytes) compressed with a content coding."""
    import brotli
    import zstandard

    data = bytes(n) if zeros else _payload(n)
    if coding in ("gzip", "x-gzip"):
        c = zlib.compressobj(9, zlib.DEFLATED, 31)
        return c.compress(data) + c.flush()
    if coding == "br":
        return bytes(brotli.compress(data, quality=5))
    if coding == "zstd":
        return bytes(zstandard.ZstdCompressor(level=3).compress(data))
    raise ValueError(coding)


def _payload(n: int) -> bytes:
    if n <= len(_PATTERN):
        return _PATTERN[:n]
    reps = n // len(_PATTERN) + 1
    return (_PATTERN * reps)[:n]


# ---------------------------------------------------------------------------------------------
# Buffered socket reading, shared by the origin and the clients
# ---------------------------------------------------------------------------------------------


class _Reader:
    """A receive buffer over a socket with an optional overall deadline."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = bytearray()
        self.eof = False
        self.raw = bytearray()  # everything consumed since the last raw reset
        self.deadline: float | None = None

    def _fill(self) -> bool:
        if self.eof:
            return False
        if self.deadline is not None:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("deadline passed while reading")
            self.sock.settimeout(left)
        data = self.sock.recv(262144)
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def _take(self, n: int) -> bytes:
        out = bytes(self.buf[:n])
        del self.buf[:n]
        self.raw += out
        return out

    def read_until(self, sep: bytes, limit: int = 1 << 20) -> bytes | None:
        """Up to and including ``sep``; None on EOF before it."""
        start = 0
        while True:
            i = self.buf.find(sep, start)
            if i >= 0:
                return self._take(i + len(sep))
            if len(self.buf) > limit:
                raise ValueError(f"no {sep!r} within {limit} bytes")
            start = max(0, len(self.buf) - len(sep) + 1)
            if not self._fill():
                return None

    def read_exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            if not self._fill():
                raise EOFError(f"EOF after {len(self.buf)} of {n} bytes")
        return self._take(n)

    def read_some(self, max_n: int) -> bytes:
        if not self.buf and not self._fill():
            return b""
        return self._take(min(max_n, len(self.buf)))

    def read_to_eof(self) -> bytes:
        while self._fill():
            pass
        return self._take(len(self.buf))


def _parse_headers(lines: list[bytes]) -> list[tuple[str, str]]:
    out = []
    for line in lines:
        name, _, value = line.partition(b":")
        out.append((name.decode("latin-1"), value.strip(b" \t").decode("latin-1")))
    return out


def _get(headers: list[tuple[str, str]], name: str) -> str | None:
    name = name.lower()
    for k, v in headers:
        if k.lower() == name:
            return v
    return None


def _get_all(headers: list[tuple[str, str]], name: str) -> list[str]:
    name = name.lower()
    return [v for k, v in headers if k.lower() == name]


def _tokens(headers: list[tuple[str, str]], name: str) -> list[str]:
    return [t.strip().lower() for v in _get_all(headers, name) for t in v.split(",") if t.strip()]


def _read_chunked(r: _Reader, sink: Callable[[bytes], None]) -> list[tuple[str, str]]:
    """Decode a chunked body, passing data to ``sink``; return the trailers."""
    while True:
        line = r.read_until(b"\r\n", 4096)
        if line is None:
            raise EOFError("EOF in chunk size line")
        size = int(line[:-2].split(b";", 1)[0].strip(), 16)
        if size == 0:
            trailers = []
            while True:
                t = r.read_until(b"\r\n", 65536)
                if t is None:
                    raise EOFError("EOF in trailers")
                if t == b"\r\n":
                    return _parse_headers(trailers)
                trailers.append(t[:-2])
        left = size
        while left:
            piece = r.read_some(min(left, 262144))
            if not piece:
                raise EOFError("EOF in chunk data")
            sink(piece)
            left -= len(piece)
        if r.read_exact(2) != b"\r\n":
            raise ValueError("chunk data not followed by CRLF")


# ---------------------------------------------------------------------------------------------
# Client side: responses
# ---------------------------------------------------------------------------------------------


@dataclass
class Response:
    version: str
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes = b""
    raw: bytes = b""
    framing: str = "none"
    trailers: list[tuple[str, str]] = field(default_factory=list)
    interim: list[Response] = field(default_factory=list)

    def header(self, name: str) -> str | None:
        return _get(self.headers, name)

    def header_all(self, name: str) -> list[str]:
        return _get_all(self.headers, name)

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.framing} raw={self.raw[:600]!r}>"


def _read_response(
    r: _Reader, method: str = "GET", interim: bool = False, timeout: float | None = 5
) -> Response:
    r.deadline = None if timeout is None else time.monotonic() + timeout
    r.raw = bytearray()
    try:
        early: list[Response] = []
        while True:
            head = r.read_until(b"\r\n\r\n", 1 << 20)
            if head is None:
                raise EOFError(f"connection closed before a response head; got {bytes(r.buf)!r}")
            lines = head[:-4].split(b"\r\n")
            m = re.fullmatch(rb"(HTTP/\d\.\d) (\d{3})(?: (.*))?", lines[0])
            if not m:
                raise ValueError(f"bad status line {lines[0]!r}")
            resp = Response(
                m.group(1).decode(),
                int(m.group(2)),
                (m.group(3) or b"").decode("latin-1"),
                _parse_headers(lines[1:]),
            )
            if 100 <= resp.status < 200 and resp.status != 101:
                resp.raw = bytes(r.raw)
                if interim:
                    return resp
                early.append(resp)
                r.raw = bytearray()
                continue
            break
        resp.interim = early
        te = _tokens(resp.headers, "transfer-encoding")
        cl = resp.header("content-length")
        if method.upper() == "HEAD" or resp.status in (101, 204, 304) or resp.status < 200:
            resp.framing = "none"
        elif te:
            if te[-1] != "chunked":
                resp.framing = "close"
                resp.body = r.read_to_eof()
            else:
                resp.framing = "chunked"
                parts: list[bytes] = []
                resp.trailers = _read_chunked(r, parts.append)
                resp.body = b"".join(parts)
        elif cl is not None:
            resp.framing = "length"
            resp.body = r.read_exact(int(cl))
        else:
            resp.framing = "close"
            resp.body = r.read_to_eof()
        resp.raw = bytes(r.raw)
        return resp
    finally:
        r.deadline = None


class HTTPConn:
    """One client TCP connection to the proxy, for several requests in a row."""

    def __init__(
        self,
        port: int,
        timeout: float = 5,
        host: str = "127.0.0.1",
        rcvbuf: int | None = None,
        tls: ssl.SSLContext | None = None,
        sni: str | None = None,
    ) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:  # before connect, so the window is small from the start
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect((host, port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if tls is not None:  # a TLS listener: handshake now, with `sni` as server name
            self.sock = tls.wrap_socket(self.sock, server_hostname=sni)
        self.timeout = timeout
        self.reader = _Reader(self.sock)

    def send(self, data: bytes) -> None:
        self.sock.settimeout(self.timeout)
        self.sock.sendall(data)

    @staticmethod
    def build(
        method: str,
        target: str,
        headers: Any = (),
        body: bytes | None = None,
        version: str = "HTTP/1.1",
        host: str | None = "test.local",
        chunked: bool | list[bytes] = False,
    ) -> bytes:
        hdrs = list(headers.items() if isinstance(headers, dict) else headers)
        names = {k.lower() for k, _ in hdrs}
        if host is not None and "host" not in names:
            hdrs.insert(0, ("Host", host))
        data = b""
        if chunked:
            chunks = chunked if isinstance(chunked, list) else ([body] if body else [])
            if "transfer-encoding" not in names:
                hdrs.append(("Transfer-Encoding", "chunked"))
            data = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks if c) + b"0\r\n\r\n"
        elif body is not None:
            if "content-length" not in names and "transfer-encoding" not in names:
                hdrs.append(("Content-Length", str(len(body))))
            data = body
        head = f"{method} {target} {version}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs)
        return head.encode("latin-1") + b"\r\n" + data

    def request(self, method: str, target: str, **kw: Any) -> None:
        self.send(self.build(method, target, **kw))

    def read_response(
        self, method: str = "GET", interim: bool = False, timeout: float | None = None
    ) -> Response:
        return _read_response(
            self.reader, method, interim, self.timeout if timeout is None else timeout
        )

    def roundtrip(self, method: str, target: str, **kw: Any) -> Response:
        timeout = kw.pop("timeout", None)
        self.request(method, target, **kw)
        return self.read_response(method, timeout=timeout)

    def at_eof(self, timeout: float = 2) -> bool:
        """True if the peer has closed (after any buffered data was consumed)."""
        if self.reader.buf:
            return False
        self.reader.deadline = time.monotonic() + timeout
        try:
            return not self.reader._fill()
        except TimeoutError:
            return False
        except ConnectionResetError:
            return True
        finally:
            self.reader.deadline = None

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


class RawTimeout(TimeoutError):
    def __init__(self, msg: str, data: bytes) -> None:
        super().__init__(f"{msg}; read so far: {data[:2000]!r}")
        self.data = data


def _raw_request(
    port: int, data: bytes, read_until_close: bool = True, timeout: float = 5
) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        r = _Reader(s)
        r.deadline = time.monotonic() + timeout
        try:
            if read_until_close:
                return r.read_to_eof()
            method = data.split(b" ", 1)[0].decode("latin-1")
            resp = _read_response(r, method, interim=False, timeout=timeout)
            return b"".join(i.raw for i in resp.interim) + resp.raw
        except TimeoutError as e:
            raise RawTimeout(str(e) or "timed out", bytes(r.raw) + bytes(r.buf)) from None
        except ConnectionResetError:
            return bytes(r.raw) + bytes(r.buf)


# ---------------------------------------------------------------------------------------------
# The origin
# ---------------------------------------------------------------------------------------------


@dataclass
class OriginRequest:
    method: str
    target: str
    version: str
    headers: list[tuple[str, str]]
    body: bytes
    body_len: int
    chunked: bool
    raw_head: bytes
    client_port: int
    conn_id: int

    def header(self, name: str) -> str | None:
        return _get(self.headers, name)

    def header_all(self, name: str) -> list[str]:
        return _get_all(self.headers, name)

    @property
    def path(self) -> str:
        return urlsplit(self.target).path


class _CloseConn(Exception):
    pass


class Origin:
    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0), backlog=512)
        self.sock.settimeout(0.2)
        self.host, self.port = self.sock.getsockname()[:2]
        self.address = f"{self.host}:{self.port}"
        self.requests: list[OriginRequest] = []
        self.ws_frames: list[tuple[int, bool, bytes]] = []
        self.connections = 0
        self.open_connections = 0
        self.close_after_response = False
        self.drop_after_response = False
        self.auto_continue = False
        self.extra_headers: list[tuple[str, str]] = []
        self.tls_context: ssl.SSLContext | None = None  # set: the origin speaks TLS
        self.cache_hits: dict[str, int] = {}  # /cache/...: requests per path
        self.cache_status = 0  # /cache/...: answer with this status when set
        self.errors: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._socks: set[socket.socket] = set()
        self._thread = threading.Thread(target=self._accept_loop, name="origin", daemon=True)

    def url(self, path: str) -> str:
        return f"http://{self.address}{path}"

    def _cacheable(
        self,
        conn: socket.socket,
        path: str,
        q: dict[str, list[str]],
        headers: list[tuple[str, str]],
        simple: Callable[..., None],
        send_head: Callable[..., None],
    ) -> None:
        """/cache/ANY: a counted, cacheable-on-demand resource (see the docstring)."""
        with self._lock:
            self.cache_hits[path] = n = self.cache_hits.get(path, 0) + 1
        delay = float(q.get("delay", ["0"])[0])
        if delay:
            self._stop.wait(delay)
        status = self.cache_status or int(q.get("status", ["200"])[0])
        hdrs: list[tuple[str, str]] = []
        etag = q.get("etag", [None])[0]
        if etag:
            hdrs.append(("ETag", f'"{etag}"'))
            inm = _get(headers, "if-none-match")
            if inm is not None and f'"{etag}"' in inm:
                send_head(304, hdrs + [("X-Origin-Count", str(n))])
                return
        vary = q.get("echo", [None])[0]  # body also names this request header's value
        text = f"{path} #{n}"
        if vary:
            text += f" {vary}={_get(headers, vary)}"
        size = int(q.get("n", ["0"])[0])
        data = (text + "\n").encode().ljust(size, b".")
        hdrs += [("Content-Type", "text/plain"), ("X-Origin-Count", str(n))]
        cut = int(q.get("cut", ["0"])[0])
        if cut:  # announce the whole body, send all but `cut` bytes, close
            send_head(status, [("Content-Length", str(len(data)))] + hdrs)
            conn.sendall(data[:-cut])
            raise _CloseConn
        simple(status, data, hdrs)

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self.ws_frames.clear()
            self.connections = 0

    def wait_requests(self, n: int, timeout: float = 5) -> list[OriginRequest]:
        deadline = time.monotonic() + timeout
        while len(self.requests) < n and time.monotonic() < deadline:
            time.sleep(0.01)
        return list(self.requests)

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()
        with self._lock:
            socks = list(self._socks)
        for s in socks:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                conn, addr = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.connections += 1
                self.open_connections += 1
                cid = self.connections
                self._socks.add(conn)
            t = threading.Thread(
                target=self._serve, args=(conn, addr[1], cid), name=f"origin-{cid}", daemon=True
            )
            t.start()

    def _serve(self, conn: socket.socket, cport: int, cid: int) -> None:
        conn.settimeout(None)
        if self.tls_context is not None:
            try:
                conn = self.tls_context.wrap_socket(conn, server_side=True)
            except (OSError, ValueError) as exc:
                self.errors.append(f"TLS handshake: {exc}")
                with self._lock:
                    self.open_connections -= 1
                conn.close()
                return
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        r = _Reader(conn)
        try:
            while not self._stop.is_set():
                if not self._one(conn, r, cport, cid):
                    break
        except (_CloseConn, OSError, EOFError):
            pass
        except Exception as e:  # noqa: BLE001 - recorded for debugging, the client sees a close
            self.errors.append(f"conn {cid}: {e!r}")
        finally:
            with self._lock:
                self._socks.discard(conn)
                self.open_connections -= 1
            with contextlib.suppress(OSError):
                conn.close()

    # -- one request --------------------------------------------------------------------------
    def _one(self, conn: socket.socket, r: _Reader, cport: int, cid: int) -> bool:
        head = r.read_until(b"\r\n\r\n", 1 << 20)
        if head is None:
            return False
        lines = head[:-4].split(b"\r\n")
        method_b, target_b, version_b = lines[0].split(b" ", 2)
        method, target, version = (x.decode("latin-1") for x in (method_b, target_b, version_b))
        headers = _parse_headers(lines[1:])
        url = urlsplit(target)
        path = url.path
        q = parse_qs(url.query)

        def qint(name: str, default: int) -> int:
            return int(q.get(name, [default])[0])

        conn_tokens = _tokens(headers, "connection")
        if version == "HTTP/1.0":
            keep = "keep-alive" in conn_tokens
        else:
            keep = "close" not in conn_tokens
        if self.close_after_response:
            keep = False

        expect = (_get(headers, "expect") or "").lower() == "100-continue"
        if expect and (path == "/continue" or self.auto_continue):
            conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")

        te = _tokens(headers, "transfer-encoding")
        chunked = bool(te) and te[-1] == "chunked"
        store = path != "/sink"
        parts: list[bytes] = []
        count = 0

        rate = float(q.get("rate", ["0"])[0]) * 1048576 if path == "/sink" else 0.0
        t0 = time.monotonic()

        def sink(b: bytes) -> None:
            nonlocal count
            count += len(b)
            if store:
                parts.append(b)
            if rate:
                ahead = count / rate - (time.monotonic() - t0)
                if ahead > 0:
                    self._stop.wait(ahead)

        if chunked:
            _read_chunked(r, sink)
        elif _get(headers, "content-length") is not None:
            left = int(_get(headers, "content-length") or 0)
            while left:
                piece = r.read_some(min(left, 262144))
                if not piece:
                    raise EOFError("EOF in request body")
                sink(piece)
                left -= len(piece)
        body = b"".join(parts)
        rec = OriginRequest(
            method, target, version, headers, body, count, chunked, head, cport, cid
        )
        with self._lock:
            self.requests.append(rec)

        extra = list(self.extra_headers)
        for h in q.get("hdr", []):
            name, _, value = h.partition(":")
            extra.append((name, value.strip()))
        is_head = method == "HEAD"

        def send_head(
            status: int, hdrs: list[tuple[str, str]], reason: str = "", body: bytes = b""
        ) -> None:
            reason = reason or _REASONS.get(status, "Whatever")
            all_h = hdrs + extra
            if not keep:
                all_h.append(("Connection", "close"))
            elif version == "HTTP/1.0":
                all_h.append(("Connection", "keep-alive"))
            data = f"HTTP/1.1 {status} {reason}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in all_h)
            conn.sendall(data.encode("latin-1") + b"\r\n" + body)

        def simple(status: int, data: bytes, hdrs: list[tuple[str, str]] | None = None) -> None:
            # head and body in one write, as most servers send a small response
            h = [("Content-Length", str(len(data)))] + (hdrs or [])
            send_head(status, h, body=b"" if is_head else data)

        if path.startswith("/cache/"):
            self._cacheable(conn, path, q, headers, simple, send_head)
        elif path == "/echo" or path == "/continue":
            simple(200, body, [("Content-Type", "application/octet-stream")])
        elif path == "/bytes":
            simple(200, _payload(qint("n", 0)))
        elif path == "/chunked":
            data = _payload(qint("n", 0))
            k = max(1, qint("parts", 1))
            trailer = q.get("trailer", [None])[0]
            h = [("Transfer-Encoding", "chunked")]
            if trailer:
                h.append(("Trailer", trailer.partition(":")[0]))
            send_head(200, h)
            if not is_head:
                step = max(1, math.ceil(len(data) / k))
                out = b"".join(
                    b"%x\r\n%s\r\n" % (len(data[i : i + step]), data[i : i + step])
                    for i in range(0, len(data), step)
                )
                out += b"0\r\n" + (trailer.encode() + b"\r\n" if trailer else b"") + b"\r\n"
                conn.sendall(out)
        elif path == "/close":
            keep = False
            send_head(200, [("Content-Type", "application/octet-stream")])
            if not is_head:
                conn.sendall(_payload(qint("n", 0)))
            conn.shutdown(socket.SHUT_WR)
            raise _CloseConn
        elif path.startswith("/status/"):
            status = int(path.rsplit("/", 1)[1])
            if status < 200 or status in (204, 304):
                h = [("Content-Length", q["cl"][0])] if "cl" in q else []
                send_head(status, h)
            else:
                simple(status, f"status {status}\n".encode())
        elif path == "/slow":
            self._stop.wait(float(q.get("delay", ["1"])[0]))
            simple(200, b"slow")
        elif path == "/stream":
            total = int(float(q.get("mib", ["1"])[0]) * 1048576)
            mode = q.get("mode", ["length"])[0]
            h = [("Content-Type", "text/plain")]
            if mode == "length":
                h.append(("Content-Length", str(total)))
            elif mode == "chunked":
                h.append(("Transfer-Encoding", "chunked"))
            else:
                keep = False
            send_head(200, h)
            if not is_head:
                block = b"x" * 65536
                left = total
                while left > 0 and not self._stop.is_set():
                    n = min(left, 65536)
                    if mode == "chunked":
                        conn.sendall(b"%x\r\n%s\r\n" % (n, block[:n]))
                    else:
                        conn.sendall(block[:n])
                    left -= n
                if mode == "chunked":
                    conn.sendall(b"0\r\n\r\n")
            if mode == "close":
                conn.shutdown(socket.SHUT_WR)
                raise _CloseConn
        elif path == "/sink":
            simple(200, str(count).encode())
        elif path == "/ws":
            self._websocket(conn, r, target, headers, send_head)
            return False
        elif path == "/head":
            simple(200, b"hello head\n", [("Content-Type", "text/plain")])
        elif path == "/random":
            simple(200, random_bytes(qint("n", 0)), [("Content-Type", "text/plain")])
        elif path == "/events":
            mode = q.get("mode", ["chunked"])[0]
            gap = float(q.get("gap", ["0.2"])[0])
            h = [("Content-Type", "text/event-stream"), ("Cache-Control", "no-cache")]
            if mode == "close":
                keep = False
            else:
                h.append(("Transfer-Encoding", "chunked"))
            send_head(200, h)
            for i in range(qint("n", 3)):
                if i and self._stop.wait(gap):
                    break
                ev = b"data: event %d\n\n" % i
                conn.sendall(b"%x\r\n%s\r\n" % (len(ev), ev) if mode != "close" else ev)
            if mode == "close":
                conn.shutdown(socket.SHUT_WR)
                raise _CloseConn
            conn.sendall(b"0\r\n\r\n")
        elif path == "/encoded":
            enc = q.get("enc", ["gzip"])[0]
            fill = q.get("fill", ["payload"])[0]
            body = _encoded(enc, qint("n", 0), fill == "zero")
            body = body[: len(body) - qint("cut", 0)]
            hdrs = [("Content-Encoding", enc), ("Content-Type", "text/plain")]
            simple(200, body, hdrs)
        else:
            simple(200, f"{method} {target}".encode("latin-1"))
        if self.drop_after_response:
            return False
        return keep

    def _websocket(
        self,
        conn: socket.socket,
        r: _Reader,
        target: str,
        headers: list[tuple[str, str]],
        send_head: Any,
    ) -> None:
        key = _get(headers, "sec-websocket-key")
        lenient = "lenient" in parse_qs(urlsplit(target).query)
        if not key or ("websocket" not in _tokens(headers, "upgrade") and not lenient):
            body = b"not a websocket handshake"
            send_head(400, [("Content-Length", str(len(body)))])
            conn.sendall(body)
            raise _CloseConn
        accept = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
        conn.sendall(
            (
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
            ).encode()
        )
        while True:
            op, masked, data = ws_read_frame(r)
            with self._lock:
                self.ws_frames.append((op, masked, data))
            if op in (1, 2):
                conn.sendall(ws_frame(op, data, mask=False))
            elif op == 9:
                conn.sendall(ws_frame(10, data, mask=False))
            elif op == 8:
                conn.sendall(ws_frame(8, data[:2], mask=False))
                return


_REASONS = {
    100: "Continue",
    200: "OK",
    201: "Created",
    204: "No Content",
    301: "Moved Permanently",
    302: "Found",
    304: "Not Modified",
    400: "Bad Request",
    404: "Not Found",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
}


def ws_frame(opcode: int, data: bytes, mask: bool = True, fin: bool = True) -> bytes:
    """Encode one RFC 6455 frame (clients must mask, servers must not)."""
    b0 = (0x80 if fin else 0) | opcode
    n = len(data)
    mbit = 0x80 if mask else 0
    if n < 126:
        head = bytes([b0, mbit | n])
    elif n < 65536:
        head = bytes([b0, mbit | 126]) + n.to_bytes(2, "big")
    else:
        head = bytes([b0, mbit | 127]) + n.to_bytes(8, "big")
    if not mask:
        return head + data
    key = os.urandom(4)
    return head + key + bytes(c ^ key[i % 4] for i, c in enumerate(data))


def ws_read_frame(r: _Reader) -> tuple[int, bool, bytes]:
    """Read one frame from a _Reader: (opcode, masked, unmasked payload)."""
    b0, b1 = r.read_exact(2)
    n = b1 & 0x7F
    if n == 126:
        n = int.from_bytes(r.read_exact(2), "big")
    elif n == 127:
        n = int.from_bytes(r.read_exact(8), "big")
    masked = bool(b1 & 0x80)
    key = r.read_exact(4) if masked else b""
    data = r.read_exact(n)
    if masked:
        data = bytes(c ^ key[i % 4] for i, c in enumerate(data))
    return b0 & 0x0F, masked, data


# ---------------------------------------------------------------------------------------------
# TOML emitter
# ---------------------------------------------------------------------------------------------

_BARE = re.compile(r"[A-Za-z0-9_-]+")


def _key(k: str) -> str:
    return k if _BARE.fullmatch(k) else _str(k)


def _str(s: str) -> str:
    return json.dumps(s, ensure_ascii=False).replace("\x7f", "\\u007F")


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return _str(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, dict):
        items = [f"{_key(k)} = {_value(x)}" for k, x in v.items() if x is not None]
        return "{ " + ", ".join(items) + " }" if items else "{}"
    raise TypeError(f"cannot write {type(v).__name__} as TOML")


def _is_table_array(v: Any) -> bool:
    return isinstance(v, (list, tuple)) and bool(v) and all(isinstance(x, dict) for x in v)


def _drop_none(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _drop_none(x) for k, x in v.items() if x is not None}
    if isinstance(v, (list, tuple)):
        return [_drop_none(x) for x in v]
    return v


def _toml_dumps(doc: dict[str, Any]) -> str:
    out: list[str] = []

    def table(d: dict[str, Any], prefix: list[str]) -> None:
        for k, v in d.items():
            if v is None or isinstance(v, dict) or (not prefix and _is_table_array(v)):
                continue
            out.append(f"{_key(k)} = {_value(v)}")
        for k, v in d.items():
            if isinstance(v, dict):
                out.append("")
                out.append("[" + ".".join(_key(p) for p in [*prefix, k]) + "]")
                table(v, [*prefix, k])
        if not prefix:
            for k, v in d.items():
                if _is_table_array(v):
                    for item in v:
                        out.append("")
                        out.append(f"[[{_key(k)}]]")
                        for ik, iv in item.items():
                            if iv is not None:
                                out.append(f"{_key(ik)} = {_value(iv)}")

    table(doc, [])
    text = "\n".join(out).lstrip("\n") + "\n"
    parsed = tomllib.loads(text)
    want = _drop_none(doc)
    if json.dumps(parsed, sort_keys=True, default=str) != json.dumps(
        want, sort_keys=True, default=str
    ):
        raise AssertionError(f"TOML emitter round-trip mismatch:\n{text}")
    return text


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        if v is None:
            out.pop(k, None)
        elif isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


# ---------------------------------------------------------------------------------------------
# The proxy process
# ---------------------------------------------------------------------------------------------

_LISTEN_RE = re.compile(r"listening on (\S+?):(\d+)\b")


class ProxyProcess:
    def __init__(
        self,
        argv: list[str],
        cwd: Path,
        env: dict[str, str] | None = None,
        config_path: Path | None = None,
        config_text: str = "",
    ) -> None:
        self.config_path = config_path
        self.config_text = config_text
        self.host = ""
        self.port = 0
        self.addresses: list[tuple[str, int]] = []
        self._stderr: list[str] = []
        self._stdout: list[str] = []
        self._cond = threading.Condition()
        full_env = dict(os.environ)
        full_env["PYTHONPATH"] = str(REPO) + os.pathsep + full_env.get("PYTHONPATH", "")
        full_env["PYTHONUNBUFFERED"] = "1"
        full_env.update(env or {})
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "fastproxy", *argv],
            cwd=cwd,
            env=full_env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
        )
        self.pid = self.proc.pid
        self._threads = [
            threading.Thread(target=self._drain, args=(stream, sink), daemon=True)
            for stream, sink in ((self.proc.stderr, self._stderr), (self.proc.stdout, self._stdout))
        ]
        for t in self._threads:
            t.start()

    def _drain(self, stream: Any, sink: list[str]) -> None:
        for line in stream:
            with self._cond:
                sink.append(line)
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def wait_log(self, regex: str | re.Pattern[str], timeout: float = 5) -> re.Match[str]:
        """Wait for a stderr line matching ``regex``; fail with the log on timeout/exit."""
        pat = re.compile(regex)
        deadline = time.monotonic() + timeout
        seen = 0
        with self._cond:
            while True:
                while seen < len(self._stderr):
                    m = pat.search(self._stderr[seen])
                    seen += 1
                    if m:
                        return m
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(
                        f"no log line matching {pat.pattern!r} in {timeout}s; "
                        f"stderr:\n{self.stderr_text()}"
                    )
                if self.proc.poll() is not None and not self._threads[0].is_alive():
                    raise RuntimeError(
                        f"proxy exited ({self.proc.returncode}) before logging "
                        f"{pat.pattern!r}; stderr:\n{self.stderr_text()}"
                    )
                self._cond.wait(min(left, 0.1))

    def wait_ready(self, timeout: float = 15) -> None:
        m = self.wait_log(_LISTEN_RE, timeout)
        line = m.string
        self.addresses = [
            (h, int(p)) for h, p in re.findall(r"(\S+?):(\d+)(?:,|\s|$)", line[m.start() + 13 :])
        ]
        self.host, self.port = m.group(1), int(m.group(2))

    def url(self, path: str = "/") -> str:
        return f"http://{self.host}:{self.port}{path}"

    def stderr_text(self) -> str:
        with self._cond:
            return "".join(self._stderr)

    def stdout_text(self) -> str:
        with self._cond:
            return "".join(self._stdout)

    def rss_kib(self) -> int:
        """VmRSS of the whole process tree: `fastproxy run -c` is a master whose
        workers (its children) do the proxying."""
        total = procinfo.rss_kib(procinfo.proc_tree(self.pid))
        if total == 0:
            raise RuntimeError("no VmRSS")
        return total

    def alive(self) -> bool:
        return self.proc.poll() is None

    def signal(self, sig: int) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def stop(self, timeout: float = 10) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        for t in self._threads:
            t.join(2)
        return self.proc.returncode


# ---------------------------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def origin() -> Iterator[Origin]:
    o = Origin()
    o.start()
    try:
        yield o
    finally:
        o.stop()


@pytest.fixture
def scripted() -> Iterator[Callable[[Script], ScriptedOrigin]]:
    """scripted(script): a started scripted_origin.ScriptedOrigin, closed after the test."""
    made: list[ScriptedOrigin] = []

    def make(script: Script) -> ScriptedOrigin:
        made.append(ScriptedOrigin(script))
        return made[-1]

    yield make
    for o in made:
        o.close()


@pytest.fixture
def raw_origin() -> Iterator[Callable[..., RawOrigin]]:
    """raw_origin(script, read_bodies=True): a started raw_origin.RawOrigin, closed after."""
    made: list[RawOrigin] = []

    def make(script: Callable[[RawReq], list[Any]], read_bodies: bool = True) -> RawOrigin:
        made.append(RawOrigin(script, read_bodies))
        return made[-1]

    yield make
    for o in made:
        o.close()


@pytest.fixture
def label_origins() -> Iterator[Callable[[str], LabelOrigin]]:
    """label_origins("A"): a started support.LabelOrigin, stopped after the test."""
    made: list[LabelOrigin] = []

    def make(name: str) -> LabelOrigin:
        made.append(LabelOrigin(name))
        return made[-1]

    yield make
    for o in made:
        o.close()


@pytest.fixture
def make_proxy(
    origin: Origin, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[..., ProxyProcess]]:
    procs: list[ProxyProcess] = []

    def factory(
        config: dict[str, Any] | None = None,
        *,
        merge: bool = True,
        argv: list[str] | None = None,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
        wait_ready: bool = True,
        ready_timeout: float = 15,
    ) -> ProxyProcess:
        workdir = Path(cwd) if cwd is not None else tmp_path_factory.mktemp("proxy")
        if argv is None:
            default = {
                "server": {"listen": ["127.0.0.1:0"], "pid_file": False},
                "log": {"access": "off"},
                "upstreams": {"app": {"servers": [origin.address]}},
                "routes": [{"path_prefix": "/", "upstream": "app"}],
            }
            doc = _merge(default, config or {}) if merge else (config or {})
            text = _toml_dumps(doc)
            cfg_dir = tmp_path_factory.mktemp("cfg")
            path = cfg_dir / "fastproxy.toml"
            path.write_text(text)
            p = ProxyProcess(["run", "-c", str(path)], workdir, env, path, text)
        else:
            p = ProxyProcess(list(argv), workdir, env)
        procs.append(p)
        if wait_ready:
            p.wait_ready(ready_timeout)
        return p

    yield factory
    for p in procs:
        p.stop(timeout=5)


@pytest.fixture
def proxy(make_proxy: Callable[..., ProxyProcess]) -> ProxyProcess:
    return make_proxy()


@pytest.fixture
def toml_dumps() -> Callable[[dict[str, Any]], str]:
    return _toml_dumps


@pytest.fixture
def raw_request() -> Callable[..., bytes]:
    return _raw_request


@pytest.fixture
def http_conn() -> Iterator[Callable[..., HTTPConn]]:
    conns: list[HTTPConn] = []

    def factory(
        port: int,
        timeout: float = 5,
        rcvbuf: int | None = None,
        tls: ssl.SSLContext | None = None,
        sni: str | None = None,
    ) -> HTTPConn:
        c = HTTPConn(port, timeout, rcvbuf=rcvbuf, tls=tls, sni=sni)
        conns.append(c)
        return c

    yield factory
    for c in conns:
        c.close()


@pytest.fixture
def read_response() -> Callable[..., Response]:
    def read(
        conn: HTTPConn | socket.socket,
        method: str = "GET",
        interim: bool = False,
        timeout: float | None = 5,
    ) -> Response:
        if isinstance(conn, HTTPConn):
            return _read_response(conn.reader, method, interim, timeout)
        return _read_response(_Reader(conn), method, interim, timeout)

    return read


@pytest.fixture
def payload() -> Callable[[int], bytes]:
    return _payload


class _WSCodec:
    """RFC 6455 framing for tests: ``frame(opcode, data, mask=True, fin=True) -> bytes`` and
    ``read_frame(conn: HTTPConn) -> (opcode, masked, payload)``."""

    frame = staticmethod(ws_frame)

    @staticmethod
    def read_frame(conn: HTTPConn, timeout: float = 5) -> tuple[int, bool, bytes]:
        conn.reader.deadline = time.monotonic() + timeout
        try:
            return ws_read_frame(conn.reader)
        finally:
            conn.reader.deadline = None


@pytest.fixture
def ws_codec() -> _WSCodec:
    return _WSCodec()


# ---------------------------------------------------------------------------------------------
# TLS: a test CA (trustme) and certificates written as files the proxy config names
# ---------------------------------------------------------------------------------------------


class TLSFiles:
    """``ca`` (trustme.CA), ``ca_path``; ``issue(*names, stem=None, ca=None) -> (cert, key)``
    writes a leaf certificate for ``names`` (a name may be ``*.x`` or an IP);
    ``client_context(**kw)`` trusts the CA; ``connect(port, sni=None, ctx=None)`` returns a
    connected ``ssl.SSLSocket`` (handshake done)."""

    def __init__(self, directory: Path) -> None:
        import trustme

        self.dir = directory
        self.ca = trustme.CA()
        self.ca_path = str(directory / "ca.pem")
        self.ca.cert_pem.write_to_path(self.ca_path)
        self._n = 0

    def issue(self, *names: str, stem: str | None = None, ca: Any = None) -> tuple[str, str]:
        self._n += 1
        stem = stem or f"leaf{self._n}"
        leaf = (ca or self.ca).issue_cert(*names)
        cert, key = str(self.dir / f"{stem}.crt"), str(self.dir / f"{stem}.key")
        Path(cert).write_bytes(b"".join(b.bytes() for b in leaf.cert_chain_pems))
        leaf.private_key_pem.write_to_path(key)
        return cert, key

    def client_context(self, alpn: list[str] | None = None) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=self.ca_path)
        ctx.check_hostname = False  # tests check which certificate came back themselves
        if alpn:
            ctx.set_alpn_protocols(alpn)
        return ctx

    def connect(
        self, port: int, sni: str | None = None, ctx: ssl.SSLContext | None = None, timeout=5.0
    ) -> ssl.SSLSocket:
        raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        try:
            return (ctx or self.client_context()).wrap_socket(raw, server_hostname=sni)
        except BaseException:
            raw.close()
            raise


@pytest.fixture
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    return TLSFiles(tmp_path_factory.mktemp("tls"))
