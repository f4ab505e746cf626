"""What the config tests share: a full example config, the smallest valid one, and
helpers that load TOML and return the model, or the one error it must raise."""

from __future__ import annotations

import textwrap

import pytest

from fastproxy.config import (
    Config,
    ConfigError,
    ConfigIssue,
    RouteConfig,
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
