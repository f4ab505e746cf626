"""Tests for fastproxy.config: loading, validation, value syntaxes and the line locator."""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import textwrap
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fastproxy.config import (
    Address,
    AdminConfig,
    Config,
    ConfigError,
    ConfigIssue,
    HeaderRules,
    HealthCheck,
    KeyLocator,
    LogConfig,
    Redirect,
    RouteConfig,
    ServerConfig,
    ServerSpec,
    UpstreamConfig,
    format_path,
    parse_path,
)
from fastproxy.config_values import (
    parse_duration,
    parse_expect_status,
    parse_host_port,
    parse_size,
)

FULL_EXAMPLE = """\
[server]
listen = ["127.0.0.1:8080"]        # list of "host:port"; a single string is also accepted
workers = 1                        # int >= 1 or "auto"
worker_cpu_affinity = "off"        # "off" | "auto"
client_header_timeout = "10s"
client_body_timeout = "30s"
client_send_timeout = "60s"        # a client taking none of its answer: closed
keepalive_timeout = "75s"          # client-side idle keep-alive
keepalive_requests = 1000          # max requests per client connection
max_body_size = "1GiB"             # 0 = unlimited
max_request_line = "8KiB"          # 414 above
max_header_size = "32KiB"          # whole request head; 431 above
max_headers = 100                  # 431 above
trusted_proxies = []               # CIDRs whose incoming X-Forwarded-* are kept
x_forwarded_for = "append"         # "append" | "replace"
forwarded = false                  # add RFC 7239 Forwarded
via = false                        # add Via: 1.1 <via_name>
via_name = "fastproxy"
server_header = false              # false | "fastproxy"
shutdown_timeout = "30s"
pid_file = "/tmp/fastproxy.pid"    # default; document it

[log]
access = "stdout"                  # "stdout" | "stderr" | "off" | file path
format = "combined"                # "combined" | "json"
error = "stderr"                   # "stderr" | file path
level = "info"                     # "debug" | "info" | "warning" | "error"

[admin]                            # section optional; absent => admin off
listen = "127.0.0.1:9901"
token = ""                         # optional bearer token

[upstreams.app]
servers = [
    "127.0.0.1:9001",
    { address = "127.0.0.1:9002", weight = 2, backup = false, max_conns = 0 },
]
balance = "round_robin"
keepalive = 32                     # idle pooled connections per server per worker
keepalive_timeout = "60s"
keepalive_requests = 1000
connect_timeout = "5s"
read_timeout = "60s"
send_timeout = "60s"
host = "pass"

[[routes]]
host = "example.com"
path_prefix = "/"
upstream = "app"
websocket = true
request_headers = { set = { "X-Env" = "prod" }, add = { "X-A" = "1" }, remove = ["X-Debug"] }
response_headers = { set = { "X-Frame-Options" = "DENY" }, add = {}, remove = [] }

[[routes]]
path_prefix = "/forbidden"
return = 403
body = "text"

[[routes]]
path_prefix = "/old"
redirect = { to = "https://example.com/new", status = 308, keep_query = true }
"""

MINIMAL = '[upstreams.app]\nservers = ["127.0.0.1:9001"]\n'


def toml(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


def line_of(text: str, marker: str) -> int:
    """1-based line of the only line containing marker."""
    hits = [n for n, line in enumerate(text.splitlines(), 1) if marker in line]
    assert len(hits) == 1, (marker, hits)
    return hits[0]


def errors(text: str) -> list[ConfigIssue]:
    with pytest.raises(ConfigError) as info:
        Config.from_toml(text, source="t.toml")
    return info.value.issues


def one_error(text: str) -> ConfigIssue:
    issues = errors(text)
    assert len(issues) == 1, [str(i) for i in issues]
    return issues[0]


def server_value(key: str, value: str):
    cfg = Config.from_toml(f"[server]\n{key} = {value}\n" + MINIMAL)
    return getattr(cfg.server, key)


def server_error(key: str, value: str) -> ConfigIssue:
    issue = one_error(f"[server]\n{key} = {value}\n" + MINIMAL)
    assert issue.path == f"server.{key}" or issue.path.startswith(f"server.{key}[")
    assert issue.line == 2
    return issue


def route_error(route_body: str) -> ConfigIssue:
    return one_error(MINIMAL + "[[routes]]\n" + toml(route_body))


def route(route_body: str) -> RouteConfig:
    cfg = Config.from_toml(MINIMAL + "[[routes]]\n" + toml(route_body))
    assert len(cfg.routes) == 1
    return cfg.routes[0]


# --------------------------------------------------------------------------- full example


def test_full_example_parses_to_the_model(tmp_path: Path) -> None:
    path = tmp_path / "fastproxy.toml"
    path.write_text(FULL_EXAMPLE)
    cfg = Config.load(path)
    assert cfg.source == str(path)
    s = cfg.server
    assert s.listen == (Address("127.0.0.1", 8080),)
    assert (s.workers, s.worker_cpu_affinity) == (1, "off")
    assert (s.client_header_timeout, s.client_body_timeout, s.keepalive_timeout) == (10, 30, 75)
    assert (s.keepalive_requests, s.max_headers) == (1000, 100)
    assert (s.max_body_size, s.max_request_line, s.max_header_size) == (2**30, 8192, 32768)
    assert s.trusted_proxies == ()
    assert s.x_forwarded_for == "append"
    assert (s.forwarded, s.via, s.via_name) == (False, False, "fastproxy")
    assert s.server_header is None
    assert (s.shutdown_timeout, s.pid_file) == (30.0, "/tmp/fastproxy.pid")
    assert cfg.log == LogConfig("stdout", "combined", "stderr", "info")
    assert cfg.admin == AdminConfig(Address("127.0.0.1", 9901), "")
    assert cfg.upstreams == {
        "app": UpstreamConfig(
            name="app",
            servers=(
                ServerSpec(Address("127.0.0.1", 9001)),
                ServerSpec(Address("127.0.0.1", 9002), weight=2, backup=False, max_conns=0),
            ),
            balance="round_robin",
            keepalive=32,
            keepalive_timeout=60.0,
            keepalive_requests=1000,
            connect_timeout=5.0,
            read_timeout=60.0,
            send_timeout=60.0,
            host="pass",
        )
    }
    assert cfg.routes == (
        RouteConfig(
            host="example.com",
            path_prefix="/",
            upstream="app",
            websocket=True,
            request_headers=HeaderRules(
                set=(("X-Env", "prod"),), add=(("X-A", "1"),), remove=("X-Debug",)
            ),
            response_headers=HeaderRules(set=(("X-Frame-Options", "DENY"),)),
        ),
        RouteConfig(path_prefix="/forbidden", return_status=403, body="text"),
        RouteConfig(path_prefix="/old", redirect=Redirect("https://example.com/new", 308, True)),
    )


def test_model_is_frozen_and_typed() -> None:
    cfg = Config.from_toml(FULL_EXAMPLE)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.server.workers = 4  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.routes[0].request_headers.set = ()  # type: ignore[misc]
    assert isinstance(cfg.routes, tuple)
    assert isinstance(cfg.server.listen, tuple)
    assert isinstance(cfg.server.client_header_timeout, float)


# --------------------------------------------------------------------------- defaults


EXPECTED_SERVER_DEFAULTS = {
    "listen": (Address("127.0.0.1", 8080),),
    "workers": 1,
    "worker_cpu_affinity": "off",
    "client_header_timeout": 10.0,
    "client_body_timeout": 30.0,
    "client_send_timeout": 60.0,
    "keepalive_timeout": 75.0,
    "websocket_idle_timeout": 300.0,
    "keepalive_requests": 1000,
    "max_body_size": 1024**3,
    "max_request_line": 8 * 1024,
    "max_header_size": 32 * 1024,
    "max_headers": 100,
    "trusted_proxies": (),
    "x_forwarded_for": "append",
    "forwarded": False,
    "via": False,
    "via_name": "fastproxy",
    "server_header": None,
    "shutdown_timeout": 30.0,
    "pid_file": "/tmp/fastproxy.pid",
    "tls_handshake_timeout": 10.0,
    "listen_options": (),
}
EXPECTED_UPSTREAM_DEFAULTS = {
    "balance": "round_robin",
    "hash_key": None,
    "keepalive": 32,
    "keepalive_timeout": 60.0,
    "keepalive_requests": 1000,
    "connect_timeout": 5.0,
    "read_timeout": 60.0,
    "send_timeout": 60.0,
    "host": "pass",
    "health_check": None,
}


@pytest.mark.parametrize("key, expected", sorted(EXPECTED_SERVER_DEFAULTS.items()))
def test_server_default(key: str, expected: object) -> None:
    cfg = Config.from_toml(MINIMAL)
    assert getattr(cfg.server, key) == expected
    assert getattr(ServerConfig(), key) == expected


def test_server_defaults_cover_every_field() -> None:
    assert set(EXPECTED_SERVER_DEFAULTS) == {f.name for f in dataclasses.fields(ServerConfig)}


@pytest.mark.parametrize("key, expected", sorted(EXPECTED_UPSTREAM_DEFAULTS.items()))
def test_upstream_default(key: str, expected: object) -> None:
    up = Config.from_toml(MINIMAL).upstreams["app"]
    assert getattr(up, key) == expected
    assert up.servers == (ServerSpec(Address("127.0.0.1", 9001), 1, False, 0),)


def test_other_defaults() -> None:
    cfg = Config.from_toml(MINIMAL)
    assert cfg.log == LogConfig(access="stdout", format="combined", error="stderr", level="info")
    assert cfg.admin is None
    assert cfg.source == "<string>"
    # [admin] present but empty turns admin on with its defaults
    cfg = Config.from_toml("[admin]\n" + MINIMAL)
    assert cfg.admin == AdminConfig(Address("127.0.0.1", 9901), "")


def test_route_defaults() -> None:
    r = route('upstream = "app"')
    assert r == RouteConfig(
        host=None,
        path_prefix="/",
        upstream="app",
        return_status=None,
        body="",
        redirect=None,
        websocket=True,
        request_headers=HeaderRules((), (), ()),
        response_headers=HeaderRules((), (), ()),
    )
    assert route('redirect = { to = "/x" }').redirect == Redirect("/x", 302, True)


def test_implied_default_route_with_single_upstream() -> None:
    cfg = Config.from_toml(MINIMAL)
    assert cfg.routes == (RouteConfig(path_prefix="/", upstream="app"),)
    assert Config.from_toml("routes = []\n" + MINIMAL).routes == cfg.routes


def test_no_implied_route_with_two_upstreams() -> None:
    issue = one_error(MINIMAL + '[upstreams.api]\nservers = ["127.0.0.1:9002"]\n')
    assert issue.path == "routes"
    assert "app, api" in issue.message


def test_empty_config_has_nothing_to_serve() -> None:
    assert "nothing to serve" in one_error("").message


def test_routes_without_upstreams_when_every_route_answers_itself() -> None:
    cfg = Config.from_toml(
        toml("""
        [[routes]]
        path_prefix = "/old"
        redirect = "https://new.example/"
        [[routes]]
        return = 404
        """)
    )
    assert cfg.upstreams == {}
    assert cfg.routes[0].redirect == Redirect("https://new.example/", 302, True)
    assert cfg.routes[1].return_status == 404


# --------------------------------------------------------------------------- durations


@pytest.mark.parametrize(
    "raw, seconds",
    [
        ("0", 0.0),
        ("5", 5.0),
        ("1.5", 1.5),
        ('"250ms"', 0.25),
        ('"5s"', 5.0),
        ('"2m"', 120.0),
        ('"1h"', 3600.0),
        ('"1.5s"', 1.5),
        ('"1m30s"', 90.0),
        ('"1d"', 86400.0),
        ('"1d12h"', 129600.0),
        ('"30"', 30.0),
        ('"0s"', 0.0),
    ],
)
def test_duration_good(raw: str, seconds: float) -> None:
    value = server_value("shutdown_timeout", raw)
    assert value == pytest.approx(seconds)
    assert isinstance(value, float)


@pytest.mark.parametrize(
    "raw, fragment",
    [
        ("-1", ">= 0"),
        ('"5x"', "invalid duration '5x'"),
        ('""', "invalid duration"),
        ('"s"', "invalid duration"),
        ('"-5s"', "invalid duration"),
        ('"5 5s"', "invalid duration"),
        ("true", "got boolean"),
        ("[1]", "got array"),
        ("inf", "finite"),
        ("nan", "finite"),
    ],
)
def test_duration_bad(raw: str, fragment: str) -> None:
    assert fragment in server_error("shutdown_timeout", raw).message


def test_timeouts_that_must_be_positive() -> None:
    assert "greater than 0" in server_error("client_header_timeout", '"0s"').message
    assert server_value("keepalive_timeout", "0") == 0.0  # 0 disables keep-alive


@given(st.integers(min_value=0, max_value=10**9))
def test_duration_ms_matches_seconds(ms: int) -> None:
    assert parse_duration(f"{ms}ms") == pytest.approx(ms / 1000)
    assert parse_duration(f"{ms}s") == ms


# --------------------------------------------------------------------------- sizes


@pytest.mark.parametrize(
    "raw, size",
    [
        ("0", 0),
        ("512", 512),
        ('"512"', 512),
        ('"512B"', 512),
        ('"512KiB"', 512 * 1024),
        ('"8MiB"', 8 * 1024**2),
        ('"1GiB"', 1024**3),
        ('"1KB"', 1000),
        ('"10MB"', 10 * 1000**2),
        ('"2GB"', 2 * 1000**3),
        ('"4K"', 4096),
        ('"2M"', 2 * 1024**2),
        ('"1G"', 1024**3),
        ('"1.5KiB"', 1536),
        ('"8 kib"', 8192),
    ],
)
def test_size_good(raw: str, size: int) -> None:
    value = server_value("max_body_size", raw)
    assert value == size
    assert type(value) is int


@pytest.mark.parametrize(
    "raw, fragment",
    [
        ("-1", ">= 0"),
        ('"abc"', "invalid size 'abc'"),
        ('"5XB"', "invalid size"),
        ('"1.5"', "whole number of bytes"),
        ('"0.1KiB"', "whole number of bytes"),
        ('"-5K"', "invalid size"),
        ("1.5", "got float"),
        ("true", "got boolean"),
    ],
)
def test_size_bad(raw: str, fragment: str) -> None:
    assert fragment in server_error("max_body_size", raw).message


def test_sizes_that_must_be_positive() -> None:
    assert "greater than 0" in server_error("max_header_size", "0").message
    assert server_value("max_body_size", "0") == 0  # 0 = unlimited


@given(st.integers(min_value=0, max_value=2**40))
def test_size_units(n: int) -> None:
    assert parse_size(f"{n}KiB") == parse_size(f"{n}K") == n * 1024
    assert parse_size(f"{n}MB") == n * 1000**2
    assert parse_size(n) == parse_size(str(n)) == n


# --------------------------------------------------------------------------- addresses


@pytest.mark.parametrize(
    "raw, host, port",
    [
        ("127.0.0.1:8080", "127.0.0.1", 8080),
        ("[::1]:8080", "::1", 8080),
        ("[0:0::1]:80", "::1", 80),
        (":8080", "0.0.0.0", 8080),
        ("0.0.0.0:0", "0.0.0.0", 0),
        ("[::]:443", "::", 443),
    ],
)
def test_listen_address_good(raw: str, host: str, port: int) -> None:
    assert server_value("listen", f'["{raw}"]') == (Address(host, port),)
    assert server_value("listen", f'"{raw}"') == (Address(host, port),)


@pytest.mark.parametrize(
    "raw, fragment",
    [
        ('["localhost:80"]', "use '127.0.0.1'"),
        ('["example.com:80"]', "must be an IP address"),
        ('["127.0.0.1"]', "missing ':port'"),
        ('["127.0.0.1:70000"]', "0..65535"),
        ('["127.0.0.1:-1"]', "port must be a number"),
        ('["1.2.3.4:http"]', "port must be a number"),
        ('["::1:80"]', "brackets"),
        ('["[::1]80"]', "missing ':port'"),
        ('["[zz]:80"]', "not an IPv6 address"),
        ('["[::1:80"]', "missing ']'"),
        ('[""]', "empty address"),
        ('"nope"', "missing ':port'"),
        ("[8080]", "expected 'host:port' string or table, got integer"),
        ("8080", "expected array of 'host:port' strings or tables or a single string, got int"),
    ],
)
def test_listen_address_bad(raw: str, fragment: str) -> None:
    assert fragment in server_error("listen", raw).message


def test_listen_rejects_empty_and_duplicates() -> None:
    assert "must not be empty" in server_error("listen", "[]").message
    text = toml("""
        [server]
        listen = [
            "127.0.0.1:8080",
            ":9000",
            "127.0.0.1:8080",   # again
            "0.0.0.0:0",
            "0.0.0.0:0",        # two ephemeral ports are fine
        ]
        """)
    issue = one_error(text + MINIMAL)
    assert issue.path == "server.listen[2]"
    assert issue.line == line_of(text, "# again")
    assert "duplicate address '127.0.0.1:8080'" in issue.message


def test_admin_listen_conflicts_with_server_listen() -> None:
    issue = one_error('[server]\nlisten = ":9901"\n[admin]\n' + MINIMAL)
    assert issue.path == "admin.listen"
    assert "conflicts with server.listen[0]" in issue.message


@pytest.mark.parametrize(
    "raw, address",
    [
        ("backend.internal:9000", Address("backend.internal", 9000)),
        ("Backend-1.Example.COM:80", Address("backend-1.example.com", 80)),
        ("my_service:8080", Address("my_service", 8080)),
        ("[::1]:9001", Address("::1", 9001)),
        ("10.0.0.1:1", Address("10.0.0.1", 1)),
    ],
)
def test_upstream_server_address_good(raw: str, address: Address) -> None:
    cfg = Config.from_toml(f'[upstreams.app]\nservers = ["{raw}"]\n')
    assert cfg.upstreams["app"].servers[0].address == address


@pytest.mark.parametrize(
    "raw, fragment",
    [
        ("10.0.0.1:0", "1..65535"),
        (":9000", "missing host"),
        ("bad!host:80", "bad host name"),
        ("a..b:80", "bad host name"),
        ("-a.com:80", "bad host name"),
        ("host", "missing ':port'"),
    ],
)
def test_upstream_server_address_bad(raw: str, fragment: str) -> None:
    issue = one_error(f'[upstreams.app]\nservers = ["{raw}"]\n')
    assert issue.path == "upstreams.app.servers[0]"
    assert issue.line == 2
    assert fragment in issue.message


def test_address_str() -> None:
    assert str(Address("127.0.0.1", 80)) == "127.0.0.1:80"
    assert str(Address("::1", 8080)) == "[::1]:8080"
    assert str(Address("example.com", 443)) == "example.com:443"


@given(
    st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6)),
    st.integers(min_value=1, max_value=65535),
)
def test_address_str_round_trips(ip: ipaddress.IPv4Address, port: int) -> None:
    addr = Address(str(ip), port)
    assert Address(*parse_host_port(str(addr), listen=True)) == addr
    assert Address(*parse_host_port(str(addr), listen=False)) == addr


# --------------------------------------------------------------------------- CIDRs


def test_trusted_proxies() -> None:
    value = server_value("trusted_proxies", '["10.0.0.0/8", "10.1.2.3/16", "::1", "fd00::/8"]')
    assert value == (
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("10.1.0.0/16"),
        ipaddress.ip_network("::1/128"),
        ipaddress.ip_network("fd00::/8"),
    )
    assert server_value("trusted_proxies", '"192.168.0.0/24"') == (
        ipaddress.ip_network("192.168.0.0/24"),
    )


def test_trusted_proxies_bad_entries_are_each_reported() -> None:
    text = toml("""
        [server]
        trusted_proxies = [
            "10.0.0.0/33",
            "127.0.0.1",
            "nope",
        ]
        """)
    issues = errors(text + MINIMAL)
    assert [(i.path, i.line) for i in issues] == [
        ("server.trusted_proxies[0]", line_of(text, "/33")),
        ("server.trusted_proxies[2]", line_of(text, "nope")),
    ]
    assert "invalid CIDR '10.0.0.0/33'" in issues[0].message


# --------------------------------------------------------------------------- other server keys


def test_workers() -> None:
    assert server_value("workers", "8") == 8
    cfg = Config.from_toml('[server]\nworkers = "auto"\n' + MINIMAL)
    assert cfg.server.workers == "auto"
    assert cfg.worker_count() == len(os.sched_getaffinity(0))
    assert Config.from_toml("[server]\nworkers = 3\n" + MINIMAL).worker_count() == 3


@pytest.mark.parametrize("raw", ["0", "-2", "true", '"4"', "1.5", '"AUTO"', "33"])
def test_workers_bad(raw: str) -> None:
    assert "expected integer from 1 to 32 or 'auto'" in server_error("workers", raw).message


@pytest.mark.parametrize(
    "key, raw, fragment",
    [
        ("keepalive_requests", "true", "expected integer, got boolean"),
        ("keepalive_requests", "0", "must be >= 1"),
        ("max_headers", '"100"', "expected integer, got string"),
        ("forwarded", '"yes"', "expected boolean, got string"),
        ("via", "1", "expected boolean, got integer"),
        ("x_forwarded_for", '"prepend"', "must be one of 'append', 'replace'"),
        ("worker_cpu_affinity", "false", "expected string, got boolean"),
        ("via_name", '"my proxy"', "single token"),
        ("server_header", "true", "expected false or a non-empty string"),
        ("server_header", '"a\\r\\nb"', "must not contain"),
        ("pid_file", "1", "expected a file path or false"),
    ],
)
def test_server_key_bad(key: str, raw: str, fragment: str) -> None:
    assert fragment in server_error(key, raw).message


def test_server_header_and_pid_file_values() -> None:
    assert server_value("server_header", '"fastproxy"') == "fastproxy"
    assert server_value("server_header", "false") is None
    assert server_value("pid_file", "false") is None
    assert server_value("pid_file", '"/run/fp.pid"') == "/run/fp.pid"
    assert server_value("x_forwarded_for", '"replace"') == "replace"


def test_log_section() -> None:
    cfg = Config.from_toml(
        '[log]\naccess = "/var/log/fp.log"\nformat = "json"\nerror = "stdout"\nlevel = "debug"\n'
        + MINIMAL
    )
    assert cfg.log == LogConfig("/var/log/fp.log", "json", "stdout", "debug")
    issues = errors('[log]\nlevel = "warn"\nformat = "clf"\nerror = "off"\naccess = ""\n' + MINIMAL)
    assert [(i.path, i.line) for i in issues] == [
        ("log.level", 2),
        ("log.format", 3),
        ("log.error", 4),
        ("log.access", 5),
    ]
    assert "'warning'" in issues[0].message


def test_admin_section() -> None:
    cfg = Config.from_toml('[admin]\nlisten = "[::1]:9000"\ntoken = "s3cret"\n' + MINIMAL)
    assert cfg.admin == AdminConfig(Address("::1", 9000), "s3cret")
    assert one_error('[admin]\nlisten = "nohost"\n' + MINIMAL).path == "admin.listen"


# --------------------------------------------------------------------------- upstreams


def test_upstream_full_server_table_and_host_modes() -> None:
    cfg = Config.from_toml(
        toml("""
        [upstreams.app]
        servers = [
            { address = "10.0.0.1:80", weight = 5, max_conns = 100 },
            { address = "10.0.0.2:80", backup = true },
        ]
        keepalive = 0
        host = "upstream"
        [upstreams.api]
        servers = "api.internal:443"
        host = "api.example.com"
        [[routes]]
        upstream = "app"
        """)
    )
    app, api = cfg.upstreams["app"], cfg.upstreams["api"]
    assert app.servers == (
        ServerSpec(Address("10.0.0.1", 80), weight=5, max_conns=100),
        ServerSpec(Address("10.0.0.2", 80), backup=True),
    )
    assert (app.keepalive, app.host) == (0, "upstream")
    assert api.servers == (ServerSpec(Address("api.internal", 443)),)
    assert api.host == "api.example.com"
    assert list(cfg.upstreams) == ["app", "api"]


@pytest.mark.parametrize(
    "body, path, fragment",
    [
        ('balance = "fastest"', "upstreams.app.balance", "'least_conn', 'ip_hash', 'hash'"),
        ("balance = 1", "upstreams.app.balance", "string"),
        ('balance = "hash"', "upstreams.app.balance", "needs hash_key"),
        ('hash_key = "path"', "upstreams.app.hash_key", "only used with balance = 'hash'"),
        ("keepalive = -1", "upstreams.app.keepalive", "must be >= 0"),
        ("keepalive = true", "upstreams.app.keepalive", "got boolean"),
        ("keepalive_requests = 0", "upstreams.app.keepalive_requests", "must be >= 1"),
        ('connect_timeout = "0ms"', "upstreams.app.connect_timeout", "greater than 0"),
        ('read_timeout = "soon"', "upstreams.app.read_timeout", "invalid duration"),
        ('host = ""', "upstreams.app.host", "must not be empty"),
    ],
)
def test_upstream_key_bad(body: str, path: str, fragment: str) -> None:
    issue = one_error(MINIMAL + body + "\n")
    assert (issue.path, issue.line) == (path, 3)
    assert fragment in issue.message


@pytest.mark.parametrize("balance", ["round_robin", "least_conn", "ip_hash", "random"])
def test_balance_methods(balance: str) -> None:
    cfg = Config.from_toml(MINIMAL + f'balance = "{balance}"\n')
    assert (cfg.upstreams["app"].balance, cfg.upstreams["app"].hash_key) == (balance, None)


@pytest.mark.parametrize(
    "hash_key", ["header:X-User", "cookie:session", "query:user", "path", "query:a.b-c_d"]
)
def test_hash_key_accepted(hash_key: str) -> None:
    cfg = Config.from_toml(MINIMAL + f'balance = "hash"\nhash_key = "{hash_key}"\n')
    assert (cfg.upstreams["app"].balance, cfg.upstreams["app"].hash_key) == ("hash", hash_key)


@pytest.mark.parametrize(
    "hash_key, fragment",
    [
        ("", "must not be empty"),
        ("user", "'header:NAME', 'cookie:NAME', 'query:NAME' or 'path'"),
        ("ip:x", "'header:NAME'"),
        ("header:", "needs a name"),
        ("header:X User", "header"),
        ("cookie:a;b", "token"),
        ("query:a&b", "must not contain"),
        ("path:x", "takes no name"),
    ],
)
def test_hash_key_bad(hash_key: str, fragment: str) -> None:
    issue = one_error(MINIMAL + f'balance = "hash"\nhash_key = "{hash_key}"\n')
    assert (issue.path, issue.line) == ("upstreams.app.hash_key", 4)
    assert fragment in issue.message


@pytest.mark.parametrize(
    "servers, path, fragment",
    [
        ("[]", "upstreams.app.servers", "at least one server"),
        ("42", "upstreams.app.servers", "expected array of servers or a single string"),
        ("[42]", "upstreams.app.servers[0]", "expected 'host:port' string or table"),
        ("[{ weight = 2 }]", "upstreams.app.servers[0]", "missing required key 'address'"),
        ('[{ address = "a:1", weight = 0 }]', "upstreams.app.servers[0].weight", ">= 1"),
        ('[{ address = "a:1", weight = true }]', "upstreams.app.servers[0].weight", "boolean"),
        ('[{ address = "a:1", backup = "no" }]', "upstreams.app.servers[0].backup", "boolean"),
        ('[{ address = "a:1", max_conns = -1 }]', "upstreams.app.servers[0].max_conns", ">= 0"),
        ('[{ address = "a:1", backup = true }]', "upstreams.app.servers", "not be a backup"),
        ('["a:1", "b:2", "a:1"]', "upstreams.app.servers[2]", "duplicate server 'a:1'"),
    ],
)
def test_upstream_servers_bad(servers: str, path: str, fragment: str) -> None:
    issue = one_error(f"[upstreams.app]\nservers = {servers}\n")
    assert (issue.path, issue.line) == (path, 2)
    assert fragment in issue.message


def test_upstream_missing_servers_and_bad_name() -> None:
    issue = one_error("[upstreams.app]\nkeepalive = 4\n[[routes]]\nreturn = 200\n")
    assert (issue.path, issue.line, issue.message) == (
        "upstreams.app",
        1,
        "missing required key 'servers'",
    )
    issue = one_error('[upstreams."my app"]\nservers = ["a:1"]\n')
    assert issue.path == 'upstreams."my app"'
    assert issue.line == 1
    assert "invalid upstream name" in issue.message


# --------------------------------------------------------------------------- routes


def test_route_host_patterns() -> None:
    assert route('host = "*.Example.com"\nupstream = "app"').host == "*.example.com"
    assert route('host = "API.example.com."\nupstream = "app"').host == "api.example.com"
    assert route('host = "bücher.de"\nupstream = "app"').host == "xn--bcher-kva.de"


@pytest.mark.parametrize(
    "host, fragment",
    [
        ("a*b", "only allowed as the whole leftmost label"),
        ("*.*.com", "only allowed"),
        ("www.*.com", "only allowed"),
        ("*", "omit 'host'"),
        ("exa mple.com", "invalid host pattern"),
        ("", "invalid host pattern"),
    ],
)
def test_route_host_bad(host: str, fragment: str) -> None:
    issue = route_error(f'host = "{host}"\nupstream = "app"')
    assert (issue.path, issue.line) == ("routes[0].host", 4)
    assert fragment in issue.message


@pytest.mark.parametrize(
    "prefix, fragment",
    [("api", "must start with '/'"), ("/a?b", "'?'"), ("/a b", "' '"), ("/#x", "'#'")],
)
def test_route_path_prefix_bad(prefix: str, fragment: str) -> None:
    issue = route_error(f'path_prefix = "{prefix}"\nupstream = "app"')
    assert issue.path == "routes[0].path_prefix"
    assert fragment in issue.message


def test_route_undefined_upstream_points_at_route_line() -> None:
    text = MINIMAL + toml("""
        [[routes]]
        path_prefix = "/a"
        upstream = "app"

        [[routes]]   # second
        path_prefix = "/b"
        upstream = "nope"
        """)
    issue = one_error(text)
    assert issue.path == "routes[1].upstream"
    assert issue.line == line_of(text, '"nope"')
    assert issue.message == "undefined upstream 'nope' (defined: app)"
    assert str(issue) == f"t.toml:{issue.line}: routes[1].upstream: {issue.message}"


def test_route_needs_exactly_one_target() -> None:
    issue = route_error('path_prefix = "/x"')
    assert (issue.path, issue.line) == ("routes[0]", 3)
    assert "needs one of 'upstream', 'return' or 'redirect'" in issue.message
    issue = route_error('upstream = "app"\nreturn = 403')
    assert (issue.path, issue.line) == ("routes[0].return", 5)
    assert "both 'upstream' and 'return'" in issue.message


@pytest.mark.parametrize(
    "body, path, fragment",
    [
        ("return = 600", "routes[0].return", "must be <= 599"),
        ("return = 101", "routes[0].return", "must be >= 200"),
        ("return = true", "routes[0].return", "got boolean"),
        ('return = "403"', "routes[0].return", "got string"),
        ('upstream = "app"\nbody = "x"', "routes[0].body", "only valid together with 'return'"),
        ("return = 200\nbody = 5", "routes[0].body", "expected string, got integer"),
        ('redirect = { to = "/x", status = 300 }', "routes[0].redirect.status", "301, 302"),
        ("redirect = { status = 301 }", "routes[0].redirect", "missing required key 'to'"),
        ('redirect = { to = "/a b" }', "routes[0].redirect.to", "spaces"),
        ('redirect = { to = "/x", keep_query = 1 }', "routes[0].redirect.keep_query", "boolean"),
        ("redirect = 5", "routes[0].redirect", "expected table, got integer"),
        ('upstream = "app"\nwebsocket = "no"', "routes[0].websocket", "boolean"),
        ('upstream = ""', "routes[0].upstream", "must not be empty"),
    ],
)
def test_route_key_bad(body: str, path: str, fragment: str) -> None:
    issue = route_error(body)
    assert issue.path == path
    assert fragment in issue.message


def test_route_return_and_redirect_values() -> None:
    r = route("return = 204\nwebsocket = false")
    assert (r.return_status, r.body, r.upstream, r.websocket) == (204, "", None, False)
    r = route('redirect = { to = "https://x.example/", status = 301, keep_query = false }')
    assert r.redirect == Redirect("https://x.example/", 301, False)


def test_header_rules_values() -> None:
    r = route(
        """
        upstream = "app"
        [routes.request_headers]
        set = { "X-Env" = "prod", X-Empty = "" }
        add = { "x-a" = "1", "X-A" = "2" }
        remove = "X-Debug"
        [routes.response_headers]
        remove = ["Server", "X-Powered-By"]
        """
    )
    assert r.request_headers == HeaderRules(
        set=(("X-Env", "prod"), ("X-Empty", "")),
        add=(("x-a", "1"), ("X-A", "2")),
        remove=("X-Debug",),
    )
    assert r.response_headers == HeaderRules(remove=("Server", "X-Powered-By"))


@pytest.mark.parametrize(
    "rules, path, fragment",
    [
        ('set = { "X Bad" = "1" }', 'request_headers.set."X Bad"', "HTTP token"),
        ('set = { "X-A" = "a\\nb" }', "request_headers.set.X-A", "must not contain '\\n'"),
        ('set = { "X-A" = "a\\u0000b" }', "request_headers.set.X-A", "must not contain '\\x00'"),
        ('set = { "X-A" = 1 }', "request_headers.set.X-A", "expected string, got integer"),
        ('add = { "Content-Length" = "1" }', "request_headers.add.Content-Length", "managed"),
        ('set = { "Host" = "x" }', "request_headers.set.Host", "upstreams.NAME.host"),
        ('remove = ["Transfer-Encoding"]', "request_headers.remove[0]", "managed"),
        ('remove = ["ok", "bad header"]', "request_headers.remove[1]", "HTTP token"),
        ('set = { "X-A" = "1", "x-a" = "2" }', "request_headers.set.x-a", "set twice"),
        ('set = { "X-A" = "1" }, remove = ["x-a"]', "request_headers.remove[0]", "set and removed"),
        ("sett = {}", "request_headers.sett", "did you mean 'set'?"),
        ("set = []", "request_headers.set", "expected table of header name = value"),
    ],
)
def test_header_rules_bad(rules: str, path: str, fragment: str) -> None:
    issue = route_error(f'upstream = "app"\nrequest_headers = {{ {rules} }}')
    assert (issue.path, issue.line) == (f"routes[0].{path}", 5)
    assert fragment in issue.message


def test_host_header_may_be_set_on_responses_only() -> None:
    r = route('upstream = "app"\nresponse_headers = { set = { Host = "x" } }')
    assert r.response_headers.set == (("Host", "x"),)


# --------------------------------------------------------------------------- unknown keys & types


def test_unknown_key_with_suggestion_and_line() -> None:
    text = MINIMAL + "keep_alive = 16\n"
    issue = one_error(text)
    assert issue.path == "upstreams.app.keep_alive"
    assert issue.line == 3
    assert issue.message == "unknown key 'keep_alive'; did you mean 'keepalive'?"
    assert str(issue) == "t.toml:3: upstreams.app.keep_alive: " + issue.message


def test_unknown_key_without_close_match_lists_known_keys() -> None:
    issue = one_error("[log]\ncolour = true\n" + MINIMAL)
    assert issue.path == "log.colour"
    assert issue.message == "unknown key 'colour' (known keys: access, error, format, level)"


@pytest.mark.parametrize(
    "text, path, suggestion",
    [
        ("[servers]\nworkers = 2\n" + MINIMAL, "servers", "server"),
        ("[[route]]\nreturn = 200\n", "route", "routes"),
        ("[server]\nlisten_addr = ':80'\n" + MINIMAL, "server.listen_addr", "listen"),
        ('[[routes]]\nupstreams = "app"\n' + MINIMAL, "routes[0].upstreams", "upstream"),
        ('[upstreams.app]\nservers = ["a:1", { adress = "b:2" }]\n', None, "address"),
    ],
)
def test_unknown_keys_everywhere(text: str, path: str | None, suggestion: str) -> None:
    issues = errors(text)
    hits = [i for i in issues if f"did you mean '{suggestion}'?" in i.message]
    assert len(hits) == 1, [str(i) for i in issues]
    if path is not None:
        assert hits[0].path == path
        assert hits[0].line == 1 or hits[0].line == 2


def test_unknown_key_in_inline_table_of_multiline_array_has_element_line() -> None:
    text = toml("""
        [upstreams.app]
        servers = [
            "127.0.0.1:9001",
            { address = "127.0.0.1:9002", wieght = 2 },
        ]
        """)
    issue = one_error(text)
    assert issue.path == "upstreams.app.servers[1].wieght"
    assert issue.line == line_of(text, "wieght")
    assert "did you mean 'weight'?" in issue.message


def test_wrong_types_name_expected_type_and_line() -> None:
    text = toml("""
        server = 5
        log = { level = 3 }

        [upstreams]
        app = "127.0.0.1:1"
        """)
    issues = errors(text)
    assert [(i.path, i.line, i.message) for i in issues] == [
        ("server", 1, "expected table, got integer"),
        ("log.level", 2, "expected string, got integer"),
        ("upstreams.app", 5, "expected table, got string"),
    ]
    issue = one_error('routes = { upstream = "app" }\n' + MINIMAL)
    assert (issue.path, issue.line) == ("routes", 1)
    assert "expected array of tables ([[routes]]), got table" in issue.message


# --------------------------------------------------------------------------- error reporting


def test_toml_syntax_error_has_tomllib_line() -> None:
    text = '[server]\nworkers = 2\nlisten = ["127.0.0.1:8080"\nvia = true\n'
    issue = one_error(text)
    assert issue.line == 4
    assert issue.path == ""
    assert issue.message.startswith("TOML syntax error: ")
    assert str(issue) == f"t.toml:4: {issue.message}"
    issue = one_error("[server]\nworkers = 2\nworkers = 3\n")
    assert issue.line == 3
    issue = one_error('a = "unterminated\n')
    assert issue.line == 1
    issue = one_error("a = [1,\n")
    assert issue.line == 2
    assert "end of document" in issue.message


def test_multiple_errors_are_all_collected_in_line_order() -> None:
    text = toml("""
        [server]
        workers = 0
        via = "yes"
        max_body_size = "lots"

        [log]
        level = "loud"

        [upstreams.app]
        servers = ["127.0.0.1:99999"]
        balance = "fastest"

        [[routes]]
        upstream = "nope"
        """)
    with pytest.raises(ConfigError) as info:
        Config.from_toml(text, source="multi.toml")
    err = info.value
    assert [(i.path, i.line) for i in err.issues] == [
        ("server.workers", 2),
        ("server.via", 3),
        ("server.max_body_size", 4),
        ("log.level", 7),
        ("upstreams.app.servers[0]", 10),
        ("upstreams.app.balance", 11),
        ("routes[0].upstream", 14),
    ]
    lines = str(err).splitlines()
    assert len(lines) == 7
    assert all(re.fullmatch(r"multi\.toml:\d+: [\w.\[\]]+: .+", line) for line in lines)
    assert lines[0] == (
        "multi.toml:2: server.workers: expected integer from 1 to 32 or 'auto', got 0"
    )
    assert isinstance(err, ValueError)
    assert all(i.source == "multi.toml" for i in err.issues)


# --------------------------------------------------------------------------- from_dict / load


def test_from_dict_builds_same_model() -> None:
    d = {
        "server": {"listen": ("127.0.0.1:0",), "workers": "auto", "keepalive_timeout": 5},
        "upstreams": {"app": {"servers": ["127.0.0.1:9001", {"address": "127.0.0.1:9002"}]}},
        "routes": [{"path_prefix": "/api", "upstream": "app"}],
    }
    cfg = Config.from_dict(d)
    assert cfg.source == "<dict>"
    assert cfg.server.listen == (Address("127.0.0.1", 0),)
    assert cfg.server.keepalive_timeout == 5.0
    assert len(cfg.upstreams["app"].servers) == 2
    assert cfg.routes == (RouteConfig(path_prefix="/api", upstream="app"),)


def test_from_dict_errors_have_no_line() -> None:
    with pytest.raises(ConfigError) as info:
        Config.from_dict({"server": {"workers": True, "bogus": 1}, "upstreams": {}})
    issues = info.value.issues
    assert [(i.path, i.line) for i in issues] == [
        ("server.workers", None),
        ("server.bogus", None),
        ("routes", None),
    ]
    assert str(info.value).splitlines()[0] == (
        "<dict>: server.workers: expected integer from 1 to 32 or 'auto', got True"
    )
    with pytest.raises(ConfigError) as info:
        Config.from_dict({1: {}})  # type: ignore[dict-item]
    assert "keys must be strings" in str(info.value)


def test_from_dict_admin_none_means_off() -> None:
    assert Config.from_dict({"admin": None, "upstreams": {"a": {"servers": "h:1"}}}).admin is None


def test_load_missing_file_and_bad_encoding(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as info:
        Config.load(missing)
    assert str(info.value) == f"{missing}: cannot read: No such file or directory"
    bad = tmp_path / "bad.toml"
    bad.write_bytes(b'[log]\naccess = "\xff"\n')
    with pytest.raises(ConfigError) as info:
        Config.load(bad)
    assert "cannot read" in str(info.value)


def test_load_accepts_bom_and_reports_file_lines(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("\ufeff" + MINIMAL, encoding="utf-8")
    assert Config.load(str(path)).upstreams["app"].name == "app"
    path.write_text(MINIMAL + "\n\nfoo = 1\n")
    with pytest.raises(ConfigError) as info:
        Config.load(path)
    assert str(info.value).startswith(f"{path}:5: upstreams.app.foo: unknown key 'foo'")


def test_config_error_format() -> None:
    issues = [ConfigIssue("a.b", 3, "bad", "x.toml"), ConfigIssue("c", None, "worse", "x.toml")]
    err = ConfigError(issues)
    assert err.issues == issues
    assert str(err) == "x.toml:3: a.b: bad\nx.toml: c: worse"


# --------------------------------------------------------------------------- key locator

LOCATOR_TEXT = '''\
# fastproxy test config   key = "not a key"
admin.token = "t"
"log".'level' = "info"

[server]
workers = 2
listen = [
    "127.0.0.1:8080",   # first
    # a comment line in the array, with = and [brackets]
    "[::1]:8080",       # second listen
]
via_name = """
[not.a.table]
fake = "key"
"""
max_headers = 100   # after multi-line string

[upstreams."my.app"]
servers = [ "a:1", { address = "b:2", weight = 3 },
  { address = "c:3" } ]
'quoted key' = 1

[ upstreams . api ]
servers = [[ "nested", "array" ], [ "x" ]]
host = 'literal with "quotes" and # hash'
keepalive = 4

[[routes]]
upstream = "api"
request_headers = { set = { "X-Env" = "prod", X-B = "2" }, remove = ["X-Debug"] }

[[routes]]
return = 200
body = """multi
line "quoted" body"""""
redirect.to = "/x"

[routes.response_headers]
set = { "X-Frame-Options" = "DENY" }

[[routes]]
path_prefix = "/c"   # third route
[[routes.extra]]
k = 1
[[routes.extra]]
k = 2   # second extra
'''


@pytest.mark.parametrize(
    "path, marker",
    [
        ("server", "[server]"),
        ("server.workers", "workers = 2"),
        ("admin.token", "admin.token"),
        ("admin", "admin.token"),
        ("log.level", "'level'"),
        ("server.listen", "listen = ["),
        ("server.listen[0]", "# first"),
        ("server.listen[1]", "# second listen"),
        ("server.via_name", "via_name"),
        ("server.max_headers", "after multi-line"),
        ('upstreams."my.app"', '[upstreams."my.app"]'),
        ('upstreams."my.app".servers[0]', '"a:1"'),
        ('upstreams."my.app".servers[1].weight', '"a:1"'),
        ('upstreams."my.app".servers[2]', '"c:3"'),
        ('upstreams."my.app".servers[2].address', '"c:3"'),
        ('upstreams."my.app"."quoted key"', "'quoted key'"),
        ("upstreams.api", "[ upstreams . api ]"),
        ("upstreams.api.servers[1][0]", '"nested"'),
        ("upstreams.api.host", "literal with"),
        ("upstreams.api.keepalive", "keepalive = 4"),
        ("routes[0].upstream", 'upstream = "api"'),
        ("routes[0].request_headers.set.X-Env", '"X-Env"'),
        ("routes[0].request_headers.remove[0]", '"X-Debug"'),
        ("routes[1]", "return = 200"),
        ("routes[1].return", "return = 200"),
        ("routes[1].redirect.to", "redirect.to"),
        ("routes[1].response_headers", "[routes.response_headers]"),
        ("routes[1].response_headers.set.X-Frame-Options", '"X-Frame-Options"'),
        ("routes[2].path_prefix", "third route"),
        ("routes[2].extra[1].k", "second extra"),
    ],
)
def test_locator_exact_lines(path: str, marker: str) -> None:
    locator = KeyLocator(LOCATOR_TEXT)
    expected = line_of(LOCATOR_TEXT, marker)
    if path == "routes[1]":
        expected -= 1  # the [[routes]] header line just above
    assert locator.line(path) == expected


def test_locator_falls_back_to_nearest_enclosing_key() -> None:
    locator = KeyLocator(LOCATOR_TEXT)
    request_headers = line_of(LOCATOR_TEXT, "request_headers = {")
    assert locator.line("routes[0].request_headers.set.X-Missing") == request_headers
    assert locator.line("routes[0].request_headers.add.Y") == request_headers
    assert locator.line("routes[0].nope") == line_of(LOCATOR_TEXT, 'upstream = "api"') - 1
    assert locator.line("server.listen[7]") == line_of(LOCATOR_TEXT, "listen = [")
    first_route = LOCATOR_TEXT.splitlines().index("[[routes]]") + 1
    assert locator.line("routes[9].upstream") == first_route
    assert locator.line("nothing.here") is None
    assert locator.line(("routes", 0, "upstream")) == line_of(LOCATOR_TEXT, 'upstream = "api"')


def test_locator_text_parses_as_toml() -> None:
    import tomllib

    data = tomllib.loads(LOCATOR_TEXT)
    assert data["upstreams"]["my.app"]["servers"][1]["weight"] == 3
    assert data["routes"][2]["extra"][1]["k"] == 2
    assert data["routes"][1]["body"].endswith('body""')


def test_locator_on_the_full_example() -> None:
    locator = KeyLocator(FULL_EXAMPLE)
    assert locator.line("upstreams.app.servers[1].weight") == line_of(FULL_EXAMPLE, "weight = 2")
    assert locator.line("routes[2].redirect.status") == line_of(FULL_EXAMPLE, "status = 308")
    assert locator.line("routes[0].response_headers.add") == line_of(FULL_EXAMPLE, "DENY")
    assert locator.line("admin.token") == line_of(FULL_EXAMPLE, "bearer token")


@given(st.text(alphabet="[]{}\"'=.,# \nab1\\", max_size=200))
def test_locator_never_raises_on_garbage(text: str) -> None:
    locator = KeyLocator(text)
    assert locator.line("a.b[0]") is None or locator.line("a.b[0]") >= 1


key_segment = st.one_of(
    st.integers(min_value=0, max_value=99),
    st.text(min_size=1, max_size=8),
)


@given(st.lists(key_segment, min_size=1, max_size=5))
def test_format_path_round_trips(path: list[str | int]) -> None:
    if isinstance(path[0], int):
        path = ["root", *path]
    assert parse_path(format_path(path)) == tuple(path)


def test_format_path_examples() -> None:
    assert format_path(("upstreams", "app", "servers", 1, "weight")) == (
        "upstreams.app.servers[1].weight"
    )
    assert format_path(("routes", 0, "request_headers", "set", "X-Env")) == (
        "routes[0].request_headers.set.X-Env"
    )
    assert format_path(("upstreams", "my.app")) == 'upstreams."my.app"'


# --------------------------------------------------------------------------- docs


def test_docs_mention_every_key() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "config.md").read_text()
    keys = {f.name for f in dataclasses.fields(ServerConfig)} - {"listen_options"}
    keys |= {f.name for f in dataclasses.fields(LogConfig)}
    keys |= {f.name for f in dataclasses.fields(UpstreamConfig)} - {"name"}
    keys |= {f.name for f in dataclasses.fields(ServerSpec)}
    keys |= {f.name for f in dataclasses.fields(RouteConfig)} - {"return_status"} | {"return"}
    keys |= {"to", "status", "keep_query", "set", "add", "remove", "token"}
    missing = sorted(k for k in keys if f"`{k}`" not in doc)
    assert not missing


def test_locator_handles_crlf_and_tabs() -> None:
    text = (
        '[upstreams.app]\r\nservers = [\r\n\t"a:1",\r\n\t{ address = "b:2", wieght = 1 },\r\n]\r\n'
    )
    issue = one_error(text)
    assert (issue.path, issue.line) == ("upstreams.app.servers[1].wieght", 4)


def test_route_204_with_body_is_refused() -> None:
    issue = route_error('return = 204\nbody = "x"')
    assert issue.path == "routes[0].body"
    assert "no content" in issue.message


# ---------------------------------------------------------------------------- health checks


def test_health_check_defaults() -> None:
    cfg = Config.from_toml(MINIMAL + "health_check = {}\n")
    hc = cfg.upstreams["app"].health_check
    assert hc == HealthCheck()
    assert (hc.path, hc.interval, hc.timeout, hc.rise, hc.fall) == ("/healthz", 2.0, 1.0, 2, 3)
    assert (hc.expect_status, hc.expect_body, hc.host) == (((200, 399),), None, None)


def test_health_check_all_keys_as_a_table() -> None:
    text = MINIMAL + textwrap.dedent(
        """\
        [upstreams.app.health_check]
        path = "/ping?full=1"
        interval = "500ms"
        timeout = 0.25
        rise = 1
        fall = 5
        expect_status = "200, 204,300-302"
        expect_body = "OK"
        host = "app.internal"
        """
    )
    hc = Config.from_toml(text).upstreams["app"].health_check
    assert hc == HealthCheck(
        "/ping?full=1", 0.5, 0.25, 1, 5, ((200, 200), (204, 204), (300, 302)), "OK", "app.internal"
    )
    assert hc is not None and hc.status_ok(301) and not hc.status_ok(303)


@pytest.mark.parametrize(
    "raw, ranges",
    [
        ("200", ((200, 200),)),
        (204, ((204, 204),)),
        ("200-399", ((200, 399),)),
        ("200,301-302, 418", ((200, 200), (301, 302), (418, 418))),
    ],
)
def test_expect_status_good(raw: object, ranges: tuple[tuple[int, int], ...]) -> None:
    assert parse_expect_status(raw) == ranges


@pytest.mark.parametrize(
    "raw, fragment",
    [
        ("", "must not be empty"),
        ("2xx", "invalid status list"),
        ("200-", "invalid status list"),
        ("200,,300", "invalid status list"),
        ("99", "out of range"),
        ("200-600", "out of range"),
        ("399-200", "empty status range"),
        (True, "string"),
    ],
)
def test_expect_status_bad(raw: object, fragment: str) -> None:
    with pytest.raises(ValueError, match=re.escape(fragment)):
        parse_expect_status(raw)


@pytest.mark.parametrize(
    "body, path, fragment",
    [
        ('{ path = "healthz" }', "path", "must start with '/'"),
        ('{ path = "/a b" }', "path", "spaces"),
        ('{ interval = "0s" }', "interval", "greater than 0"),
        ('{ timeout = "never" }', "timeout", "invalid duration"),
        ("{ rise = 0 }", "rise", "must be >= 1"),
        ("{ fall = -1 }", "fall", "must be >= 1"),
        ('{ expect_status = "5xx" }', "expect_status", "invalid status list"),
        ('{ expect_body = "" }', "expect_body", "must not be empty"),
        ('{ host = "" }', "host", "must not be empty"),
        ('{ pth = "/x" }', "pth", "did you mean 'path'"),
        ('"/healthz"', "", "expected table"),
    ],
)
def test_health_check_bad(body: str, path: str, fragment: str) -> None:
    issue = one_error(MINIMAL + f"health_check = {body}\n")
    want = "upstreams.app.health_check" + (f".{path}" if path else "")
    assert (issue.path, issue.line) == (want, 3)
    assert fragment in issue.message
