"""Helpers for :mod:`fastproxy.config`: value parsers, key paths and the line locator.

Every ``parse_*``/``check_*``/``expect_*`` function takes one raw value (as produced
by ``tomllib`` or given to ``Config.from_dict``) and either returns the normalised
value or raises ``ValueError`` whose message is shown to the user verbatim.
``KeyLocator`` maps key paths such as ``routes[0].upstream`` to source lines.
"""

from __future__ import annotations

import bisect
import datetime
import ipaddress
import math
import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

BAD: object = object()  # converter result: the value was invalid and an issue was recorded
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
PathSeg = str | int
KeyPath = tuple[PathSeg, ...]

BALANCE_METHODS = ("round_robin", "least_conn", "ip_hash", "hash", "random")
HASH_KEY_KINDS = ("header", "cookie", "query", "path")
REDIRECT_STATUSES = (301, 302, 303, 307, 308)

_TOKEN_RE = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_LABEL_RE = re.compile(r"[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?")
_DURATION_RE = re.compile(r"(?:\s*(?:\d+(?:\.\d*)?|\.\d+)\s*(?:ms|s|m|h|d))+\s*")
_DURATION_PART_RE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h|d)")
_DURATION_UNITS = {
    "ms": Decimal("0.001"),
    "s": Decimal(1),
    "m": Decimal(60),
    "h": Decimal(3600),
    "d": Decimal(86400),
}
_NUMBER_RE = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*")
_SIZE_RE = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([A-Za-z]*)\s*")
_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "k": 1 << 10,
    "kib": 1 << 10,
    "kb": 1000,
    "m": 1 << 20,
    "mib": 1 << 20,
    "mb": 1000**2,
    "g": 1 << 30,
    "gib": 1 << 30,
    "gb": 1000**3,
    "t": 1 << 40,
    "tib": 1 << 40,
    "tb": 1000**4,
}


def type_name(value: object) -> str:
    """The TOML name of a value's type, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Mapping):
        return "table"
    if isinstance(value, list | tuple):
        return "array"
    if isinstance(value, datetime.datetime):
        return "datetime"
    if isinstance(value, datetime.date):
        return "date"
    if isinstance(value, datetime.time):
        return "time"
    return type(value).__name__


def _expected(what: str, value: object) -> ValueError:
    return ValueError(f"expected {what}, got {type_name(value)}")


def expect_bool(value: object) -> bool:
    if not isinstance(value, bool):
        raise _expected("boolean", value)
    return value


def expect_int(value: object, minimum: int | None = None, maximum: int | None = None) -> int:
    """An integer (booleans rejected) within [minimum, maximum]."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise _expected("integer", value)
    if minimum is not None and value < minimum:
        raise ValueError(f"must be >= {minimum} (got {value})")
    if maximum is not None and value > maximum:
        raise ValueError(f"must be <= {maximum} (got {value})")
    return value


def expect_str(value: object, nonempty: bool = False) -> str:
    if not isinstance(value, str):
        raise _expected("string", value)
    if nonempty and not value:
        raise ValueError("must not be empty")
    return value


def expect_choice(value: object, choices: Iterable[str]) -> str:
    choices = tuple(choices)
    text = expect_str(value)
    if text not in choices:
        names = ", ".join(repr(c) for c in choices)
        raise ValueError(f"must be one of {names} (got {text!r})")
    return text


def parse_duration(value: object) -> float:
    """Seconds (int/float >= 0) or a string like "250ms", "5s", "2m", "1h", "1d", "1m30s"."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise _expected("duration (seconds, or a string like '5s')", value)
    if isinstance(value, str):
        text = value.strip().lower()
        if _NUMBER_RE.fullmatch(text):
            return float(Decimal(text))
        if not text or not _DURATION_RE.fullmatch(text):
            raise ValueError(
                f"invalid duration {value!r} (expected seconds or a string like "
                "'250ms', '5s', '2m', '1h', '1d')"
            )
        total = sum(
            (Decimal(num) * _DURATION_UNITS[unit] for num, unit in _DURATION_PART_RE.findall(text)),
            Decimal(0),
        )
        if not math.isfinite(float(total)):
            raise ValueError(f"duration {value!r} is too large")
        return float(total)
    if not math.isfinite(value):
        raise ValueError(f"duration must be finite (got {value})")
    if value < 0:
        raise ValueError(f"duration must be >= 0 (got {value})")
    return float(value)


def parse_size(value: object) -> int:
    """Bytes: an integer, or "512", "512B", "8KiB"/"8K" (1024), "8KB" (1000), M/G/T likewise."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise _expected("size (bytes, or a string like '8MiB')", value)
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"size must be >= 0 (got {value})")
        return value
    match = _SIZE_RE.fullmatch(value)
    unit = match.group(2).lower() if match else ""
    if match is None or unit not in _SIZE_UNITS:
        raise ValueError(
            f"invalid size {value!r} (expected bytes or a string like '512', '64KiB', "
            "'8MiB', '1GiB', '10MB')"
        )
    amount = Decimal(match.group(1)) * _SIZE_UNITS[unit]
    if amount != amount.to_integral_value():
        raise ValueError(f"size {value!r} is not a whole number of bytes")
    return int(amount)


def is_hostname(name: str) -> bool:
    """A DNS name (letters, digits, '-', '_'; 1..63 per label; <= 253 total)."""
    name = name.lower().removesuffix(".")
    if not name or len(name) > 253 or not name.isascii():
        return False
    return all(_LABEL_RE.fullmatch(label) for label in name.split("."))


def _normalise_hostname(name: str) -> str:
    name = name.lower()
    if not name.isascii():
        try:
            name = name.encode("idna").decode("ascii")
        except UnicodeError as exc:
            raise ValueError(f"invalid host name {name!r}") from exc
    if not is_hostname(name):
        raise ValueError(f"invalid host name {name!r}")
    return name.removesuffix(".")


def parse_host_port(value: object, listen: bool) -> tuple[str, int]:
    """Parse "host:port", "[v6]:port" or ":port".

    listen=True: host must be an IP literal (empty means 0.0.0.0), port 0..65535.
    listen=False: host may be a DNS name (kept unresolved), port 1..65535.
    """
    text = expect_str(value).strip()
    if not text:
        raise ValueError("empty address (expected 'host:port')")
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ValueError(f"invalid address {text!r}: missing ']'")
        host, rest = text[1:end], text[end + 1 :]
        if not rest.startswith(":"):
            raise ValueError(f"invalid address {text!r}: missing ':port' after ']'")
        port_text = rest[1:]
        try:
            ip = ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"invalid address {text!r}: {host!r} is not an IPv6 address") from None
        host = str(ip)
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep:
            raise ValueError(f"invalid address {text!r}: missing ':port'")
        if ":" in host:
            raise ValueError(
                f"invalid address {text!r}: put IPv6 addresses in brackets, '[::1]:80'"
            )
        if not host:
            if not listen:
                raise ValueError(f"invalid address {text!r}: missing host")
            host = "0.0.0.0"
        try:
            host = str(ipaddress.IPv4Address(host))
        except ValueError:
            if listen:
                hint = ", use '127.0.0.1'" if host.lower() == "localhost" else ""
                raise ValueError(
                    f"invalid listen address {text!r}: host must be an IP address{hint}"
                ) from None
            try:
                host = _normalise_hostname(host)
            except ValueError:
                raise ValueError(f"invalid address {text!r}: bad host name {host!r}") from None
    if not port_text.isascii() or not port_text.isdigit():
        raise ValueError(f"invalid address {text!r}: port must be a number")
    port = int(port_text)
    low = 0 if listen else 1
    if not low <= port <= 65535:
        raise ValueError(f"invalid address {text!r}: port must be in {low}..65535")
    return host, port


def parse_cidr(value: object) -> IPNetwork:
    """An IP network such as "10.0.0.0/8" or a single address; host bits are masked off."""
    text = expect_str(value)
    try:
        return ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        raise ValueError(f"invalid CIDR {text!r} (expected e.g. '10.0.0.0/8' or '::1')") from None


def parse_host_pattern(value: object) -> str:
    """A route host: exact name or "*.example.com"; returned lower-cased (punycode for IDN)."""
    text = expect_str(value).strip()
    if text == "*":
        raise ValueError("'*' is not a host pattern; omit 'host' to match any host")
    wildcard = text.startswith("*.")
    rest = text[2:] if wildcard else text
    if "*" in rest:
        raise ValueError(
            f"invalid host pattern {text!r}: '*' is only allowed as the whole leftmost "
            "label, as in '*.example.com'"
        )
    try:
        name = _normalise_hostname(rest)
    except ValueError:
        raise ValueError(f"invalid host pattern {text!r}") from None
    return "*." + name if wildcard else name


def is_token(text: str) -> bool:
    """True if text is an RFC 9110 token (valid header field name)."""
    return bool(_TOKEN_RE.fullmatch(text))


def check_header_name(value: object) -> str:
    name = expect_str(value)
    if not is_token(name):
        raise ValueError(f"invalid header name {name!r} (must be an HTTP token)")
    return name


def parse_upgrade_protocols(value: object) -> tuple[str, ...]:
    """A route's `upgrade_protocols`: protocol names an `Upgrade` request may ask
    for (RFC 9110 7.8: tokens, compared case-insensitively; a name covers all its
    versions), lower-cased; ["*"] allows any."""
    if not isinstance(value, list):
        raise _expected("list of protocol names", value)
    names = []
    for item in value:
        name = expect_str(item)
        if name == "*":
            if len(value) != 1:
                raise ValueError('"*" allows any protocol and stands alone')
        elif "/" in name:
            raise ValueError(f"{name!r}: give the protocol name without a version")
        elif not is_token(name):
            raise ValueError(f"invalid protocol name {name!r} (must be an HTTP token)")
        names.append(name.lower())
    return tuple(names)


def check_header_value(value: object) -> str:
    text = expect_str(value)
    bad = next((c for c in text if c in "\r\n\0"), None)
    if bad is not None:
        raise ValueError(f"header value must not contain {bad!r}")
    return text


def parse_path_prefix(value: object) -> str:
    text = expect_str(value)
    if not text.startswith("/"):
        raise ValueError(f"path_prefix must start with '/' (got {text!r})")
    bad = next((c for c in text if c in "?#" or ord(c) <= 0x20 or ord(c) == 0x7F), None)
    if bad is not None:
        raise ValueError(f"path_prefix must not contain {bad!r}")
    return text


def parse_positive_duration(value: object) -> float:
    seconds = parse_duration(value)
    if seconds <= 0:
        raise ValueError("must be greater than 0")
    return seconds


def parse_positive_size(value: object) -> int:
    size = parse_size(value)
    if size <= 0:
        raise ValueError("must be greater than 0")
    return size


# The stats region has 64 worker slots and a reload briefly runs two
# generations side by side, so 32 is the most that can always be counted.
MAX_WORKERS = 32


def parse_workers(value: object) -> int | str:
    if value == "auto":
        return "auto"
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_WORKERS:
        return value
    raise ValueError(f"expected integer from 1 to {MAX_WORKERS} or 'auto', got {value!r}")


def parse_server_header(value: object) -> str | None:
    if value is False:
        return None
    if not isinstance(value, str) or not value:
        raise ValueError(f"expected false or a non-empty string, got {value!r}")
    return check_header_value(value)


def parse_pid_file(value: object) -> str | None:
    if value is False or value == "":
        return None
    if not isinstance(value, str):
        raise ValueError(f"expected a file path or false, got {type_name(value)}")
    return value


def parse_error_log(value: object) -> str:
    text = expect_str(value, nonempty=True)
    if text == "off":
        raise ValueError("the error log cannot be 'off' (use 'stderr' or a file path)")
    return text


def parse_via_name(value: object) -> str:
    text = expect_str(value, nonempty=True)
    if any(c in text for c in " \t\r\n\0,"):
        raise ValueError(f"via_name must be a single token (got {text!r})")
    return text


def parse_upstream_host(value: object) -> str:
    return check_header_value(expect_str(value, nonempty=True))


def parse_balance(value: object) -> str:
    text = expect_str(value)
    if text not in BALANCE_METHODS:
        methods = ", ".join(repr(m) for m in BALANCE_METHODS)
        raise ValueError(f"must be one of {methods} (got {text!r})")
    return text


def parse_hash_key(value: object) -> str:
    """'header:NAME', 'cookie:NAME', 'query:NAME' or 'path' (balance = "hash")."""
    text = expect_str(value, nonempty=True)
    kind, sep, name = text.partition(":")
    if kind not in HASH_KEY_KINDS:
        kinds = "'header:NAME', 'cookie:NAME', 'query:NAME' or 'path'"
        raise ValueError(f"must be {kinds} (got {text!r})")
    if kind == "path":
        if sep:
            raise ValueError(f"'path' takes no name (got {text!r})")
        return text
    if not name:
        raise ValueError(f"{kind!r} needs a name, e.g. '{kind}:session' (got {text!r})")
    if kind == "header":
        check_header_name(name)
    elif kind == "cookie":
        if not _TOKEN_RE.fullmatch(name):
            raise ValueError(f"cookie name {name!r} must be a token")
    elif any(c in name for c in "&=#? ") or not name.isprintable() or not name.isascii():
        raise ValueError(f"query parameter name {name!r} must not contain & = # ? or spaces")
    return text


def parse_expect_status(value: object) -> tuple[tuple[int, int], ...]:
    """Health-check statuses: "200", "200-399", or a comma list of those -> ranges."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    text = expect_str(value, nonempty=True)
    out: list[tuple[int, int]] = []
    for part in text.split(","):
        item = part.strip()
        lo_text, dash, hi_text = item.partition("-")
        lo_text, hi_text = lo_text.strip(), hi_text.strip()
        if not lo_text.isdigit() or (dash and not hi_text.isdigit()):
            raise ValueError(
                f"invalid status list {text!r} "
                "(expected e.g. '200', '200-399' or '200,204,301-302')"
            )
        lo = int(lo_text)
        hi = int(hi_text) if dash else lo
        if not (100 <= lo <= 599 and 100 <= hi <= 599):
            raise ValueError(f"status {item!r} out of range (100 to 599)")
        if hi < lo:
            raise ValueError(f"empty status range {item!r}")
        out.append((lo, hi))
    return tuple(out)


def parse_check_path(value: object) -> str:
    text = expect_str(value, nonempty=True)
    if not text.startswith("/"):
        raise ValueError(f"health check path must start with '/' (got {text!r})")
    if any(ord(c) <= 0x20 or ord(c) >= 0x7F for c in text):
        raise ValueError(
            "health check path must not contain spaces, control or non-ASCII characters"
        )
    return text


def parse_redirect_target(value: object) -> str:
    text = expect_str(value, nonempty=True)
    if any(ord(c) <= 0x20 or ord(c) == 0x7F for c in text):
        raise ValueError("redirect target must not contain spaces or control characters")
    return text


def parse_redirect_status(value: object) -> int:
    status = expect_int(value)
    if status not in REDIRECT_STATUSES:
        raise ValueError(f"must be one of {', '.join(map(str, REDIRECT_STATUSES))} (got {status})")
    return status


# --------------------------------------------------------------------------- key paths

_BARE_RE = re.compile(r"[A-Za-z0-9_-]+")
_PATH_TOKEN_RE = re.compile(r'\.?(?:([A-Za-z0-9_-]+)|"((?:[^"\\]|\\.)*)")|\[(\d+)\]')


def format_path(path: Sequence[PathSeg]) -> str:
    """("routes", 0, "upstream") -> 'routes[0].upstream'; odd keys are double-quoted."""
    out: list[str] = []
    for seg in path:
        if isinstance(seg, int):
            out.append(f"[{seg}]")
            continue
        if not _BARE_RE.fullmatch(seg):
            seg = '"' + seg.replace("\\", "\\\\").replace('"', '\\"') + '"'
        out.append("." + seg if out else seg)
    return "".join(out)


def parse_path(text: str) -> KeyPath:
    """Inverse of format_path."""
    out: list[PathSeg] = []
    pos = 0
    while pos < len(text):
        m = _PATH_TOKEN_RE.match(text, pos)
        if m is None or m.end() == pos:
            raise ValueError(f"invalid key path {text!r}")
        bare, quoted, index = m.groups()
        if index is not None:
            out.append(int(index))
        elif bare is not None:
            out.append(bare)
        else:
            out.append(re.sub(r"\\(.)", r"\1", quoted))
        pos = m.end()
    return tuple(out)


# --------------------------------------------------------------------------- line locator


class _ScanStop(Exception):
    pass


class KeyLocator:
    """Maps key paths to the source line where they are defined.

    A lenient scanner over (already tomllib-valid) TOML text: it follows table
    headers, [[array]] headers with index counting, dotted/quoted keys, inline
    tables and (multi-line) arrays.  ``line()`` returns the line of the longest
    known prefix of the path, i.e. the nearest enclosing key it could find.
    """

    def __init__(self, text: str) -> None:
        self._text = text
        self._n = len(text)
        self._i = 0
        self._newlines = [i for i, c in enumerate(text) if c == "\n"]
        self._lines: dict[KeyPath, int] = {}
        self._aot: dict[KeyPath, int] = {}
        try:
            self._scan()
        except (_ScanStop, IndexError, ValueError, tomllib.TOMLDecodeError):
            pass  # best effort: keep what was found so far

    def line(self, path: str | Sequence[PathSeg]) -> int | None:
        key = parse_path(path) if isinstance(path, str) else tuple(path)
        for end in range(len(key), 0, -1):
            found = self._lines.get(key[:end])
            if found is not None:
                return found
        return None

    # -- scanning helpers
    def _line_at(self, pos: int) -> int:
        return bisect.bisect_left(self._newlines, pos) + 1

    def _record(self, path: KeyPath, pos: int) -> None:
        self._lines.setdefault(path, self._line_at(pos))

    def _peek(self, s: str) -> bool:
        return self._text.startswith(s, self._i)

    def _skip_ws(self) -> None:
        while self._i < self._n and self._text[self._i] in " \t":
            self._i += 1

    def _skip_blank(self) -> None:
        """Whitespace, newlines and comments."""
        text = self._text
        while self._i < self._n:
            c = text[self._i]
            if c in " \t\r\n":
                self._i += 1
            elif c == "#":
                end = text.find("\n", self._i)
                self._i = self._n if end < 0 else end
            else:
                return

    def _expect(self, s: str) -> None:
        if not self._peek(s):
            raise _ScanStop
        self._i += len(s)

    def _skip_string(self) -> str:
        """Skip a string at the cursor and return its raw source (quotes included)."""
        text, start = self._text, self._i
        quote = text[start]
        if text.startswith(quote * 3, start):
            end = start + 3
            while True:
                if quote == '"' and text[end] == "\\":
                    end += 2
                elif text.startswith(quote * 3, end):
                    end += 3
                    # up to two more quotes may belong to the content: """a""""
                    for _ in range(2):
                        if end < self._n and text[end] == quote:
                            end += 1
                    break
                else:
                    end += 1
        else:
            end = start + 1
            while text[end] != quote:
                if text[end] == "\n":
                    raise _ScanStop
                end += 2 if quote == '"' and text[end] == "\\" else 1
            end += 1
        self._i = end
        return text[start:end]

    def _simple_key(self) -> str:
        c = self._text[self._i]
        if c in "\"'":
            raw = self._skip_string()
            return str(tomllib.loads("k = " + raw)["k"])
        m = _BARE_RE.match(self._text, self._i)
        if m is None:
            raise _ScanStop
        self._i = m.end()
        return m.group()

    def _key(self) -> list[str]:
        parts: list[str] = []
        while True:
            self._skip_ws()
            parts.append(self._simple_key())
            self._skip_ws()
            if not self._peek("."):
                return parts
            self._i += 1

    def _scan(self) -> None:
        table: KeyPath = ()
        while True:
            self._skip_blank()
            if self._i >= self._n:
                return
            start = self._i
            if self._peek("[["):
                self._i += 2
                table = self._resolve(self._key(), start, array=True)
                self._skip_ws()
                self._expect("]]")
            elif self._peek("["):
                self._i += 1
                table = self._resolve(self._key(), start, array=False)
                self._skip_ws()
                self._expect("]")
            else:
                self._key_value(table)

    def _resolve(self, key: list[str], pos: int, array: bool) -> KeyPath:
        path: KeyPath = ()
        for n, seg in enumerate(key):
            path = (*path, seg)
            self._record(path, pos)
            if array and n == len(key) - 1:
                index = self._aot.get(path, 0)
                self._aot[path] = index + 1
                path = (*path, index)
                self._record(path, pos)
            elif path in self._aot:
                path = (*path, self._aot[path] - 1)
        return path

    def _key_value(self, base: KeyPath) -> None:
        start = self._i
        key = self._key()
        for end in range(1, len(key) + 1):
            self._record((*base, *key[:end]), start)
        self._expect("=")
        self._skip_ws()
        self._value((*base, *key))

    def _value(self, path: KeyPath) -> None:
        text = self._text
        c = text[self._i]
        if c in "\"'":
            self._skip_string()
        elif c == "[":
            self._i += 1
            index = 0
            while True:
                self._skip_blank()
                if self._peek("]"):
                    break
                self._record((*path, index), self._i)
                self._value((*path, index))
                self._skip_blank()
                if not self._peek(","):
                    break
                self._i += 1
                index += 1
            self._expect("]")
        elif c == "{":
            self._i += 1
            while True:
                self._skip_blank()
                if self._peek("}"):
                    break
                self._key_value(path)
                self._skip_blank()
                if not self._peek(","):
                    break
                self._i += 1
            self._expect("}")
        else:
            while self._i < self._n and text[self._i] not in ",]}#\r\n":
                self._i += 1


@dataclass(frozen=True, slots=True)
class Address:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"
