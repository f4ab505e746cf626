"""The raw HTTP/1.1 client of the integration tests (the `http_conn`, `raw_request` and
`read_response` fixtures, conftest.py): a keep-alive connection that writes requests byte
for byte and parses responses strictly (Content-Length, chunked with trailers, or to the
close), so a test sees exactly what the proxy sent."""

from __future__ import annotations

import contextlib
import re
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

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


def _read_length(r: _Reader, n: int, sink: Callable[[bytes], None], what: str) -> None:
    """Pass exactly n bytes of ``r`` to ``sink``, in pieces; EOFError naming ``what``."""
    while n:
        piece = r.read_some(min(n, 262144))
        if not piece:
            raise EOFError(f"EOF in {what}")
        sink(piece)
        n -= len(piece)


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
        _read_length(r, size, sink, "chunk data")
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
