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


def test_values() -> None:
    cfg = load(
        '[cache]\nsize = "64MiB"\nmax_entry_size = "512KiB"\nmax_entries = 5000\n'
        "store_set_cookie = true\n"
    ).cache
    assert cfg == CacheConfig(64 << 20, 512 << 10, 5000, True)


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
        ("[cache]\nsise = 1\n", "f.toml:4: cache.sise: unknown key 'sise'; did you mean 'size'?"),
    ],
)
def test_errors_name_key_and_line(extra: str, want: str) -> None:
    assert any(e.startswith(want) for e in errors(extra)), errors(extra)


def test_cache_must_be_a_table() -> None:
    with pytest.raises(ConfigError) as info:
        Config.from_toml('cache = "on"\n' + BASE, source="f.toml")
    assert [str(i) for i in info.value.issues] == ["f.toml:1: cache: expected table, got string"]
