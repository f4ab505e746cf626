"""A response after which the connection closes leaves with the FIN in its
last segment (ClientProtocol.fin_follows: its last bytes are sent with
MSG_MORE, the close adds the FIN): one loopback delivery and one wake-up of
the client instead of two.  Watched on the wire with a packet
socket on the loopback interface (needs CAP_NET_RAW: root, as in CI)."""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest

ETH_P_ALL = 0x0003
PACKET_HOST = 0
FIN = 0x01


@dataclass
class Segment:
    t: float
    src: int
    dst: int
    flags: int
    payload: bytes


class Capture:
    """TCP segments on lo between 127.0.0.1 ports of interest, each seen once
    (as received, PACKET_HOST)."""

    def __init__(self, ports: set[int]) -> None:
        self.ports = ports
        self.segments: list[Segment] = []
        self._stop = threading.Event()
        self._sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        # every frame on lo arrives here twice (out and in): room, so none is dropped
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        self._sock.bind(("lo", 0))
        self._sock.settimeout(0.05)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                frame, addr = self._sock.recvfrom(1 << 17)
            except TimeoutError:
                continue
            if addr[2] != PACKET_HOST or len(frame) < 14 + 20 or frame[12:14] != b"\x08\x00":
                continue
            ip = frame[14:]
            ihl = (ip[0] & 0x0F) * 4
            total = struct.unpack("!H", ip[2:4])[0]
            if ip[9] != socket.IPPROTO_TCP:
                continue
            tcp = ip[ihl:total]
            src, dst = struct.unpack("!HH", tcp[:4])
            if src in self.ports or dst in self.ports:
                doff = (tcp[12] >> 4) * 4
                self.segments.append(Segment(time.monotonic(), src, dst, tcp[13], tcp[doff:]))

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self._sock.close()

    def wait_fin(self, src: int, dst: int) -> None:
        """The reader saw EOF; the capture thread may lag it by a moment."""
        deadline = time.monotonic() + 5
        while not any(s.flags & FIN for s in self.between(src, dst)):
            assert time.monotonic() < deadline, "no FIN on the wire"
            time.sleep(0.01)

    def between(self, src: int, dst: int) -> list[Segment]:
        return [s for s in self.segments if s.src == src and s.dst == dst]


@contextmanager
def capture(*ports: int) -> Iterator[Capture]:
    try:
        c = Capture(set(ports))
    except PermissionError:
        pytest.skip("a packet socket needs CAP_NET_RAW")
    try:
        yield c
    finally:
        c.close()


def _closing_exchange(port: int, target: str) -> tuple[int, bytes]:
    """Send one Connection: close request, read to the end; (local port, bytes)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    with s:
        local = s.getsockname()[1]
        s.sendall(f"GET {target} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return local, data


def _assert_fin_rides_last_data(cap: Capture, proxy_port: int, client_port: int) -> None:
    cap.wait_fin(proxy_port, client_port)
    out = cap.between(proxy_port, client_port)
    data = [s for s in out if s.payload]
    assert data, "no response segment captured"
    fins = [s for s in out if s.flags & FIN]
    assert len(fins) == 1 and fins[0] is data[-1], [(s.flags, len(s.payload)) for s in out]


@pytest.mark.parametrize("n", [100, 100_000])
def test_proxied_response_and_fin_leave_together(make_proxy: Any, n: int) -> None:
    p = make_proxy()
    _closing_exchange(p.port, "/bytes?n=10")  # the upstream connection exists now
    with capture(p.port) as cap:
        local, data = _closing_exchange(p.port, f"/bytes?n={n}")
        head, body = data.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 200") and len(body) == n
        _assert_fin_rides_last_data(cap, p.port, local)


@pytest.mark.parametrize("n", [100, 20_000])  # bodies sent by sendmsg (sendfile: from 24 KiB)
def test_cache_hit_and_fin_leave_together(make_proxy: Any, n: int) -> None:
    p = make_proxy(
        {
            "cache": {"size": "32MiB"},
            "routes": [{"path_prefix": "/", "upstream": "app", "cache": True}],
        }
    )
    target = f"/cache/fin?n={n}&hdr=Cache-Control:max-age=60"
    _closing_exchange(p.port, target)  # stored
    with capture(p.port) as cap:
        local, data = _closing_exchange(p.port, target)
        assert b"X-Cache: HIT" in data.split(b"\r\n\r\n", 1)[0]
        assert len(data.split(b"\r\n\r\n", 1)[1]) == n
        _assert_fin_rides_last_data(cap, p.port, local)


def test_no_fin_riding_when_the_client_did_not_ask_to_close(make_proxy: Any) -> None:
    """keepalive_requests ends a keep-alive connection the client meant to
    reuse: it may already be sending its next request, and a close with
    unread data is a reset that would drop bytes MSG_MORE still held.  So
    the response leaves at once and the FIN follows on its own."""
    p = make_proxy({"server": {"keepalive_requests": 1}})
    _closing_exchange(p.port, "/bytes?n=10")  # the upstream connection exists now
    with capture(p.port) as cap:
        s = socket.create_connection(("127.0.0.1", p.port), timeout=10)
        with s:
            local = s.getsockname()[1]
            s.sendall(b"GET /bytes?n=100 HTTP/1.1\r\nHost: t\r\n\r\n")
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        assert b"Connection: close" in data.split(b"\r\n\r\n", 1)[0]
        cap.wait_fin(p.port, local)
    out = cap.between(p.port, local)
    last_data = [x for x in out if x.payload][-1]
    assert not last_data.flags & FIN, [(x.flags, len(x.payload)) for x in out]


def test_streamed_close_response_is_not_held_back(make_proxy: Any, origin: Any) -> None:
    """A body still streaming in (events 0.5 s apart, the connection closes
    after it) is forwarded as it comes: each event leaves the proxy within
    0.15 s of reaching it, where MSG_MORE or a cork would hold it for up to
    0.2 s."""
    p = make_proxy()
    with capture(p.port, origin.port) as cap:
        local, data = _closing_exchange(p.port, "/events?mode=chunked&n=3&gap=0.5")
        assert data.count(b"data: event") == 3
        cap.wait_fin(p.port, local)
    events = [b"event %d" % i for i in range(3)]
    for ev in events:
        seen_in = [s.t for s in cap.segments if s.src == origin.port and ev in s.payload]
        seen_out = [s.t for s in cap.between(p.port, local) if ev in s.payload]
        assert seen_in and seen_out, ev
        assert seen_out[0] - seen_in[0] < 0.15, (ev, seen_out[0] - seen_in[0])
