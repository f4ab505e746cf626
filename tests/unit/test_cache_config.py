"""The [cache] section: defaults, sizes, limits, and errors naming key and line."""

from __future__ import annotations

import pytest

from fastproxy.config import CacheConfig, Config, ConfigError

BASE = '[upstreams.app]\nservers = ["127.0.0.1:9001"]\n'


def load(extra: str) -> Config:
    return Config.from_toml(BASE + extra, source="f.toml")


def errors(extra: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load(extra)
    return [str(issue) for issue in info.value.issues]


def test_absent_means_no_cache() -> None:
    assert load("").cache is None


def test_empty_section_gives_defaults() -> None:
    cfg = load("[cache]\n").cache
    assert cfg == CacheConfig(size=256 << 20, max_entry_size=8 << 20, max_entries=0)
    assert cfg.store_set_cookie is False
    assert cfg.sendfile is True


def test_values() -> None:
    cfg = load(
        '[cache]\nsize = "64MiB"\nmax_entry_size = "512KiB"\nmax_entries = 5000\n'
        "store_set_cookie = true\nsendfile = false\n"
    ).cache
    assert cfg == CacheConfig(64 << 20, 512 << 10, 5000, True, sendfile=False)


@pytest.mark.parametrize(
    ("extra", "want"),
    [
        ('[cache]\nsize = "512KiB"\n', "f.toml:4: cache.size: must be at least 1MiB"),
        ("[cache]\nsize = 0\n", "f.toml:4: cache.size: must be greater than 0"),
        ('[cache]\nsize = "lots"\n', "f.toml:4: cache.size: invalid size 'lots'"),
        (
            '[cache]\nsize = "4MiB"\nmax_entry_size = "3MiB"\n',
            "f.toml:5: cache.max_entry_size: must be at most half of cache.size",
        ),
        ("[cache]\nmax_entries = -1\n", "f.toml:4: cache.max_entries: must be >= 0"),
        ("[cache]\nmax_entries = true\n", "f.toml:4: cache.max_entries: expected integer"),
        ('[cache]\nstore_set_cookie = "yes"\n', "f.toml:4: cache.store_set_cookie: expected"),
        ("[cache]\nsendfile = 1\n", "f.toml:4: cache.sendfile: expected"),
        (
            '[cache]\nheuristic_max = "1500ms"\n',
            "f.toml:4: cache.heuristic_max: must be 0 (off) or whole seconds up to 315360000,"
            " got 1.5s",
        ),
        (
            "[cache]\nheuristic_max = 1e300\n",
            "f.toml:4: cache.heuristic_max: must be 0 (off) or whole seconds up to 315360000,"
            " got 1e+300s",
        ),
        (
            '[cache]\nheuristic_max = "' + "9" * 400 + 's"\n',
            "f.toml:4: cache.heuristic_max: duration '" + "9" * 400 + "s' is too large",
        ),
        ("[cache]\nsise = 1\n", "f.toml:4: cache.sise: unknown key 'sise'; did you mean 'size'?"),
    ],
)
def test_errors_name_key_and_line(extra: str, want: str) -> None:
    assert any(e.startswith(want) for e in errors(extra)), errors(extra)


def test_cache_must_be_a_table() -> None:
    with pytest.raises(ConfigError) as info:
        Config.from_toml('cache = "on"\n' + BASE, source="f.toml")
    assert [str(i) for i in info.value.issues] == ["f.toml:1: cache: expected table, got string"]


# ---- the request path's keys (docs/config.md: [cache] and [[routes]]) ----------------


def test_request_path_options() -> None:
    cfg = load("[cache]\n").cache
    assert cfg.x_cache_header is True and cfg.lock_timeout == 5.0
    assert cfg.heuristic_max == 86400.0
    assert load('[cache]\nheuristic_max = "1d"\n').cache.heuristic_max == 86400.0  # as documented
    assert load("[cache]\nheuristic_max = 0\n").cache.heuristic_max == 0  # off
    cfg = load(
        '[cache]\nx_cache_header = false\nlock_timeout = "250ms"\nheuristic_max = "2h"\n'
    ).cache
    assert cfg.x_cache_header is False
    assert cfg.lock_timeout == 0.25 and cfg.heuristic_max == 7200.0


def test_route_cache_keys() -> None:
    cfg = load(
        '[cache]\n[[routes]]\nupstream = "app"\ncache = true\n'
        'cache_key = { query = false, headers = ["X-Tenant", "accept-language"] }\n'
    )
    r = cfg.routes[0]
    assert r.cache is True and r.cache_key.query is False
    assert r.cache_key.headers == ("x-tenant", "accept-language")
    r = load('[cache]\n[[routes]]\nupstream = "app"\n').routes[0]
    assert r.cache is False and r.cache_key.query is True and r.cache_key.headers == ()


@pytest.mark.parametrize(
    ("extra", "want"),
    [
        (
            '[[routes]]\nupstream = "app"\ncache = true\n',
            "f.toml:5: routes[0].cache: cache = true needs a [cache] section",
        ),
        (
            '[cache]\n[[routes]]\nupstream = "app"\ncache = 1\n',
            "f.toml:6: routes[0].cache: expected",
        ),
        (
            '[cache]\n[[routes]]\nupstream = "app"\ncache_key = { query = 1 }\n',
            "f.toml:6: routes[0].cache_key.query: expected",
        ),
        (
            '[cache]\n[[routes]]\nupstream = "app"\ncache_key = { headers = "X-A" }\n',
            "f.toml:6: routes[0].cache_key.headers: expected a list of header names",
        ),
        (
            '[cache]\n[[routes]]\nupstream = "app"\ncache_key = { querry = true }\n',
            "f.toml:6: routes[0].cache_key.querry: unknown key",
        ),
        ('[cache]\nlock_timeout = "0s"\n', "f.toml:4: cache.lock_timeout:"),
        ('[cache]\nheuristic_max = "x"\n', "f.toml:4: cache.heuristic_max:"),
        ("[cache]\nx_cache_header = 2\n", "f.toml:4: cache.x_cache_header: expected"),
    ],
)
def test_request_path_errors_name_key_and_line(extra: str, want: str) -> None:
    assert any(e.startswith(want) for e in errors(extra)), errors(extra)
