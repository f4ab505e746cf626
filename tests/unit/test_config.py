"""Tests for fastproxy.config: the model each section loads into, its defaults and
what each section accepts or refuses."""

from __future__ import annotations

import dataclasses
import os
import re
import textwrap
from pathlib import Path

import pytest
from config_cases import (
    FULL_EXAMPLE,
    MINIMAL,
    errors,
    line_of,
    one_error,
    route,
    route_error,
    server_error,
    server_value,
    toml,
)

from fastproxy.config import (
    Address,
    AdminConfig,
    Config,
    HeaderRules,
    HealthCheck,
    LogConfig,
    Redirect,
    RouteConfig,
    ServerConfig,
    ServerSpec,
    UpstreamConfig,
)
from fastproxy.config_values import (
    parse_expect_status,
)

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
        ('upstream = "app"\nupgrade_protocols = "h2c"', "routes[0].upgrade_protocols", "list"),
        (
            'upstream = "app"\nupgrade_protocols = ["SPDY/3.1"]',
            "routes[0].upgrade_protocols",
            "without a version",
        ),
        ('upstream = "app"\nupgrade_protocols = ["a b"]', "routes[0].upgrade_protocols", "token"),
        (
            'upstream = "app"\nupgrade_protocols = ["*", "h2c"]',
            "routes[0].upgrade_protocols",
            "stands alone",
        ),
    ],
)
def test_route_key_bad(body: str, path: str, fragment: str) -> None:
    issue = route_error(body)
    assert issue.path == path
    assert fragment in issue.message


def test_route_upgrade_protocols() -> None:
    assert route('upstream = "app"').upgrade_protocols == ("websocket",)  # not h2c
    r = route('upstream = "app"\nupgrade_protocols = ["WebSocket", "SPDY"]')
    assert r.upgrade_protocols == ("websocket", "spdy")
    assert route('upstream = "app"\nupgrade_protocols = ["*"]').upgrade_protocols == ("*",)
    assert route('upstream = "app"\nupgrade_protocols = []').upgrade_protocols == ()


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


def test_route_config_keeps_its_positional_fields() -> None:
    # upgrade_protocols came after the others: earlier fields keep their positions
    rules = HeaderRules(set=(("X-A", "1"),))
    r = RouteConfig(None, "/", "app", None, "", None, True, rules)
    assert r.request_headers == rules and r.upgrade_protocols == ("websocket",)
