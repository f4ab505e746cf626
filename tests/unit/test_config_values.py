"""Tests for fastproxy.config_values: the value syntaxes (durations, sizes,
addresses, CIDRs) as config keys take them."""

from __future__ import annotations

import ipaddress

import pytest
from config_cases import (
    MINIMAL,
    errors,
    line_of,
    one_error,
    server_error,
    server_value,
    toml,
)
from hypothesis import given
from hypothesis import strategies as st

from fastproxy.config import (
    Address,
    Config,
)
from fastproxy.config_values import (
    parse_duration,
    parse_host_port,
    parse_size,
)

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
