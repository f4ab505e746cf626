"""The ``[compression]`` section: model, defaults and validation.

Used by :mod:`fastproxy.config` for the global section and for each route's
``compression`` override (``false``, ``true`` or a table merged key by key over
the global section).  See docs/config.md, "[compression]".
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from fastproxy.config_values import KeyPath, expect_bool, expect_int, parse_size, type_name

ALGORITHMS = ("zstd", "br", "gzip")
# Upper bounds keep one 64 KiB read under ~10 ms of compression on the loop
# (bench/compress_cost.py; br 11 and zstd 19 take 70-90 ms): higher levels are
# for compressing files ahead of time, not per response.
LEVEL_RANGES = {"gzip": (1, 9), "br": (0, 9), "zstd": (1, 9)}
DEFAULT_TYPES = (
    "text/*",
    "application/json",
    "application/javascript",
    "application/xml",
    "application/xhtml+xml",
    "application/rss+xml",
    "application/atom+xml",
    "application/ld+json",
    "application/manifest+json",
    "application/wasm",
    "image/svg+xml",
    "image/x-icon",
    "font/ttf",
    "font/otf",
)
_TOKEN = r"[!#$%&'*+\-.^_`|~0-9a-z]+"
_TYPE_RE = re.compile(rf"\*/\*|{_TOKEN}/(\*|{_TOKEN})")


@dataclass(frozen=True, slots=True)
class CompressionConfig:
    enabled: bool = False
    algorithms: tuple[str, ...] = ALGORITHMS  # server preference order
    levels: tuple[tuple[str, int], ...] = (("zstd", 3), ("br", 4), ("gzip", 6))
    min_length: int = 1024
    types: tuple[str, ...] = DEFAULT_TYPES
    decompress_upstream: bool = False
    max_decompressed_size: int = 64 << 20
    max_ratio: int = 100

    @property
    def active(self) -> bool:
        """Does the data plane need a policy for it at all?"""
        return self.enabled or self.decompress_upstream


Err = Callable[[KeyPath, str], None]


def _algorithms(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list | tuple):
        raise ValueError(f"expected array of algorithm names, got {type_name(value)}")
    out: list[str] = []
    for item in value:
        if item not in ALGORITHMS:
            names = ", ".join(repr(a) for a in ALGORITHMS)
            raise ValueError(f"unknown algorithm {item!r} (known: {names})")
        if item in out:
            raise ValueError(f"algorithm {item!r} listed twice")
        out.append(item)
    if not out:
        raise ValueError("must list at least one algorithm")
    return tuple(out)


def _types(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list | tuple):
        raise ValueError(f"expected array of media types, got {type_name(value)}")
    out: list[str] = []
    for item in value:
        if not isinstance(item, str) or not _TYPE_RE.fullmatch(item.strip().lower()):
            raise ValueError(f"{item!r} is not a media type like 'text/html' or 'text/*'")
        out.append(item.strip().lower())
    return tuple(out)


def _levels(path: KeyPath, value: Any, base: tuple[tuple[str, int], ...], err: Err) -> Any:
    if not isinstance(value, Mapping):
        err(path, f"expected table of algorithm = level, got {type_name(value)}")
        return None
    levels = dict(base)
    ok = True
    for name, lvl in value.items():
        if name not in LEVEL_RANGES:
            err((*path, str(name)), f"unknown algorithm {name!r} (known: gzip, br, zstd)")
            ok = False
            continue
        lo, hi = LEVEL_RANGES[name]
        try:
            levels[name] = expect_int(lvl, lo, hi)
        except ValueError as exc:
            err((*path, name), f"{exc} (the {name} range is {lo}..{hi})")
            ok = False
    return tuple(sorted(levels.items())) if ok else None


def _positive_size(value: Any) -> int:
    n = parse_size(value)
    if n <= 0:
        raise ValueError("must be greater than 0")
    return n


_SIMPLE: dict[str, Callable[[Any], Any]] = {
    "enabled": expect_bool,
    "algorithms": _algorithms,
    "min_length": parse_size,
    "types": _types,
    "decompress_upstream": expect_bool,
    "max_decompressed_size": _positive_size,
    "max_ratio": lambda v: expect_int(v, 2),
}
KEYS = (*_SIMPLE, "levels")


def compression_section(
    path: KeyPath, value: Any, base: CompressionConfig, err: Err, unknown: Callable[[str], str]
) -> CompressionConfig | None:
    """Validate a [compression] table (or a route's override: also true/false)
    over `base`; None after reporting every problem through `err`."""
    if isinstance(value, bool):
        if value and not base.enabled:
            return replace(base, enabled=True)
        return base if value else replace(base, enabled=False, decompress_upstream=False)
    if not isinstance(value, Mapping):
        err(path, f"expected table (or true/false on a route), got {type_name(value)}")
        return None
    kw: dict[str, Any] = {}
    ok = True
    for key, item in value.items():
        if key == "levels":
            levels = _levels((*path, key), item, base.levels, err)
            ok = ok and levels is not None
            kw[key] = levels
        elif key in _SIMPLE:
            try:
                kw[key] = _SIMPLE[key](item)
            except ValueError as exc:
                err((*path, key), str(exc))
                ok = False
        else:
            err((*path, str(key)), unknown(str(key)))
            ok = False
    return replace(base, **kw) if ok else None
