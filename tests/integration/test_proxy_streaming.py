"""Streaming through the proxy process: large bodies with backpressure (bounded RSS) and a
WebSocket tunnel."""

from __future__ import annotations

import base64
import hashlib
import os
import threading
import time

import pytest

MiB = 1024 * 1024
RSS_LIMIT_KIB = 30 * 1024
WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class RssSampler:
    """Samples the proxy's VmRSS every `interval` seconds in a thread."""

    def __init__(self, proxy, interval: float = 0.1) -> None:
        self.proxy = proxy
        self.interval = interval
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.samples.append(self.proxy.rss_kib())
            except (OSError, RuntimeError):
                return
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(2)

    @property
    def peak(self) -> int:
        return max(self.samples)


def _warm_up(proxy, http_conn) -> None:
    """One small request so lazily created state exists before the baseline is taken."""
    c = http_conn(proxy.port)
    for target in ("/bytes?n=70000", "/chunked?n=70000&parts=3", "/warm"):
        assert c.roundtrip("GET", target).status == 200
    assert c.roundtrip("POST", "/echo", body=b"w" * 60000).status == 200
    c.close()


class SlowReader:
    """Reads one response body slowly from an HTTPConn: small pieces, at most `rate` bytes per
    second on average, and full stalls (no reads at all) at given offsets.  Handles
    Content-Length, chunked and close-delimited bodies; counts bytes instead of keeping them."""

    def __init__(self, conn, rate: float, piece: int, stalls: dict[int, float], limit: float):
        self.c = conn
        self.rate = rate
        self.piece = piece
        self.stalls = sorted(stalls.items())
        self.deadline = time.monotonic() + limit
        self.got = 0
        self.t0 = time.monotonic()

    def _throttle(self) -> None:
        now = time.monotonic()
        assert now < self.deadline, f"download too slow: {self.got} bytes before the deadline"
        if self.stalls and self.got >= self.stalls[0][0]:
            pause = self.stalls.pop(0)[1]
            time.sleep(pause)
            self.t0 += pause  # no catching up at full speed after a stall
        ahead = self.got / self.rate - (now - self.t0)
        if ahead > 0:
            time.sleep(min(ahead, 0.05))
        self.c.reader.deadline = min(self.deadline, time.monotonic() + 10)

    def _data(self, n: int | None) -> None:
        """n bytes of body (None: until EOF)."""
        while n is None or n > 0:
            self._throttle()
            want = self.piece if n is None else min(self.piece, n)
            chunk = self.c.reader.read_some(want)
            if not chunk:
                if n is None:
                    return
                raise EOFError(f"EOF after {self.got} body bytes")
            self.got += len(chunk)
            if n is not None:
                n -= len(chunk)

    def read(self) -> tuple[list[tuple[str, str]], str, int]:
        r = self.c.reader
        r.deadline = self.deadline
        try:
            head = r.read_until(b"\r\n\r\n")
            assert head is not None, "closed before the response head"
            lines = head[:-4].decode("latin-1").split("\r\n")
            assert lines[0].startswith("HTTP/1.1 200"), lines[0]
            headers = [
                (k.strip().lower(), v.strip())
                for k, _, v in (line.partition(":") for line in lines[1:])
            ]
            hmap = dict(headers)
            self.t0 = time.monotonic()
            if "chunked" in hmap.get("transfer-encoding", ""):
                framing = "chunked"
                while True:
                    size = int(r.read_until(b"\r\n").split(b";")[0], 16)
                    if size == 0:
                        while r.read_until(b"\r\n") != b"\r\n":
                            pass
                        break
                    self._data(size)
                    assert r.read_exact(2) == b"\r\n"
            elif "content-length" in hmap:
                framing = "length"
                self._data(int(hmap["content-length"]))
            else:
                framing = "close"
                self._data(None)
            return headers, framing, self.got
        finally:
            r.deadline = None


def _slow_download(proxy, http_conn, target: str, total: int, rate: float, stalls, limit):
    _warm_up(proxy, http_conn)
    time.sleep(0.2)
    baseline = proxy.rss_kib()
    c = http_conn(proxy.port, timeout=10, rcvbuf=8192)
    with RssSampler(proxy) as rss:
        c.request("GET", target)
        _, framing, got = SlowReader(c, rate, 16 * 1024, stalls, limit).read()
    growth = rss.peak - baseline
    assert got == total, f"body incomplete: {got} of {total} bytes ({framing})"
    assert len(rss.samples) > 10, rss.samples
    assert growth < RSS_LIMIT_KIB, (
        f"RSS grew by {growth} KiB (baseline {baseline} KiB, peak {rss.peak} KiB); "
        f"samples: {rss.samples[:: max(1, len(rss.samples) // 20)]}"
    )
    return c, framing


@pytest.mark.slow
def test_slow_reader_200mib_download_keeps_rss_bounded(origin, proxy, http_conn):
    """200 MiB from a fast origin to a client that reads slowly (8 KiB receive buffer, 16 KiB
    reads, 12 MiB/s on average and two 1.5 s stalls): the proxy must apply backpressure
    instead of buffering, so its RSS stays within 30 MiB of the baseline, and every byte
    arrives."""
    c, framing = _slow_download(
        proxy,
        http_conn,
        "/stream?mib=200",
        200 * MiB,
        rate=12 * MiB,
        stalls={40 * MiB: 1.5, 120 * MiB: 1.5},
        limit=60,
    )
    assert framing == "length"
    # the connection is still in sync afterwards
    assert c.roundtrip("GET", "/after").body == b"GET /after"


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["chunked", "close"])
def test_slow_reader_unsized_download_keeps_rss_bounded(origin, proxy, http_conn, mode):
    """The same for a chunked origin body, and a close-delimited one that the proxy re-frames
    as chunked for the HTTP/1.1 client."""
    c, framing = _slow_download(
        proxy,
        http_conn,
        f"/stream?mib=48&mode={mode}",
        48 * MiB,
        rate=24 * MiB,
        stalls={16 * MiB: 1.5},
        limit=20,
    )
    assert framing == "chunked"
    assert c.roundtrip("GET", "/after").body == b"GET /after"


@pytest.mark.slow
def test_50mib_upload_to_slow_sink_keeps_rss_bounded(origin, proxy, http_conn):
    """50 MiB uploaded by a fast client to an origin that reads at 20 MiB/s: the proxy must
    stop reading from the client while the origin lags, so RSS stays bounded."""
    total = 50 * MiB
    _warm_up(proxy, http_conn)
    c = http_conn(proxy.port, timeout=30)
    # Warm the upstream connection on this client connection too, so the upload itself
    # goes to a pooled upstream connection.
    assert c.roundtrip("GET", "/warm2").status == 200
    time.sleep(0.2)
    baseline = proxy.rss_kib()
    block = os.urandom(256 * 1024)
    with RssSampler(proxy) as rss:
        c.request("POST", "/sink?rate=20", headers=[("Content-Length", str(total))])
        sent = 0
        deadline = time.monotonic() + 40
        while sent < total:
            assert time.monotonic() < deadline, f"upload too slow: {sent} of {total}"
            c.send(block)
            sent += len(block)
        r = c.read_response(method="POST", timeout=30)
    assert r.status == 200, r
    assert r.body == str(total).encode()
    assert origin.requests[-1].body_len == total
    growth = rss.peak - baseline
    assert growth < RSS_LIMIT_KIB, (
        f"RSS grew by {growth} KiB (baseline {baseline} KiB, peak {rss.peak} KiB); "
        f"samples: {rss.samples[::10]}"
    )


@pytest.mark.slow
def test_50mib_chunked_upload_to_sink(origin, proxy, http_conn):
    total = 50 * MiB
    c = http_conn(proxy.port, timeout=30)
    assert c.roundtrip("GET", "/warm").status == 200
    baseline = proxy.rss_kib()
    block = os.urandom(256 * 1024)
    chunk = b"%x\r\n%s\r\n" % (len(block), block)
    with RssSampler(proxy) as rss:
        c.request("POST", "/sink?rate=40", headers=[("Transfer-Encoding", "chunked")])
        for _ in range(total // len(block)):
            c.send(chunk)
        c.send(b"0\r\n\r\n")
        r = c.read_response(method="POST", timeout=30)
    assert r.status == 200, r
    assert r.body == str(total).encode()
    assert rss.peak - baseline < RSS_LIMIT_KIB, (baseline, rss.samples[::10])


# ---------------------------------------------------------------------------------------------
# WebSocket
# ---------------------------------------------------------------------------------------------


def _ws_handshake(c, key: str, target: str = "/ws"):
    c.request(
        "GET",
        target,
        headers=[
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", key),
            ("Sec-WebSocket-Version", "13"),
        ],
    )
    return c.read_response()


def test_websocket_echo_through_proxy(origin, proxy, http_conn, ws_codec):
    key = base64.b64encode(os.urandom(16)).decode()
    c = http_conn(proxy.port)
    r = _ws_handshake(c, key)
    assert r.status == 101, r
    assert "websocket" in (r.header("upgrade") or "").lower()
    assert "upgrade" in (r.header("connection") or "").lower()
    want = base64.b64encode(hashlib.sha1(key.encode() + WS_GUID).digest()).decode()
    assert r.header("sec-websocket-accept") == want

    [req] = origin.requests
    assert req.header("upgrade") == "websocket"
    assert "upgrade" in (req.header("connection") or "").lower()
    assert req.header("sec-websocket-key") == key

    c.send(ws_codec.frame(1, "hello, wörld".encode()))
    assert ws_codec.read_frame(c) == (1, False, "hello, wörld".encode())

    big = os.urandom(70000)  # 64-bit length form
    c.send(ws_codec.frame(2, big))
    assert ws_codec.read_frame(c) == (2, False, big)

    c.send(ws_codec.frame(9, b"ping!"))
    assert ws_codec.read_frame(c) == (10, False, b"ping!")

    # Several frames in one write, then one frame split across writes.
    c.send(b"".join(ws_codec.frame(1, f"m{i}".encode()) for i in range(5)))
    for i in range(5):
        assert ws_codec.read_frame(c) == (1, False, f"m{i}".encode())
    frame = ws_codec.frame(1, b"split frame")
    c.send(frame[:3])
    time.sleep(0.05)
    c.send(frame[3:])
    assert ws_codec.read_frame(c) == (1, False, b"split frame")

    c.send(ws_codec.frame(8, (1000).to_bytes(2, "big")))
    assert ws_codec.read_frame(c) == (8, False, (1000).to_bytes(2, "big"))
    assert c.at_eof(timeout=3)
    # the client's masked frames reached the origin still masked (RFC 6455 5.1)
    assert origin.ws_frames and all(masked for _, masked, _ in origin.ws_frames)


def test_websocket_101_keeps_upgrade_header(origin, proxy, http_conn, ws_codec):
    """The response half of the handshake on its own: ``/ws?lenient=1`` accepts the request
    even if the proxy lost its Upgrade field.  A 101 must carry ``Upgrade`` (RFC 9110 7.8,
    15.2.2) and a WebSocket client fails the handshake without ``Upgrade: websocket``
    (RFC 6455 4.1)."""
    key = base64.b64encode(os.urandom(16)).decode()
    c = http_conn(proxy.port)
    r = _ws_handshake(c, key, "/ws?lenient=1")
    assert r.status == 101, r
    assert "upgrade" in (r.header("connection") or "").lower(), r
    assert (r.header("upgrade") or "").lower() == "websocket", r
    c.send(ws_codec.frame(1, b"after 101"))
    assert ws_codec.read_frame(c) == (1, False, b"after 101")


def test_websocket_tunnel_early_frame_and_large_frames(origin, proxy, http_conn, ws_codec):
    """Tunnel behaviour, independent of how the handshake headers are relayed (the origin's
    ``/ws?lenient=1`` accepts a handshake without ``Upgrade``): a frame sent in the same write
    as the handshake is delivered after the 101, and 4 MiB frames cross both ways while the
    client is still writing (backpressure in the tunnel, no deadlock)."""
    key = base64.b64encode(os.urandom(16)).decode()
    c = http_conn(proxy.port, timeout=20)
    handshake = c.build(
        "GET",
        "/ws?lenient=1",
        headers=[
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", key),
            ("Sec-WebSocket-Version", "13"),
        ],
    )
    c.send(handshake + ws_codec.frame(1, b"early"))
    r = c.read_response()
    assert r.status == 101, r
    assert ws_codec.read_frame(c) == (1, False, b"early")
    big = os.urandom(4 * MiB)
    for _ in range(2):
        sender = threading.Thread(target=c.send, args=(ws_codec.frame(2, big),), daemon=True)
        sender.start()
        assert ws_codec.read_frame(c, timeout=20) == (2, False, big)
        sender.join(20)
        assert not sender.is_alive()


def test_websocket_refused_by_origin_is_plain_response(origin, proxy, http_conn):
    """An Upgrade the origin declines (no 101) is relayed as an ordinary response."""
    c = http_conn(proxy.port)
    c.request("GET", "/ws", headers=[("Upgrade", "websocket"), ("Connection", "Upgrade")])
    r = c.read_response()
    assert r.status == 400, r
    assert r.body == b"not a websocket handshake"


def test_websocket_outlives_read_timeout_after_backpressure(make_proxy, http_conn, ws_codec):
    """A tunnel has the client's websocket_idle_timeout, not the server's
    read_timeout: a client that fell behind (the server's echo of 8 MiB,
    more than the sockets hold, queued in the proxy) and caught up keeps its
    tunnel past read_timeout."""
    p = make_proxy({"upstreams": {"app": {"read_timeout": "1s"}}})
    c = http_conn(p.port, timeout=20, rcvbuf=4096)
    r = _ws_handshake(c, base64.b64encode(os.urandom(16)).decode())
    assert r.status == 101, r
    big = os.urandom(8 * MiB)
    c.send(ws_codec.frame(2, big))
    time.sleep(0.5)  # not reading: the echo backs up in the proxy
    assert ws_codec.read_frame(c, timeout=20) == (2, False, big)
    time.sleep(2)  # twice read_timeout, the tunnel idle
    c.send(ws_codec.frame(1, b"still here"))
    assert ws_codec.read_frame(c, timeout=5) == (1, False, b"still here")
    assert "upstream read timeout" not in p.stderr_text()
