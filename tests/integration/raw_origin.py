"""A byte-level scripted origin for hostile-response tests, and the helpers those tests
share: RawOrigin answers each request with exactly the steps a script gives (bytes, a pause,
a close) and records every byte each connection received, so a test can see what the proxy
sent upstream and feed it any response at all.  The `raw_origin` fixture (conftest.py)
makes them."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from fastproxy import procinfo


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


def ok(body: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


STRAY = b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\nX-Stray: yes\r\n\r\nsmuggled"


def proxy_to(make_proxy, ro: RawOrigin, **server: Any):
    cfg: dict[str, Any] = {"upstreams": {"app": {"servers": [ro.address]}}}
    if server:
        cfg["server"] = server
    return make_proxy(cfg)


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
