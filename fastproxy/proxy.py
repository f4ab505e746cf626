"""The embedding API: run fastproxy from a Python program.

cfg = fastproxy.Config.load("fastproxy.toml")
fastproxy.Proxy(cfg).run()                 # blocking, until SIGTERM/SIGINT

async with fastproxy.Proxy(cfg) as proxy:  # on the running loop, one process
    proxy.addresses                        # [("127.0.0.1", 43817)], port 0 allowed
    await proxy.reload(new_cfg)            # swap config, keep connections
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
from typing import Any

from fastproxy._protocols import make_client_factory
from fastproxy._runtime import Runtime
from fastproxy.config import Address, Config
from fastproxy.logs import AccessLog, setup_error_log

log = logging.getLogger("fastproxy")


class Proxy:
    """One fastproxy engine on one event loop (single process)."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._runtime: Any = None
        self._servers: dict[Address, asyncio.base_events.Server] = {}
        self._access: AccessLog | None = None
        self._stopped: asyncio.Event | None = None

    # -- lifecycle on a running loop ------------------------------------------
    async def start(
        self,
        sockets: dict[Address, socket.socket] | None = None,
        *,
        stats: tuple[Any, int, Any] | None = None,
    ) -> None:
        """Start serving.  `sockets` hands over already-bound listening sockets
        (the multi-process master owns them so that a reload never closes a
        socket with connections queued in it); otherwise each listen address
        is bound here with SO_REUSEPORT.  `stats` = (StatsRegion, slot,
        StatsIndex) makes this worker count into the master's shared region."""
        loop = asyncio.get_running_loop()
        index = stats[2] if stats is not None else None
        self._runtime = Runtime(self.config, loop, log, index)
        if stats is not None:
            self._runtime.attach_stats(stats[0], stats[1])
        self._stopped = asyncio.Event()
        self._set_access_log(self.config)
        self._runtime.start()
        await self._listen(self.config.server.listen, sockets or {})

    async def _listen(
        self, addresses: tuple[Address, ...], sockets: dict[Address, socket.socket]
    ) -> None:
        loop = asyncio.get_running_loop()
        factory = make_client_factory(self._runtime)
        for addr in addresses:
            if addr in self._servers:
                continue
            sock = sockets.get(addr)
            if sock is not None:
                self._servers[addr] = await loop.create_server(factory, sock=sock, backlog=1024)
            else:
                self._servers[addr] = await loop.create_server(
                    factory, addr.host, addr.port, reuse_port=True, backlog=1024
                )
            log.info("listening on %s", ", ".join(f"{h}:{p}" for h, p in self._bound(addr)))

    def _bound(self, addr: Address) -> list[tuple[str, int]]:
        return [s.getsockname()[:2] for s in self._servers[addr].sockets]

    def _set_access_log(self, config: Config) -> None:
        target = config.log.access
        if self._access is not None and (target == "off" or target != self._access.target):
            self._access.close()
            self._access = None
        if target != "off" and self._access is None:
            self._access = AccessLog(target)
            self._access.start()
        self._runtime.access_log = self._access
        self._runtime.access_format = config.log.format

    def stats(self) -> dict[str, Any]:
        """This engine's counters: requests by status class, bytes, connections,
        compression (`compression`: the 16 counters of fp_stats.h, in order)."""
        return dict(self._runtime.local_stats()) if self._runtime is not None else {}

    @property
    def addresses(self) -> list[tuple[str, int]]:
        """Where the proxy listens, with the real port when 0 was asked for."""
        return [a for addr in self._servers for a in self._bound(addr)]

    async def reload(
        self, config: Config, sockets: dict[Address, socket.socket] | None = None
    ) -> None:
        """Swap to a new config without dropping connections: requests in
        flight finish with the routes they started with; listeners that stay
        are kept, new ones opened, removed ones closed."""
        self._runtime.apply(config)
        self._set_access_log(config)
        wanted = set(config.server.listen)
        for addr in [a for a in self._servers if a not in wanted]:
            self._servers.pop(addr).close()
        await self._listen(config.server.listen, sockets or {})
        self.config = config
        log.info("configuration reloaded")

    async def stop(self, timeout: float | None = None) -> None:
        """Graceful stop: stop accepting, let requests in flight finish (up to
        shutdown_timeout), then close what is left."""
        if self._runtime is None:
            return
        rt = self._runtime
        rt.closing = True
        for srv in self._servers.values():
            srv.close()
        self._servers.clear()
        limit = self.config.server.shutdown_timeout if timeout is None else timeout
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit
        while True:
            for c in list(rt.conns):
                close_if_idle = getattr(c, "close_if_idle", None)
                if close_if_idle is not None:
                    close_if_idle()
            busy = [c for c in rt.conns if hasattr(c, "close_if_idle")]
            if not busy or loop.time() >= deadline:
                break
            await asyncio.sleep(0.05)
        for c in list(rt.conns):
            c.abort_now()
        rt.stop()
        if self._access is not None:
            self._access.close()
            self._access = None
        if self._stopped is not None:
            self._stopped.set()
        self._runtime = None

    async def __aenter__(self) -> Proxy:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop(timeout=0 if exc[0] is not None else None)

    async def serve_forever(self) -> None:
        """Run until SIGTERM/SIGINT (graceful) or SIGQUIT (immediate)."""
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        immediate = False

        def request_stop(now: bool) -> None:
            nonlocal immediate
            immediate = immediate or now
            stop.set()

        loop.add_signal_handler(signal.SIGTERM, request_stop, False)
        loop.add_signal_handler(signal.SIGINT, request_stop, False)
        loop.add_signal_handler(signal.SIGQUIT, request_stop, True)
        if self._access is not None:
            loop.add_signal_handler(signal.SIGUSR1, self._access.reopen)
        try:
            await stop.wait()
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGUSR1):
                loop.remove_signal_handler(sig)
        log.info("stopping (%s)", "immediate" if immediate else "graceful")
        await self.stop(timeout=0 if immediate else None)

    def run(self, sockets: dict[Address, socket.socket] | None = None) -> None:
        """Blocking: start on a new uvloop loop and serve until a stop signal."""
        import uvloop

        async def main() -> None:
            await self.start(sockets)
            await self.serve_forever()

        setup_error_log(self.config.log.error, self.config.log.level)
        uvloop.run(main())
