"""The admin endpoint: Prometheus metrics and a JSON status page, served by the master.

    sock = bind_admin(cfg.admin.listen)                   # before forking, like the listeners
    admin = AdminServer(region, index, cfg, worker_slots)
    await admin.start(sock)                               # on the master's event loop
    admin.update(new_cfg)                                 # after a reload (token, upstreams)

Endpoints (docs/metrics.md is the contract):

    GET /metrics    Prometheus text exposition format 0.0.4
    GET /status     JSON: version, uptime, generation, workers, totals, upstreams
                    (and "cache" with [cache] configured)
    POST /cache/purge  {"url": U} or {"prefix": P} -> {"removed": N}  (with [cache])

Everything else is 404; another method on those two paths is 405.  With a
token configured every request must carry `Authorization: Bearer TOKEN`, or it
gets 401.  Each connection carries one request and is closed after the answer.

This is control-plane code: plain Python, read from the shared-memory stats
region (fastproxy._stats) that the workers count into.  The rendering functions
(`render_metrics`, `render_status`) take a snapshot dict and are pure, for tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import json
import logging
import math
import socket
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from fastproxy import admin_control
from fastproxy._http1 import ParseError, parse_request
from fastproxy._stats import BUCKET_BOUNDS
from fastproxy._version import __version__
from fastproxy.cache_admin import MAX_PURGE_BODY
from fastproxy.cache_admin import METRICS as CACHE_METRICS
from fastproxy.cache_admin import purge as cache_purge
from fastproxy.cache_admin import status_doc as cache_status_doc
from fastproxy.config import Address, Config

log = logging.getLogger("fastproxy")

METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
JSON_CONTENT_TYPE = "application/json"
CODES = ("aborted", "1xx", "2xx", "3xx", "4xx", "5xx")  # index = fp_stats_class()
ENDPOINTS = ("/metrics", "/status")
IDLE_PEER = {"inflight": 0, "passive_out": False, "breaker": "closed", "trips": 0}
PURGE = "/cache/purge"
ALLOW = "GET, HEAD"
OVERFLOW_LABEL = "other"  # an index shared by several names (past the region's capacity)

MAX_HEAD = 16384  # bytes of request head accepted
READ_TIMEOUT = 5.0  # seconds for the whole request head
LINGER = 1.0  # after answering, read (and drop) what the client still sends, this long ...
LINGER_BYTES = 65536  # ... or this much, so that closing does not reset the answer away
MAX_CONNS = 64  # admin connections served at once; more are closed at once
BACKLOG = 64

_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    411: "Length Required",
    413: "Content Too Large",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    414: "URI Too Long",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    501: "Not Implemented",
    505: "HTTP Version Not Supported",
}


# ---------------------------------------------------------------------------- exposition format


def escape_label_value(value: str) -> str:
    """A label value for the text format: backslash, double quote and newline escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def escape_help(text: str) -> str:
    """HELP text: backslash and newline escaped (quotes are allowed as they are)."""
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def format_value(value: float) -> str:
    """A sample value: integers without a decimal point, floats as Python writes them."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def format_le(bound: float) -> str:
    """A histogram bucket bound: "0.005", "1.0", "+Inf" (the Go client's spelling)."""
    return "+Inf" if math.isinf(bound) else repr(float(bound))


Labels = Iterable[tuple[str, str]]


class MetricsWriter:
    """Collects metric families; each family gets its HELP and TYPE line exactly once."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.families: set[str] = set()

    def family(self, name: str, kind: str, help_text: str) -> None:
        if name in self.families:
            raise ValueError(f"metric family {name} written twice")
        self.families.add(name)
        self.lines.append(f"# HELP {name} {escape_help(help_text)}")
        self.lines.append(f"# TYPE {name} {kind}")

    def sample(self, name: str, labels: Labels, value: float) -> None:
        pairs = ",".join(f'{k}="{escape_label_value(v)}"' for k, v in labels)
        series = f"{name}{{{pairs}}}" if pairs else name
        self.lines.append(f"{series} {format_value(value)}")

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def _names_by_index(mapping: Mapping[Any, int]) -> dict[int, Any]:
    """Invert a StatsIndex map.  Past the region's capacity several names share the last
    index; those counts are reported under OVERFLOW_LABEL (None here)."""
    out: dict[int, Any] = {}
    for name, i in mapping.items():
        out[i] = None if i in out else name
    return out


def render_metrics(
    snapshot: Mapping[str, Any],
    routes: Mapping[str, int],
    servers: Mapping[tuple[str, str], int],
    version: str = __version__,
) -> str:
    """The /metrics body for a StatsRegion.snapshot() and the StatsIndex maps
    (`routes`: label -> index, `servers`: (upstream, address) -> index).

    Every route and server the index has ever named is exported, with zeros when it
    has not counted anything yet, so a series never disappears after a reload."""
    w = MetricsWriter()
    tot = snapshot["totals"]

    w.family(
        "fastproxy_requests_total",
        "counter",
        "Requests answered, by route and status class (aborted = no response was sent).",
    )
    route_counts = snapshot.get("routes", {})
    for i, label in sorted(_names_by_index(routes).items()):
        counts = route_counts.get(i, [0] * len(CODES))
        name = OVERFLOW_LABEL if label is None else label
        for code, n in zip(CODES, counts, strict=True):
            w.sample("fastproxy_requests_total", (("route", name), ("code", code)), n)

    w.family(
        "fastproxy_responses_total",
        "counter",
        "Requests answered, by status class, over all routes and requests that met no route.",
    )
    for code, n in zip(CODES, tot["requests"], strict=True):
        w.sample("fastproxy_responses_total", (("code", code),), n)

    simple = (
        ("fastproxy_bytes_received_total", "counter", "Bytes received from clients.", "bytes_in"),
        ("fastproxy_bytes_sent_total", "counter", "Bytes sent to clients.", "bytes_out"),
        ("fastproxy_connections_active", "gauge", "Client connections open.", "connections_active"),
        (
            "fastproxy_connections_total",
            "counter",
            "Client connections accepted.",
            "connections_total",
        ),
        (
            "fastproxy_upstream_connections_active",
            "gauge",
            "Connections to upstream servers open (in use or pooled).",
            "upstream_active",
        ),
    )
    for name, kind, help_text, key in simple:
        w.family(name, kind, help_text)
        w.sample(name, (), tot[key])

    server_stats = snapshot.get("servers", {})
    server_names = sorted(
        (
            (("other", OVERFLOW_LABEL) if key is None else key, i)
            for i, key in _names_by_index(servers).items()
        ),
        key=lambda item: item[1],
    )
    empty = {"requests": 0, "failures": 0, "buckets": [0] * len(BUCKET_BOUNDS), "count": 0}
    down = set(snapshot.get("down", ()))

    w.family(
        "fastproxy_upstream_server_up",
        "gauge",
        "1 when an upstream server is up, 0 while the health checks mark it down.",
    )
    for (upstream, server), i in server_names:
        w.sample(
            "fastproxy_upstream_server_up",
            (("upstream", upstream), ("server", server)),
            0 if i in down else 1,
        )

    w.family(
        "fastproxy_upstream_retries_total",
        "counter",
        "Requests sent to another server after a server failed them.",
    )
    w.sample("fastproxy_upstream_retries_total", (), tot.get("retries", 0))
    peers = snapshot.get("peers", {})
    admin = snapshot.get("admin", {})
    per_server = (
        (
            "fastproxy_upstream_server_inflight",
            "gauge",
            "Requests in flight to an upstream server, all workers.",
            lambda i: peers.get(i, IDLE_PEER)["inflight"],
        ),
        (
            "fastproxy_upstream_server_passive_out",
            "gauge",
            "1 while passive checks (max_fails) hold an upstream server out.",
            lambda i: int(peers.get(i, IDLE_PEER)["passive_out"]),
        ),
        (
            "fastproxy_upstream_server_breaker_open",
            "gauge",
            "1 while an upstream server's circuit breaker is open or half-open.",
            lambda i: int(peers.get(i, IDLE_PEER)["breaker"] != "closed"),
        ),
        (
            "fastproxy_upstream_server_trips_total",
            "counter",
            "Times passive checks or the circuit breaker took an upstream server out.",
            lambda i: peers.get(i, IDLE_PEER)["trips"],
        ),
        (
            "fastproxy_upstream_server_admin_enabled",
            "gauge",
            "0 while an upstream server is drained or disabled through the admin API.",
            lambda i: int(i not in admin),
        ),
    )
    for name, kind, help_text, value in per_server:
        w.family(name, kind, help_text)
        for (upstream, server), i in server_names:
            w.sample(name, (("upstream", upstream), ("server", server)), value(i))

    w.family(
        "fastproxy_upstream_requests_total",
        "counter",
        "Requests sent to an upstream server.",
    )
    for (upstream, server), i in server_names:
        s = server_stats.get(i, empty)
        w.sample(
            "fastproxy_upstream_requests_total",
            (("upstream", upstream), ("server", server)),
            s["requests"],
        )
    w.family(
        "fastproxy_upstream_failures_total",
        "counter",
        "Failed attempts on an upstream server: connect errors, resets, timeouts, "
        "invalid responses.",
    )
    for (upstream, server), i in server_names:
        s = server_stats.get(i, empty)
        w.sample(
            "fastproxy_upstream_failures_total",
            (("upstream", upstream), ("server", server)),
            s["failures"],
        )

    hist = "fastproxy_upstream_response_seconds"
    w.family(
        hist,
        "histogram",
        "Time from sending a request upstream to the end of its response, in seconds.",
    )
    for (upstream, server), i in server_names:
        s = server_stats.get(i, empty)
        labels = (("upstream", upstream), ("server", server))
        cumulative = 0
        for bound, n in zip(BUCKET_BOUNDS, s["buckets"], strict=True):
            cumulative += n
            w.sample(f"{hist}_bucket", (*labels, ("le", format_le(bound))), cumulative)
        w.sample(f"{hist}_bucket", (*labels, ("le", "+Inf")), s["count"])
        w.sample(f"{hist}_sum", labels, float(s.get("sum_seconds", 0.0)))
        w.sample(f"{hist}_count", labels, s["count"])

    w.family(
        "fastproxy_errors_total",
        "counter",
        "Requests answered with an error response made by fastproxy (not by an upstream).",
    )
    w.sample("fastproxy_errors_total", (), tot["errors"])
    cache = snapshot.get("cache")
    if cache is not None:  # only with [cache] configured
        for name, kind, help_text, key in CACHE_METRICS:
            w.family(name, kind, help_text)
            w.sample(name, (), cache.get(key, 0))
    _render_compression(w, tot.get("compression") or [0] * 16)
    w.family("fastproxy_workers", "gauge", "Worker processes running (all generations).")
    w.sample("fastproxy_workers", (), len(snapshot.get("workers", ())))
    w.family(
        "fastproxy_config_generation",
        "gauge",
        "Configuration generation being served: 1 at start, +1 for every successful reload.",
    )
    w.sample("fastproxy_config_generation", (), snapshot["generation"])
    w.family("fastproxy_start_time_seconds", "gauge", "Start time of the master, Unix seconds.")
    w.sample("fastproxy_start_time_seconds", (), float(snapshot["started"]))
    w.family("fastproxy_build_info", "gauge", "Always 1; the version is in the label.")
    w.sample("fastproxy_build_info", (("version", version),), 1)
    return w.text()


def _render_compression(w: MetricsWriter, c: list[int]) -> None:
    """Response compression counters (fp_worker_stats.compression, see fp_stats.h)."""
    fams = (
        ("fastproxy_compressed_responses_total", "Responses compressed, by algorithm.", 0),
        ("fastproxy_compression_bytes_in_total", "Bytes given to the compressor.", 1),
        ("fastproxy_compression_bytes_out_total", "Compressed bytes sent to clients.", 2),
    )
    for name, help_text, k in fams:
        w.family(name, "counter", help_text)
        for i, algo in enumerate(("gzip", "br", "zstd"), start=1):
            w.sample(name, (("algorithm", algo),), c[3 * i + k])
    w.family(
        "fastproxy_decompressed_responses_total",
        "counter",
        "Upstream responses decompressed for clients that do not accept their coding "
        "(decompress_upstream), by result (ok, or failed: caps exceeded or corrupt).",
    )
    w.sample("fastproxy_decompressed_responses_total", (("result", "ok"),), c[12])
    w.sample("fastproxy_decompressed_responses_total", (("result", "failed"),), c[13])


# ---------------------------------------------------------------------------- /status


def render_status(
    snapshot: Mapping[str, Any],
    config: Config,
    servers: Mapping[tuple[str, str], int],
    worker_slots: Mapping[int, int] | None = None,
    now: float | None = None,
    version: str = __version__,
) -> dict[str, Any]:
    """The /status document.  `worker_slots` maps a worker pid to its slot (the listening
    socket group it accepts on, 0..workers-1); `servers` is StatsIndex.servers."""
    now = time.time() if now is None else now
    tot = snapshot["totals"]
    slots = worker_slots or {}
    workers = [
        {
            "pid": wk["pid"],
            "slot": slots.get(wk["pid"]),
            "generation": wk["generation"],
            "requests": wk["requests"],
            "connections_active": wk["connections_active"],
        }
        for wk in snapshot.get("workers", ())
    ]
    totals = {
        "requests": dict(zip(CODES, tot["requests"], strict=True)),
        "bytes_received": tot["bytes_in"],
        "bytes_sent": tot["bytes_out"],
        "connections_active": tot["connections_active"],
        "connections_total": tot["connections_total"],
        "upstream_connections_active": tot["upstream_active"],
        "upstream_requests": tot["upstream_requests"],
        "errors": tot["errors"],
        "retries": tot.get("retries", 0),
    }
    server_stats = snapshot.get("servers", {})
    down = set(snapshot.get("down", ()))
    admin = snapshot.get("admin", {})
    peers = snapshot.get("peers", {})
    upstreams: dict[str, Any] = {}
    for name, up in config.upstreams.items():
        entries = []
        for spec in up.servers:
            address = str(spec.address)
            index = servers.get((name, address))
            s = server_stats.get(index, {}) if index is not None else {}
            peer = peers.get(index, IDLE_PEER) if index is not None else IDLE_PEER
            entries.append(
                {
                    "address": address,
                    "weight": spec.weight,
                    "backup": spec.backup,
                    "state": "down" if index is not None and index in down else "up",
                    "admin": admin.get(index, "enabled"),
                    "drained": admin.get(index) == "drain" and peer["inflight"] == 0,
                    "inflight": peer["inflight"],
                    "passive_out": peer["passive_out"],
                    "breaker": peer["breaker"],
                    "active": s.get("active", 0),
                    "requests": s.get("requests", 0),
                    "failures": s.get("failures", 0),
                }
            )
        upstreams[name] = {"servers": entries}
    doc = {
        "version": version,
        "uptime_seconds": round(max(0.0, now - snapshot["started"]), 3),
        "generation": snapshot["generation"],
        "workers": workers,
        "totals": totals,
        "upstreams": upstreams,
    }
    if snapshot.get("cache") is not None:
        doc["cache"] = cache_status_doc(snapshot["cache"])
    return doc


# ---------------------------------------------------------------------------- the server


def bind_admin(addr: Address) -> socket.socket:
    """A listening socket for the admin endpoint (no SO_REUSEPORT: one owner)."""
    family = socket.AF_INET6 if ":" in addr.host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        s.bind((addr.host, addr.port))
        s.listen(BACKLOG)
        s.setblocking(False)
    except OSError:
        s.close()
        raise
    return s


def _response(
    status: int,
    body: bytes,
    content_type: str = "text/plain; charset=utf-8",
    extra: Iterable[tuple[str, str]] = (),
    head_only: bool = False,
) -> bytes:
    lines = [
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}",
        f"Content-Type: {content_type}",
        f"Content-Length: {len(body)}",
        "Cache-Control: no-store",
        "Connection: close",
        *(f"{k}: {v}" for k, v in extra),
    ]
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head if head_only else head + body


def _header(headers: Iterable[tuple[bytes, bytes, int]], name: bytes) -> bytes | None:
    for k, v, _ in headers:
        if k.lower() == name:
            return v
    return None


class AdminServer:
    """Serves /metrics and /status from the master's event loop."""

    def __init__(
        self,
        region: Any,
        index: Any,
        config: Config,
        worker_slots: Callable[[], Mapping[int, int]] | None = None,
        cache: Any = None,
    ) -> None:
        self.region = region  # fastproxy._stats.StatsRegion
        self.cache = cache  # fastproxy._cache.CacheRegion, with [cache] configured
        self.index = index  # fastproxy._stats.StatsIndex
        self.config = config
        self.worker_slots = worker_slots or dict
        self.sock: socket.socket | None = None
        self.address: Address | None = None  # as configured (port 0 allowed)
        self._server: asyncio.AbstractServer | None = None
        self._conns: set[asyncio.StreamWriter] = set()
        self._closed = False

    @property
    def token(self) -> str:
        return self.config.admin.token if self.config.admin is not None else ""

    def bound(self) -> str:
        """host:port actually bound, for the log."""
        if self.sock is None:
            return "-"
        host, port = self.sock.getsockname()[:2]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    async def start(self, sock: socket.socket, address: Address) -> None:
        """Serve on sock (bound by bind_admin); `address` is the configured one."""
        self.sock, self.address = sock, address
        if self._closed:  # closed before this task ran
            sock.close()
            return
        self._server = await asyncio.start_server(self._handle, sock=sock)
        log.info("admin endpoint on http://%s (/metrics, /status)", self.bound())
        if not self.token and not _is_loopback(address.host):
            log.warning("admin endpoint on a non-loopback address without a token")

    def update(self, config: Config) -> None:
        """A reload took effect: new token, new upstream list for /status."""
        self.config = config

    def close(self) -> None:
        """Stop listening and drop connections in progress."""
        self._closed = True
        if self._server is not None:
            self._server.close()
            self._server = None
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        for writer in list(self._conns):
            writer.close()

    def close_in_child(self) -> None:
        """In a forked worker: close the inherited admin sockets without touching the
        master's event loop (the child shares its epoll instance).  The socket objects
        are closed (not just their descriptors), so nothing closes a reused number later."""
        socks: list[Any] = [self.sock] if self.sock is not None else []
        for writer in self._conns:
            tsock = writer.get_extra_info("socket")
            socks.append(getattr(tsock, "_sock", tsock))  # asyncio's TransportSocket wrapper
        for s in socks:
            with contextlib.suppress(Exception):
                s.close()
        self.sock = None
        self._conns = set()

    # -- one connection ----------------------------------------------------------------
    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self._conns) >= MAX_CONNS:
            writer.close()
            return
        self._conns.add(writer)
        try:
            try:
                data = await asyncio.wait_for(self._read_head(reader), READ_TIMEOUT)
            except TimeoutError:
                data = _response(408, b"request timeout\n")
            if data:
                writer.write(data)
                await writer.drain()
                if writer.can_write_eof():
                    writer.write_eof()  # FIN now, whoever else holds the socket
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._drain(reader), LINGER)
        except (ConnectionError, OSError):
            pass
        except Exception:
            log.exception("admin request failed")
        finally:
            self._conns.discard(writer)
            writer.close()

    @staticmethod
    async def _drain(reader: asyncio.StreamReader) -> None:
        """Read until the client closes (a request body we did not want, say): closing
        with unread data would send a reset, which can destroy the answer in flight."""
        left = LINGER_BYTES
        while left > 0:
            chunk = await reader.read(min(left, 16384))
            if not chunk:
                return
            left -= len(chunk)

    async def _read_head(self, reader: asyncio.StreamReader) -> bytes:
        buf = b""
        while True:
            chunk = await reader.read(4096)
            if not chunk:
                return b""  # closed before a complete request: nothing to answer
            buf += chunk
            try:
                head = parse_request(buf, max_line=MAX_HEAD, max_head=MAX_HEAD, max_headers=64)
            except ParseError as exc:
                return _response(exc.status, f"{exc.status} {exc.name}\n".encode())
            if head is not None:
                body = b""
                if head.body_kind == "chunked":
                    return _response(411, b"send the body with a Content-Length\n")
                if head.body_kind == "length" and head.content_length:
                    if head.content_length > MAX_PURGE_BODY:
                        return _response(413, b"request body too large\n")
                    body = buf[head.head_len :]
                    while len(body) < head.content_length:
                        chunk = await reader.read(65536)
                        if not chunk:
                            return b""
                        body += chunk
                    body = body[: head.content_length]
                return self.respond(head.method or b"", head.target or b"", head.headers, body)
            if len(buf) > MAX_HEAD:
                return _response(431, b"request head too large\n")

    def respond(
        self,
        method: bytes,
        target: bytes,
        headers: Iterable[tuple[bytes, bytes, int]],
        body: bytes = b"",
    ) -> bytes:
        """The complete response to one request."""
        head_only = method == b"HEAD"
        if self.token and not self._authorized(headers):
            return _response(
                401,
                b"unauthorized\n",
                extra=[("WWW-Authenticate", 'Bearer realm="fastproxy"')],
                head_only=head_only,
            )
        path = target.split(b"?", 1)[0].decode("latin-1")
        if path == PURGE and self.cache is not None:
            if method != b"POST":
                return _response(405, b"method not allowed\n", extra=[("Allow", "POST")])
            status, doc = cache_purge(self.cache, body)
            out = (json.dumps(doc) + "\n").encode()
            return _response(status, out, JSON_CONTENT_TYPE)
        control = admin_control.match(path)
        if control is not None:
            if method != b"POST":
                return _response(405, b"method not allowed\n", extra=[("Allow", "POST")])
            status, doc = admin_control.apply(self.region, self.index, self.config, *control)
            if status == 200:
                log.info("admin: %s %s %s", doc["upstream"], doc["server"], doc["admin"])
            out = (json.dumps(doc) + "\n").encode()
            return _response(status, out, JSON_CONTENT_TYPE)
        if path not in ENDPOINTS:
            return _response(404, b"not found\n", head_only=head_only)
        if method not in (b"GET", b"HEAD"):
            return _response(405, b"method not allowed\n", extra=[("Allow", ALLOW)])
        snap = self.region.snapshot()
        if self.cache is not None:
            snap["cache"] = self.cache.stats()
        if path == "/metrics":
            body = render_metrics(snap, self.index.routes, self.index.servers).encode()
            return _response(200, body, METRICS_CONTENT_TYPE, head_only=head_only)
        doc = render_status(snap, self.config, self.index.servers, self.worker_slots())
        body = (json.dumps(doc, indent=2) + "\n").encode()
        return _response(200, body, JSON_CONTENT_TYPE, head_only=head_only)

    def _authorized(self, headers: Iterable[tuple[bytes, bytes, int]]) -> bool:
        value = _header(headers, b"authorization")
        if value is None:
            return False
        scheme, _, credentials = value.strip().partition(b" ")
        if scheme.lower() != b"bearer":
            return False
        return hmac.compare_digest(credentials.strip(), self.token.encode())


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
