import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network
from typing import Any, Literal, TypeAlias

from fastproxy.config_tls import ListenOptions as ListenOptions
from fastproxy.config_tls import UpstreamTLS as UpstreamTLS

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

IPNetwork: TypeAlias = IPv4Network | IPv6Network
_PathSeg: TypeAlias = str | int
KeyPath: TypeAlias = tuple[_PathSeg, ...]

@dataclass(frozen=True, slots=True)
class ConfigIssue:
    path: str
    line: int | None
    message: str
    source: str

class ConfigError(ValueError):
    issues: list[ConfigIssue]
    def __init__(self, issues: Iterable[ConfigIssue]) -> None: ...

def format_path(path: Sequence[_PathSeg]) -> str: ...
def parse_path(text: str) -> KeyPath: ...

class KeyLocator:
    def __init__(self, text: str) -> None: ...
    def line(self, path: str | Sequence[_PathSeg]) -> int | None: ...

@dataclass(frozen=True, slots=True)
class Address:
    host: str
    port: int

@dataclass(frozen=True, slots=True)
class ServerConfig:
    listen: tuple[Address, ...] = ...
    workers: int | Literal["auto"] = 1
    worker_cpu_affinity: Literal["off", "auto"] = "off"
    client_header_timeout: float = 10.0
    client_body_timeout: float = 30.0
    client_send_timeout: float = 60.0
    keepalive_timeout: float = 75.0
    websocket_idle_timeout: float = 300.0
    keepalive_requests: int = 1000
    max_body_size: int = ...
    max_request_line: int = ...
    max_header_size: int = ...
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
    listen_options: tuple[tuple[Address, ListenOptions], ...] = ()
    def options(self, addr: Address) -> ListenOptions: ...

@dataclass(frozen=True, slots=True)
class LogConfig:
    access: str = "stdout"
    format: Literal["combined", "json"] = "combined"
    error: str = "stderr"
    level: Literal["debug", "info", "warning", "error"] = "info"

@dataclass(frozen=True, slots=True)
class AdminConfig:
    listen: Address = ...
    token: str = ""

@dataclass(frozen=True, slots=True)
class ServerSpec:
    address: Address
    weight: int = 1
    backup: bool = False
    max_conns: int = 0
    tls: bool = False
    slow_start: float | None = None

@dataclass(frozen=True, slots=True)
class HealthCheck:
    path: str = "/healthz"
    interval: float = 2.0
    timeout: float = 1.0
    rise: int = 2
    fall: int = 3
    expect_status: tuple[tuple[int, int], ...] = ...
    expect_body: str | None = None
    host: str | None = None
    def status_ok(self, status: int) -> bool: ...

@dataclass(frozen=True, slots=True)
class CircuitBreaker:
    consecutive_failures: int = 5
    error_rate: float = 0.0
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
class CompressionConfig:
    enabled: bool = False
    algorithms: tuple[str, ...] = ...  # server preference order: "zstd", "br", "gzip"
    levels: tuple[tuple[str, int], ...] = ...  # (algorithm, level), sorted by name
    min_length: int = 1024
    types: tuple[str, ...] = ...
    decompress_upstream: bool = False
    max_decompressed_size: int = ...
    max_ratio: int = 100
    @property
    def active(self) -> bool: ...

@dataclass(frozen=True, slots=True)
class RouteConfig:
    host: str | None = None
    path_prefix: str = "/"
    upstream: str | None = None
    return_status: int | None = None
    body: str = ""
    redirect: Redirect | None = None
    websocket: bool = True
    request_headers: HeaderRules = ...
    response_headers: HeaderRules = ...
    compression: CompressionConfig = ...  # effective: [compression] + the route's override
    cache: bool = False
    cache_key: CacheKey = ...
    upgrade_protocols: tuple[str, ...] = ("websocket",)

@dataclass(frozen=True, slots=True)
class CacheKey:
    query: bool = True
    headers: tuple[str, ...] = ()

@dataclass(frozen=True, slots=True)
class CacheConfig:
    size: int = ...
    max_entry_size: int = ...
    max_entries: int = 0
    store_set_cookie: bool = False
    x_cache_header: bool = True
    lock_timeout: float = 5.0
    heuristic_max: float = 86400.0
    sendfile: bool = True

@dataclass(frozen=True, slots=True)
class Config:
    server: ServerConfig = ...
    log: LogConfig = ...
    admin: AdminConfig | None = None
    cache: CacheConfig | None = None
    upstreams: dict[str, UpstreamConfig] = ...
    routes: tuple[RouteConfig, ...] = ()
    source: str = "<default>"
    compression: CompressionConfig = ...
    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Config: ...
    @classmethod
    def from_toml(cls, text: str, source: str = "<string>") -> Config: ...
    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "<dict>") -> Config: ...
    def worker_count(self) -> int: ...
