"""Hostile HTTP/1.1 input against a real proxy process, from the outside.

Reference: RFC 9112 (message syntax and framing) and RFC 9110 (semantics).  For every
case the tests look at the status the client gets, whether the proxy closes the client
connection where the framing can no longer be trusted, what bytes the origin received
(never a second, smuggled request) and whether the same worker is still serving
afterwards.

Two origins are used: the `origin` fixture (conftest.py) for request-side cases, and
`RawOrigin` below, a scripted origin that records every byte it receives and answers
with exactly the bytes a test gives it -- for hostile *responses*.
"""

from __future__ import annotations

import contextlib
import posixpath
import re
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from support import wait_for

from fastproxy import procinfo

# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------


def parse_one(raw: bytes) -> tuple[int, dict[str, list[str]], bytes]:
    """Status, header fields (lower-case names) and the bytes after the head."""
    head, sep, rest = raw.partition(b"\r\n\r\n")
    assert sep, f"no complete response head in {raw[:500]!r}"
    lines = head.split(b"\r\n")
    m = re.fullmatch(rb"HTTP/1\.1 (\d{3})(?: .*)?", lines[0])
    assert m, f"bad status line {lines[0]!r}"
    headers: dict[str, list[str]] = {}
    for line in lines[1:]:
        k, _, v = line.decode("latin-1").partition(":")
        headers.setdefault(k.strip().lower(), []).append(v.strip())
    return int(m.group(1)), headers, rest


def expect_refusal(raw: bytes, status: int) -> None:
    """`raw` (read until the proxy closed) is exactly one complete error response."""
    assert raw.count(b"HTTP/1.1 ") == 1, f"expected exactly one response, got {raw!r}"
    got, headers, body = parse_one(raw)
    assert got == status, raw
    assert headers.get("content-length") == [str(len(body))], raw
    assert headers.get("connection") == ["close"], raw


def dechunk(data: bytes) -> bytes:
    """The payload of a chunked body (strict enough for the tests' own bytes)."""
    out = b""
    while True:
        line, _, data = data.partition(b"\r\n")
        n = int(line.split(b";")[0], 16)
        if n == 0:
            return out
        out, data = out + data[:n], data[n + 2 :]


def worker_pids(proxy) -> set[int]:
    return set(procinfo.proc_tree(proxy.pid)) - {proxy.pid}


def assert_healthy(proxy, workers: set[int]) -> None:
    """The master and the very same workers are alive, and nothing blew up inside."""
    assert proxy.alive(), proxy.stderr_text()
    assert worker_pids(proxy) == workers, proxy.stderr_text()
    text = proxy.stderr_text()
    assert "Traceback" not in text, text
    assert "exited unexpectedly" not in text, text


def settle_origin_untouched(origin) -> None:
    time.sleep(0.3)  # > the origin's accept poll (0.2 s): a connection would be counted
    assert origin.connections == 0, [r.raw_head for r in origin.requests]
    assert origin.requests == []


def serve_check(proxy, http_conn, origin, path: str = "/after") -> None:
    """A fresh connection gets a normal answer from the `origin` fixture."""
    c = http_conn(proxy.port)
    r = c.roundtrip("GET", path)
    assert (r.status, r.body) == (200, f"GET {path}".encode()), r


def recv_until_close(sock: socket.socket, timeout: float = 5) -> tuple[bytes, bool]:
    """Everything until EOF: (bytes, True), or (bytes so far, False) on a reset."""
    sock.settimeout(timeout)
    data = bytearray()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return bytes(data), False
        if not chunk:
            return bytes(data), True
        data += chunk
    raise TimeoutError(f"no close within {timeout}s; got {bytes(data)!r}")


# ---------------------------------------------------------------------------------------------
# A scripted origin that records raw bytes
# ---------------------------------------------------------------------------------------------


class RawReq:
    def __init__(self, conn_id: int, index: int, head: bytes, body: bytes) -> None:
        self.conn_id = conn_id
        self.index = index  # 0-based position on its connection
        self.head = head
        self.body = body
        line = head.split(b"\r\n", 1)[0].decode("latin-1")
        self.method, self.target, self.version = line.split(" ", 2)

    def header_all(self, name: str) -> list[str]:
        out = []
        for line in self.head.split(b"\r\n")[1:]:
            k, _, v = line.decode("latin-1").partition(":")
            if k.strip().lower() == name.lower():
                out.append(v.strip())
        return out


class RawOrigin:
    """HTTP/1.1 origin on 127.0.0.1 answering each request with `script(req)`: a list of
    steps -- bytes (sent), a float (sleep that long), "close" (close the connection).
    It reads the request body by the framing the proxy sends (Content-Length or
    chunked), unless read_bodies is False: then it answers the head alone (and reads
    what follows as the next request).
    `received[i]` holds every byte connection i+1 got; `requests` every parsed request."""

    def __init__(self, script: Callable[[RawReq], list[Any]], read_bodies: bool = True) -> None:
        self.script = script
        self.read_bodies = read_bodies
        self.sock = socket.create_server(("127.0.0.1", 0), backlog=64)
        self.sock.settimeout(0.1)
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.received: list[bytearray] = []
        self.requests: list[RawReq] = []
        self.errors: list[str] = []
        self.lock = threading.Lock()
        self.stop_ev = threading.Event()
        self.conns: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    @property
    def connections(self) -> int:
        return len(self.received)

    def _accept(self) -> None:
        while not self.stop_ev.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self.lock:
                self.received.append(bytearray())
                cid = len(self.received)
                self.conns.append(conn)
            threading.Thread(target=self._serve, args=(conn, cid), daemon=True).start()

    def _recv(self, conn: socket.socket, cid: int) -> bytes:
        data = conn.recv(65536)
        with self.lock:
            self.received[cid - 1] += data
        return data

    def _serve(self, conn: socket.socket, cid: int) -> None:
        conn.settimeout(10)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buf = b""
        index = 0
        try:
            while not self.stop_ev.is_set():
                while b"\r\n\r\n" not in buf:
                    more = self._recv(conn, cid)
                    if not more:
                        return
                    buf += more
                head, _, buf = buf.partition(b"\r\n\r\n")
                req = RawReq(cid, index, head, b"")
                index += 1
                cl = req.header_all("content-length") if self.read_bodies else []
                if self.read_bodies and req.header_all("transfer-encoding"):
                    while not buf.endswith(b"0\r\n\r\n") and b"\r\n0\r\n\r\n" not in buf:
                        more = self._recv(conn, cid)
                        if not more:
                            return
                        buf += more
                    end = (
                        buf.index(b"0\r\n\r\n") + 5
                        if buf.startswith(b"0\r\n\r\n")
                        else buf.index(b"\r\n0\r\n\r\n") + 7
                    )
                    req.body, buf = buf[:end], buf[end:]
                elif cl:
                    n = int(cl[0])
                    while len(buf) < n:
                        more = self._recv(conn, cid)
                        if not more:
                            return
                        buf += more
                    req.body, buf = buf[:n], buf[n:]
                with self.lock:
                    self.requests.append(req)
                for step in self.script(req):
                    if isinstance(step, bytes):
                        conn.sendall(step)
                    elif isinstance(step, float):
                        self.stop_ev.wait(step)
                    elif step == "close":
                        return
        except OSError:
            pass
        except Exception as e:  # noqa: BLE001 - reported by the test
            self.errors.append(repr(e))
        finally:
            with contextlib.suppress(OSError):
                conn.close()

    def close(self) -> None:
        self.stop_ev.set()
        self.thread.join(2)
        self.sock.close()
        with self.lock:
            conns = list(self.conns)
        for c in conns:
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)


@pytest.fixture
def raw_origin():
    made: list[RawOrigin] = []

    def make(script: Callable[[RawReq], list[Any]], read_bodies: bool = True) -> RawOrigin:
        made.append(RawOrigin(script, read_bodies))
        return made[-1]

    yield make
    for o in made:
        o.close()


def ok(body: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


STRAY = b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\nX-Stray: yes\r\n\r\nsmuggled"


def proxy_to(make_proxy, ro: RawOrigin, **server: Any):
    cfg: dict[str, Any] = {"upstreams": {"app": {"servers": [ro.address]}}}
    if server:
        cfg["server"] = server
    return make_proxy(cfg)


# ---------------------------------------------------------------------------------------------
# Request framing and syntax: refused, closed, never forwarded
# ---------------------------------------------------------------------------------------------

P = b"POST /echo HTTP/1.1\r\nHost: h\r\n"
CHUNKED = P + b"Transfer-Encoding: chunked\r\n\r\n"
SMUGGLE = b"GET /smuggled HTTP/1.1\r\nHost: h\r\n\r\n"

REFUSED = {
    # Content-Length = 1*DIGIT (RFC 9110 8.6; RFC 9112 6.3 rule 5: invalid -> 400 + close)
    "cl-negative": (P + b"Content-Length: -5\r\n\r\nhello", 400),
    "cl-hex": (P + b"Content-Length: 0x5\r\n\r\nhello", 400),
    "cl-decimal-point": (P + b"Content-Length: 5.0\r\n\r\nhello", 400),
    "cl-inner-space": (P + b"Content-Length: 1 5\r\n\r\nhello", 400),
    "cl-empty": (P + b"Content-Length:\r\n\r\n" + SMUGGLE, 400),
    "cl-trailing-comma": (P + b"Content-Length: 5,\r\n\r\nhello", 400),
    "cl-overflow": (P + b"Content-Length: 99999999999999999999999\r\n\r\nhello", 400),
    "cl-2^63": (P + b"Content-Length: 9223372036854775808\r\n\r\nhello", 400),
    "cl-differing-lines-case": (
        P + b"content-length: 5\r\nCONTENT-LENGTH: 40\r\n\r\nhello" + SMUGGLE,
        400,
    ),
    # Transfer-Encoding (RFC 9112 6.1, 6.3 rules 3-4)
    "te-cl-lowercase": (
        P + b"content-length: 0\r\ntransfer-encoding: CHUNKED\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        400,
    ),
    "te-chunked-then-gzip-lines": (
        P + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n0\r\n\r\n",
        400,
    ),
    "te-chunked-param": (P + b"Transfer-Encoding: chunked;x=1\r\n\r\n0\r\n\r\n", 400),
    "te-quoted": (P + b'Transfer-Encoding: "chunked"\r\n\r\n0\r\n\r\n', 400),
    "te-xchunked": (P + b"Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n", 400),
    "te-empty": (P + b"Transfer-Encoding:\r\n\r\n0\r\n\r\n", 400),
    "te-identity": (P + b"Transfer-Encoding: identity\r\nContent-Length: 5\r\n\r\nhello", 400),
    "te-vertical-tab": (P + b"Transfer-Encoding: \x0bchunked\r\n\r\n0\r\n\r\n", 400),
    "te-tab-before-colon": (P + b"Transfer-Encoding\t: chunked\r\n\r\n0\r\n\r\n", 400),
    "te-nul-in-name": (P + b"Transfer-Encoding\x00: chunked\r\n\r\n0\r\n\r\n", 400),
    "te-obs-text-in-name": (P + b"Transfer-Encoding\xff: chunked\r\n\r\n0\r\n\r\n", 400),
    "te-http10-with-cl": (
        b"POST /echo HTTP/1.0\r\nHost: h\r\nContent-Length: 5\r\n"
        b"Transfer-Encoding: chunked\r\n\r\nhello",
        400,
    ),
    # chunked body syntax (RFC 9112 7.1)
    "chunk-size-negative": (CHUNKED + b"-5\r\nhello\r\n0\r\n\r\n", 400),
    "chunk-size-0x": (CHUNKED + b"0x5\r\nhello\r\n0\r\n\r\n", 400),
    "chunk-size-leading-space": (CHUNKED + b" 5\r\nhello\r\n0\r\n\r\n", 400),
    "chunk-size-inner-space": (CHUNKED + b"5 5\r\nhello\r\n0\r\n\r\n", 400),
    "chunk-size-2^64": (CHUNKED + b"10000000000000000\r\nhello\r\n0\r\n\r\n", 400),
    "chunk-size-2^63": (CHUNKED + b"8000000000000000\r\nhello\r\n0\r\n\r\n", 400),
    "chunk-size-bare-lf": (CHUNKED + b"5\nhello\r\n0\r\n\r\n", 400),
    "chunk-ext-bare-cr": (CHUNKED + b"5;a=b\rX\r\nhello\r\n0\r\n\r\n", 400),
    "chunk-ext-nul": (CHUNKED + b"5;a=\x00\r\nhello\r\n0\r\n\r\n", 400),
    "chunk-data-too-long": (CHUNKED + b"3\r\nhello\r\n0\r\n\r\n", 400),
    "chunk-data-bare-lf": (CHUNKED + b"5\r\nhello\n0\r\n\r\n", 400),
    "last-chunk-bare-lf": (CHUNKED + b"5\r\nhello\r\n0\n\n" + SMUGGLE, 400),
    "trailer-obs-fold": (CHUNKED + b"0\r\nX-T: a\r\n b\r\n\r\n", 400),
    "trailer-space-before-colon": (CHUNKED + b"0\r\nX-T : a\r\n\r\n", 400),
    "trailer-bare-lf": (CHUNKED + b"0\r\nX-T: a\n\r\n", 400),
    "trailer-nul": (CHUNKED + b"0\r\nX-T: a\x00b\r\n\r\n", 400),
    # request line (RFC 9112 3)
    "nul-in-method": (b"GE\x00T /x HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    "nul-in-target": (b"GET /x\x00y HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    "bare-cr-in-target": (b"GET /x\ry HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    "obs-text-in-target": (b"GET /x\xffy HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    "tab-separator": (b"GET\t/x HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    "double-space": (b"GET  /x HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    "leading-space": (b" GET /x HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    "space-in-target": (b"GET /x y HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    "http09-simple-request": (b"GET /x\r\n\r\n", 400),
    "version-two-digit-minor": (b"GET /x HTTP/1.10\r\nHost: h\r\n\r\n", 400),
    "version-leading-zero": (b"GET /x HTTP/01.1\r\nHost: h\r\n\r\n", 400),
    "authority-form-for-get": (b"GET h:80 HTTP/1.1\r\nHost: h:80\r\n\r\n", 400),
    "asterisk-form-for-post": (P.replace(b"/echo", b"*") + b"Content-Length: 0\r\n\r\n", 400),
    "too-many-leading-crlf": (b"\r\n" * 20 + b"GET /x HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    "leading-bare-cr": (b"\rGET /x HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    # Host (RFC 9112 3.2: 400 for a missing, repeated or invalid Host)
    "host-userinfo": (b"GET /x HTTP/1.1\r\nHost: user@h\r\n\r\n", 400),
    "host-space": (b"GET /x HTTP/1.1\r\nHost: a b\r\n\r\n", 400),
    "host-twice-case": (b"GET /x HTTP/1.1\r\nHost: h\r\nhOST: h\r\n\r\n", 400),
    "host-empty-then-real": (b"GET /x HTTP/1.1\r\nHost:\r\nHost: h\r\n\r\n", 400),
    "host-slash-absolute-form": (b"GET http://a/b/x HTTP/1.1\r\nHost: a/b\r\n\r\n", 400),
    # field lines (RFC 9112 5, 2.2; RFC 9110 5.5)
    "del-in-value": (b"GET /x HTTP/1.1\r\nHost: h\r\nX-A: a\x7fb\r\n\r\n", 400),
    "empty-name": (b"GET /x HTTP/1.1\r\nHost: h\r\n: v\r\n\r\n", 400),
    "obs-fold-first-field": (b"GET /x HTTP/1.1\r\n Host: h\r\n\r\n", 400),
    "bare-cr-before-blank-line": (b"GET /x HTTP/1.1\r\nHost: h\r\n\r\r\n" + SMUGGLE, 400),
}


@pytest.mark.parametrize("data,status", list(REFUSED.values()), ids=list(REFUSED))
def test_hostile_request_is_refused_closed_and_never_forwarded(
    data, status, origin, proxy, raw_request, http_conn
):
    workers = worker_pids(proxy)
    raw = raw_request(proxy.port, data)
    expect_refusal(raw, status)
    settle_origin_untouched(origin)
    serve_check(proxy, http_conn, origin)
    assert_healthy(proxy, workers)


# ---------------------------------------------------------------------------------------------
# Accepted requests: what reaches the origin is canonical, and nothing more
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cl",
    [
        b"Content-Length: 005",
        b"Content-Length: 5, 5",
        b"Content-Length: 5\r\nContent-Length: 5",
        b"Content-Length:\t5\t",
    ],
    ids=["leading-zeros", "identical-list", "identical-lines", "tabs"],
)
def test_tolerated_content_length_is_forwarded_as_one_canonical_field(cl, origin, proxy, http_conn):
    # RFC 9112 6.3 rule 5 / RFC 9110 8.6: identical values may be accepted; what goes on
    # must then be a single valid Content-Length, and the pipelined request stays separate.
    c = http_conn(proxy.port)
    c.send(P + cl + b"\r\n\r\nhello" + SMUGGLE)
    r1 = c.read_response("POST")
    r2 = c.read_response()
    assert (r1.status, r1.body) == (200, b"hello")
    assert (r2.status, r2.body) == (200, b"GET /smuggled")
    reqs = origin.wait_requests(2)
    assert reqs[0].header_all("content-length") == ["5"], reqs[0].raw_head
    assert [q.target for q in reqs] == ["/echo", "/smuggled"]


@pytest.mark.parametrize("named", ["Content-Length", "Transfer-Encoding", "Host"])
def test_connection_naming_a_framing_field_does_not_strip_it(named, origin, proxy, http_conn):
    # RFC 9110 7.6.1: Connection options name hop-by-hop fields; a proxy that honoured
    # "Connection: Content-Length" by dropping the field would forward a body without
    # framing, which the next hop reads as a second request.
    c = http_conn(proxy.port)
    if named == "Transfer-Encoding":
        body = b"5\r\nhello\r\n0\r\n\r\n"
        head = CHUNKED.replace(b"\r\n\r\n", b"\r\nConnection: Transfer-Encoding\r\n\r\n")
    else:
        body = b"hello"
        head = P + f"Connection: {named}\r\nContent-Length: 5\r\n\r\n".encode()
    c.send(head + body + SMUGGLE)
    r1 = c.read_response("POST")
    r2 = c.read_response()
    assert (r1.status, r1.body) == (200, b"hello")
    assert (r2.status, r2.body) == (200, b"GET /smuggled")
    reqs = origin.wait_requests(2)
    assert len(reqs) == 2
    assert reqs[0].body == b"hello"
    assert len(reqs[0].header_all("host")) == 1, reqs[0].raw_head
    assert reqs[0].header("content-length") == "5" or reqs[0].chunked, reqs[0].raw_head


def test_trailers_naming_framing_fields_are_not_forwarded(raw_origin, make_proxy, http_conn):
    # RFC 9110 6.5.1: framing fields are not allowed in trailers; the proxy re-frames the
    # body (RFC 9112 7.1.2), so nothing of the trailer section may reach the origin.
    ro = raw_origin(lambda req: [ok(req.body)])
    proxy = proxy_to(make_proxy, ro)
    c = http_conn(proxy.port)
    c.send(
        CHUNKED + b'5;ext="q;x"\r\nhello\r\n0\r\nContent-Length: 40\r\n'
        b"Transfer-Encoding: chunked\r\nHost: evil\r\n\r\n" + SMUGGLE
    )
    r1 = c.read_response("POST")
    r2 = c.read_response()
    assert r1.status == 200 and r2.status == 200
    wait_for(lambda: len(ro.requests) == 2, 5, "two requests at the origin")
    raw = bytes(ro.received[0])
    assert b"evil" not in raw and b"Content-Length: 40" not in raw, raw
    assert b"ext=" not in raw, raw
    assert ro.requests[0].body == b"5\r\nhello\r\n0\r\n\r\n", raw
    assert [q.target for q in ro.requests] == ["/echo", "/smuggled"]


def test_chunk_size_with_many_leading_zeros_is_accepted(origin, proxy, http_conn):
    # chunk-size = 1*HEXDIG: leading zeros are valid and do not count toward overflow.
    c = http_conn(proxy.port)
    c.send(CHUNKED + b"0" * 40 + b"5\r\nhello\r\n" + b"0" * 40 + b"\r\n\r\n" + SMUGGLE)
    r1 = c.read_response("POST")
    r2 = c.read_response()
    assert (r1.status, r1.body) == (200, b"hello")
    assert (r2.status, r2.body) == (200, b"GET /smuggled")


def test_bare_lf_request_is_reserialised_with_crlf(raw_origin, make_proxy, http_conn):
    # RFC 9112 2.2: a recipient MAY accept a bare LF as a line terminator; what goes on
    # must then be CRLF-only, and two pipelined bare-LF requests stay two requests.
    ro = raw_origin(lambda req: [ok(req.target.encode())])
    proxy = proxy_to(make_proxy, ro)
    c = http_conn(proxy.port)
    c.send(
        b"POST /a HTTP/1.1\nHost: h\nContent-Length: 3\nX-A: 1\n\nabcGET /b HTTP/1.1\nHost: h\n\n"
    )
    assert c.read_response("POST").body == b"/a"
    assert c.read_response().body == b"/b"
    wait_for(lambda: len(ro.requests) == 2, 5, "two requests")
    raw = bytes(ro.received[0])
    assert re.search(rb"(?<!\r)\n", raw) is None, raw
    assert ro.requests[0].body == b"abc"


def test_http_1_2_is_handled_as_1_1_and_forwarded_as_1_1(origin, proxy, http_conn):
    # RFC 9110 2.5 / RFC 9112 2.3: a higher minor version is processed as the highest
    # minor version the recipient implements.
    c = http_conn(proxy.port)
    c.send(b"GET /v HTTP/1.2\r\nHost: h\r\n\r\n")
    r = c.read_response()
    assert r.status == 200 and r.version == "HTTP/1.1"
    [req] = origin.wait_requests(1)
    assert req.version == "HTTP/1.1"


def test_options_asterisk_is_forwarded_as_asterisk(raw_origin, make_proxy, http_conn):
    ro = raw_origin(lambda req: [ok(b"x")])
    proxy = proxy_to(make_proxy, ro)
    c = http_conn(proxy.port)
    r = c.roundtrip("OPTIONS", "*")
    assert r.status == 200
    wait_for(lambda: ro.requests, 5, "the request")
    assert ro.requests[0].target == "*"


def test_absolute_form_authority_wins_over_a_conflicting_host(raw_origin, make_proxy, http_conn):
    # RFC 9112 3.2.2: the proxy MUST generate a new Host from the target's authority.
    ro = raw_origin(lambda req: [ok(b"x")])
    proxy = proxy_to(make_proxy, ro)
    c = http_conn(proxy.port)
    c.send(b"GET http://good.example/x HTTP/1.1\r\nHost: evil.example\r\n\r\n")
    assert c.read_response().status == 200
    wait_for(lambda: ro.requests, 5, "the request")
    assert ro.requests[0].header_all("host") == ["good.example"], ro.requests[0].head
    assert ro.requests[0].target == "/x"
    assert b"evil" not in bytes(ro.received[0])


@pytest.mark.parametrize("host", [b"h:abc", b"h:80:80", b"[::1", b"a]b", b"h:-1"])
def test_host_that_is_not_uri_host_port_is_400(host, origin, proxy, raw_request, http_conn):
    # RFC 9112 3.2: "A server MUST respond with a 400 (Bad Request) status code to any
    # HTTP/1.1 request message that ... contains ... a Host header field with an invalid
    # field value."  Host = uri-host [ ":" port ], port = *DIGIT (RFC 3986 3.2.3).
    raw = raw_request(proxy.port, b"GET /x HTTP/1.1\r\nHost: " + host + b"\r\n\r\n")
    expect_refusal(raw, 400)
    settle_origin_untouched(origin)


# ---------------------------------------------------------------------------------------------
# Hostile responses: the client connection must never desync
# ---------------------------------------------------------------------------------------------


def by_target(table: dict[str, list[Any]], default: list[Any] | None = None):
    """A RawOrigin script answering by the request's path."""

    def script(req: RawReq) -> list[Any]:
        return table.get(
            req.target.split("?")[0],
            default if default is not None else [ok(f"{req.method} {req.target}".encode())],
        )

    return script


def two_on_one_connection(proxy, first: str, method: str = "GET", http_conn=None, delay=0.0):
    """`first` then GET /next on one client connection: (response 1, response 2)."""
    c = http_conn(proxy.port)
    r1 = c.roundtrip(method, first)
    if delay:
        time.sleep(delay)  # the stray bytes reach the idle pooled connection first
    r2 = c.roundtrip("GET", "/next")
    return r1, r2


@pytest.mark.parametrize(
    "first,method,resp",
    [
        ("/longer", "GET", b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello" + STRAY),
        ("/nocontent", "GET", b"HTTP/1.1 204 No Content\r\n\r\n" + STRAY),
        ("/notmod", "GET", b"HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n" + STRAY),
        ("/head", "HEAD", b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n" + STRAY),
        (
            "/chunked",
            "GET",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n" + STRAY,
        ),
    ],
    ids=["longer-than-cl", "204-with-body", "304-with-body", "head-with-body", "after-last-chunk"],
)
@pytest.mark.parametrize("when", ["same-write", "later"])
def test_extra_bytes_after_a_response_never_become_the_next_response(
    first, method, resp, when, raw_origin, make_proxy, http_conn
):
    # RFC 9112 6.3: "A client MUST NOT process, cache, or forward such extra data as a
    # separate response, since such behavior would be vulnerable to cache poisoning."
    head, _, rest = resp.partition(STRAY)
    steps: list[Any] = [resp] if when == "same-write" else [head, 0.15, STRAY]
    ro = raw_origin(by_target({first: steps}))
    proxy = proxy_to(make_proxy, ro)
    workers = worker_pids(proxy)
    r1, r2 = two_on_one_connection(
        proxy, first, method, http_conn, delay=0.4 if when == "later" else 0.0
    )
    assert r1.header("x-stray") is None and b"smuggled" not in r1.raw, r1
    assert (r2.status, r2.body) == (200, b"GET /next"), r2
    assert r2.header("x-stray") is None, r2
    assert_healthy(proxy, workers)


@pytest.mark.parametrize("status", [b"204 No Content", b"103 Early Hints", b"100 Continue"])
def test_proxy_does_not_send_content_length_on_1xx_or_204(
    status, raw_origin, make_proxy, http_conn
):
    # RFC 9110 8.6: "A server MUST NOT send a Content-Length header field in any response
    # with a status code of 1xx (Informational) or 204 (No Content)."  An origin that does
    # anyway must not make the proxy send it on: a downstream recipient that honours it
    # would swallow the start of the next response.
    final = b"" if status.startswith(b"204") else ok(b"final")
    ro = raw_origin(
        by_target({"/x": [b"HTTP/1.1 " + status + b"\r\nContent-Length: 7\r\n\r\n" + final]})
    )
    proxy = proxy_to(make_proxy, ro)
    c = http_conn(proxy.port)
    c.request("GET", "/x")
    first = c.read_response(interim=True)
    assert first.status == int(status[:3])
    assert first.header("content-length") is None, first.raw
    if final:
        assert c.read_response().body == b"final"
    assert c.roundtrip("GET", "/next").body == b"GET /next"


def test_cl_and_te_response_is_read_as_chunked_and_the_upstream_not_reused(
    raw_origin, make_proxy, http_conn
):
    # RFC 9112 6.3 rule 3: Transfer-Encoding overrides Content-Length; an intermediary
    # MUST NOT reuse the connection afterwards (6.1: "close the connection after").
    ro = raw_origin(
        by_target(
            {
                "/both": [
                    b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
                    b"5\r\nhello\r\n0\r\n\r\n"
                ]
            }
        )
    )
    proxy = proxy_to(make_proxy, ro)
    r1, r2 = two_on_one_connection(proxy, "/both", http_conn=http_conn)
    assert (r1.status, r1.body) == (200, b"hello")
    assert r1.header("content-length") is None or r1.framing != "chunked", r1
    assert r2.body == b"GET /next"
    assert [q.conn_id for q in ro.requests] == [1, 2], "the CL+TE connection was reused"


def test_http10_response_with_te_is_not_reused(raw_origin, make_proxy, http_conn):
    # RFC 9112 6.1: an HTTP/1.0 message with Transfer-Encoding has faulty framing: close
    # the connection after processing it.
    ro = raw_origin(
        by_target(
            {
                "/old": [
                    b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n"
                    b"Transfer-Encoding: chunked\r\n\r\n"
                    b"5\r\nhello\r\n0\r\n\r\n"
                ]
            }
        )
    )
    proxy = proxy_to(make_proxy, ro)
    r1, r2 = two_on_one_connection(proxy, "/old", http_conn=http_conn)
    assert r1.body == b"hello" and r2.body == b"GET /next"
    assert [q.conn_id for q in ro.requests] == [1, 2]


BAD_RESPONSES = {
    "cl-letters": b"HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\nhello",
    "cl-differing": b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
    "cl-list-differing": b"HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\nhello!",
    "cl-plus": b"HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\nhello",
    "cl-negative": b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\nhello",
    "cl-overflow": b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\nhello",
    "obs-fold": b"HTTP/1.1 200 OK\r\nX-A: 1\r\n b\r\nContent-Length: 5\r\n\r\nhello",
    "bare-cr-in-value": b"HTTP/1.1 200 OK\r\nX-A: 1\rContent-Length: 0\r\nContent-Length: 5"
    b"\r\n\r\nhello",
    "nul-in-value": b"HTTP/1.1 200 OK\r\nX-A: a\x00b\r\nContent-Length: 5\r\n\r\nhello",
    "status-two-digits": b"HTTP/1.1 20 OK\r\nContent-Length: 5\r\n\r\nhello",
    "status-four-digits": b"HTTP/1.1 2000 OK\r\nContent-Length: 5\r\n\r\nhello",
    "no-status-line": b"Content-Length: 5\r\n\r\nhello",
    "http09-body": b"hello world, no head at all\r\n\r\n",
    "icy": b"ICY 200 OK\r\nContent-Length: 5\r\n\r\nhello",
    "http2-version": b"HTTP/2.0 200 OK\r\nContent-Length: 5\r\n\r\nhello",
    "101-without-upgrade": b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
    b"Connection: Upgrade\r\n\r\n" + STRAY,
}


@pytest.mark.parametrize("resp", list(BAD_RESPONSES.values()), ids=list(BAD_RESPONSES))
def test_invalid_response_is_502_and_never_reaches_the_client(
    resp, raw_origin, make_proxy, http_conn
):
    # RFC 9112 6.3 rule 5 (invalid Content-Length in a response: 502 at a proxy), 5.2
    # (obs-fold: 502 or replace), 2.2 (bare CR), RFC 9110 15.2.2 (101 only to an upgrade).
    ro = raw_origin(by_target({"/bad": [resp, "close"]}))
    proxy = proxy_to(make_proxy, ro)
    workers = worker_pids(proxy)
    c = http_conn(proxy.port)
    c.send(b"GET /bad HTTP/1.1\r\nHost: h\r\n\r\nGET /second HTTP/1.1\r\nHost: h\r\n\r\n")
    raw, _ = recv_until_close(c.sock)
    status, headers, body = parse_one(raw)
    assert status == 502, raw
    assert b"hello" not in raw and b"smuggled" not in raw, raw
    assert raw.count(b"HTTP/1.1 ") == 1, raw
    # the pipelined request behind the failed one was not sent on
    time.sleep(0.2)
    assert [q.target for q in ro.requests] == ["/bad"], [q.head for q in ro.requests]
    c2 = http_conn(proxy.port)
    assert c2.roundtrip("GET", "/fine").body == b"GET /fine"
    assert_healthy(proxy, workers)


@pytest.mark.parametrize(
    "resp",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten b",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000000\r\nhello\r\n"
        b"0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n64\r\nhello",
    ],
    ids=[
        "short-cl",
        "bad-chunk-size",
        "chunk-size-overflow",
        "chunk-data-no-crlf",
        "chunked-no-last-chunk",
        "chunked-cut-in-data",
    ],
)
def test_response_cut_short_is_not_completed_for_the_client(
    resp, raw_origin, make_proxy, http_conn
):
    # RFC 9112 6.3 / 8: an incomplete (or, mid-body, invalid) message must not be
    # presented as complete; the client connection has to be closed (a proxy that has
    # sent the head cannot signal it otherwise).  Either a 502 or a cut-off 200 is fine.
    ro = raw_origin(by_target({"/cut": [resp, 0.1, "close"]}))
    proxy = proxy_to(make_proxy, ro)
    workers = worker_pids(proxy)
    c = http_conn(proxy.port)
    c.send(b"GET /cut HTTP/1.1\r\nHost: h\r\n\r\n")
    raw, _ = recv_until_close(c.sock)
    status, headers, rest = parse_one(raw)
    assert status in (200, 502), raw
    assert b"0\r\n\r\n" not in rest and b"helloXX" not in rest, raw
    if status == 200 and headers.get("content-length"):
        assert int(headers["content-length"][0]) > len(rest), raw
    assert_healthy(proxy, workers)


def test_interim_responses_are_relayed_then_the_final_one(raw_origin, make_proxy, http_conn):
    # RFC 9110 15.2: a proxy MUST forward 1xx responses (even unexpected ones), and an
    # HTTP/1.1 client must get them in order before the final response.
    ro = raw_origin(
        by_target(
            {
                "/hints": [
                    b"HTTP/1.1 100 Continue\r\n\r\n",
                    b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n",
                    b"HTTP/1.1 199 Whatever\r\n\r\n",
                    ok(b"final"),
                ]
            }
        )
    )
    proxy = proxy_to(make_proxy, ro)
    c = http_conn(proxy.port)
    c.request("GET", "/hints")
    r = c.read_response()
    assert [i.status for i in r.interim] == [100, 103, 199], r
    assert r.interim[1].header("link") == "</s.css>; rel=preload"
    assert (r.status, r.body) == (200, b"final")
    assert c.roundtrip("GET", "/next").body == b"GET /next"


def test_interim_responses_are_not_sent_to_an_http10_client(raw_origin, make_proxy, raw_request):
    # RFC 9110 15.2: "A server MUST NOT send a 1xx response to an HTTP/1.0 client."
    ro = raw_origin(
        by_target({"/hints": [b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\n", ok(b"final")]})
    )
    proxy = proxy_to(make_proxy, ro)
    raw = raw_request(proxy.port, b"GET /hints HTTP/1.0\r\nHost: h\r\n\r\n")
    assert raw.startswith(b"HTTP/1.1 200 "), raw
    assert b"103" not in raw.split(b"\r\n", 1)[0]
    assert raw.count(b"HTTP/1.1 ") == 1, raw


def test_101_to_an_upgrade_request_tunnels_only_after_the_101(raw_origin, make_proxy, http_conn):
    # The 101's own bytes and what follows are the new protocol: the bytes the origin
    # sends after the 101 must reach the client verbatim, never parsed as HTTP.
    ro = raw_origin(
        by_target(
            {
                "/up": [
                    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: foo\r\n"
                    b"Connection: Upgrade\r\n\r\n" + STRAY
                ]
            }
        )
    )
    proxy = proxy_to(make_proxy, ro)
    c = http_conn(proxy.port)
    c.send(b"GET /up HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: foo\r\n\r\n")
    r = c.read_response()
    assert r.status == 101
    assert c.reader.read_exact(len(STRAY)) == STRAY


@pytest.mark.parametrize(
    "te,body",
    [
        (
            b"gzip",
            b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03\xcbH\xcd\xc9\xc9\x07\x00\x86\xa6\x106"
            b"\x05\x00\x00\x00",
        ),
        (b"chunked, chunked", b"f\r\n5\r\nhello\r\n0\r\n\r\n\r\n0\r\n\r\n"),
        (b"chunked, identity", b"5\r\nhello\r\n0\r\n\r\n"),
    ],
    ids=["gzip-only", "chunked-twice", "chunked-not-last"],
)
def test_response_transfer_coding_is_not_silently_dropped(
    te, body, raw_origin, make_proxy, http_conn
):
    # RFC 9112 6.3 rule 4: chunked not final -> the body runs to the close; 6.1: a
    # recipient MAY decode transfer codings "assuming that corresponding changes are
    # made to the Transfer-Encoding field value".  Dropping the field while passing the
    # still-coded bytes on hands the client a body that is not the representation
    # (the proxy answers 502 for "gzip, chunked"; here it must decode, keep the coding
    # named, or refuse).
    ro = raw_origin(
        by_target(
            {"/te": [b"HTTP/1.1 200 OK\r\nTransfer-Encoding: " + te + b"\r\n\r\n" + body, "close"]}
        )
    )
    proxy = proxy_to(make_proxy, ro)
    c = http_conn(proxy.port)
    c.send(b"GET /te HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
    raw, _ = recv_until_close(c.sock)
    status, headers, _ = parse_one(raw)
    codings = [
        t.strip().lower() for v in headers.get("transfer-encoding", []) for t in v.split(",")
    ]
    coding = te.split(b",")[0].decode()
    if status == 200:
        decoded = dechunk(raw.partition(b"\r\n\r\n")[2]) == b"hello"
        assert decoded or coding in codings[:-1], (raw, codings)
    else:
        assert status == 502, raw


def test_expect_100_rejected_by_origin_closes_and_drops_what_follows(
    raw_origin, make_proxy, http_conn
):
    # RFC 9110 10.1.1: the origin may answer with a final status instead of 100; the
    # client may then still send the body (or not).  The proxy sent the request on with
    # Content-Length: 5, so that connection is unusable, and the client connection must
    # be closed after the final response: the body bytes and anything pipelined behind
    # them must never turn into a request at the origin.
    ro = raw_origin(
        lambda req: [b"HTTP/1.1 417 Expectation Failed\r\nContent-Length: 0\r\n\r\n"],
        read_bodies=False,
    )
    proxy = proxy_to(make_proxy, ro)
    c = http_conn(proxy.port)
    c.send(P + b"Expect: 100-continue\r\nContent-Length: 5\r\n\r\n")
    r = c.read_response("POST")
    assert r.status == 417
    with contextlib.suppress(OSError):
        c.send(b"hello" + SMUGGLE)
    raw, _ = recv_until_close(c.sock)
    assert raw == b"", raw
    time.sleep(0.3)
    assert all("smuggled" not in q.target for q in ro.requests), [q.head for q in ro.requests]
    assert r.header("connection") == "close", r


def test_connection_close_request_stops_the_pipeline(origin, proxy, http_conn):
    # RFC 9112 9.6: after a request with "close" the server MUST NOT process further
    # requests on that connection.
    c = http_conn(proxy.port)
    c.send(b"GET /a HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n" + SMUGGLE)
    r = c.read_response()
    assert r.body == b"GET /a"
    assert c.at_eof()
    time.sleep(0.3)
    assert [q.target for q in origin.requests] == ["/a"]


def test_http10_request_without_keep_alive_stops_the_pipeline(origin, proxy, http_conn):
    c = http_conn(proxy.port)
    c.send(b"GET /a HTTP/1.0\r\nHost: h\r\n\r\n" + SMUGGLE)
    raw, _ = recv_until_close(c.sock)
    assert raw.count(b"HTTP/1.1 ") == 1, raw
    time.sleep(0.3)
    assert [q.target for q in origin.requests] == ["/a"]


def test_declined_upgrade_with_connection_close_stops_the_pipeline(
    raw_origin, make_proxy, http_conn
):
    # "Connection: close, Upgrade": the origin declines the upgrade with a 200; the
    # bytes behind the request are neither a tunnel nor a next request.
    ro = raw_origin(by_target({}))
    proxy = proxy_to(make_proxy, ro)
    c = http_conn(proxy.port)
    c.send(
        b"GET /up HTTP/1.1\r\nHost: h\r\nConnection: close, Upgrade\r\nUpgrade: foo\r\n\r\n"
        + SMUGGLE
    )
    raw, _ = recv_until_close(c.sock)
    assert raw.count(b"HTTP/1.1 ") == 1 and b"GET /up" in raw, raw
    time.sleep(0.3)
    assert [q.target for q in ro.requests] == ["/up"]
    assert b"smuggled" not in b"".join(bytes(x) for x in ro.received)


def test_accepted_upgrade_passes_pipelined_bytes_as_tunnel_data(raw_origin, make_proxy, http_conn):
    # After a 101 every byte the client sent behind the request belongs to the new
    # protocol (RFC 9110 7.8): it reaches the origin verbatim, not as a parsed request.
    ro = raw_origin(
        by_target(
            {
                "/up": [
                    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: foo\r\n"
                    b"Connection: Upgrade\r\n\r\n",
                    1.0,
                ]
            }
        )
    )
    proxy = proxy_to(make_proxy, ro)
    c = http_conn(proxy.port)
    c.send(b"GET /up HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: foo\r\n\r\n" + SMUGGLE)
    assert c.read_response().status == 101
    wait_for(lambda: bytes(ro.received[0]).endswith(SMUGGLE), 5, "tunnel bytes at the origin")
    assert ro.connections == 1


def test_upgrade_on_a_route_without_websocket_is_a_plain_request(raw_origin, make_proxy, http_conn):
    # websocket = false: Upgrade (e.g. h2c) is hop-by-hop and dropped, so a 101 from the
    # origin answers a request that did not ask to upgrade: 502, never a tunnel.
    ro = raw_origin(
        by_target(
            {
                "/up": [
                    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n"
                    b"Connection: Upgrade\r\n\r\n" + STRAY,
                    "close",
                ]
            }
        )
    )
    proxy = make_proxy(
        {
            "upstreams": {"app": {"servers": [ro.address]}},
            "routes": [{"path_prefix": "/", "upstream": "app", "websocket": False}],
        }
    )
    c = http_conn(proxy.port)
    c.send(
        b"GET /up HTTP/1.1\r\nHost: h\r\nConnection: Upgrade, HTTP2-Settings\r\n"
        b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n"
    )
    raw, _ = recv_until_close(c.sock)
    assert parse_one(raw)[0] == 502, raw
    assert b"smuggled" not in raw
    wait_for(lambda: ro.requests, 5, "the request")
    head = ro.requests[0].head.lower()
    assert b"upgrade:" not in head and b"http2-settings" not in head, head


def test_pipelined_requests_after_a_local_404_are_served_in_order(make_proxy, origin, http_conn):
    proxy = make_proxy({"routes": [{"host": "known", "path_prefix": "/", "upstream": "app"}]})
    c = http_conn(proxy.port)
    c.send(b"GET /a HTTP/1.1\r\nHost: unknown\r\n\r\nGET /b HTTP/1.1\r\nHost: known\r\n\r\n")
    assert c.read_response().status == 404
    assert c.read_response().body == b"GET /b"
    time.sleep(0.2)
    assert [q.target for q in origin.requests] == ["/b"]


def test_pipelined_request_behind_a_refused_connect_is_never_forwarded(origin, proxy, http_conn):
    c = http_conn(proxy.port)
    c.send(b"CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n" + SMUGGLE)
    raw, _ = recv_until_close(c.sock)
    assert parse_one(raw)[0] == 405 and raw.count(b"HTTP/1.1 ") == 1, raw
    settle_origin_untouched(origin)


@pytest.mark.parametrize(
    "data",
    [
        b"GET /x HTTP/1.1\r\nHost: h\r\nX-A : 1\r\n\r\n",
        b"GET /x HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        b"GET /x HTTP/1.1\r\nHost: h\r\nX-A: 1\r\n folded\r\n\r\n",
        b"GET /x HTTP/1.1\r\nHost: h\r\nX-A: 1\rX-B: 2\r\n\r\n",
        P + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + SMUGGLE,
    ],
    ids=["ws-before-colon", "two-hosts", "obs-fold", "bare-cr", "cl-te"],
)
def test_hostile_head_sent_one_byte_at_a_time_is_still_refused(data, origin, proxy, http_conn):
    # The incremental path (resume hint, the head end searched before the exact parse)
    # must reach the same verdict as the one-shot path.
    c = http_conn(proxy.port)
    for i in range(len(data)):
        try:
            c.send(data[i : i + 1])
        except OSError:
            break
    raw, _ = recv_until_close(c.sock)
    expect_refusal(raw, 400)
    settle_origin_untouched(origin)


@pytest.mark.parametrize(
    "method,status,cl",
    [
        ("HEAD", b"200 OK", b"abc"),
        ("HEAD", b"200 OK", b"5, 6"),
        ("HEAD", b"200 OK", b"-1"),
        ("GET", b"304 Not Modified", b"5, 6"),
        ("GET", b"304 Not Modified", b"+5"),
    ],
    ids=["head-letters", "head-differing-list", "head-negative", "304-differing-list", "304-plus"],
)
def test_invalid_content_length_on_a_bodiless_response_is_not_forwarded(
    method, status, cl, raw_origin, make_proxy, http_conn
):
    # RFC 9110 8.6: "a sender MUST NOT forward a message with a Content-Length header
    # field value that does not match the ABNF above" (Content-Length = 1*DIGIT).  For
    # HEAD/304 the proxy rightly ignores it for framing (RFC 9112 6.3 rule 1), but it
    # must then drop it (or refuse with 502), not pass the invalid value on.
    ro = raw_origin(
        by_target({"/x": [b"HTTP/1.1 " + status + b"\r\nContent-Length: " + cl + b"\r\n\r\n"]})
    )
    proxy = proxy_to(make_proxy, ro)
    c = http_conn(proxy.port)
    r = c.roundtrip(method, "/x")
    if r.status != 502:
        for v in r.header_all("content-length"):
            assert re.fullmatch(r"[0-9]+", v), r.raw
    assert c.roundtrip("GET", "/next").body == b"GET /next"


# ---------------------------------------------------------------------------------------------
# Request-target: the proxy must route on the same path the origin will serve
# ---------------------------------------------------------------------------------------------

ACL_ROUTES = {
    "routes": [
        {"path_prefix": "/admin", "return": 403, "body": "forbidden\n"},
        {"path_prefix": "/public/", "upstream": "app"},
    ]
}


@pytest.mark.parametrize(
    "target",
    ["/admin#/../public/x", "/admin%23/../public/x"],
    ids=["raw-hash", "encoded-hash-control"],
)
def test_fragment_in_request_target_does_not_bypass_a_route(target, make_proxy, origin, http_conn):
    # RFC 9112 3.2.1: origin-form = absolute-path [ "?" query ] -- no "#".  RFC 9112 3:
    # an invalid request-line SHOULD get a 400.  Routing on "/admin#/../public/x" as if
    # "#" were a path character sends the request to the /public/ upstream, whose
    # server, parsing the target as a URI reference (RFC 3986 3.5), serves /admin.
    proxy = make_proxy(ACL_ROUTES)
    c = http_conn(proxy.port)
    r = c.roundtrip("GET", target)
    if r.status == 200:
        [req] = origin.wait_requests(1)
        # what the origin's URI parser makes of it: urlsplit (conftest), then
        # dot-segment removal (RFC 3986 5.2.4)
        served = posixpath.normpath(req.path)
        assert served.startswith("/public/"), (req.target, served)
    else:
        assert r.status in (400, 403), r
