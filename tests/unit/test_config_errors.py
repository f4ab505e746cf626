"""Tests for how fastproxy.config reports mistakes: unknown keys with a suggestion,
wrong types, TOML syntax errors, every error collected with its file line (the key
locator), from_dict without lines, and the docs naming every key."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
from config_cases import (
    FULL_EXAMPLE,
    MINIMAL,
    errors,
    line_of,
    one_error,
    route_error,
    toml,
)
from hypothesis import given
from hypothesis import strategies as st

from fastproxy.config import (
    Address,
    Config,
    ConfigError,
    ConfigIssue,
    KeyLocator,
    LogConfig,
    RouteConfig,
    ServerConfig,
    ServerSpec,
    UpstreamConfig,
    format_path,
    parse_path,
)

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
