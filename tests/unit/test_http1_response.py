"""Response heads and response framing (RFC 9112 4, 6.3) through fastproxy._http1.

ParseError.status is the code's own status from the contract table; the proxy
answers its client 502 for any upstream error, so only FP_E_STATUS/FP_E_REASON
carry 502 themselves.
"""

from __future__ import annotations

import pytest

from fastproxy import _http1

pytestmark = pytest.mark.usefixtures("simd")

ParseError = _http1.ParseError

STATUS = {
    "FP_E_VERSION": 400,
    "FP_E_VERSION_UNSUPPORTED": 505,
    "FP_E_START_LINE": 400,
    "FP_E_STATUS": 502,
    "FP_E_REASON": 502,
    "FP_E_HEAD_TOO_LARGE": 431,
    "FP_E_TOO_MANY_HEADERS": 431,
    "FP_E_HEADER_NAME": 400,
    "FP_E_WS_BEFORE_COLON": 400,
    "FP_E_NO_COLON": 400,
    "FP_E_OBS_FOLD": 400,
    "FP_E_BARE_CR": 400,
    "FP_E_VALUE_CHAR": 400,
    "FP_E_CL_INVALID": 400,
    "FP_E_CL_CONFLICT": 400,
    "FP_E_TE_UNSUPPORTED": 501,
}
H_UNKNOWN, H_HOST, H_CL, H_TE = 0, 1, 2, 3


def check_error(exc: ParseError, name: str) -> None:
    assert (exc.name, exc.status) == (name, STATUS[name]), exc
    assert _http1.ERRORS[exc.code] == (exc.name, exc.status)


def resp(line: bytes = b"HTTP/1.1 200 OK", *fields: bytes, eol: bytes = b"\r\n") -> bytes:
    return eol.join((line,) + fields) + eol + eol


# ---- valid status lines and heads ---------------------------------------------------------

OK_HEAD = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"

# (id, data, status, reason, version, headers, head_len or None for len(data))
VALID = [
    ("simple", OK_HEAD, 200, b"OK", (1, 1), [(b"Content-Length", b"5", H_CL)], None),
    (
        "body-not-consumed",
        OK_HEAD + b"hello",
        200,
        b"OK",
        (1, 1),
        [(b"Content-Length", b"5", H_CL)],
        len(OK_HEAD),
    ),
    (
        "next-response-not-consumed",
        OK_HEAD + b"helloHTTP/1.1 204 No Content\r\n\r\n",
        200,
        b"OK",
        (1, 1),
        [(b"Content-Length", b"5", H_CL)],
        len(OK_HEAD),
    ),
    ("no-reason-no-sp", resp(b"HTTP/1.1 200"), 200, b"", (1, 1), [], None),
    ("empty-reason", resp(b"HTTP/1.1 204 "), 204, b"", (1, 1), [], None),
    ("reason-spaces", resp(b"HTTP/1.1 404 Not  Found"), 404, b"Not  Found", (1, 1), [], None),
    (
        "reason-htab-obs-text",
        resp(b"HTTP/1.1 200 O\tK \x80\xff"),
        200,
        b"O\tK \x80\xff",
        (1, 1),
        [],
        None,
    ),
    ("reason-long", resp(b"HTTP/1.1 200 " + b"r" * 100), 200, b"r" * 100, (1, 1), [], None),
    (
        "http10",
        resp(b"HTTP/1.0 302 Found", b"Location: /x"),
        302,
        b"Found",
        (1, 0),
        [(b"Location", b"/x", 34)],
        None,
    ),
    ("status-100", resp(b"HTTP/1.1 100 Continue"), 100, b"Continue", (1, 1), [], None),
    ("status-599", resp(b"HTTP/1.1 599 X"), 599, b"X", (1, 1), [], None),
    (
        "bare-lf",
        resp(b"HTTP/1.1 200 OK", b"Content-Length: 0", b"X:  v ", eol=b"\n"),
        200,
        b"OK",
        (1, 1),
        [(b"Content-Length", b"0", H_CL), (b"X", b"v", H_UNKNOWN)],
        None,
    ),
    (
        "no-host-needed",
        resp(b"HTTP/1.1 200 OK", b"content-length: 0", b"Server: s"),
        200,
        b"OK",
        (1, 1),
        [(b"content-length", b"0", H_CL), (b"Server", b"s", 33)],
        None,
    ),
    (
        # Host means nothing in a response (RFC 9110 7.2 defines it for requests); the
        # RFC 9112 3.2 "more than one Host" rule is for request messages only.
        "two-host-fields",
        resp(b"HTTP/1.1 200 OK", b"Host: a", b"Host: b", b"Content-Length: 0"),
        200,
        b"OK",
        (1, 1),
        [(b"Host", b"a", H_HOST), (b"Host", b"b", H_HOST), (b"Content-Length", b"0", H_CL)],
        None,
    ),
]


@pytest.mark.parametrize("guard", [False, True], ids=["plain", "guard"])
@pytest.mark.parametrize(
    "data, status, reason, version, headers, head_len",
    [v[1:] for v in VALID],
    ids=[v[0] for v in VALID],
)
def test_valid_response(data, status, reason, version, headers, head_len, guard) -> None:
    head = _http1.parse_response(data, guard=guard)
    assert head is not None
    assert (head.status, head.reason, head.version) == (status, reason, version)
    assert head.headers == headers
    assert head.head_len == (len(data) if head_len is None else head_len)
    assert head.method is None and head.target is None


@pytest.mark.parametrize("data", [v[1] for v in VALID], ids=[v[0] for v in VALID])
def test_valid_response_prefixes_incomplete(data: bytes) -> None:
    whole = _http1.parse_response(data)
    for k in range(whole.head_len):
        assert _http1.parse_response(data[:k]) is None, data[:k]
    for k in range(whole.head_len, len(data) + 1):
        assert _http1.parse_response(data[:k]).head_len == whole.head_len


# ---- invalid responses --------------------------------------------------------------------

LONG = b"r" * 40
INVALID = [
    ("status-2-digits", resp(b"HTTP/1.1 20 OK"), "FP_E_STATUS", {}),
    ("status-2-digits-eol", resp(b"HTTP/1.1 20"), "FP_E_STATUS", {}),
    ("status-4-digits", resp(b"HTTP/1.1 2000 OK"), "FP_E_STATUS", {}),
    ("status-letters", resp(b"HTTP/1.1 abc OK"), "FP_E_STATUS", {}),
    ("status-missing", resp(b"HTTP/1.1 OK"), "FP_E_STATUS", {}),
    ("status-version-only", resp(b"HTTP/1.1"), "FP_E_STATUS", {}),
    ("status-no-sp-reason", resp(b"HTTP/1.1 200OK"), "FP_E_STATUS", {}),
    ("status-htab-reason", resp(b"HTTP/1.1 200\tOK"), "FP_E_STATUS", {}),
    ("status-below-100", resp(b"HTTP/1.1 099 X"), "FP_E_STATUS", {}),
    ("status-two-sp", resp(b"HTTP/1.1  200 OK"), "FP_E_STATUS", {}),
    ("reason-0x01", resp(b"HTTP/1.1 200 O\x01K"), "FP_E_REASON", {}),
    ("reason-nul", resp(b"HTTP/1.1 200 \x00"), "FP_E_REASON", {}),
    ("reason-del", resp(b"HTTP/1.1 200 OK\x7f"), "FP_E_REASON", {}),
    ("reason-esc-long", resp(b"HTTP/1.1 200 " + LONG + b"\x1b" + LONG), "FP_E_REASON", {}),
    ("reason-bare-cr", resp(b"HTTP/1.1 200 O\rK"), "FP_E_BARE_CR", {}),
    ("version-httx", resp(b"HTTX/1.1 200 OK"), "FP_E_VERSION", {}),
    ("version-lowercase", resp(b"http/1.1 200 OK"), "FP_E_VERSION", {}),
    ("version-short", resp(b"HTTP/1 200 OK"), "FP_E_VERSION", {}),
    ("version-empty-line", b"\r\n" + resp(), "FP_E_VERSION", {}),
    ("version-2.0", resp(b"HTTP/2.0 200 OK"), "FP_E_VERSION_UNSUPPORTED", {}),
    ("start-no-sp-after-version", resp(b"HTTP/1.1\t200 OK"), "FP_E_START_LINE", {}),
    ("value-nul", resp(b"HTTP/1.1 200 OK", b"X: a\x00"), "FP_E_VALUE_CHAR", {}),
    ("value-bare-cr", resp(b"HTTP/1.1 200 OK", b"X: a\rb"), "FP_E_BARE_CR", {}),
    ("name-sp", resp(b"HTTP/1.1 200 OK", b"Na me: v"), "FP_E_HEADER_NAME", {}),
    (
        "ws-before-colon",
        resp(b"HTTP/1.1 200 OK", b"Content-Length : 5"),
        "FP_E_WS_BEFORE_COLON",
        {},
    ),
    ("no-colon", resp(b"HTTP/1.1 200 OK", b"Foo"), "FP_E_NO_COLON", {}),
    ("obs-fold", resp(b"HTTP/1.1 200 OK", b"X: a", b" b"), "FP_E_OBS_FOLD", {}),
    (
        "too-many-headers",
        resp(b"HTTP/1.1 200 OK", b"A: 1", b"B: 2"),
        "FP_E_TOO_MANY_HEADERS",
        {"max_headers": 1},
    ),
    (
        "head-too-large",
        resp(b"HTTP/1.1 200 OK", b"X: " + LONG * 3),
        "FP_E_HEAD_TOO_LARGE",
        {"max_head": 64},
    ),
    (
        "head-too-large-incomplete",
        b"HTTP/1.1 200 OK\r\nX: " + LONG * 3,
        "FP_E_HEAD_TOO_LARGE",
        {"max_head": 64},
    ),
    # fp_http1.c answers an over-long *status* line with FP_E_HEAD_TOO_LARGE, not 414.
    (
        "status-line-too-long",
        resp(b"HTTP/1.1 200 " + LONG),
        "FP_E_HEAD_TOO_LARGE",
        {"max_line": 32},
    ),
    (
        "status-line-too-long-incomplete",
        b"HTTP/1.1 200 " + LONG,
        "FP_E_HEAD_TOO_LARGE",
        {"max_line": 32},
    ),
]


@pytest.mark.parametrize("guard", [False, True], ids=["plain", "guard"])
@pytest.mark.parametrize("data, name, kw", [v[1:] for v in INVALID], ids=[v[0] for v in INVALID])
def test_invalid_response(data: bytes, name: str, kw: dict, guard: bool) -> None:
    with pytest.raises(ParseError) as ei:
        _http1.parse_response(data, guard=guard, **kw)
    check_error(ei.value, name)


@pytest.mark.parametrize("data, name, kw", [v[1:] for v in INVALID], ids=[v[0] for v in INVALID])
def test_invalid_response_prefixes(data: bytes, name: str, kw: dict) -> None:
    """Growing prefixes give None until the error shows, then that error only."""
    for k in range(len(data) + 1):
        try:
            assert _http1.parse_response(data[:k], **kw) is None
        except ParseError as e:
            assert e.name == name, (data[:k], e.name)


@pytest.mark.parametrize("pos", [0, 1, 15, 16, 17, 31, 32, 33])
@pytest.mark.parametrize("byte", [0x00, 0x01, 0x1F, 0x7F], ids=hex)
def test_bad_reason_byte_at_every_simd_offset(pos: int, byte: int) -> None:
    reason = b"r" * pos + bytes([byte]) + b"s" * 20
    with pytest.raises(ParseError) as ei:
        _http1.parse_response(resp(b"HTTP/1.1 200 " + reason), guard=True)
    check_error(ei.value, "FP_E_REASON")


def test_response_has_no_host_rules() -> None:
    assert _http1.parse_response(b"HTTP/1.1 204 No Content\r\n\r\n").headers == []


# ---- response framing (RFC 9112 6.3) ---------------------------------------------------

# (id, data, request method, body_kind, content_length, keep_alive, upgrade)
FRAMING = [
    (
        "head-request-cl",
        resp(b"HTTP/1.1 200 OK", b"Content-Length: 5"),
        b"HEAD",
        "none",
        None,
        True,
        False,
    ),
    (
        "head-request-te",
        resp(b"HTTP/1.1 200 OK", b"Transfer-Encoding: chunked"),
        b"HEAD",
        "none",
        None,
        True,
        False,
    ),
    ("head-request-nothing", resp(b"HTTP/1.1 200 OK"), b"HEAD", "none", None, True, False),
    # methods are case-sensitive (RFC 9110 9.1): "head" is not HEAD
    (
        "lowercase-head-method",
        resp(b"HTTP/1.1 200 OK", b"Content-Length: 5"),
        b"head",
        "length",
        5,
        True,
        False,
    ),
    ("100", resp(b"HTTP/1.1 100 Continue"), b"GET", "none", None, True, False),
    ("103", resp(b"HTTP/1.1 103 Early Hints", b"Link: </s>"), b"GET", "none", None, True, False),
    ("199", resp(b"HTTP/1.1 199 X", b"Content-Length: 5"), b"GET", "none", None, True, False),
    (
        "204-with-cl",
        resp(b"HTTP/1.1 204 No Content", b"Content-Length: 5"),
        b"GET",
        "none",
        None,
        True,
        False,
    ),
    (
        "204-with-te",
        resp(b"HTTP/1.1 204 No Content", b"Transfer-Encoding: chunked"),
        b"GET",
        "none",
        None,
        True,
        False,
    ),
    (
        "304-with-cl",
        resp(b"HTTP/1.1 304 Not Modified", b"Content-Length: 99"),
        b"GET",
        "none",
        None,
        True,
        False,
    ),
    (
        "101-upgrade",
        resp(b"HTTP/1.1 101 Switching Protocols", b"Connection: Upgrade", b"Upgrade: websocket"),
        b"GET",
        "none",
        None,
        True,
        True,
    ),
    (
        "205-cl-0",
        resp(b"HTTP/1.1 205 Reset", b"Content-Length: 0"),
        b"GET",
        "length",
        0,
        True,
        False,
    ),
    (
        "te-chunked",
        resp(b"HTTP/1.1 200 OK", b"Transfer-Encoding: chunked"),
        b"GET",
        "chunked",
        None,
        True,
        False,
    ),
    (
        "te-chunked-case",
        resp(b"HTTP/1.1 200 OK", b"transfer-encoding: CHUNKED"),
        b"POST",
        "chunked",
        None,
        True,
        False,
    ),
    ("cl", resp(b"HTTP/1.1 200 OK", b"Content-Length: 5"), b"GET", "length", 5, True, False),
    ("cl-zero", resp(b"HTTP/1.1 200 OK", b"Content-Length: 0"), b"GET", "length", 0, True, False),
    (
        "cl-same-twice",
        resp(b"HTTP/1.1 200 OK", b"Content-Length: 7", b"content-length: 7"),
        b"GET",
        "length",
        7,
        True,
        False,
    ),
    (
        "cl-list-same",
        resp(b"HTTP/1.1 200 OK", b"Content-Length: 7, 7"),
        b"GET",
        "length",
        7,
        True,
        False,
    ),
    ("neither", resp(b"HTTP/1.1 200 OK"), b"GET", "until_close", None, False, False),
    (
        "cl-and-te",
        resp(b"HTTP/1.1 200 OK", b"Content-Length: 5", b"Transfer-Encoding: chunked"),
        b"GET",
        "chunked",
        None,
        False,
        False,
    ),
    (
        "te-and-cl",
        resp(b"HTTP/1.1 200 OK", b"Transfer-Encoding: chunked", b"Content-Length: 5"),
        b"GET",
        "chunked",
        None,
        False,
        False,
    ),
    (
        "http10-cl",
        resp(b"HTTP/1.0 200 OK", b"Content-Length: 5"),
        b"GET",
        "length",
        5,
        False,
        False,
    ),
    (
        "http10-keep-alive",
        resp(b"HTTP/1.0 200 OK", b"Connection: Keep-Alive", b"Content-Length: 5"),
        b"GET",
        "length",
        5,
        True,
        False,
    ),
    (
        # RFC 9112 6.1: TE in an HTTP/1.0 message: framing is faulty, close afterwards.
        "http10-te",
        resp(b"HTTP/1.0 200 OK", b"Connection: keep-alive", b"Transfer-Encoding: chunked"),
        b"GET",
        "chunked",
        None,
        False,
        False,
    ),
    (
        "close",
        resp(b"HTTP/1.1 200 OK", b"Connection: close", b"Content-Length: 5"),
        b"GET",
        "length",
        5,
        False,
        False,
    ),
    (
        "close-in-list",
        resp(b"HTTP/1.1 200 OK", b"Connection: foo, Close", b"Content-Length: 5"),
        b"GET",
        "length",
        5,
        False,
        False,
    ),
    # RFC 9112 6.3 rule 2: a 2xx to CONNECT is a tunnel; the proxy relays until close.
    (
        "connect-200",
        resp(b"HTTP/1.1 200 OK", b"Content-Length: 5"),
        b"CONNECT",
        "until_close",
        None,
        False,
        False,
    ),
    (
        "connect-407",
        resp(b"HTTP/1.1 407 Auth", b"Content-Length: 5"),
        b"CONNECT",
        "length",
        5,
        True,
        False,
    ),
]


@pytest.mark.parametrize("guard", [False, True], ids=["plain", "guard"])
@pytest.mark.parametrize(
    "data, method, kind, length, keep_alive, upgrade",
    [v[1:] for v in FRAMING],
    ids=[v[0] for v in FRAMING],
)
def test_response_framing(data, method, kind, length, keep_alive, upgrade, guard) -> None:
    head = _http1.parse_response(data, request_method=method, guard=guard)
    assert (head.body_kind, head.content_length) == (kind, length)
    assert (head.keep_alive, head.upgrade) == (keep_alive, upgrade)
    assert head.expect_continue is False


def test_response_framing_off() -> None:
    head = _http1.parse_response(resp(b"HTTP/1.1 200 OK", b"Content-Length: x"), framing=False)
    assert head.body_kind is None and head.content_length is None
    assert head.headers == [(b"Content-Length", b"x", H_CL)]


FRAMING_ERRORS = [
    ("cl-invalid", resp(b"HTTP/1.1 200 OK", b"Content-Length: abc"), b"GET", "FP_E_CL_INVALID"),
    ("cl-negative", resp(b"HTTP/1.1 200 OK", b"Content-Length: -1"), b"GET", "FP_E_CL_INVALID"),
    ("cl-empty", resp(b"HTTP/1.1 200 OK", b"Content-Length:"), b"GET", "FP_E_CL_INVALID"),
    (
        "cl-overflow",
        resp(b"HTTP/1.1 200 OK", b"Content-Length: 18446744073709551621"),
        b"GET",
        "FP_E_CL_INVALID",
    ),
    (
        "cl-conflict",
        resp(b"HTTP/1.1 200 OK", b"Content-Length: 5", b"Content-Length: 6"),
        b"GET",
        "FP_E_CL_CONFLICT",
    ),
    (
        "cl-conflict-list",
        resp(b"HTTP/1.1 200 OK", b"Content-Length: 5, 6"),
        b"GET",
        "FP_E_CL_CONFLICT",
    ),
    # A coding the proxy cannot undo (gzip, or chunked twice / not last, which RFC 9112
    # 6.3 would read to the close) would reach the client as the content: 502.
    (
        "te-gzip",
        resp(b"HTTP/1.1 200 OK", b"Transfer-Encoding: gzip"),
        b"GET",
        "FP_E_TE_UNSUPPORTED",
    ),
    (
        "te-chunked-then-gzip",
        resp(b"HTTP/1.1 200 OK", b"Transfer-Encoding: chunked, gzip"),
        b"GET",
        "FP_E_TE_UNSUPPORTED",
    ),
    (
        "te-chunked-twice",
        resp(b"HTTP/1.1 200 OK", b"Transfer-Encoding: chunked", b"Transfer-Encoding: chunked"),
        b"GET",
        "FP_E_TE_UNSUPPORTED",
    ),
    (
        "te-gzip-chunked",
        resp(b"HTTP/1.1 200 OK", b"Transfer-Encoding: gzip, chunked"),
        b"GET",
        "FP_E_TE_UNSUPPORTED",
    ),
]


@pytest.mark.parametrize(
    "data, method, name", [v[1:] for v in FRAMING_ERRORS], ids=[v[0] for v in FRAMING_ERRORS]
)
def test_response_framing_errors(data: bytes, method: bytes, name: str) -> None:
    with pytest.raises(ParseError) as ei:
        _http1.parse_response(data, request_method=method)
    check_error(ei.value, name)
    assert _http1.parse_response(data, request_method=method, framing=False) is not None


@pytest.mark.parametrize("status", [b"100", b"204", b"304"])
def test_bodiless_status_ignores_bad_content_length(status: bytes) -> None:
    """RFC 9112 6.3 rule 1: these responses end at the empty line whatever CL says."""
    head = _http1.parse_response(resp(b"HTTP/1.1 " + status + b" X", b"Content-Length: 5, 6"))
    assert head.body_kind == "none"
