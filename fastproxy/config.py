"""fastproxy configuration: TOML loading, validation and the frozen config model.

Use ``Config.load(path)``, ``Config.from_toml(text)`` or ``Config.from_dict(d)``.
Every problem found is collected and raised together as one ``ConfigError``
whose ``issues`` carry the key path and, for TOML input, the line number.
See docs/config.md for the reference of every key.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal

from fastproxy.config_compression import KEYS as _COMPRESSION_KEYS
from fastproxy.config_compression import CompressionConfig, compression_section
from fastproxy.config_tls import (
    ListenOptions,
    UpstreamTLS,
    listen_entries,
    parse_server_url,
    upstream_tls,
)
from fastproxy.config_values import (
    BAD,
    MAX_WORKERS,
    IPNetwork,
    KeyLocator,
    KeyPath,
    check_header_name,
    check_header_value,
    expect_bool,
    expect_choice,
    expect_int,
    expect_str,
    format_path,
    parse_balance,
    parse_check_path,
    parse_cidr,
    parse_duration,
    parse_error_log,
    parse_expect_status,
    parse_hash_key,
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
    parse_upstream_host,
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

# --------------------------------------------------------------------------- errors


@dataclass(frozen=True, slots=True)
class ConfigIssue:
    path: str
    line: int | None
    message: str
    source: str

    def __str__(self) -> str:
        where = self.source if self.line is None else f"{self.source}:{self.line}"
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class ConfigError(ValueError):
    """Raised with every problem found in a configuration; one issue per line in str()."""

    def __init__(self, issues: Iterable[ConfigIssue]) -> None:
        self.issues: list[ConfigIssue] = list(issues)
        super().__init__(self.issues)

    def __str__(self) -> str:
        return "\n".join(str(issue) for issue in self.issues)


# --------------------------------------------------------------------------- model


@dataclass(frozen=True, slots=True)
class Address:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


_PLAIN = ListenOptions()


@dataclass(frozen=True, slots=True)
class ServerConfig:
    listen: tuple[Address, ...] = (Address("127.0.0.1", 8080),)
    workers: int | Literal["auto"] = 1
    worker_cpu_affinity: Literal["off", "auto"] = "off"
    client_header_timeout: float = 10.0
    client_body_timeout: float = 30.0
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


@dataclass(frozen=True, slots=True)
class ServerSpec:
    address: Address
    weight: int = 1
    backup: bool = False
    max_conns: int = 0
    tls: bool = False  # given as "https://..."


@dataclass(frozen=True, slots=True)
class HealthCheck:
    """Active health checks of an upstream's servers (run by the master)."""

    path: str = "/healthz"
    interval: float = 2.0
    timeout: float = 1.0
    rise: int = 2
    fall: int = 3
    expect_status: tuple[tuple[int, int], ...] = ((200, 399),)  # inclusive ranges
    expect_body: str | None = None
    host: str | None = None  # Host header; None: the server's address

    def status_ok(self, status: int) -> bool:
        return any(lo <= status <= hi for lo, hi in self.expect_status)


@dataclass(frozen=True, slots=True)
class CircuitBreaker:
    """Per server: trip after `consecutive_failures` in a row, or when at least
    `min_requests` outcomes within `window` failed at `error_rate` or more;
    stay open `cooldown`, then let `half_open_requests` trials through."""

    consecutive_failures: int = 5
    error_rate: float = 0.0  # 0 = no error-rate trip
    min_requests: int = 20
    window: float = 10.0
    cooldown: float = 30.0
    half_open_requests: int = 1


@dataclass(frozen=True, slots=True)
class UpstreamConfig:
    name: str
    servers: tuple[ServerSpec, ...]
    balance: Literal["round_robin", "least_conn", "ip_hash", "hash", "random"] = "round_robin"
    hash_key: str | None = None
    keepalive: int = 32
    keepalive_timeout: float = 60.0
    keepalive_requests: int = 1000
    connect_timeout: float = 5.0
    read_timeout: float = 60.0
    send_timeout: float = 60.0
    host: str = "pass"
    health_check: HealthCheck | None = None
    retries: int = 2
    retry_non_idempotent: bool = False
    retry_timeout: float = 10.0
    max_fails: int = 1
    fail_timeout: float = 10.0
    fail_on_5xx: bool = False
    slow_start: float = 0.0
    circuit_breaker: CircuitBreaker | None = None
    tls: UpstreamTLS | None = None


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

_BAD: Any = BAD  # sentinel: the value was invalid and an issue was recorded
Conv = Callable[["_Checker", KeyPath, Any], Any]

_UPSTREAM_NAME_RE = re.compile(r"[A-Za-z0-9_.-]+")
_MANAGED_HEADERS = frozenset(
    ("connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding")
    + ("upgrade", "content-length")
)


class _Checker:
    def __init__(self, source: str, locate: Callable[[KeyPath], int | None]) -> None:
        self.source = source
        self.locate = locate
        self.issues: list[ConfigIssue] = []

    def err(self, path: KeyPath, message: str) -> None:
        self.issues.append(ConfigIssue(format_path(path), self.locate(path), message, self.source))

    def table(self, path: KeyPath, value: Any, known: Iterable[str]) -> dict[str, Any] | None:
        """Check value is a table with only known keys; return the known part."""
        if not isinstance(value, Mapping):
            self.err(path, f"expected table, got {type_name(value)}")
            return None
        known = list(known)
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                self.err(path, f"keys must be strings, got {type_name(key)} {key!r}")
            elif key in known:
                out[key] = item
            else:
                self.err((*path, key), _unknown_key(key, known))
        return out

    def fields(self, path: KeyPath, value: Any, convs: Mapping[str, Conv]) -> dict[str, Any] | None:
        """Check a table against converters, in key order; None if anything was wrong."""
        if not isinstance(value, Mapping):
            self.err(path, f"expected table, got {type_name(value)}")
            return None
        before = len(self.issues)
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                self.err(path, f"keys must be strings, got {type_name(key)} {key!r}")
            elif key not in convs:
                self.err((*path, key), _unknown_key(key, list(convs)))
            elif (result := convs[key](self, (*path, key), item)) is not _BAD:
                out[key] = result
        return out if len(self.issues) == before else None

    def items(
        self, path: KeyPath, value: Any, what: str, scalar_ok: bool
    ) -> list[tuple[KeyPath, Any]]:
        """Elements of an array (or a lone string if scalar_ok) with their paths."""
        if scalar_ok and isinstance(value, str):
            return [(path, value)]
        if not isinstance(value, list | tuple):
            alt = " or a single string" if scalar_ok else ""
            self.err(path, f"expected array of {what}{alt}, got {type_name(value)}")
            return []
        return [((*path, i), item) for i, item in enumerate(value)]


def _unknown_key(key: str, known: Sequence[str]) -> str:
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    if close:
        return f"unknown key {key!r}; did you mean {close[0]!r}?"
    return f"unknown key {key!r} (known keys: {', '.join(sorted(known))})"


def _simple(fn: Callable[[Any], Any]) -> Conv:
    def conv(chk: _Checker, path: KeyPath, value: Any) -> Any:
        try:
            return fn(value)
        except ValueError as exc:
            chk.err(path, str(exc))
            return _BAD

    return conv


def _int(minimum: int | None = None, maximum: int | None = None) -> Conv:
    return _simple(lambda v: expect_int(v, minimum, maximum))


def _choice(*choices: str) -> Conv:
    return _simple(lambda v: expect_choice(v, choices))


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

_CACHE_CONVS: dict[str, Conv] = {
    "size": _simple(parse_positive_size),
    "max_entry_size": _simple(parse_positive_size),
    "max_entries": _int(0),
    "store_set_cookie": _simple(expect_bool),
    "x_cache_header": _simple(expect_bool),
    "lock_timeout": _simple(parse_positive_duration),
    "heuristic_max": _simple(parse_duration),
}


def _cache(chk: _Checker, value: Any) -> CacheConfig | None:
    kw = chk.fields(("cache",), value, _CACHE_CONVS)
    if kw is None:
        return None
    cfg = CacheConfig(**kw)
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


def _server_url(value: Any) -> tuple[Address, bool]:
    host, port, tls = parse_server_url(value)
    return Address(host, port), tls


def _plain_server(address: Address, tls: bool) -> ServerSpec:
    return ServerSpec(address, tls=tls)


def _server_spec(chk: _Checker, path: KeyPath, value: Any) -> Any:
    if isinstance(value, str):
        return _simple(lambda v: _plain_server(*_server_url(v)))(chk, path, value)
    convs: dict[str, Conv] = {
        "address": _simple(_server_url),
        "weight": _int(1),
        "backup": _simple(expect_bool),
        "max_conns": _int(0),
    }
    if not isinstance(value, Mapping):
        chk.err(path, f"expected 'host:port' string or table, got {type_name(value)}")
        return _BAD
    if "address" not in value:
        chk.err(path, "missing required key 'address'")
    kw = chk.fields(path, value, convs)
    if kw is None or "address" not in kw:
        return _BAD
    kw["address"], kw["tls"] = kw["address"]
    return ServerSpec(**kw)


def _servers(chk: _Checker, path: KeyPath, value: Any) -> Any:
    items = chk.items(path, value, "servers", scalar_ok=True)
    if not items:
        if isinstance(value, list | tuple):
            chk.err(path, "must list at least one server")
        return _BAD
    out, ok = [], True
    seen: dict[Address, KeyPath] = {}
    for item_path, item in items:
        spec = _server_spec(chk, item_path, item)
        if spec is _BAD:
            ok = False
            continue
        if spec.address in seen:
            other = format_path(seen[spec.address])
            chk.err(item_path, f"duplicate server '{spec.address}' (also {other}); use weight")
            ok = False
        seen.setdefault(spec.address, item_path)
        out.append(spec)
    if ok and all(s.backup for s in out):
        chk.err(path, "at least one server must not be a backup")
        ok = False
    return tuple(out) if ok else _BAD


def _check_hash_key(chk: _Checker, path: KeyPath, kw: dict[str, Any]) -> bool:
    """balance = "hash" needs a hash_key, and a hash_key needs balance = "hash"."""
    balance = kw.get("balance", "round_robin")
    if balance == "hash" and "hash_key" not in kw:
        chk.err(
            (*path, "balance"),
            "balance 'hash' needs hash_key ('header:NAME', 'cookie:NAME', 'query:NAME' or 'path')",
        )
        return False
    if balance != "hash" and "hash_key" in kw:
        chk.err((*path, "hash_key"), f"only used with balance = 'hash' (not {balance!r})")
        return False
    return True


_HEALTH_CONVS: dict[str, Conv] = {
    "path": _simple(parse_check_path),
    "interval": _simple(parse_positive_duration),
    "timeout": _simple(parse_positive_duration),
    "rise": _int(1, 1000),
    "fall": _int(1, 1000),
    "expect_status": _simple(parse_expect_status),
    "expect_body": _simple(lambda v: expect_str(v, nonempty=True)),
    "host": _simple(parse_upstream_host),
}


def _health_check(chk: _Checker, path: KeyPath, value: Any) -> Any:
    kw = chk.fields(path, value, _HEALTH_CONVS)
    return _BAD if kw is None else HealthCheck(**kw)


def _error_rate(v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or not 0 < v <= 1:
        raise ValueError(f"expected a fraction in (0, 1], e.g. 0.5, got {v!r}")
    return float(v)


_BREAKER_CONVS: dict[str, Conv] = {
    "consecutive_failures": _int(0, 1_000_000),
    "error_rate": _simple(_error_rate),
    "min_requests": _int(1, 1_000_000),
    "window": _simple(parse_positive_duration),
    "cooldown": _simple(parse_positive_duration),
    "half_open_requests": _int(1, 1000),
}


def _circuit_breaker(chk: _Checker, path: KeyPath, value: Any) -> Any:
    kw = chk.fields(path, value, _BREAKER_CONVS)
    if kw is None:
        return _BAD
    cb = CircuitBreaker(**kw)
    if cb.consecutive_failures == 0 and cb.error_rate == 0:
        chk.err(path, "set consecutive_failures and/or error_rate, or the breaker never trips")
        return _BAD
    return cb


_UPSTREAM_CONVS: dict[str, Conv] = {
    "servers": _servers,
    "balance": _simple(parse_balance),
    "hash_key": _simple(parse_hash_key),
    "keepalive": _int(0),
    "keepalive_timeout": _simple(parse_duration),
    "keepalive_requests": _int(1),
    "connect_timeout": _simple(parse_positive_duration),
    "read_timeout": _simple(parse_positive_duration),
    "send_timeout": _simple(parse_positive_duration),
    "host": _simple(parse_upstream_host),
    "health_check": _health_check,
    "retries": _int(0, 100),
    "retry_non_idempotent": _simple(expect_bool),
    "retry_timeout": _simple(parse_duration),
    "max_fails": _int(0, 1_000_000),
    "fail_timeout": _simple(parse_positive_duration),
    "fail_on_5xx": _simple(expect_bool),
    "slow_start": _simple(parse_duration),
    "circuit_breaker": _circuit_breaker,
    "tls": upstream_tls,
}


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
        kw = chk.fields(path, value, _UPSTREAM_CONVS)
        if kw is not None and not _check_hash_key(chk, path, kw):
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
assert set(_HEALTH_CONVS) == {f.name for f in fields(HealthCheck)}
assert set(_BREAKER_CONVS) == {f.name for f in fields(CircuitBreaker)}
assert set(_UPSTREAM_CONVS) | {"name"} == {f.name for f in fields(UpstreamConfig)}
