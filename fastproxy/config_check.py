"""The machinery that checks a configuration: every problem becomes a
ConfigIssue naming the key path and the source line, and all of them are
raised together as one ConfigError.

A converter (Conv) takes (checker, key path, raw value) and returns the
checked value, or BAD after recording an issue; Checker.fields runs a table
of them over a TOML table.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fastproxy.config_values import (
    BAD,
    KeyPath,
    expect_choice,
    expect_int,
    format_path,
    type_name,
)


@dataclass(frozen=True, slots=True)
class ConfigIssue:
    path: str
    line: int | None
    message: str
    source: str

    def __str__(self) -> str:
        where = self.source if self.line is None else f"{self.source}:{self.line}"
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class ConfigError(ValueError):
    """Raised with every problem found in a configuration; one issue per line in str()."""

    def __init__(self, issues: Iterable[ConfigIssue]) -> None:
        self.issues: list[ConfigIssue] = list(issues)
        super().__init__(self.issues)

    def __str__(self) -> str:
        return "\n".join(str(issue) for issue in self.issues)


Conv = Callable[["Checker", KeyPath, Any], Any]


class Checker:
    def __init__(self, source: str, locate: Callable[[KeyPath], int | None]) -> None:
        self.source = source
        self.locate = locate
        self.issues: list[ConfigIssue] = []

    def err(self, path: KeyPath, message: str) -> None:
        self.issues.append(ConfigIssue(format_path(path), self.locate(path), message, self.source))

    def table(self, path: KeyPath, value: Any, known: Iterable[str]) -> dict[str, Any] | None:
        """Check value is a table with only known keys; return the known part."""
        if not isinstance(value, Mapping):
            self.err(path, f"expected table, got {type_name(value)}")
            return None
        known = list(known)
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                self.err(path, f"keys must be strings, got {type_name(key)} {key!r}")
            elif key in known:
                out[key] = item
            else:
                self.err((*path, key), unknown_key(key, known))
        return out

    def fields(self, path: KeyPath, value: Any, convs: Mapping[str, Conv]) -> dict[str, Any] | None:
        """Check a table against converters, in key order; None if anything was wrong."""
        if not isinstance(value, Mapping):
            self.err(path, f"expected table, got {type_name(value)}")
            return None
        before = len(self.issues)
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                self.err(path, f"keys must be strings, got {type_name(key)} {key!r}")
            elif key not in convs:
                self.err((*path, key), unknown_key(key, list(convs)))
            elif (result := convs[key](self, (*path, key), item)) is not BAD:
                out[key] = result
        return out if len(self.issues) == before else None

    def items(
        self, path: KeyPath, value: Any, what: str, scalar_ok: bool
    ) -> list[tuple[KeyPath, Any]]:
        """Elements of an array (or a lone string if scalar_ok) with their paths."""
        if scalar_ok and isinstance(value, str):
            return [(path, value)]
        if not isinstance(value, list | tuple):
            alt = " or a single string" if scalar_ok else ""
            self.err(path, f"expected array of {what}{alt}, got {type_name(value)}")
            return []
        return [((*path, i), item) for i, item in enumerate(value)]


def unknown_key(key: str, known: Sequence[str]) -> str:
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    if close:
        return f"unknown key {key!r}; did you mean {close[0]!r}?"
    return f"unknown key {key!r} (known keys: {', '.join(sorted(known))})"


def simple(fn: Callable[[Any], Any]) -> Conv:
    def conv(chk: Checker, path: KeyPath, value: Any) -> Any:
        try:
            return fn(value)
        except ValueError as exc:
            chk.err(path, str(exc))
            return BAD

    return conv


def int_conv(minimum: int | None = None, maximum: int | None = None) -> Conv:
    return simple(lambda v: expect_int(v, minimum, maximum))


def choice(*choices: str) -> Conv:
    return simple(lambda v: expect_choice(v, choices))
