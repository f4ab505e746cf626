"""The recording origin of the integration tests (the `origin` fixture, conftest.py): a
threaded HTTP/1.1 server on 127.0.0.1 with the endpoints conftest.py's docstring lists,
which records every request it gets; plus the payloads it serves and the WebSocket frame
helpers it and the tests share."""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import math
import os
import random
import socket
import ssl
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

from http_client import (
    _get,
    _get_all,
    _parse_headers,
    _read_chunked,
    _read_length,
    _Reader,
    _tokens,
)

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
            _read_length(r, int(_get(headers, "content-length") or 0), sink, "request body")
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
