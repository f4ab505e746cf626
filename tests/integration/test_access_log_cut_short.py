"""Every request gets its access-log line, also when the client cuts it short
(docs/config.md, [log]): the status of the answer it was getting with the
bytes sent so far, or nginx's 499 when none had started; an upgraded
connection is logged, with 101, when it closes; and a graceful stop that
aborts a request logs it before the log closes."""

from __future__ import annotations

import asyncio
import json
import socket
import struct
from typing import Any

import pytest
from support import wait_for

import fastproxy


def _lines(p: Any) -> list[dict[str, Any]]:
    return [json.loads(ln) for ln in p.stderr_text().splitlines() if ln.startswith("{")]


def _logged(p: Any, request: str) -> dict[str, Any]:
    def find() -> dict[str, Any] | None:
        return next((r for r in _lines(p) if r["request"] == request), None)

    return wait_for(find, 5, f"an access-log line for {request!r}")


def _reset(s: socket.socket) -> None:
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


def test_requests_the_client_cut_short_are_logged(make_proxy: Any, origin: Any) -> None:
    p = make_proxy({"log": {"access": "stderr", "format": "json"}})

    # reset in the middle of the answer
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", p.port))
    s.sendall(b"GET /stream?mib=8 HTTP/1.1\r\nHost: t\r\n\r\n")
    assert s.recv(4096).startswith(b"HTTP/1.1 200")
    _reset(s)
    cut = _logged(p, "GET /stream?mib=8 HTTP/1.1")
    assert cut["status"] == 200
    assert 0 < cut["bytes"] < 8 << 20

    # reset while the server has not answered yet
    s = socket.create_connection(("127.0.0.1", p.port))
    s.sendall(b"GET /slow?delay=2 HTTP/1.1\r\nHost: t\r\n\r\n")
    wait_for(lambda: any(r.target.startswith("/slow") for r in origin.requests), 5, "it upstream")
    _reset(s)
    gone = _logged(p, "GET /slow?delay=2 HTTP/1.1")
    assert (gone["status"], gone["bytes"]) == (499, 0)

    with socket.create_connection(("127.0.0.1", p.port)) as s:  # and the rest as before
        s.sendall(b"GET /bytes?n=5 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        while s.recv(4096):
            pass
    assert _logged(p, "GET /bytes?n=5 HTTP/1.1")["status"] == 200


def test_an_upgraded_connection_is_logged_when_it_closes(make_proxy: Any, origin: Any) -> None:
    p = make_proxy({"log": {"access": "stderr", "format": "json"}})
    with socket.create_connection(("127.0.0.1", p.port), timeout=5) as s:
        s.sendall(
            b"GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        assert s.recv(4096).startswith(b"HTTP/1.1 101")
        assert not [r for r in _lines(p) if r["request"] == "GET /ws HTTP/1.1"]  # still open
    ws = _logged(p, "GET /ws HTTP/1.1")
    assert ws["status"] == 101 and ws["bytes"] > 0


def test_a_request_a_stop_aborts_is_logged_before_the_log_closes(
    origin: Any, tmp_path: Any
) -> None:
    """Proxy.stop() aborts what is still running when its time is up; those
    connections' connection_lost() comes a loop turn later, and must still
    find the access log open."""
    uvloop = pytest.importorskip("uvloop")
    log = tmp_path / "access.log"
    config = fastproxy.Config.from_dict(
        {
            "server": {"listen": ["127.0.0.1:0"], "pid_file": False},
            "log": {"access": str(log), "format": "json"},
            "upstreams": {"app": {"servers": [origin.address]}},
            "routes": [{"path_prefix": "/", "upstream": "app"}],
        }
    )

    def client(port: int) -> bytes:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(b"GET /slow?delay=3 HTTP/1.1\r\nHost: t\r\n\r\n")
            return s.recv(4096)  # b"": closed by the stop

    async def main() -> bytes:
        proxy = fastproxy.Proxy(config)
        await proxy.start()
        [(_, port)] = proxy.addresses
        loop = asyncio.get_running_loop()
        answer = loop.run_in_executor(None, client, port)
        while not any(r.target.startswith("/slow") for r in origin.requests):
            await asyncio.sleep(0.01)
        await proxy.stop(timeout=0)
        return await asyncio.wait_for(answer, 10)

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        assert runner.run(main()) == b""
    [rec] = [json.loads(ln) for ln in log.read_text().splitlines()]
    assert (rec["request"], rec["status"], rec["bytes"]) == ("GET /slow?delay=3 HTTP/1.1", 499, 0)
