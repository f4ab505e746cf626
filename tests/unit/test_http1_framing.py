"""Request framing (RFC 9112 6.3) and the Connection / Upgrade / Expect summary.

fp_request_framing runs inside parse_request (framing=True, the default); every
framing error must leave the head itself valid (framing=False parses it).
"""

from __future__ import annotations

import pytest

from fastproxy import _http1

pytestmark = pytest.mark.usefixtures("simd")

ParseError = _http1.ParseError

STATUS = {
    "FP_E_CL_INVALID": 400,
    "FP_E_CL_CONFLICT": 400,
    "FP_E_TE_WITH_CL": 400,
    "FP_E_TE_NOT_CHUNKED": 400,
    "FP_E_TE_UNSUPPORTED": 501,
    "FP_E_TE_HTTP10": 400,
}


def req(*fields: bytes, version: bytes = b"1.1", host: bool = True) -> bytes:
    lines = [b"POST /p HTTP/" + version] + ([b"Host: h"] if host else []) + list(fields)
    return b"\r\n".join(lines) + b"\r\n\r\n"


# ---- body length ----------------------------------------------------------------------

# (id, data, body_kind, content_length)
BODY = [
    ("nothing", req(), "none", None),
    ("nothing-http10", req(version=b"1.0", host=False), "none", None),
    ("cl-0", req(b"Content-Length: 0"), "length", 0),
    ("cl-5", req(b"Content-Length: 5"), "length", 5),
    ("cl-leading-zeros", req(b"Content-Length: 0005"), "length", 5),
    ("cl-ows", req(b"Content-Length: \t 5 \t"), "length", 5),
    ("cl-lowercase-name", req(b"content-length: 12"), "length", 12),
    ("cl-identical-twice", req(b"Content-Length: 5", b"CONTENT-LENGTH: 5"), "length", 5),
    ("cl-identical-list", req(b"Content-Length: 5, 5"), "length", 5),
    ("cl-identical-list-no-ows", req(b"Content-Length: 5,5,5"), "length", 5),
    ("cl-large", req(b"Content-Length: 1099511627776"), "length", 1 << 40),
    ("cl-2^62", req(b"Content-Length: 4611686018427387904"), "length", 1 << 62),
    ("cl-http10", req(b"Content-Length: 3", version=b"1.0", host=False), "length", 3),
    ("te-chunked", req(b"Transfer-Encoding: chunked"), "chunked", None),
    ("te-chunked-upper", req(b"TRANSFER-ENCODING: CHUNKED"), "chunked", None),
    ("te-chunked-ows", req(b"Transfer-Encoding:   Chunked\t"), "chunked", None),
    # RFC 9110 5.6.1: a recipient ignores empty list elements
    ("te-empty-elements", req(b"Transfer-Encoding: , chunked ,"), "chunked", None),
    (
        "te-empty-second-line",
        req(b"Transfer-Encoding: chunked", b"Transfer-Encoding:"),
        "chunked",
        None,
    ),
    ("unrelated-te-header", req(b"TE: trailers"), "none", None),
    ("cl-name-lookalike", req(b"Content-Lengths: 5", b"X-Content-Length: 5"), "none", None),
]


@pytest.mark.parametrize("guard", [False, True], ids=["plain", "guard"])
@pytest.mark.parametrize("data, kind, length", [v[1:] for v in BODY], ids=[v[0] for v in BODY])
def test_request_body_framing(data: bytes, kind: str, length: int | None, guard: bool) -> None:
    head = _http1.parse_request(data, guard=guard)
    assert (head.body_kind, head.content_length) == (kind, length)


def test_body_bytes_follow_the_head() -> None:
    data = req(b"Content-Length: 5") + b"helloGET / HTTP/1.1\r\n"
    head = _http1.parse_request(data)
    assert data[head.head_len : head.head_len + head.content_length] == b"hello"


# ---- framing errors -----------------------------------------------------------------------

ERRORS = [
    # RFC 9112 6.3 rule 3 / 11.2: a request with both is refused, in either order
    ("te-and-cl", req(b"Transfer-Encoding: chunked", b"Content-Length: 5"), "FP_E_TE_WITH_CL"),
    ("cl-and-te", req(b"Content-Length: 5", b"Transfer-Encoding: chunked"), "FP_E_TE_WITH_CL"),
    ("cl-0-and-te", req(b"Content-Length: 0", b"Transfer-Encoding: chunked"), "FP_E_TE_WITH_CL"),
    # RFC 9110 8.6: differing values
    ("cl-two-lines", req(b"Content-Length: 5", b"Content-Length: 6"), "FP_E_CL_CONFLICT"),
    ("cl-list", req(b"Content-Length: 5, 6"), "FP_E_CL_CONFLICT"),
    ("cl-list-then-line", req(b"Content-Length: 5, 5", b"Content-Length: 6"), "FP_E_CL_CONFLICT"),
    ("cl-zero-vs-leading-zero", req(b"Content-Length: 0", b"Content-Length: 00"), None),
    # Content-Length = 1*DIGIT
    ("cl-abc", req(b"Content-Length: abc"), "FP_E_CL_INVALID"),
    ("cl-minus", req(b"Content-Length: -1"), "FP_E_CL_INVALID"),
    ("cl-plus", req(b"Content-Length: +5"), "FP_E_CL_INVALID"),
    ("cl-empty", req(b"Content-Length:"), "FP_E_CL_INVALID"),
    ("cl-inner-space", req(b"Content-Length: 5 5"), "FP_E_CL_INVALID"),
    ("cl-hex", req(b"Content-Length: 0x5"), "FP_E_CL_INVALID"),
    ("cl-decimal-point", req(b"Content-Length: 5.0"), "FP_E_CL_INVALID"),
    ("cl-exponent", req(b"Content-Length: 1e3"), "FP_E_CL_INVALID"),
    ("cl-trailing-comma", req(b"Content-Length: 5,"), "FP_E_CL_INVALID"),
    ("cl-fullwidth-digit", req(b"Content-Length: \xef\xbc\x95"), "FP_E_CL_INVALID"),
    ("cl-20-digits", req(b"Content-Length: 99999999999999999999"), "FP_E_CL_INVALID"),
    ("cl-2^64", req(b"Content-Length: 18446744073709551616"), "FP_E_CL_INVALID"),
    ("cl-2^64+5-wraps-to-5", req(b"Content-Length: 18446744073709551621"), "FP_E_CL_INVALID"),
    ("cl-100-digits", req(b"Content-Length: " + b"9" * 100), "FP_E_CL_INVALID"),
    # RFC 9112 6.3 rule 4 / 6.1: the final coding of a request must be chunked, once
    ("te-gzip", req(b"Transfer-Encoding: gzip"), "FP_E_TE_NOT_CHUNKED"),
    ("te-identity", req(b"Transfer-Encoding: identity"), "FP_E_TE_NOT_CHUNKED"),
    ("te-empty", req(b"Transfer-Encoding:"), "FP_E_TE_NOT_CHUNKED"),
    ("te-chunked-gzip", req(b"Transfer-Encoding: chunked, gzip"), "FP_E_TE_NOT_CHUNKED"),
    ("te-chunked-twice", req(b"Transfer-Encoding: chunked, chunked"), "FP_E_TE_NOT_CHUNKED"),
    (
        "te-chunked-twice-lines",
        req(b"Transfer-Encoding: chunked", b"Transfer-Encoding: chunked"),
        "FP_E_TE_NOT_CHUNKED",
    ),
    (
        "te-chunked-lines-then-gzip",
        req(b"Transfer-Encoding: chunked", b"Transfer-Encoding: gzip"),
        "FP_E_TE_NOT_CHUNKED",
    ),
    ("te-chunked-param", req(b"Transfer-Encoding: chunked;q=1"), "FP_E_TE_NOT_CHUNKED"),
    ("te-chunked-prefix", req(b"Transfer-Encoding: xchunked"), "FP_E_TE_NOT_CHUNKED"),
    ("te-chunked-quoted", req(b'Transfer-Encoding: "chunked"'), "FP_E_TE_NOT_CHUNKED"),
    ("te-chunked-junk", req(b"Transfer-Encoding: chunked x"), "FP_E_TE_NOT_CHUNKED"),
    # a valid framing we do not implement: 501 (RFC 9112 6.1)
    ("te-gzip-chunked", req(b"Transfer-Encoding: gzip, chunked"), "FP_E_TE_UNSUPPORTED"),
    (
        "te-gzip-chunked-lines",
        req(b"Transfer-Encoding: gzip", b"Transfer-Encoding: chunked"),
        "FP_E_TE_UNSUPPORTED",
    ),
    # RFC 9112 6.1: TE in HTTP/1.0 is faulty framing
    ("te-http10", req(b"Transfer-Encoding: chunked", version=b"1.0", host=False), "FP_E_TE_HTTP10"),
    (
        "te-cl-http10",
        req(b"Transfer-Encoding: chunked", b"Content-Length: 5", version=b"1.0", host=False),
        "FP_E_TE_HTTP10",
    ),
]


@pytest.mark.parametrize("guard", [False, True], ids=["plain", "guard"])
@pytest.mark.parametrize("data, name", [v[1:] for v in ERRORS], ids=[v[0] for v in ERRORS])
def test_request_framing_errors(data: bytes, name: str | None, guard: bool) -> None:
    assert _http1.parse_request(data, framing=False, guard=guard) is not None  # head is fine
    if name is None:  # numerically identical values ("0" and "00") are one length
        assert _http1.parse_request(data, guard=guard).content_length == 0
        return
    with pytest.raises(ParseError) as ei:
        _http1.parse_request(data, guard=guard)
    e = ei.value
    assert (e.name, e.status) == (name, STATUS[name])
    assert _http1.ERRORS[e.code] == (name, STATUS[name])


@pytest.mark.parametrize(
    "data, name", [v[1:] for v in ERRORS if v[2]], ids=[v[0] for v in ERRORS if v[2]]
)
def test_request_parser_reports_framing_errors(data: bytes, name: str) -> None:
    parser = _http1.RequestParser()
    for i in range(len(data) - 1):
        assert parser.feed(data[i : i + 1]) is None
    with pytest.raises(ParseError) as ei:
        parser.feed(data[-1:])
    assert ei.value.name == name


# ---- Connection, Upgrade, Expect ------------------------------------------------------------

# (id, data, keep_alive, upgrade, expect_continue)
FLAGS = [
    ("http11-default", req(), True, False, False),
    ("http10-default", req(version=b"1.0", host=False), False, False, False),
    ("http11-close", req(b"Connection: close"), False, False, False),
    ("http11-close-case", req(b"connection: CLOSE"), False, False, False),
    ("http11-close-in-list", req(b"Connection: foo, Close"), False, False, False),
    ("http11-close-list-no-ows", req(b"Connection: foo,close,bar"), False, False, False),
    (
        "http11-close-second-line",
        req(b"Connection: keep-alive", b"Connection: close"),
        False,
        False,
        False,
    ),
    ("http11-keep-alive-then-close", req(b"Connection: keep-alive, close"), False, False, False),
    ("http11-closed-is-not-close", req(b"Connection: closed"), True, False, False),
    ("http11-x-close-is-not-close", req(b"Connection: x-close, close-x"), True, False, False),
    ("http11-close-quoted", req(b'Connection: "close"'), True, False, False),
    ("http11-other-field-named-close", req(b"X-Connection: close"), True, False, False),
    (
        "http10-keep-alive",
        req(b"Connection: keep-alive", version=b"1.0", host=False),
        True,
        False,
        False,
    ),
    (
        "http10-keep-alive-case",
        req(b"Connection: Keep-Alive", version=b"1.0", host=False),
        True,
        False,
        False,
    ),
    (
        "http10-keep-alive-list",
        req(b"Connection: foo, KEEP-ALIVE", version=b"1.0", host=False),
        True,
        False,
        False,
    ),
    (
        "http10-keep-alive-and-close",
        req(b"Connection: keep-alive, close", version=b"1.0"),
        False,
        False,
        False,
    ),
    (
        "http10-keep-alive-field-only",
        req(b"Keep-Alive: timeout=5", version=b"1.0"),
        False,
        False,
        False,
    ),
    ("upgrade-both", req(b"Connection: Upgrade", b"Upgrade: websocket"), True, True, False),
    (
        "upgrade-both-case-list",
        req(b"Connection: keep-alive, UPGRADE", b"upgrade: h2c"),
        True,
        True,
        False,
    ),
    ("upgrade-field-only", req(b"Upgrade: websocket"), True, False, False),
    ("upgrade-connection-only", req(b"Connection: upgrade"), True, False, False),
    (
        "upgrade-with-close",
        req(b"Connection: upgrade, close", b"Upgrade: websocket"),
        False,
        True,
        False,
    ),
    # RFC 9110 7.8: "A server MUST ignore an Upgrade header field that is received in an
    # HTTP/1.0 request."
    (
        "upgrade-http10-ignored",
        req(b"Connection: upgrade", b"Upgrade: websocket", version=b"1.0"),
        False,
        False,
        False,
    ),
    ("expect", req(b"Expect: 100-continue"), True, False, True),
    ("expect-case", req(b"Expect: 100-Continue"), True, False, True),
    ("expect-upper-ows", req(b"expect:  100-CONTINUE "), True, False, True),
    ("expect-other", req(b"Expect: 200-ok"), True, False, False),
    ("expect-prefix", req(b"Expect: 100-continuex"), True, False, False),
    ("expect-absent", req(b"X-Expect: 100-continue"), True, False, False),
    # RFC 9110 10.1.1: "A server that receives a 100-continue expectation in an HTTP/1.0
    # request MUST ignore that expectation."
    (
        "expect-http10-ignored",
        req(b"Expect: 100-continue", version=b"1.0", host=False),
        False,
        False,
        False,
    ),
]


@pytest.mark.parametrize("guard", [False, True], ids=["plain", "guard"])
@pytest.mark.parametrize(
    "data, keep_alive, upgrade, expect", [v[1:] for v in FLAGS], ids=[v[0] for v in FLAGS]
)
def test_request_connection_flags(
    data: bytes, keep_alive: bool, upgrade: bool, expect: bool, guard: bool
) -> None:
    head = _http1.parse_request(data, guard=guard)
    assert (head.keep_alive, head.upgrade, head.expect_continue) == (keep_alive, upgrade, expect)


def test_framing_false_leaves_flags_unset() -> None:
    head = _http1.parse_request(
        req(b"Connection: upgrade", b"Upgrade: x", b"Expect: 100-continue"), framing=False
    )
    assert (head.body_kind, head.keep_alive, head.upgrade, head.expect_continue) == (
        None,
        False,
        False,
        False,
    )
