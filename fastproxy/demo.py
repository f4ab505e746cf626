"""The built-in demo: `fastproxy run` with no config at all.

Starts two tiny backends on loopback, each answering with its own name, and
a proxy on 127.0.0.1:8080 balancing across them, so `curl localhost:8080/`
shows the proxy and its round-robin at work.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastproxy._http1 import ParseError, parse_request
from fastproxy.config import Config

DEMO_LISTEN = "127.0.0.1:8080"


class DemoBackend(asyncio.Protocol):
    """A minimal keep-alive HTTP/1.1 origin that names itself."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.buf = b""
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            try:
                head = parse_request(self.buf)
            except ParseError:
                self.transport.close()
                return
            if head is None:
                return
            need = head.head_len + (head.content_length or 0)
            if len(self.buf) < need:
                return
            self.buf = self.buf[need:]
            body = (
                f"Hello from {self.name}: you asked for {head.target.decode(errors='replace')}\n"
            ).encode()
            self.transport.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                + b"X-Backend: "
                + self.name.encode()
                + b"\r\n"
                + b"Content-Length: "
                + str(len(body)).encode()
                + b"\r\n\r\n"
                + (body if head.method != b"HEAD" else b"")
            )
            if not head.keep_alive:
                self.transport.close()
                return


async def start_backends(count: int = 2) -> tuple[list[asyncio.base_events.Server], list[str]]:
    loop = asyncio.get_running_loop()
    servers, addresses = [], []
    for i in range(1, count + 1):
        name = f"demo-backend-{i}"
        srv = await loop.create_server(lambda name=name: DemoBackend(name), "127.0.0.1", 0)
        servers.append(srv)
        host, port = srv.sockets[0].getsockname()[:2]
        addresses.append(f"{host}:{port}")
    return servers, addresses


def demo_config(backends: list[str], listen: str = DEMO_LISTEN) -> Config:
    return Config.from_dict(
        {
            "server": {"listen": [listen], "pid_file": False},
            "log": {"access": "stdout"},
            "upstreams": {"demo": {"servers": backends}},
            "routes": [{"path_prefix": "/", "upstream": "demo"}],
        },
        source="<built-in demo>",
    )
