"""The `[upstreams.NAME]` section: its model (UpstreamConfig, ServerSpec,
HealthCheck, CircuitBreaker) and the converters that check it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, Literal

from fastproxy.config_check import BAD, Checker, Conv, int_conv, simple
from fastproxy.config_tls import UpstreamTLS, parse_server_url, upstream_tls
from fastproxy.config_values import (
    Address,
    KeyPath,
    expect_bool,
    expect_str,
    format_path,
    parse_balance,
    parse_check_path,
    parse_duration,
    parse_expect_status,
    parse_hash_key,
    parse_positive_duration,
    parse_upstream_host,
    type_name,
)


@dataclass(frozen=True, slots=True)
class ServerSpec:
    address: Address
    weight: int = 1
    backup: bool = False
    max_conns: int = 0
    tls: bool = False  # given as "https://..."
    slow_start: float | None = None  # None: the upstream's slow_start


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


def _server_url(value: Any) -> tuple[Address, bool]:
    host, port, tls = parse_server_url(value)
    return Address(host, port), tls


def _plain_server(address: Address, tls: bool) -> ServerSpec:
    return ServerSpec(address, tls=tls)


def _server_spec(chk: Checker, path: KeyPath, value: Any) -> Any:
    if isinstance(value, str):
        return simple(lambda v: _plain_server(*_server_url(v)))(chk, path, value)
    convs: dict[str, Conv] = {
        "address": simple(_server_url),
        "weight": int_conv(1),
        "backup": simple(expect_bool),
        "max_conns": int_conv(0),
        "slow_start": simple(parse_duration),
    }
    if not isinstance(value, Mapping):
        chk.err(path, f"expected 'host:port' string or table, got {type_name(value)}")
        return BAD
    if "address" not in value:
        chk.err(path, "missing required key 'address'")
    kw = chk.fields(path, value, convs)
    if kw is None or "address" not in kw:
        return BAD
    kw["address"], kw["tls"] = kw["address"]
    return ServerSpec(**kw)


def _servers(chk: Checker, path: KeyPath, value: Any) -> Any:
    items = chk.items(path, value, "servers", scalar_ok=True)
    if not items:
        if isinstance(value, list | tuple):
            chk.err(path, "must list at least one server")
        return BAD
    out, ok = [], True
    seen: dict[Address, KeyPath] = {}
    for item_path, item in items:
        spec = _server_spec(chk, item_path, item)
        if spec is BAD:
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
    return tuple(out) if ok else BAD


def check_hash_key(chk: Checker, path: KeyPath, kw: dict[str, Any]) -> bool:
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


HEALTH_CONVS: dict[str, Conv] = {
    "path": simple(parse_check_path),
    "interval": simple(parse_positive_duration),
    "timeout": simple(parse_positive_duration),
    "rise": int_conv(1, 1000),
    "fall": int_conv(1, 1000),
    "expect_status": simple(parse_expect_status),
    "expect_body": simple(lambda v: expect_str(v, nonempty=True)),
    "host": simple(parse_upstream_host),
}


def _health_check(chk: Checker, path: KeyPath, value: Any) -> Any:
    kw = chk.fields(path, value, HEALTH_CONVS)
    return BAD if kw is None else HealthCheck(**kw)


def _error_rate(v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or not 0 < v <= 1:
        raise ValueError(f"expected a fraction in (0, 1], e.g. 0.5, got {v!r}")
    return float(v)


BREAKER_CONVS: dict[str, Conv] = {
    "consecutive_failures": int_conv(0, 1_000_000),
    "error_rate": simple(_error_rate),
    "min_requests": int_conv(1, 1_000_000),
    "window": simple(parse_positive_duration),
    "cooldown": simple(parse_positive_duration),
    "half_open_requests": int_conv(1, 1000),
}


def _circuit_breaker(chk: Checker, path: KeyPath, value: Any) -> Any:
    kw = chk.fields(path, value, BREAKER_CONVS)
    if kw is None:
        return BAD
    cb = CircuitBreaker(**kw)
    if cb.consecutive_failures == 0 and cb.error_rate == 0:
        chk.err(path, "set consecutive_failures and/or error_rate, or the breaker never trips")
        return BAD
    return cb


UPSTREAM_CONVS: dict[str, Conv] = {
    "servers": _servers,
    "balance": simple(parse_balance),
    "hash_key": simple(parse_hash_key),
    "keepalive": int_conv(0),
    "keepalive_timeout": simple(parse_duration),
    "keepalive_requests": int_conv(1),
    "connect_timeout": simple(parse_positive_duration),
    "read_timeout": simple(parse_positive_duration),
    "send_timeout": simple(parse_positive_duration),
    "host": simple(parse_upstream_host),
    "health_check": _health_check,
    "retries": int_conv(0, 100),
    "retry_non_idempotent": simple(expect_bool),
    "retry_timeout": simple(parse_duration),
    "max_fails": int_conv(0, 1_000_000),
    "fail_timeout": simple(parse_positive_duration),
    "fail_on_5xx": simple(expect_bool),
    "slow_start": simple(parse_duration),
    "circuit_breaker": _circuit_breaker,
    "tls": upstream_tls,
}


# Sanity: converter tables and dataclass fields must stay in step.
assert set(HEALTH_CONVS) == {f.name for f in fields(HealthCheck)}
assert set(BREAKER_CONVS) == {f.name for f in fields(CircuitBreaker)}
assert set(UPSTREAM_CONVS) | {"name"} == {f.name for f in fields(UpstreamConfig)}
