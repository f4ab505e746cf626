"""Request heads through fastproxy._http1 (csrc/fp_http1.c): valid and invalid.

Every test runs on the SIMD and the scalar scanning path (the `simd` fixture),
and the tables also run with guard=True, which copies the input so that it ends
exactly at a PROT_NONE page: any read past the end crashes the test process.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastproxy import _http1

pytestmark = pytest.mark.usefixtures("simd")

ParseError = _http1.ParseError

# The contract (csrc/fp_http1.h): code, name, status.  Written out, not derived.
ERROR_TABLE = [
    (-2, "FP_E_METHOD", 400),
    (-3, "FP_E_TARGET", 400),
    (-4, "FP_E_VERSION", 400),
    (-5, "FP_E_VERSION_UNSUPPORTED", 505),
    (-6, "FP_E_START_LINE", 400),
    (-7, "FP_E_STATUS", 502),
    (-8, "FP_E_REASON", 502),
    (-9, "FP_E_LINE_TOO_LONG", 414),
    (-10, "FP_E_HEAD_TOO_LARGE", 431),
    (-11, "FP_E_TOO_MANY_HEADERS", 431),
    (-12, "FP_E_HEADER_NAME", 400),
    (-13, "FP_E_WS_BEFORE_COLON", 400),
    (-14, "FP_E_NO_COLON", 400),
    (-15, "FP_E_OBS_FOLD", 400),
    (-16, "FP_E_BARE_CR", 400),
    (-17, "FP_E_VALUE_CHAR", 400),
    (-18, "FP_E_HOST_MISSING", 400),
    (-19, "FP_E_HOST_MULTIPLE", 400),
    (-20, "FP_E_CL_INVALID", 400),
    (-21, "FP_E_CL_CONFLICT", 400),
    (-22, "FP_E_TE_WITH_CL", 400),
    (-23, "FP_E_TE_NOT_CHUNKED", 400),
    (-24, "FP_E_TE_UNSUPPORTED", 501),
    (-25, "FP_E_TE_HTTP10", 400),
    (-26, "FP_E_CHUNK_SIZE", 400),
    (-27, "FP_E_CHUNK_OVERFLOW", 400),
    (-28, "FP_E_CHUNK_EXT", 400),
    (-29, "FP_E_CHUNK_CRLF", 400),
    (-30, "FP_E_TRAILER", 400),
    (-31, "FP_E_HOST_INVALID", 400),
]
CODE = {name: code for code, name, _ in ERROR_TABLE}
STATUS = {name: status for _, name, status in ERROR_TABLE}

# Ids from csrc/fp_known_headers.h.
H_UNKNOWN, H_HOST, H_CL, H_TE = 0, 1, 2, 3
H_ACCEPT, H_USER_AGENT = 42, 43


def check_error(exc: ParseError, name: str) -> None:
    assert (exc.name, exc.code, exc.status) == (name, CODE[name], STATUS[name]), exc


FIELDS = "method target status reason version headers head_len body_kind content_length".split()
FIELDS += ["keep_alive", "upgrade", "expect_continue"]


def fields(head: _http1.Head) -> tuple:
    return tuple(getattr(head, f) for f in FIELDS)


def outcome(fn, *args, **kw) -> tuple:
    """("head", fields) | ("none",) | ("error", name) for one call."""
    try:
        head = fn(*args, **kw)
    except ParseError as e:
        return ("error", e.name)
    return ("none",) if head is None else ("head", fields(head))


def test_simd_fixture_selects_path(simd: bool) -> None:
    assert _http1.set_simd(simd) is simd


def test_error_table_matches_contract() -> None:
    assert _http1.ERRORS == {code: (name, status) for code, name, status in ERROR_TABLE}


def test_parse_error_is_value_error() -> None:
    with pytest.raises(ValueError):
        _http1.parse_request(b"GE(T / HTTP/1.1\r\nHost: x\r\n\r\n")


# ---- known header ids ----------------------------------------------------------------


HEADER_ID_CASES = [(b"Host", H_HOST), (b"host", H_HOST), (b"HOST", H_HOST), (b"TE", 8)]
HEADER_ID_CASES += [(b"content-LENGTH", H_CL), (b"tRaNsFeR-eNcOdInG", H_TE), (b"CONNECTION", 4)]
HEADER_ID_CASES += [(b"x-request-id", 48), (b"strict-transport-security", 52), (b"X-Foo", 0)]
HEADER_ID_CASES += [
    (b"Content-Lengthx", 0),
    (b"Content-Lengt", 0),
    (b"Content_Length", 0),
    (b"", 0),
]


@pytest.mark.parametrize("name, hid", HEADER_ID_CASES)
def test_header_id(name: bytes, hid: int) -> None:
    assert _http1.header_id(name) == hid


def test_header_ids_table_round_trip() -> None:
    assert len(_http1.HEADER_IDS) == 52
    assert _http1.HEADER_IDS["Content-Length"] == H_CL
    for name, hid in _http1.HEADER_IDS.items():
        assert _http1.header_name(hid) == name
        for variant in (name, name.lower(), name.upper(), name.swapcase()):
            assert _http1.header_id(variant.encode()) == hid
    assert _http1.header_name(0) is None
    assert _http1.header_name(53) is None


# ---- valid requests --------------------------------------------------------------------

SIMPLE = b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"
POST_HEAD = b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\n"
LONG_VALUE = b"v" * 70 + b"\t \x80\xff" + b"w" * 33

HOST_H = [(b"Host", b"h", H_HOST)]


@dataclass(frozen=True)
class V:
    """A valid request and what parse_request must make of it."""

    id: str
    data: bytes
    target: bytes = b"/"
    method: bytes = b"GET"
    headers: list = field(default_factory=lambda: HOST_H)
    version: tuple[int, int] = (1, 1)
    head_len: int | None = None  # None: all of data
    kw: dict = field(default_factory=dict)


def h(*lines: bytes, eol: bytes = b"\r\n") -> bytes:
    return eol.join(lines) + eol + eol


VALID = [
    V("simple", SIMPLE, headers=[(b"Host", b"example.com", H_HOST)]),
    V("http10-no-host", h(b"GET /x HTTP/1.0"), b"/x", headers=[], version=(1, 0)),
    V(
        "absolute-form",
        h(b"GET http://a.example:8080/p?q=1 HTTP/1.1", b"Host: h"),
        b"http://a.example:8080/p?q=1",
    ),
    V("asterisk-form", h(b"OPTIONS * HTTP/1.1", b"Host: h"), b"*", b"OPTIONS"),
    V(
        "authority-form",
        h(b"CONNECT h.example:443 HTTP/1.1", b"Host: h"),
        b"h.example:443",
        b"CONNECT",
    ),
    V(
        "custom-method-tchars",
        h(b"X!#$%&'*+-.^_`|~09az / HTTP/1.1", b"Host: h"),
        method=b"X!#$%&'*+-.^_`|~09az",
    ),
    V(
        "target-visible",
        h(b"GET /a-._~!$&'()*+,;=:@%2F/b?c=d&e=/f HTTP/1.1", b"Host: h"),
        b"/a-._~!$&'()*+,;=:@%2F/b?c=d&e=/f",
    ),
    V(
        "long-target-simd",
        h(b"GET /" + b"abcdefgh" * 20 + b" HTTP/1.1", b"Host: h"),
        b"/" + b"abcdefgh" * 20,
    ),
    V(
        "obs-text-in-values",
        h(b"GET / HTTP/1.1", b"Host: h", b"X-Name: caf\xc3\xa9 \x80\xff"),
        headers=HOST_H + [(b"X-Name", b"caf\xc3\xa9 \x80\xff", H_UNKNOWN)],
    ),
    V(
        "ows-trimmed",
        h(b"GET / HTTP/1.1", b"Host:h", b"X:   v  \t", b"Y:\t a \t b\t "),
        headers=HOST_H + [(b"X", b"v", H_UNKNOWN), (b"Y", b"a \t b", H_UNKNOWN)],
    ),
    V(
        "empty-values",
        h(b"GET / HTTP/1.1", b"Host:", b"X:", b"Y:   \t "),
        headers=[(b"Host", b"", H_HOST), (b"X", b"", H_UNKNOWN), (b"Y", b"", H_UNKNOWN)],
    ),
    V(
        "long-value-simd",
        h(b"GET / HTTP/1.1", b"Host: h", b"X: " + LONG_VALUE),
        headers=HOST_H + [(b"X", LONG_VALUE, H_UNKNOWN)],
    ),
    V(
        "known-ids-any-case",
        h(
            b"POST /u HTTP/1.1",
            b"hOsT: h",
            b"content-LENGTH: 0",
            b"USER-AGENT: t",
            b"accept: */*",
            b"X-C: 1",
        ),
        b"/u",
        b"POST",
        headers=[
            (b"hOsT", b"h", H_HOST),
            (b"content-LENGTH", b"0", H_CL),
            (b"USER-AGENT", b"t", H_USER_AGENT),
            (b"accept", b"*/*", H_ACCEPT),
            (b"X-C", b"1", H_UNKNOWN),
        ],
    ),
    V(
        "bare-lf-throughout",
        h(b"GET /lf HTTP/1.1", b"Host: h", b"X: 1", eol=b"\n"),
        b"/lf",
        headers=HOST_H + [(b"X", b"1", H_UNKNOWN)],
    ),
    V(
        "mixed-crlf-lf",
        b"GET / HTTP/1.1\nHost: h\r\nX: 1\n\r\n",
        headers=HOST_H + [(b"X", b"1", H_UNKNOWN)],
    ),
    V("leading-crlf", b"\r\n" + h(b"GET / HTTP/1.1", b"Host: h")),
    V(
        "leading-crlf-x4-and-lf",
        b"\r\n\r\n\n\r\n" + h(b"GET / HTTP/1.0"),
        headers=[],
        version=(1, 0),
    ),
    V(
        "body-not-consumed",
        POST_HEAD + b"hello",
        method=b"POST",
        headers=HOST_H + [(b"Content-Length", b"5", H_CL)],
        head_len=len(POST_HEAD),
    ),
    V(
        "pipelined-not-consumed",
        SIMPLE + SIMPLE.replace(b" / ", b" /2 "),
        headers=[(b"Host", b"example.com", H_HOST)],
        head_len=len(SIMPLE),
    ),
    V(
        "exactly-max-headers",
        h(b"GET / HTTP/1.1", b"Host: h", b"A: 1", b"B: 2"),
        headers=HOST_H + [(b"A", b"1", H_UNKNOWN), (b"B", b"2", H_UNKNOWN)],
        kw={"max_headers": 3},
    ),
]
VALID_P = [pytest.param(v, id=v.id) for v in VALID]


@pytest.mark.parametrize("guard", [False, True], ids=["plain", "guard"])
@pytest.mark.parametrize("v", VALID_P)
def test_valid_request(v: V, guard: bool) -> None:
    head = _http1.parse_request(v.data, guard=guard, **v.kw)
    assert head is not None
    assert (head.method, head.target, head.version) == (v.method, v.target, v.version)
    assert head.headers == v.headers
    assert head.head_len == (len(v.data) if v.head_len is None else v.head_len)
    assert head.status == 0 and head.reason is None
    assert v.data[head.head_len - 1 : head.head_len] == b"\n"


@pytest.mark.parametrize("v", VALID_P)
def test_valid_request_syntax_only(v: V) -> None:
    """framing=False returns the same head fields, framing fields unset."""
    full = _http1.parse_request(v.data, **v.kw)
    head = _http1.parse_request(v.data, framing=False, **v.kw)
    for attr in ("method", "target", "version", "headers", "head_len"):
        assert getattr(head, attr) == getattr(full, attr)
    assert head.body_kind is None


def test_bare_lf_line_endings_accepted() -> None:
    """RFC 9112 2.2: "a recipient MAY recognize a single LF as a line terminator and ignore
    any preceding CR".  fp_http1.h chooses to: the proxy re-serialises every head with CRLF,
    so the next hop never sees a bare LF and cannot disagree on where the head ends."""
    data = b"GET /lf HTTP/1.1\nHost: h\nX: 1\n\nBODY"
    head = _http1.parse_request(data)
    assert head.headers == HOST_H + [(b"X", b"1", H_UNKNOWN)]
    assert head.head_len == len(data) - 4


# ---- invalid requests ------------------------------------------------------------------


def req(line: bytes = b"GET / HTTP/1.1", *fields: bytes, eol: bytes = b"\r\n") -> bytes:
    """A request head with a Host field first (unless a field is a Host)."""
    if not any(f.lower().startswith(b"host") for f in fields):
        fields = (b"Host: h",) + fields
    return eol.join((line,) + fields) + eol + eol


def fl(*fields: bytes, eol: bytes = b"\r\n") -> bytes:
    """A GET head with these field lines (and a Host first unless one is given)."""
    return req(b"GET / HTTP/1.1", *fields, eol=eol)


LONG = b"a" * 40
INVALID = [
    # method: a non-token byte, or none at all
    ("method-paren", req(b"GE(T / HTTP/1.1"), "FP_E_METHOD", {}),
    ("method-at", req(b"GE@T / HTTP/1.1"), "FP_E_METHOD", {}),
    ("method-nul", req(b"G\x00T / HTTP/1.1"), "FP_E_METHOD", {}),
    ("method-0x80", req(b"G\x80T / HTTP/1.1"), "FP_E_METHOD", {}),
    ("method-htab-sep", req(b"GET\t/ HTTP/1.1"), "FP_E_METHOD", {}),
    ("method-empty-leading-sp", req(b" GET / HTTP/1.1"), "FP_E_METHOD", {}),
    ("method-empty", req(b"/ HTTP/1.1"), "FP_E_METHOD", {}),
    # request-target: CTL, SP, DEL or >= 0x80 (the first SP ends it)
    ("target-two-sp", req(b"GET  / HTTP/1.1"), "FP_E_TARGET", {}),
    ("target-nul", req(b"GET /\x00 HTTP/1.1"), "FP_E_TARGET", {}),
    ("target-0x01", req(b"GET /a\x01 HTTP/1.1"), "FP_E_TARGET", {}),
    ("target-htab", req(b"GET /a\tb HTTP/1.1"), "FP_E_TARGET", {}),
    ("target-del", req(b"GET /\x7f HTTP/1.1"), "FP_E_TARGET", {}),
    ("target-0x80", req(b"GET /\x80 HTTP/1.1"), "FP_E_TARGET", {}),
    ("target-0xff-long", req(b"GET /" + LONG + b"\xff HTTP/1.1"), "FP_E_TARGET", {}),
    ("target-utf8", req(b"GET /caf\xc3\xa9 HTTP/1.1"), "FP_E_TARGET", {}),
    # "GET /a b HTTP/1.1": the target ends at the first SP, so "b HTTP/1" is the version.
    ("target-inner-sp", req(b"GET /a b HTTP/1.1"), "FP_E_VERSION", {}),
    # version
    ("version-httx", req(b"GET / HTTX/1.1"), "FP_E_VERSION", {}),
    ("version-short", req(b"GET / HTTP/1"), "FP_E_VERSION", {}),
    ("version-lowercase", req(b"GET / http/1.1"), "FP_E_VERSION", {}),
    ("version-letter", req(b"GET / HTTP/1.x"), "FP_E_VERSION", {}),
    ("version-two-digit-major", req(b"GET / HTTP/11.1"), "FP_E_VERSION", {}),
    ("version-missing", req(b"GET / "), "FP_E_VERSION", {}),
    ("version-2.0", req(b"GET / HTTP/2.0"), "FP_E_VERSION_UNSUPPORTED", {}),
    ("version-0.9", req(b"GET / HTTP/0.9"), "FP_E_VERSION_UNSUPPORTED", {}),
    ("version-3.0", req(b"GET / HTTP/3.0"), "FP_E_VERSION_UNSUPPORTED", {}),
    # start line shape
    ("start-trailing-sp", req(b"GET / HTTP/1.1 "), "FP_E_START_LINE", {}),
    ("start-junk-after-version", req(b"GET / HTTP/1.1x"), "FP_E_START_LINE", {}),
    ("start-version-1.10", req(b"GET / HTTP/1.10"), "FP_E_START_LINE", {}),
    ("start-http09", req(b"GET /"), "FP_E_START_LINE", {}),
    ("start-method-only", req(b"GET"), "FP_E_START_LINE", {}),
    ("start-leading-crlf-flood", b"\r\n" * 100 + req(), "FP_E_START_LINE", {}),
    # bare CR (RFC 9112 2.2)
    ("cr-start-line-target", req(b"GET /\r HTTP/1.1"), "FP_E_BARE_CR", {}),
    ("cr-start-line-end", req(b"GET / HTTP/1.1\r"), "FP_E_BARE_CR", {}),
    ("cr-in-method", req(b"G\rET / HTTP/1.1"), "FP_E_BARE_CR", {}),
    ("cr-leading", b"\rGET / HTTP/1.1\r\nHost: h\r\n\r\n", "FP_E_BARE_CR", {}),
    ("cr-in-value", fl(b"X: a\rb"), "FP_E_BARE_CR", {}),
    ("cr-in-value-long", fl(b"X: " + LONG + b"\r" + LONG), "FP_E_BARE_CR", {}),
    ("cr-end-of-value", fl(b"X: a\r"), "FP_E_BARE_CR", {}),
    ("cr-in-name", fl(b"X\r: a"), "FP_E_BARE_CR", {}),
    ("cr-line-start", fl(b"\rX: a"), "FP_E_BARE_CR", {}),
    ("cr-empty-line", b"GET / HTTP/1.1\r\nHost: h\r\n\r\r\n\r\n", "FP_E_BARE_CR", {}),
    # field values: NUL and CTL other than HTAB, DEL
    ("value-nul", fl(b"X: a\x00b"), "FP_E_VALUE_CHAR", {}),
    ("value-0x01", fl(b"X: \x01"), "FP_E_VALUE_CHAR", {}),
    ("value-vt", fl(b"X: a\x0bb"), "FP_E_VALUE_CHAR", {}),
    ("value-esc", fl(b"X: a\x1b"), "FP_E_VALUE_CHAR", {}),
    ("value-del", fl(b"X: a\x7f"), "FP_E_VALUE_CHAR", {}),
    ("value-del-long", fl(b"X: " + LONG + b"\x7f"), "FP_E_VALUE_CHAR", {}),
    ("value-host-nul", fl(b"Host: a\x00.example"), "FP_E_VALUE_CHAR", {}),
    # field names
    ("name-inner-sp", fl(b"Na me: v"), "FP_E_HEADER_NAME", {}),
    ("name-at", fl(b"N@me: v"), "FP_E_HEADER_NAME", {}),
    ("name-empty", fl(b": v"), "FP_E_HEADER_NAME", {}),
    ("name-nul", fl(b"N\x00me: v"), "FP_E_HEADER_NAME", {}),
    ("name-0x80", fl(b"N\x80me: v"), "FP_E_HEADER_NAME", {}),
    ("name-quote", fl(b'"X": v'), "FP_E_HEADER_NAME", {}),
    ("ws-before-colon", fl(b"Host : x"), "FP_E_WS_BEFORE_COLON", {}),
    ("htab-before-colon", fl(b"X\t: v"), "FP_E_WS_BEFORE_COLON", {}),
    ("ws-before-colon-te", fl(b"Transfer-Encoding  :chunked"), "FP_E_WS_BEFORE_COLON", {}),
    ("no-colon", fl(b"Foo"), "FP_E_NO_COLON", {}),
    ("no-colon-lf", fl(b"Foo", eol=b"\n"), "FP_E_NO_COLON", {}),
    # line folding (RFC 9112 5.2), also whitespace before the first field (2.2)
    ("obs-fold-sp", fl(b"X: a", b" b"), "FP_E_OBS_FOLD", {}),
    ("obs-fold-htab", fl(b"X: a", b"\tb"), "FP_E_OBS_FOLD", {}),
    ("ws-first-field", b"GET / HTTP/1.1\r\n Host: h\r\n\r\n", "FP_E_OBS_FOLD", {}),
    ("ws-only-line", fl(b" "), "FP_E_OBS_FOLD", {}),
    # Host (RFC 9112 3.2)
    ("host-missing", b"GET / HTTP/1.1\r\n\r\n", "FP_E_HOST_MISSING", {}),
    (
        "host-missing-lookalike",
        b"GET / HTTP/1.1\r\nX-Host: h\r\nHosts: h\r\n\r\n",
        "FP_E_HOST_MISSING",
        {},
    ),
    ("host-twice-same", fl(b"Host: a", b"Host: a"), "FP_E_HOST_MULTIPLE", {}),
    ("host-twice-case", fl(b"host: a", b"HOST: b"), "FP_E_HOST_MULTIPLE", {}),
    ("host-twice-http10", req(b"GET / HTTP/1.0", b"Host: a", b"Host: b"), "FP_E_HOST_MULTIPLE", {}),
    # RFC 9112 3.2: a Host that is not uri-host[:port] gets 400
    ("host-invalid-space", req(b"GET / HTTP/1.1", b"Host: a b"), "FP_E_HOST_INVALID", {}),
    ("host-invalid-slash", req(b"GET / HTTP/1.1", b"Host: x/y"), "FP_E_HOST_INVALID", {}),
    ("host-invalid-at", req(b"GET / HTTP/1.1", b"Host: u@x"), "FP_E_HOST_INVALID", {}),
    ("host-invalid-quote", req(b"GET / HTTP/1.1", b'Host: "x"'), "FP_E_HOST_INVALID", {}),
    # ... structure too: port = *DIGIT, one colon outside brackets, brackets closed
    ("host-invalid-port", req(b"GET / HTTP/1.1", b"Host: h:abc"), "FP_E_HOST_INVALID", {}),
    ("host-invalid-2-ports", req(b"GET / HTTP/1.1", b"Host: h:80:80"), "FP_E_HOST_INVALID", {}),
    ("host-invalid-open-ip6", req(b"GET / HTTP/1.1", b"Host: [::1"), "FP_E_HOST_INVALID", {}),
    ("host-invalid-bracket", req(b"GET / HTTP/1.1", b"Host: a]b"), "FP_E_HOST_INVALID", {}),
    ("host-invalid-after-ip6", req(b"GET / HTTP/1.1", b"Host: [::1]x"), "FP_E_HOST_INVALID", {}),
    ("host-invalid-neg-port", req(b"GET / HTTP/1.1", b"Host: h:-1"), "FP_E_HOST_INVALID", {}),
    # RFC 9112 3.2.1: origin-form has no fragment
    ("target-fragment", req(b"GET /admin#/../x HTTP/1.1", b"Host: h"), "FP_E_TARGET", {}),
    # limits
    ("line-too-long", req(b"GET /" + LONG + b" HTTP/1.1"), "FP_E_LINE_TOO_LONG", {"max_line": 32}),
    ("line-too-long-incomplete", b"GET /" + LONG, "FP_E_LINE_TOO_LONG", {"max_line": 32}),
    ("head-too-large", fl(b"X: " + LONG * 2), "FP_E_HEAD_TOO_LARGE", {"max_head": 64}),
    (
        "head-too-large-incomplete",
        b"GET / HTTP/1.1\r\nX: " + LONG * 2,
        "FP_E_HEAD_TOO_LARGE",
        {"max_head": 64},
    ),
    (
        "too-many-headers",
        fl(b"A: 1", b"B: 2", b"C: 3"),
        "FP_E_TOO_MANY_HEADERS",
        {"max_headers": 3},
    ),
]


@pytest.mark.parametrize("guard", [False, True], ids=["plain", "guard"])
@pytest.mark.parametrize("data, name, kw", [v[1:] for v in INVALID], ids=[v[0] for v in INVALID])
def test_invalid_request(data: bytes, name: str, kw: dict, guard: bool) -> None:
    with pytest.raises(ParseError) as ei:
        _http1.parse_request(data, guard=guard, **kw)
    check_error(ei.value, name)


@pytest.mark.parametrize("data, name, kw", [v[1:] for v in INVALID], ids=[v[0] for v in INVALID])
def test_invalid_request_syntax_only(data: bytes, name: str, kw: dict) -> None:
    """Head errors do not depend on the framing step."""
    with pytest.raises(ParseError) as ei:
        _http1.parse_request(data, framing=False, **kw)
    check_error(ei.value, name)


BAD_TARGET_BYTES = [0x00, 0x01, 0x09, 0x0B, 0x1F, 0x7F, 0x80, 0xC3, 0xFF]
BAD_VALUE_BYTES = [0x00, 0x01, 0x0B, 0x0C, 0x1F, 0x7F]


@pytest.mark.parametrize("pos", [0, 1, 14, 15, 16, 17, 31, 32, 33, 47, 63])
@pytest.mark.parametrize("byte", BAD_TARGET_BYTES, ids=hex)
def test_bad_target_byte_at_every_simd_offset(pos: int, byte: int) -> None:
    target = b"/" + b"t" * pos + bytes([byte]) + b"u" * 20
    with pytest.raises(ParseError) as ei:
        _http1.parse_request(req(b"GET " + target + b" HTTP/1.1"), guard=True)
    check_error(ei.value, "FP_E_TARGET")


@pytest.mark.parametrize("pos", [0, 1, 14, 15, 16, 17, 31, 32, 33, 47, 63])
@pytest.mark.parametrize("byte", BAD_VALUE_BYTES, ids=hex)
def test_bad_value_byte_at_every_simd_offset(pos: int, byte: int) -> None:
    value = b"v" * pos + bytes([byte]) + b"w" * 20
    with pytest.raises(ParseError) as ei:
        _http1.parse_request(fl(b"X: " + value), guard=True)
    check_error(ei.value, "FP_E_VALUE_CHAR")


@pytest.mark.parametrize("pos", [0, 1, 15, 16, 17, 33])
@pytest.mark.parametrize("byte", [0x09, 0x80, 0xA0, 0xFF], ids=hex)
def test_htab_and_obs_text_allowed_in_value_at_every_offset(pos: int, byte: int) -> None:
    value = b"a" + b"v" * pos + bytes([byte]) + b"w" * 20  # "a": a leading HTAB is OWS
    head = _http1.parse_request(fl(b"X: " + value), guard=True)
    assert head.headers[1] == (b"X", value, H_UNKNOWN)


# ---- limits: exact boundaries ------------------------------------------------------------


@pytest.mark.parametrize("eol", [b"\r\n", b"\n"], ids=["crlf", "lf"])
def test_max_line_boundary(eol: bytes) -> None:
    """max_line bounds the request-line, which (RFC 9112 3) excludes its CRLF: a line of
    exactly max_line bytes is accepted whatever the line ending, max_line + 1 is 414."""
    line = b"GET /" + b"a" * 26 + b" HTTP/1.1"
    limit = len(line)
    ok = _http1.parse_request(req(line, eol=eol), max_line=limit)
    assert ok is not None and ok.target == b"/" + b"a" * 26
    with pytest.raises(ParseError) as ei:
        _http1.parse_request(req(line, eol=eol), max_line=limit - 1)
    check_error(ei.value, "FP_E_LINE_TOO_LONG")


def test_max_line_incomplete_boundary() -> None:
    """414 as soon as more than max_line bytes of the request line arrived, before its end."""
    assert _http1.parse_request(b"GET /" + b"a" * 27, max_line=32) is None
    with pytest.raises(ParseError) as ei:
        _http1.parse_request(b"GET /" + b"a" * 28, max_line=32)
    check_error(ei.value, "FP_E_LINE_TOO_LONG")


def test_max_line_is_per_request_line_not_head() -> None:
    data = fl(b"X: " + b"v" * 100)
    assert _http1.parse_request(data, max_line=20) is not None


def test_max_head_boundary() -> None:
    data = fl(b"X: " + b"v" * 50)
    assert _http1.parse_request(data, max_head=len(data)).head_len == len(data)
    with pytest.raises(ParseError) as ei:
        _http1.parse_request(data, max_head=len(data) - 1)
    check_error(ei.value, "FP_E_HEAD_TOO_LARGE")
    # incomplete: exactly max_head bytes may still end; one more cannot
    partial = data[:-2]
    assert _http1.parse_request(partial, max_head=len(partial)) is None
    with pytest.raises(ParseError) as ei:
        _http1.parse_request(partial, max_head=len(partial) - 1)
    check_error(ei.value, "FP_E_HEAD_TOO_LARGE")


def test_max_head_ignores_body_bytes() -> None:
    data = req(b"POST / HTTP/1.1", b"Content-Length: 200")
    head = _http1.parse_request(data + b"b" * 200, max_head=len(data))
    assert head.head_len == len(data) and head.content_length == 200


@pytest.mark.parametrize("n", [1, 2, 10, 100])
def test_max_headers_boundary(n: int) -> None:
    extra = [b"X-%d: v" % i for i in range(n - 1)]
    data = fl(b"Host: h", *extra)
    assert len(_http1.parse_request(data, max_headers=n).headers) == n
    with pytest.raises(ParseError) as ei:
        _http1.parse_request(data, max_headers=n - 1)
    check_error(ei.value, "FP_E_TOO_MANY_HEADERS")


def test_http10_without_host_accepted_http11_rejected() -> None:
    assert _http1.parse_request(b"GET / HTTP/1.0\r\n\r\n").headers == []
    with pytest.raises(ParseError) as ei:
        _http1.parse_request(b"GET / HTTP/1.1\r\n\r\n")
    check_error(ei.value, "FP_E_HOST_MISSING")


# ---- incrementality ---------------------------------------------------------------------

INCREMENTAL = [(v.id, v.data, v.kw) for v in VALID] + [(v[0], v[1], v[3]) for v in INVALID]


@pytest.mark.parametrize("data, kw", [v[1:] for v in INCREMENTAL], ids=[v[0] for v in INCREMENTAL])
def test_growing_prefixes_agree_with_whole(data: bytes, kw: dict) -> None:
    """Re-parsing growing prefixes: None until the head is complete, then the same
    head; for invalid input, None until the error shows, then that same error."""
    whole = outcome(_http1.parse_request, data, **kw)
    assert whole[0] != "none"
    results = [outcome(_http1.parse_request, data[:k], **kw) for k in range(len(data))]
    if whole[0] == "head":
        head_len = whole[1][6]
        assert all(r == ("none",) for r in results[:head_len]), results[:head_len]
        assert all(r == whole for r in results[head_len:])
    else:
        assert all(r in (("none",), whole) for r in results), set(results)


@pytest.mark.parametrize("data, kw", [v[1:] for v in INCREMENTAL], ids=[v[0] for v in INCREMENTAL])
def test_request_parser_byte_by_byte(data: bytes, kw: dict) -> None:
    """RequestParser (with the resume hint) fed one byte at a time ends like the whole."""
    whole = outcome(_http1.parse_request, data, **kw)
    parser = _http1.RequestParser(**kw)
    for i in range(len(data)):
        got = outcome(parser.feed, data[i : i + 1])
        if got != ("none",):
            assert got == whole
            if got[0] == "head":
                assert got[1][6] == i + 1  # returned on the last byte of the head
            break
    else:
        pytest.fail(f"never completed; whole parse gave {whole}")
    with pytest.raises(RuntimeError):
        parser.feed(b"x")


INCR_DATA = [(v[1], v[2]) for v in INCREMENTAL]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=st.sampled_from(INCR_DATA), cuts=st.lists(st.integers(0, 400), max_size=6))
def test_request_parser_random_splits(case: tuple[bytes, dict], cuts: list[int]) -> None:
    data, kw = case
    whole = outcome(_http1.parse_request, data, **kw)
    points = sorted({c % (len(data) + 1) for c in cuts} | {len(data)})
    parser = _http1.RequestParser(**kw)
    prev = 0
    got: tuple = ("none",)
    for p in points:
        got = outcome(parser.feed, data[prev:p])
        prev = p
        if got != ("none",):
            break
    assert got == whole


START_LINE_ERRORS = [
    (b"GE(T / HTTP/1.1", "FP_E_METHOD"),
    (b"GET /\x01 HTTP/1.1", "FP_E_TARGET"),
    (b"GET / HTTX/1.1", "FP_E_VERSION"),
    (b"GET / HTTP/2.0", "FP_E_VERSION_UNSUPPORTED"),
    (b"GET / HTTP/1.1 ", "FP_E_START_LINE"),
]


@pytest.mark.parametrize("line, name", START_LINE_ERRORS)
def test_start_line_error_detected_before_head_ends(line: bytes, name: str) -> None:
    """fp_http1.c validates the start line as soon as its LF arrives."""
    for data in (line + b"\r\n", line + b"\r\nHost: h\r\n"):
        with pytest.raises(ParseError) as ei:
            _http1.parse_request(data)
        check_error(ei.value, name)


def test_field_errors_wait_for_the_head_end() -> None:
    """Field lines are parsed once the head is complete; before that: None."""
    assert _http1.parse_request(b"GET / HTTP/1.1\r\nX: \x00\r\n") is None
    assert _http1.parse_request(b"GET / HTTP/1.1\r\nHost: h\r\n\r") is None


@pytest.mark.parametrize(
    "host",
    [b"", b"a.example:8080", b"[::1]:80", b"[::1]", b"xn--bcher-kva.example", b"h:", b"1.2.3.4:5"],
)
def test_valid_host_values(host: bytes) -> None:
    head = _http1.parse_request(b"GET / HTTP/1.1\r\nHost: " + host + b"\r\n\r\n")
    assert head is not None and head.headers[0][1] == host


def test_http_1_2_is_handled_as_1_1() -> None:
    """RFC 9110 2.5: a higher minor version is processed as the highest supported."""
    head = _http1.parse_request(b"GET / HTTP/1.2\r\nHost: h\r\n\r\n")
    assert head is not None and head.version == (1, 1) and head.keep_alive
    resp = _http1.parse_response(b"HTTP/1.2 200 OK\r\nContent-Length: 0\r\n\r\n")
    assert resp is not None and resp.version == (1, 1)
