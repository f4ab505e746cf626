"""fastproxy configuration: TOML loading, validation and the frozen config model.

Use ``Config.load(path)``, ``Config.from_toml(text)`` or ``Config.from_dict(d)``.
Every problem found is collected and raised together as one ``ConfigError``
whose ``issues`` carry the key path and, for TOML input, the line number.
See docs/config.md for the reference of every key.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal

from fastproxy.config_check import BAD as _BAD
from fastproxy.config_check import Checker as _Checker
from fastproxy.config_check import ConfigError, ConfigIssue, Conv
from fastproxy.config_check import choice as _choice
from fastproxy.config_check import int_conv as _int
from fastproxy.config_check import simple as _simple
from fastproxy.config_check import unknown_key as _unknown_key
from fastproxy.config_compression import KEYS as _COMPRESSION_KEYS
from fastproxy.config_compression import CompressionConfig, compression_section
from fastproxy.config_tls import (
    ListenOptions,
    UpstreamTLS,
    listen_entries,
)
from fastproxy.config_upstream import (
    UPSTREAM_CONVS,
    CircuitBreaker,
    HealthCheck,
    ServerSpec,
    UpstreamConfig,
    check_hash_key,
)
from fastproxy.config_values import (
    MAX_WORKERS,
    Address,
    IPNetwork,
    KeyLocator,
    KeyPath,
    check_header_name,
    check_header_value,
    expect_bool,
    expect_str,
    format_path,
    parse_cidr,
    parse_duration,
    parse_error_log,
    parse_host_pattern,
    parse_host_port,
    parse_path,
    parse_path_prefix,
    parse_pid_file,
    parse_positive_duration,
    parse_positive_size,
    parse_redirect_status,
    parse_redirect_target,
    parse_server_header,
    parse_size,
    parse_upgrade_protocols,
    parse_via_name,
    parse_workers,
    type_name,
)

__all__ = [
    "Address",
    "AdminConfig",
    "CacheConfig",
    "CircuitBreaker",
    "CompressionConfig",
    "Config",
    "ConfigError",
    "ConfigIssue",
    "HeaderRules",
    "HealthCheck",
    "KeyLocator",
    "ListenOptions",
    "LogConfig",
    "Redirect",
    "RouteConfig",
    "ServerConfig",
    "ServerSpec",
    "UpstreamConfig",
    "UpstreamTLS",
    "format_path",
    "parse_path",
]

# --------------------------------------------------------------------------- model


_PLAIN = ListenOptions()


@dataclass(frozen=True, slots=True)
class ServerConfig:
    listen: tuple[Address, ...] = (Address("127.0.0.1", 8080),)
    workers: int | Literal["auto"] = 1
    worker_cpu_affinity: Literal["off", "auto"] = "off"
    client_header_timeout: float = 10.0
    client_body_timeout: float = 30.0
    client_send_timeout: float = 60.0
    keepalive_timeout: float = 75.0
    websocket_idle_timeout: float = 300.0
    keepalive_requests: int = 1000
    max_body_size: int = 1 << 30
    max_request_line: int = 8 << 10
    max_header_size: int = 32 << 10
    max_headers: int = 100
    trusted_proxies: tuple[IPNetwork, ...] = ()
    x_forwarded_for: Literal["append", "replace"] = "append"
    forwarded: bool = False
    via: bool = False
    via_name: str = "fastproxy"
    server_header: str | None = None
    shutdown_timeout: float = 30.0
    pid_file: str | None = "/tmp/fastproxy.pid"
    tls_handshake_timeout: float = 10.0
    # (address, options) for listen entries given as tables (TLS, redirect_https)
    listen_options: tuple[tuple[Address, ListenOptions], ...] = ()

    def options(self, addr: Address) -> ListenOptions:
        """The listen entry's TLS / redirect options (none for a plain string)."""
        for a, opts in self.listen_options:
            if a == addr:
                return opts
        return _PLAIN


@dataclass(frozen=True, slots=True)
class LogConfig:
    access: str = "stdout"
    format: Literal["combined", "json"] = "combined"
    error: str = "stderr"
    level: Literal["debug", "info", "warning", "error"] = "info"


@dataclass(frozen=True, slots=True)
class AdminConfig:
    listen: Address = Address("127.0.0.1", 9901)
    token: str = ""


@dataclass(frozen=True, slots=True)
class CacheConfig:
    """The shared-memory response cache region (docs/cache.md)."""

    size: int = 256 << 20
    max_entry_size: int = 8 << 20
    max_entries: int = 0  # 0 = limited by size only
    store_set_cookie: bool = False
    x_cache_header: bool = True  # X-Cache: HIT | MISS | STALE | REVALIDATED | BYPASS
    lock_timeout: float = 5.0  # how long a coalesced miss waits for the fill
    heuristic_max: float = 86400.0  # cap of heuristic freshness (RFC 9111 4.2.2)
    sendfile: bool = True  # large hits leave by sendfile(2) from the region (as nginx's sendfile)


@dataclass(frozen=True, slots=True)
class HeaderRules:
    set: tuple[tuple[str, str], ...] = ()
    add: tuple[tuple[str, str], ...] = ()
    remove: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Redirect:
    to: str
    status: int = 302
    keep_query: bool = True


@dataclass(frozen=True, slots=True)
class CacheKey:
    """A route's cache key: the URL, without its query when query = false, plus
    the values of `headers` (request fields) as key extras."""

    query: bool = True
    headers: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class RouteConfig:
    host: str | None = None
    path_prefix: str = "/"
    upstream: str | None = None
    return_status: int | None = None
    body: str = ""
    redirect: Redirect | None = None
    websocket: bool = True
    request_headers: HeaderRules = HeaderRules()
    response_headers: HeaderRules = HeaderRules()
    # the effective settings: [compression] with this route's override applied
    compression: CompressionConfig = CompressionConfig()
    cache: bool = False  # store / serve GET and HEAD through [cache] (docs/cache.md)
    cache_key: CacheKey = CacheKey()
    # What an Upgrade may ask for; ("*",): anything.  Not h2c by default: an
    # h2c tunnel would carry requests past the routes and filters.  (Last:
    # the fields are positional too, and this one came late.)
    upgrade_protocols: tuple[str, ...] = ("websocket",)


@dataclass(frozen=True, slots=True)
class Config:
    server: ServerConfig = ServerConfig()
    log: LogConfig = LogConfig()
    admin: AdminConfig | None = None
    cache: CacheConfig | None = None
    upstreams: dict[str, UpstreamConfig] = field(default_factory=dict)
    routes: tuple[RouteConfig, ...] = ()
    source: str = "<default>"
    compression: CompressionConfig = CompressionConfig()

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Config:
        source = os.fspath(path)
        try:
            with open(source, encoding="utf-8-sig") as fh:
                text = fh.read()
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise ConfigError([ConfigIssue("", None, f"cannot read: {reason}", source)]) from None
        return cls.from_toml(text, source=source)

    @classmethod
    def from_toml(cls, text: str, source: str = "<string>") -> Config:
        text = text.removeprefix("\ufeff")
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError([_syntax_issue(str(exc), text, source)]) from None
        return _build_config(data, source, KeyLocator(text).line)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "<dict>") -> Config:
        return _build_config(data, source, lambda path: None)

    def worker_count(self) -> int:
        """Number of worker processes; "auto" = CPUs this process may run on."""
        if self.server.workers != "auto":
            return int(self.server.workers)
        try:
            n = len(os.sched_getaffinity(0))
        except (AttributeError, OSError):  # pragma: no cover - non-Linux
            n = os.cpu_count() or 1
        return max(1, min(n, MAX_WORKERS))


def _syntax_issue(message: str, text: str, source: str) -> ConfigIssue:
    line: int | None = None
    m = re.search(r" \(at line (\d+), column (\d+)\)$", message)
    if m:
        line = int(m.group(1))
        message = f"{message[: m.start()]} (column {m.group(2)})"
    elif message.endswith(" (at end of document)"):
        line = text.count("\n") + 1
    return ConfigIssue("", line, f"TOML syntax error: {message}", source)


# --------------------------------------------------------------------------- validation

_UPSTREAM_NAME_RE = re.compile(r"[A-Za-z0-9_.-]+")
_MANAGED_HEADERS = frozenset(
    ("connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding")
    + ("upgrade", "content-length")
)


def _cidrs(chk: _Checker, path: KeyPath, value: Any) -> Any:
    out, ok = [], True
    for item_path, item in chk.items(path, value, "CIDR strings", scalar_ok=True):
        try:
            out.append(parse_cidr(item))
        except ValueError as exc:
            chk.err(item_path, str(exc))
            ok = False
    return tuple(out) if ok else _BAD


_SERVER_CONVS: dict[str, Conv] = {
    "listen": lambda chk, path, value: listen_entries(chk, path, value, Address),
    "workers": _simple(parse_workers),
    "worker_cpu_affinity": _choice("off", "auto"),
    "client_header_timeout": _simple(parse_positive_duration),
    "client_body_timeout": _simple(parse_positive_duration),
    "client_send_timeout": _simple(parse_positive_duration),
    "keepalive_timeout": _simple(parse_duration),
    "websocket_idle_timeout": _simple(parse_positive_duration),
    "keepalive_requests": _int(1),
    "max_body_size": _simple(parse_size),
    "max_request_line": _simple(parse_positive_size),
    "max_header_size": _simple(parse_positive_size),
    "max_headers": _int(1),
    "trusted_proxies": _cidrs,
    "x_forwarded_for": _choice("append", "replace"),
    "forwarded": _simple(expect_bool),
    "via": _simple(expect_bool),
    "via_name": _simple(parse_via_name),
    "server_header": _simple(parse_server_header),
    "shutdown_timeout": _simple(parse_duration),
    "pid_file": _simple(parse_pid_file),
    "tls_handshake_timeout": _simple(parse_positive_duration),
}

_LOG_CONVS: dict[str, Conv] = {
    "access": _simple(lambda v: expect_str(v, nonempty=True)),
    "format": _choice("combined", "json"),
    "error": _simple(parse_error_log),
    "level": _choice("debug", "info", "warning", "error"),
}


def _listen_one(chk: _Checker, path: KeyPath, value: Any) -> Any:
    return _simple(lambda v: Address(*parse_host_port(v, listen=True)))(chk, path, value)


_ADMIN_CONVS: dict[str, Conv] = {"listen": _listen_one, "token": _simple(check_header_value)}

CACHE_MIN_SIZE = 1 << 20  # room for the region's tables plus a useful heap
HEURISTIC_MAX_LIMIT = 10 * 365 * 86400  # seconds: far beyond any sensible cap

_CACHE_CONVS: dict[str, Conv] = {
    "size": _simple(parse_positive_size),
    "max_entry_size": _simple(parse_positive_size),
    "max_entries": _int(0),
    "store_set_cookie": _simple(expect_bool),
    "x_cache_header": _simple(expect_bool),
    "lock_timeout": _simple(parse_positive_duration),
    "heuristic_max": _simple(parse_duration),
    "sendfile": _simple(expect_bool),
}


def _cache(chk: _Checker, value: Any) -> CacheConfig | None:
    kw = chk.fields(("cache",), value, _CACHE_CONVS)
    if kw is None:
        return None
    cfg = CacheConfig(**kw)
    if cfg.heuristic_max != int(cfg.heuristic_max) or cfg.heuristic_max > HEURISTIC_MAX_LIMIT:
        # ages are whole seconds (RFC 9111 1.2.2): "500ms" would silently be 0;
        # the request path keeps it in a C int64
        chk.err(
            ("cache", "heuristic_max"),
            f"must be 0 (off) or whole seconds up to {HEURISTIC_MAX_LIMIT}, "
            f"got {cfg.heuristic_max:g}s",
        )
        return None
    if cfg.size < CACHE_MIN_SIZE:
        chk.err(("cache", "size"), f"must be at least 1MiB (got {cfg.size} bytes)")
        return None
    if cfg.max_entry_size > cfg.size // 2:
        chk.err(
            ("cache", "max_entry_size"),
            f"must be at most half of cache.size ({cfg.size // 2} bytes), got {cfg.max_entry_size}",
        )
        return None
    return cfg


def _header_name(chk: _Checker, path: KeyPath, name: Any, request: bool) -> str | None:
    try:
        checked = check_header_name(name)
    except ValueError as exc:
        chk.err(path, str(exc))
        return None
    lower = checked.lower()
    if lower in _MANAGED_HEADERS:
        chk.err(path, f"header {checked!r} is managed by the proxy and cannot be changed")
        return None
    if request and lower == "host":
        chk.err(path, "set the Host header with upstreams.NAME.host, not request_headers")
        return None
    return checked


def _header_rules(request: bool) -> Conv:
    def pairs(chk: _Checker, path: KeyPath, value: Any, unique: bool) -> Any:
        if not isinstance(value, Mapping):
            chk.err(path, f"expected table of header name = value, got {type_name(value)}")
            return _BAD
        out, ok, seen = [], True, set()
        for name, val in value.items():
            item_path = (*path, str(name))
            checked = _header_name(chk, item_path, name, request)
            try:
                val = check_header_value(val)
            except ValueError as exc:
                chk.err(item_path, str(exc))
                checked = None
            if checked is None:
                ok = False
            elif unique and checked.lower() in seen:
                chk.err(item_path, f"header {checked!r} is set twice (names are case-insensitive)")
                ok = False
            else:
                seen.add(checked.lower())
                out.append((checked, val))
        return tuple(out) if ok else _BAD

    def remove(chk: _Checker, path: KeyPath, value: Any) -> Any:
        out, ok = [], True
        for item_path, item in chk.items(path, value, "header names", scalar_ok=True):
            name = _header_name(chk, item_path, item, request)
            ok = ok and name is not None
            out.append(name)
        return tuple(out) if ok else _BAD

    convs: dict[str, Conv] = {
        "set": lambda c, p, v: pairs(c, p, v, unique=True),
        "add": lambda c, p, v: pairs(c, p, v, unique=False),
        "remove": remove,
    }

    def conv(chk: _Checker, path: KeyPath, value: Any) -> Any:
        kw = chk.fields(path, value, convs)
        if kw is None:
            return _BAD
        rules = HeaderRules(**kw)
        set_names = {n.lower() for n, _ in rules.set}
        for i, name in enumerate(rules.remove):
            if name.lower() in set_names:
                chk.err((*path, "remove", i), f"header {name!r} is both set and removed")
                return _BAD
        return rules

    return conv


def _redirect(chk: _Checker, path: KeyPath, value: Any) -> Any:
    if isinstance(value, str):
        value = {"to": value}
    convs: dict[str, Conv] = {
        "to": _simple(parse_redirect_target),
        "status": _simple(parse_redirect_status),
        "keep_query": _simple(expect_bool),
    }
    missing = isinstance(value, Mapping) and "to" not in value
    if missing:
        chk.err(path, "missing required key 'to'")
    kw = chk.fields(path, value, convs)
    return _BAD if kw is None or missing else Redirect(**kw)


_ROUTE_CONVS: dict[str, Conv] = {
    "host": _simple(parse_host_pattern),
    "path_prefix": _simple(parse_path_prefix),
    "upstream": _simple(lambda v: expect_str(v, nonempty=True)),
    "return": _int(200, 599),  # a 1xx is never a final answer
    "body": _simple(expect_str),
    "redirect": _redirect,
    "websocket": _simple(expect_bool),
    "upgrade_protocols": _simple(parse_upgrade_protocols),
    "request_headers": _header_rules(request=True),
    "response_headers": _header_rules(request=False),
    "compression": lambda chk, path, value: value,  # resolved over [compression] later
    "cache": _simple(expect_bool),
    "cache_key": lambda chk, path, value: _cache_key(chk, path, value),
}


def _cache_key(chk: _Checker, path: KeyPath, value: Any) -> Any:
    def names(v: Any) -> tuple[str, ...]:
        if not isinstance(v, list):
            raise ValueError(f"expected a list of header names, got {type_name(v)}")
        return tuple(check_header_name(x).lower() for x in v)

    kw = chk.fields(path, value, {"query": _simple(expect_bool), "headers": _simple(names)})
    return _BAD if kw is None else CacheKey(**kw)


_ROUTE_TARGETS = ("upstream", "return", "redirect")


def _route(chk: _Checker, path: KeyPath, value: Any, upstream_names: list[str]) -> Any:
    before = len(chk.issues)
    tbl = chk.table(path, value, _ROUTE_CONVS)
    if tbl is None:
        return _BAD
    targets = [k for k in _ROUTE_TARGETS if k in tbl]
    if not targets:
        chk.err(path, "route needs one of 'upstream', 'return' or 'redirect'")
    elif len(targets) > 1:
        chk.err(
            (*path, targets[1]),
            f"route has both {targets[0]!r} and {targets[1]!r}; use exactly one of "
            "'upstream', 'return' or 'redirect'",
        )
    if "body" in tbl and "return" not in tbl:
        chk.err((*path, "body"), "'body' is only valid together with 'return'")
    elif "body" in tbl and tbl.get("return") in (204, 304) and tbl["body"]:
        chk.err((*path, "body"), f"a {tbl['return']} response has no content (RFC 9110 6.4.1)")
    kw: dict[str, Any] = {}
    for key, item in tbl.items():
        result = _ROUTE_CONVS[key](chk, (*path, key), item)
        if result is not _BAD:
            kw["return_status" if key == "return" else key] = result
    name = kw.get("upstream")
    if name is not None and name not in upstream_names:
        defined = ", ".join(upstream_names) if upstream_names else "none"
        chk.err((*path, "upstream"), f"undefined upstream {name!r} (defined: {defined})")
    return RouteConfig(**kw) if len(chk.issues) == before else _BAD


_TOP_KEYS = ("server", "log", "admin", "cache", "upstreams", "routes", "compression")


def _listen_overlap(a: Address, b: Address) -> bool:
    """Would binding both fail? Same port and same host, or either one a wildcard."""
    wild = ("0.0.0.0", "::")
    return a.port == b.port != 0 and (a.host == b.host or a.host in wild or b.host in wild)


def _build_config(
    data: Mapping[str, Any], source: str, locate: Callable[[KeyPath], int | None]
) -> Config:
    chk = _Checker(source, locate)
    top = chk.table((), data, _TOP_KEYS) or {}

    server = chk.fields(("server",), top.get("server", {}), _SERVER_CONVS)
    log = chk.fields(("log",), top.get("log", {}), _LOG_CONVS)
    admin_kw = None
    if top.get("admin") is not None:
        admin_kw = chk.fields(("admin",), top["admin"], _ADMIN_CONVS)
    cache = _cache(chk, top["cache"]) if top.get("cache") is not None else None

    upstreams: dict[str, UpstreamConfig] = {}
    names: list[str] = []
    raw_upstreams = top.get("upstreams", {})
    if not isinstance(raw_upstreams, Mapping):
        chk.err(("upstreams",), f"expected table, got {type_name(raw_upstreams)}")
        raw_upstreams = {}
    for name, value in raw_upstreams.items():
        path: KeyPath = ("upstreams", str(name))
        names.append(str(name))
        if not isinstance(name, str) or not _UPSTREAM_NAME_RE.fullmatch(name):
            chk.err(path, f"invalid upstream name {name!r} (use letters, digits, '_', '-', '.')")
        if isinstance(value, Mapping) and "servers" not in value:
            chk.err(path, "missing required key 'servers'")
        kw = chk.fields(path, value, UPSTREAM_CONVS)
        if kw is not None and not check_hash_key(chk, path, kw):
            kw = None
        if kw is not None and "servers" in kw:
            upstreams[str(name)] = UpstreamConfig(name=str(name), **kw)

    compression = _compression(chk, ("compression",), top.get("compression", {}), None)
    routes: list[RouteConfig] = []
    raw_routes = top.get("routes", [])
    if not isinstance(raw_routes, list | tuple):
        chk.err(("routes",), f"expected array of tables ([[routes]]), got {type_name(raw_routes)}")
    elif raw_routes:
        for i, value in enumerate(raw_routes):
            route = _route(chk, ("routes", i), value, names)
            if route is not _BAD:
                eff = compression or CompressionConfig()
                if "compression" in value:
                    cpath: KeyPath = ("routes", i, "compression")
                    eff = _compression(chk, cpath, value["compression"], eff) or eff
                if route.cache and top.get("cache") is None:
                    chk.err(("routes", i, "cache"), "cache = true needs a [cache] section")
                routes.append(replace(route, compression=eff))
    elif len(names) == 1:
        routes.append(
            RouteConfig(upstream=names[0], compression=compression or CompressionConfig())
        )
    elif not names:
        chk.err(("routes",), "nothing to serve: define [upstreams.NAME] and/or [[routes]]")
    else:
        chk.err(
            ("routes",),
            f"no [[routes]] defined; with several upstreams ({', '.join(names)}) "
            "routes are required",
        )

    if server is not None and "listen" in server:
        server["listen"], opts = server["listen"]
        server["listen_options"] = tuple(opts.items())
    if server is not None and admin_kw is not None:
        admin_addr = admin_kw.get("listen", AdminConfig().listen)
        for i, addr in enumerate(server.get("listen", ServerConfig().listen)):
            if _listen_overlap(addr, admin_addr):
                chk.err(("admin", "listen"), f"'{admin_addr}' conflicts with server.listen[{i}]")

    if chk.issues:
        chk.issues.sort(key=lambda issue: (issue.line is None, issue.line or 0))
        raise ConfigError(chk.issues)
    assert server is not None and log is not None
    return Config(
        server=ServerConfig(**server),
        log=LogConfig(**log),
        admin=None if admin_kw is None else AdminConfig(**admin_kw),
        cache=cache,
        upstreams=upstreams,
        routes=tuple(routes),
        source=source,
        compression=compression or CompressionConfig(),
    )


def _compression(
    chk: _Checker, path: KeyPath, value: Any, base: CompressionConfig | None
) -> CompressionConfig | None:
    """[compression] (base None) or a route's override of it."""
    if base is None and isinstance(value, bool):
        chk.err(path, "expected table, got boolean (true/false is for a route's override)")
        return None
    return compression_section(
        path,
        value,
        base or CompressionConfig(),
        chk.err,
        lambda key: _unknown_key(key, _COMPRESSION_KEYS),
    )


# Sanity: converter tables and dataclass fields must stay in step.
assert set(_SERVER_CONVS) | {"listen_options"} == {f.name for f in fields(ServerConfig)}
assert set(_LOG_CONVS) == {f.name for f in fields(LogConfig)}
assert set(_ADMIN_CONVS) == {f.name for f in fields(AdminConfig)}
assert set(_CACHE_CONVS) == {f.name for f in fields(CacheConfig)}
