"""Writing TOML (a small emitter for the configs tools generate) and
rewriting ``server.workers`` in a config file in place.

tomllib only reads; these are the few writes fastproxy's tools need.
Standard library only.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import math
import os
import re
import tempfile
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _toml_key(key: str) -> str:
    return key if _BARE_KEY.match(key) else _toml_str(key)


def _toml_str(s: str) -> str:
    out = ['"']
    for ch in s:
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch in "\b\t\n\f\r":
            out.append({"\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return _toml_str(v)
    if isinstance(v, _dt.datetime | _dt.date | _dt.time):
        return v.isoformat()
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, Mapping):
        inner = ", ".join(f"{_toml_key(str(k))} = {_toml_value(x)}" for k, x in v.items())
        return "{ " + inner + " }" if inner else "{}"
    raise TypeError(f"cannot write {type(v).__name__} as TOML")


def _is_aot(v: Any) -> bool:
    return isinstance(v, list | tuple) and bool(v) and all(isinstance(x, Mapping) for x in v)


def _emit_table(path: list[str], table: Mapping[str, Any], out: list[str], aot: bool) -> None:
    scalars = [(k, v) for k, v in table.items() if not isinstance(v, Mapping) and not _is_aot(v)]
    tables = [(k, v) for k, v in table.items() if isinstance(v, Mapping)]
    aots = [(k, v) for k, v in table.items() if _is_aot(v)]
    if path and (aot or scalars or not (tables or aots)):
        name = ".".join(_toml_key(p) for p in path)
        if out:
            out.append("")
        out.append(f"[[{name}]]" if aot else f"[{name}]")
    for k, v in scalars:
        out.append(f"{_toml_key(k)} = {_toml_value(v)}")
    for k, v in tables:
        _emit_table([*path, k], v, out, aot=False)
    for k, v in aots:
        for item in v:
            _emit_table([*path, k], item, out, aot=True)


def dumps_toml(data: Mapping[str, Any]) -> str:
    """A small TOML writer for what tomllib returns (tables, arrays, scalars, dates)."""
    out: list[str] = []
    _emit_table([], data, out, aot=False)
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------- config


def parse_listen(text: str) -> tuple[str, int]:
    """ "host:port", "[v6]:port" or ":port" -> (host to connect to, port).

    Wildcard hosts become the loopback address of the same family.
    """
    text = text.strip()
    if text.startswith("["):
        host, _, port = text[1:].partition("]:")
    else:
        host, sep, port = text.rpartition(":")
        if not sep:
            raise ValueError(f"listen address {text!r} has no ':port'")
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return host, int(port)


def listen_addresses(config: Mapping[str, Any]) -> list[tuple[str, int]]:
    listen = config.get("server", {}).get("listen", ["127.0.0.1:8080"])
    if isinstance(listen, str):
        listen = [listen]
    out = []
    for item in listen:
        if isinstance(item, Mapping):  # tolerate a future { address = "..." } form
            item = item.get("address", item.get("listen", ""))
        out.append(parse_listen(str(item)))
    if not out:
        raise ValueError("server.listen is empty")
    return out


_RE_TABLE_HEADER = re.compile(r"^\s*\[")
_RE_SERVER_HEADER = re.compile(r"""^\s*\[\s*(server|"server"|'server')\s*\]\s*(#.*)?$""")
_RE_WORKERS = re.compile(
    r"""^(?P<lead>\s*(?:workers|"workers"|'workers')\s*=\s*)"""
    r"""(?P<value>"[^"]*"|'[^']*'|[^\s#]+)(?P<tail>.*)$"""
)
_RE_DOTTED_WORKERS = re.compile(
    r"""^(?P<lead>\s*(?:server|"server")\s*\.\s*(?:workers|"workers")\s*=\s*)"""
    r"""(?P<value>"[^"]*"|'[^']*'|[^\s#]+)(?P<tail>.*)$"""
)


def set_workers(text: str, workers: int | str) -> str:
    """Return TOML text with ``server.workers`` set to workers, everything else kept.

    Replaces the value of the ``workers = ...`` line in the ``[server]`` section
    (keeping its indentation and trailing comment), or a top-level
    ``server.workers = ...``; otherwise inserts ``workers = N`` right after the
    ``[server]`` header, or appends a ``[server]`` section.  The result is checked
    with tomllib; ValueError if the input is not valid TOML or the edit fails.
    """
    tomllib.loads(text)  # refuse to edit what is not TOML
    value = _toml_value(workers)
    nl = "\r\n" if "\r\n" in text else "\n"
    lines = text.splitlines(keepends=True)

    def body(line: str) -> tuple[str, str]:
        stripped = line.rstrip("\r\n")
        return stripped, line[len(stripped) :]

    new: str | None = None
    section: str | None = ""  # "" = top level, "server" = [server], None = elsewhere
    insert_at: int | None = None
    for i, line in enumerate(lines):
        content, end = body(line)
        if _RE_TABLE_HEADER.match(content):
            if _RE_SERVER_HEADER.match(content):
                section, insert_at = "server", i + 1
            else:
                section = None
            continue
        regex = _RE_DOTTED_WORKERS if section == "" else _RE_WORKERS if section else None
        m = regex.match(content) if regex is not None else None
        if m:
            lines[i] = f"{m['lead']}{value}{m['tail']}{end}"
            new = "".join(lines)
            break
    if new is None:
        if insert_at is not None:
            if insert_at > 0 and not lines[insert_at - 1].endswith(("\n", "\r")):
                lines[insert_at - 1] += nl
            lines.insert(insert_at, f"workers = {value}{nl}")
            new = "".join(lines)
        else:
            sep = "" if not text or text.endswith(("\n", "\r")) else nl
            blank = nl if text.strip() else ""
            new = f"{text}{sep}{blank}[server]{nl}workers = {value}{nl}"
    try:
        check = tomllib.loads(new)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"could not set workers: the edit broke the file ({exc})") from None
    if check.get("server", {}).get("workers") != workers:
        raise ValueError("could not set workers: [server] workers is defined in a way not handled")
    return new


def write_workers(path: str | os.PathLike[str], workers: int | str) -> None:
    """set_workers() on a file, replaced atomically, permissions kept."""
    p = Path(path)
    with open(p, encoding="utf-8", newline="") as fh:
        text = fh.read()
    new = set_workers(text, workers)
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(new)
        with contextlib.suppress(OSError):
            os.chmod(tmp, p.stat().st_mode & 0o7777)
        os.replace(tmp, p)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
