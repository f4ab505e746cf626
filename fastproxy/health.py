"""Active health checks, run once by the master (never by the workers).

    checker = HealthChecker(region, index, config)
    checker.start()          # on the master's running event loop
    checker.update(config)   # after a reload took effect: keeps the state of kept servers
    checker.close()

For every server of an upstream with `health_check` configured, one task sends
`GET path` every `interval` on a fresh TCP connection (`Connection: close`) and
reads the response within `timeout`.  A check passes when the status is in
`expect_status` and, if `expect_body` is set, the first 64 KiB of the body
contain it.  A server starts "up" (as in nginx); `fall` consecutive failures
mark it down, `rise` consecutive passes mark it up again.  The verdict is
written into the shared stats region (`StatsRegion.set_down(stats_index)`),
so every worker's balancer skips a down server on its very next pick
(csrc/fp_lb.h: fp_lb_usable), exactly like a server at max_conns: backups take
over when no primary is usable, and with no usable server at all a request
gets 503.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Any

from fastproxy._http1 import ParseError, parse_response
from fastproxy.config import Config, HealthCheck

log = logging.getLogger("fastproxy")

MAX_HEAD = 65536
MAX_BODY = 65536
USER_AGENT = "fastproxy-health"


@dataclass
class HealthState:
    """The rise/fall state machine of one server.  Starts up."""

    rise: int = 2
    fall: int = 3
    down: bool = False
    passes: int = 0  # consecutive passed checks
    failures: int = 0  # consecutive failed checks

    def record(self, ok: bool) -> bool:
        """Count one check; True when the server's state flipped."""
        if ok:
            self.passes += 1
            self.failures = 0
            if self.down and self.passes >= self.rise:
                self.down = False
                return True
        else:
            self.failures += 1
            self.passes = 0
            if not self.down and self.failures >= self.fall:
                self.down = True
                return True
        return False


def build_request(check: HealthCheck, address: str) -> bytes:
    host = check.host or address
    return (
        f"GET {check.path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n"
        f"User-Agent: {USER_AGENT}\r\n\r\n"
    ).encode("latin-1")


async def _read_head(reader: asyncio.StreamReader) -> tuple[Any, bytes]:
    """(parsed head, bytes after it) of one response, skipping 1xx interim ones."""
    buf = b""
    while True:
        head = parse_response(buf, max_head=MAX_HEAD) if buf else None
        if head is not None:
            rest = buf[head.head_len :]
            if 100 <= head.status < 200:
                buf = rest
                continue
            return head, rest
        if len(buf) > MAX_HEAD:
            raise ValueError("response head too large")
        chunk = await reader.read(16384)
        if not chunk:
            raise ValueError("connection closed before a complete response")
        buf += chunk


async def _read_body(reader: asyncio.StreamReader, head: Any, body: bytes) -> bytes:
    """Up to MAX_BODY bytes of the body (chunk framing left in: a substring test
    only fails on a match split by a chunk boundary)."""
    limit = MAX_BODY
    if head.body_kind == "none":
        return b""
    if head.body_kind == "length":
        limit = min(limit, head.content_length or 0)
    while len(body) < limit:
        chunk = await reader.read(16384)
        if not chunk:
            break
        body += chunk
    return body[:limit]


async def probe(host: str, port: int, check: HealthCheck, address: str) -> str | None:
    """One health check: None when it passed, else why it failed."""
    writer = None
    try:
        async with asyncio.timeout(check.timeout):
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(build_request(check, address))
            await writer.drain()
            head, rest = await _read_head(reader)
            if not check.status_ok(head.status):
                return f"status {head.status}"
            if check.expect_body is not None:
                body = await _read_body(reader, head, rest)
                if check.expect_body.encode("utf-8") not in body:
                    return f"body does not contain {check.expect_body!r}"
            return None
    except TimeoutError:
        return f"timed out after {check.timeout:g}s"
    except ConnectionRefusedError:
        return "connection refused"
    except ParseError as exc:
        return f"invalid response: {exc}"
    except OSError as exc:
        return exc.strerror or str(exc) or type(exc).__name__
    except ValueError as exc:
        return str(exc)
    finally:
        if writer is not None:
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 0.1)


@dataclass(eq=False)
class _Target:
    upstream: str
    address: str  # as configured ("host:port", "[v6]:port")
    host: str
    port: int
    index: int  # StatsIndex.server(upstream, address)
    check: HealthCheck
    state: HealthState
    task: asyncio.Task[None] | None = None


class HealthChecker:
    """Runs the checks of one config on the master's loop; writes verdicts to the region."""

    def __init__(self, region: Any, index: Any, config: Config) -> None:
        self.region = region  # fastproxy._stats.StatsRegion
        self.index = index  # fastproxy._stats.StatsIndex
        self.targets: dict[tuple[str, str], _Target] = {}
        self.config = config
        self._started = False

    def start(self) -> None:
        self._started = True
        self.update(self.config)

    def update(self, config: Config) -> None:
        """Check config's servers from now on.  A server still checked keeps its state
        (and its running task, which picks up the new settings); the flags of servers
        no longer checked are cleared (up)."""
        self.config = config
        if not self._started:
            return
        wanted: dict[tuple[str, str], tuple[Any, HealthCheck]] = {}
        for name, up in config.upstreams.items():
            if up.health_check is None:
                continue
            for spec in up.servers:
                wanted[(name, str(spec.address))] = (spec, up.health_check)
        for key in list(self.targets):
            if key not in wanted:
                self._drop(self.targets.pop(key))
        shared = self._shared_indexes()
        for key, (spec, check) in wanted.items():
            target = self.targets.get(key)
            if target is not None:
                target.check = check
                target.state.rise, target.state.fall = check.rise, check.fall
                continue
            index = self.index.server(*key)
            if index in shared:
                log.warning(
                    "%s %s: not health checked (more servers than the stats region holds)", *key
                )
                continue
            target = _Target(
                key[0],
                key[1],
                spec.address.host,
                spec.address.port,
                index,
                check,
                HealthState(check.rise, check.fall),
            )
            self.region.set_down(index, False)  # servers start up
            target.task = asyncio.get_running_loop().create_task(self._run(target))
            self.targets[key] = target

    def _shared_indexes(self) -> set[int]:
        seen: set[int] = set()
        shared: set[int] = set()
        for i in self.index.servers.values():
            (shared if i in seen else seen).add(i)
        return shared

    def _drop(self, target: _Target) -> None:
        if target.task is not None:
            target.task.cancel()
            target.task = None
        self.region.set_down(target.index, False)

    def close(self) -> None:
        """Stop checking (the flags stay as they are: the workers stop too)."""
        for target in self.targets.values():
            if target.task is not None:
                target.task.cancel()
                target.task = None
        self.targets.clear()
        self._started = False

    def is_down(self, upstream: str, address: str) -> bool:
        target = self.targets.get((upstream, address))
        return target is not None and target.state.down

    async def _run(self, target: _Target) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            check = target.check
            try:
                reason = await probe(target.host, target.port, check, target.address)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a bug here must not stop the checks
                reason = f"check failed: {exc!r}"
            self._record(target, reason)
            await asyncio.sleep(max(0.0, check.interval - (loop.time() - started)))

    def _record(self, target: _Target, reason: str | None) -> None:
        state = target.state
        if not state.record(reason is None):
            if reason is not None and not state.down:
                log.debug(
                    "%s %s: health check failed (%d/%d): %s",
                    target.upstream,
                    target.address,
                    state.failures,
                    state.fall,
                    reason,
                )
            return
        self.region.set_down(target.index, state.down)
        if state.down:
            log.warning(
                "%s %s down: %d consecutive health checks failed: %s",
                target.upstream,
                target.address,
                state.failures,
                reason,
            )
        else:
            log.info(
                "%s %s up: %d consecutive health checks passed",
                target.upstream,
                target.address,
                state.passes,
            )
