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
import os
import signal
import socket
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from fastproxy import _cache
from fastproxy._protocols import SockServer, make_client_factory, use_cache_region
from fastproxy._runtime import Runtime
from fastproxy.config import Address, Config, ListenOptions
from fastproxy.listeners import open_group
from fastproxy.logs import AccessLog, setup_error_log
from fastproxy.policy import Policy
from fastproxy.tls import TLSError, listener_runtimes

log = logging.getLogger("fastproxy")


def _same_but_certs(a: ListenOptions, b: ListenOptions) -> bool:
    """Equal apart from the certificates (which a CertSet swap can change)."""
    if a.tls is None or b.tls is None:
        return a == b
    return replace(a, tls=replace(a.tls, certificates=())) == replace(
        b, tls=replace(b.tls, certificates=())
    )


# Plain-TCP listeners through uvloop's server and transports, as before
# fastproxy had its own (README, "Embedding"): for A/B measurements.
UVLOOP_ACCEPT = os.environ.get("FASTPROXY_UVLOOP_ACCEPT", "") not in ("", "0")


def _bind(addr: Address) -> socket.socket:
    """What loop.create_server(host, port, reuse_port=True) binds: a
    listening socket of addr's family, SO_REUSEPORT, v6-only for IPv6.
    Raises ListenError (an OSError) naming the address."""
    return open_group(addr, addr.port, 1)[0]


class Proxy:
    """One fastproxy engine on one event loop (single process)."""

    def __init__(self, config: Config, *, policies: Mapping[str, Policy] | None = None) -> None:
        """`policies`: {upstream name: a fastproxy.Policy} replacing that
        upstream's `balance` method with Python code (fastproxy.policy)."""
        unknown = set(policies or {}) - set(config.upstreams)
        if unknown:
            raise ValueError(f"policies for unknown upstreams: {', '.join(sorted(unknown))}")
        self.config = config
        self.policies = dict(policies or {})
        self._runtime: Any = None
        self._servers: dict[Address, asyncio.base_events.Server] = {}
        self._access: AccessLog | None = None
        self._stopped: asyncio.Event | None = None
        # per listen address with options: (ListenerRuntime, SSLContext|None, CertSet holder)
        self._listeners: dict[Address, Any] = {}
        self._cache: _cache.CacheRegion | None = None  # the region this Proxy made, if any

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
        self._listeners = listener_runtimes(self.config)  # TLSError names a bad file
        index = stats[2] if stats is not None else None
        self._runtime = Runtime(self.config, loop, log, index, self.policies)
        if stats is not None:
            self._runtime.attach_stats(stats[0], stats[1])
        if self.config.cache is not None and _cache.current() is None:
            self._own_cache(self.config)  # embedded: no master made one
        self._stopped = asyncio.Event()
        self._set_access_log(self.config)
        self._runtime.start()
        await self._listen(self.config.server.listen, sockets or {})

    def _own_cache(self, config: Config) -> None:
        """[cache] with no master: this process's own region, in memory only
        it maps (a worker gets the master's, shared by all workers)."""
        cc = config.cache
        assert cc is not None
        region = _cache.CacheRegion.create(
            cc.size, cc.max_entry_size, cc.max_entries, sendfile=cc.sendfile
        )
        region.attach()
        use_cache_region(region)
        self._cache = region

    async def _listen(
        self, addresses: tuple[Address, ...], sockets: dict[Address, socket.socket]
    ) -> None:
        loop = asyncio.get_running_loop()
        for addr in addresses:
            if addr in self._servers:
                continue
            listener, ctx, _ = self._listeners.get(addr, (None, None, None))
            factory = make_client_factory(self._runtime, listener)
            kw: dict[str, Any] = {"backlog": 1024}
            if ctx is not None:
                kw.update(ssl=ctx, ssl_handshake_timeout=self.config.server.tls_handshake_timeout)
            sock = sockets.get(addr)
            if ctx is None and not UVLOOP_ACCEPT:
                # plain TCP: fastproxy's own listener and transport (_socktransport.pxi)
                owned = sock is None
                srv = SockServer(loop, sock if sock is not None else _bind(addr), factory, owned)
                srv.start()
                self._servers[addr] = srv
            elif sock is not None:
                self._servers[addr] = await loop.create_server(factory, sock=sock, **kw)
            else:
                self._servers[addr] = await loop.create_server(
                    factory, addr.host, addr.port, reuse_port=True, **kw
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
        are kept, new ones opened, removed ones closed.  Certificates are
        loaded first: a file that cannot be used is logged and raises
        TLSError, and everything keeps running as before."""
        try:
            listeners = listener_runtimes(config)
            self._runtime.apply(config)
        except TLSError as exc:
            log.error("reload failed: %s; keeping the running configuration", exc)
            raise
        self._set_access_log(config)
        if config.cache != self.config.cache:
            log.warning("[cache] changes take effect on restart; the cache region is kept as is")
        wanted = set(config.server.listen)
        for addr in [a for a in self._servers if a not in wanted]:
            self._servers.pop(addr).close()
        for addr, (_, _, certs) in listeners.items():
            old = self._listeners.get(addr)
            if addr not in self._servers:
                continue
            before, after = self.config.server.options(addr), config.server.options(addr)
            if old is not None and old[2] is not None and certs and _same_but_certs(before, after):
                old[2][0] = certs[0]  # the handshakes from now on use the new certificates
                listeners[addr] = old
            elif before != after:
                # TLS or redirect settings changed: a new server (open connections stay)
                self._servers.pop(addr).close()
        for addr in [a for a in self._servers if a not in listeners and a in self._listeners]:
            self._servers.pop(addr).close()  # was TLS / redirecting, now plain
        self._listeners = listeners
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
        # A connection accepted just before the close has its connection_made
        # still queued: let it run, or the connection is not in rt.conns yet
        # and dies with the process without an answer.
        await asyncio.sleep(0)
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
        # Their connection_lost() calls come soon, not at once (and may
        # abort upstream connections, whose come after): let them run while
        # the access log and the cache region are still there.
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        rt.stop()
        if self._cache is not None:
            use_cache_region(None)
            self._cache = None
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
