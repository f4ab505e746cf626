"""Differential tests: our request parser against llhttp (through httptools).

Request heads come from a small grammar (RFC 9112 3 and 5).  When both parsers
accept, method, target, version and the field list (names as sent, values with
OWS trimmed) must be equal, and equal to the model the input was built from.
When exactly one rejects, the input must match a pinned, documented entry of
KNOWN_DIFFERENCES that names the side that rejects; anything else fails.

A second test throws garbage and mutated requests at every entry point and only
checks that the answer is None, a Head or a ParseError, the same on both scanning
paths, with and without the guard page, and whole or split.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import httptools
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastproxy import _http1

pytestmark = pytest.mark.usefixtures("simd")

TCHAR = "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
VCHAR = "".join(chr(c) for c in range(0x21, 0x7F))
PATH_CHARS = "ABCXYZabcxyz0189-._~!$&'()*+,;=:@/?%"

# llhttp's fixed request-method table (llhttp src/llhttp/constants.ts, METHODS_HTTP),
# as accepted by the httptools build under test.
LLHTTP_METHODS = frozenset(
    b"DELETE GET HEAD POST PUT CONNECT OPTIONS TRACE COPY LOCK MKCOL MOVE PROPFIND "
    b"PROPPATCH SEARCH UNLOCK BIND REBIND UNBIND ACL REPORT MKACTIVITY CHECKOUT MERGE "
    b"M-SEARCH NOTIFY SUBSCRIBE UNSUBSCRIBE PATCH PURGE MKCALENDAR LINK UNLINK SOURCE "
    b"QUERY".split()
)
CUSTOM_METHODS = [b"FOO", b"get", b"X-CUSTOM", b"PRI", b"GETX", b"BREW"]
# Names whose fields change framing or acceptance; the generator adds them on purpose.
RESERVED = {
    b"host",
    b"content-length",
    b"transfer-encoding",
    b"connection",
    b"proxy-connection",
    b"upgrade",
    b"expect",
}


@dataclass(frozen=True)
class Gen:
    """One generated request; `fields` holds the field lines in order, as sent."""

    method: bytes
    target: bytes
    version: bytes
    fields: tuple[tuple[bytes, bytes, bytes], ...]  # (name, OWS, value)
    eol: bytes
    leading: bytes
    body: bytes

    def encode(self) -> bytes:
        lines = [self.method + b" " + self.target + b" HTTP/" + self.version]
        lines += [n + b":" + ows + v for n, ows, v in self.fields]
        head = self.eol.join(lines) + self.eol + self.eol
        return self.leading + head + self.body

    def count(self, name: bytes) -> int:
        return sum(1 for n, _, _ in self.fields if n.lower() == name)

    def expected_fields(self) -> list[tuple[bytes, bytes]]:
        return [(n, v.strip(b" \t")) for n, _, v in self.fields]


@dataclass(frozen=True)
class Difference:
    description: str
    rfc: str
    rejected_by: str  # "fastproxy" or "llhttp"
    applies: Callable[[Gen], bool]


KNOWN_DIFFERENCES = [
    Difference(
        "a method token outside llhttp's fixed method table",
        "RFC 9110 9.1: method = token; methods are extensible and case-sensitive",
        "llhttp",
        lambda g: g.method not in LLHTTP_METHODS,
    ),
    Difference(
        "bare LF line endings",
        "RFC 9112 2.2: a recipient MAY recognize a single LF as a line terminator",
        "llhttp",
        lambda g: g.eol == b"\n",
    ),
    Difference(
        "Content-Length repeated with the identical value",
        "RFC 9110 8.6: a recipient MAY accept a list of identical values as that value",
        "llhttp",
        lambda g: g.count(b"content-length") > 1,
    ),
    Difference(
        "HTTP/1.1 request without Host",
        "RFC 9112 3.2: a server MUST respond 400 to an HTTP/1.1 request lacking Host",
        "fastproxy",
        lambda g: g.version == b"1.1" and g.count(b"host") == 0,
    ),
    Difference(
        "several Host field lines",
        "RFC 9112 3.2: a server MUST respond 400 to more than one Host field line",
        "fastproxy",
        lambda g: g.count(b"host") > 1,
    ),
    Difference(
        "HTTP/2.0 or HTTP/0.9 in an HTTP/1.x request line (llhttp accepts both)",
        "RFC 9110 6.2 / 15.6.6: a server answers 505 to a major version it does not support",
        "fastproxy",
        lambda g: g.version in (b"2.0", b"0.9"),
    ),
    Difference(
        "HTTP/1.2 in the request line (fastproxy handles it as HTTP/1.1)",
        "RFC 9110 2.5: a recipient treats a higher minor version as the highest it supports",
        "llhttp",
        lambda g: g.version == b"1.2",
    ),
]


# ---- the grammar -----------------------------------------------------------------------

tokens = st.text(TCHAR, min_size=1, max_size=16).map(str.encode)
field_names = tokens.filter(lambda n: n.lower() not in RESERVED)
field_values = st.text(VCHAR + " ", max_size=30).map(str.encode)
ows = st.sampled_from([b"", b" ", b"  ", b"\t"])


@st.composite
def requests(draw) -> Gen:
    method = draw(
        st.one_of(
            st.sampled_from(sorted(LLHTTP_METHODS - {b"CONNECT"})),
            st.sampled_from(CUSTOM_METHODS),
            tokens,
        )
    )
    path = b"/" + draw(st.text(PATH_CHARS, max_size=30)).encode()
    target = draw(st.sampled_from([path, b"http://a.example:8080" + path, b"*"]))
    if draw(st.integers(0, 9)) == 0:
        method, target = b"CONNECT", b"a.example:443"
    elif target == b"*":
        method = b"OPTIONS"
    fields = [
        (n, draw(ows), v)
        for n, v in draw(st.lists(st.tuples(field_names, field_values), max_size=15))
    ]
    for _ in range(draw(st.sampled_from([1, 1, 1, 1, 1, 0, 2]))):
        fields.append((draw(st.sampled_from([b"Host", b"host", b"HOST"])), b" ", b"a.example"))
    conn = draw(st.sampled_from([None, None, b"close", b"keep-alive", b"Keep-Alive, foo"]))
    if conn is not None:
        fields.append((b"Connection", b" ", conn))
    body = b""
    cl_lines = draw(st.sampled_from([0, 0, 1, 1, 2]))
    if cl_lines:
        body = b"x" * draw(st.integers(0, 20))
        fields += [(b"Content-Length", draw(ows), b"%d" % len(body))] * cl_lines
    fields = draw(st.permutations(fields))
    return Gen(
        method=method,
        target=target,
        version=draw(st.sampled_from([b"1.1"] * 6 + [b"1.0"] * 3 + [b"2.0", b"0.9", b"1.2"])),
        fields=tuple(fields),
        eol=draw(st.sampled_from([b"\r\n"] * 5 + [b"\n"])),
        leading=draw(st.sampled_from([b"", b"", b"\r\n", b"\r\n\r\n"])),
        body=body,
    )


# ---- the two parsers --------------------------------------------------------------------


class _Collector:
    def __init__(self) -> None:
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.complete = False

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.complete = True


def run_llhttp(data: bytes) -> tuple | None:
    """(method, target, version, fields) when llhttp accepts the head, else None."""
    c = _Collector()
    parser = httptools.HttpRequestParser(c)
    try:
        parser.feed_data(data)
    except httptools.HttpParserUpgrade:
        pass  # CONNECT or Connection: upgrade; the head itself was accepted
    except httptools.HttpParserError:
        return None
    if not c.complete:
        return None
    version = tuple(int(x) for x in parser.get_http_version().split("."))
    # llhttp strips OWS before a value but not after it (RFC 9112 5 says both)
    fields = [(n, v.rstrip(b" \t")) for n, v in c.headers]
    return (parser.get_method(), c.url, version, fields)


def run_ours(data: bytes) -> tuple | None:
    try:
        head = _http1.parse_request(data)
    except _http1.ParseError:
        return None
    assert head is not None, "a complete request head came back incomplete"
    return (head.method, head.target, head.version, [(n, v) for n, v, _ in head.headers])


@settings(max_examples=300, deadline=None)
@given(g=requests())
def test_differential_against_llhttp(g: Gen) -> None:
    data = g.encode()
    ours, theirs = run_ours(data), run_llhttp(data)
    if ours is not None and theirs is not None:
        assert ours == theirs
        version = tuple(int(x) for x in g.version.split(b"."))
        assert ours == (g.method, g.target, version, g.expected_fields())
        return
    if ours is None and theirs is None:
        return
    rejected_by = "fastproxy" if ours is None else "llhttp"
    explained = [d for d in KNOWN_DIFFERENCES if d.rejected_by == rejected_by and d.applies(g)]
    assert explained, f"unexplained disagreement: {rejected_by} rejects {data!r}"


def test_known_differences_are_real() -> None:
    """Each pinned difference still shows on a minimal input (else drop the entry)."""
    base = Gen(b"GET", b"/", b"1.1", ((b"Host", b" ", b"h"),), b"\r\n", b"", b"")
    cases = [
        Gen(b"BREW", b"/", b"1.1", base.fields, b"\r\n", b"", b""),
        Gen(b"GET", b"/", b"1.1", base.fields, b"\n", b"", b""),
        Gen(
            b"GET",
            b"/",
            b"1.1",
            base.fields + ((b"Content-Length", b" ", b"0"),) * 2,
            b"\r\n",
            b"",
            b"",
        ),
        Gen(b"GET", b"/", b"1.1", (), b"\r\n", b"", b""),
        Gen(b"GET", b"/", b"1.1", base.fields * 2, b"\r\n", b"", b""),
        Gen(b"GET", b"/", b"2.0", base.fields, b"\r\n", b"", b""),
        Gen(b"GET", b"/", b"1.2", base.fields, b"\r\n", b"", b""),
    ]
    assert run_ours(base.encode()) is not None and run_llhttp(base.encode()) is not None
    for diff, g in zip(KNOWN_DIFFERENCES, cases, strict=True):
        assert diff.applies(g) and not diff.applies(base), diff.description
        ours, theirs = run_ours(g.encode()), run_llhttp(g.encode())
        rejected = "fastproxy" if ours is None else "llhttp" if theirs is None else None
        assert rejected == diff.rejected_by, diff.description


# ---- garbage never crashes ---------------------------------------------------------------

SOUP = [
    b"GET",
    b"HTTP/1.1",
    b"HTTP/1.0",
    b" ",
    b"\t",
    b"\r\n",
    b"\r",
    b"\n",
    b":",
    b"/",
    b"Host",
    b"Content-Length",
    b"Transfer-Encoding",
    b"chunked",
    b"0",
    b"5",
    b"\x00",
    b"\x7f",
    b"\x80",
    b"\xff",
    b";",
    b"a" * 20,
]


@st.composite
def mutated(draw) -> bytes:
    data = bytearray(draw(requests()).encode())
    for _ in range(draw(st.integers(1, 6))):
        pos = draw(st.integers(0, len(data)))
        op = draw(st.sampled_from(["insert", "replace", "delete", "dup"]))
        byte = draw(st.sampled_from(b"\x00\t\n\r :;,\x7f\x80\xffA0"))
        if op == "insert" or not data:
            data[pos:pos] = bytes([byte])
        elif op == "replace":
            data[min(pos, len(data) - 1)] = byte
        elif op == "delete":
            del data[min(pos, len(data) - 1)]
        else:
            data[pos:pos] = data[max(0, pos - 8) : pos]
    return bytes(data)


garbage = st.one_of(
    st.binary(max_size=300), mutated(), st.lists(st.sampled_from(SOUP), max_size=40).map(b"".join)
)


def summary(head: _http1.Head) -> tuple:
    return (
        "head",
        head.method,
        head.target,
        head.status,
        head.reason,
        head.headers,
        head.head_len,
        head.body_kind,
    )


def answer(fn, data: bytes, **kw) -> tuple:
    """Call fn(data, **kw); check the invariants of whatever comes back."""
    try:
        head = fn(data, **kw)
    except _http1.ParseError as e:
        assert _http1.ERRORS[e.code] == (e.name, e.status)
        assert e.status in (400, 414, 431, 501, 502, 505)
        return ("error", e.name)
    if head is None:
        return ("none",)
    assert isinstance(head, _http1.Head)
    assert 0 < head.head_len <= len(data) and data[head.head_len - 1] == 0x0A
    assert head.version in ((1, 0), (1, 1))
    for name, value, hid in head.headers:
        assert name and all(c not in b" \t\r\n:" for c in name)
        assert b"\r" not in value and b"\n" not in value and b"\x00" not in value
        assert value == value.strip(b" \t") and 0 <= hid < 53
    if kw.get("framing", True):
        assert head.body_kind in ("none", "length", "chunked", "until_close")
        assert (head.content_length is not None) == (head.body_kind == "length")
    return summary(head)


def feed_answer(parser: _http1.RequestParser, chunk: bytes) -> tuple:
    try:
        head = parser.feed(chunk)
    except _http1.ParseError as e:
        return ("error", e.name)
    return ("none",) if head is None else summary(head)


@settings(max_examples=300, deadline=None)
@given(data=garbage, cuts=st.lists(st.integers(0, 400), max_size=4))
def test_garbage_never_crashes(data: bytes, cuts: list[int]) -> None:
    for fn in (_http1.parse_request, _http1.parse_response):
        for framing in (True, False):
            plain = answer(fn, data, framing=framing)
            assert answer(fn, data, framing=framing, guard=True) == plain
            answer(fn, data, framing=framing, max_line=64, max_head=128, max_headers=4, guard=True)
    # both scanning paths give the same answer
    if _http1.simd_available():
        prev = _http1.set_simd(True)
        try:
            on = answer(_http1.parse_request, data)
            _http1.set_simd(False)
            assert answer(_http1.parse_request, data) == on
        finally:
            _http1.set_simd(prev)
    # split feeding through RequestParser ends like the whole buffer
    whole = answer(_http1.parse_request, data)
    parser = _http1.RequestParser()
    points = sorted({c % (len(data) + 1) for c in cuts} | {len(data)})
    start, got = 0, ("none",)
    for p in points:
        got = feed_answer(parser, data[start:p])
        start = p
        if got != ("none",):
            break
    assert got == whole
    # the chunked decoder takes anything too
    try:
        pieces, done, consumed = _http1.ChunkedDecoder(max_ext=16, max_trailer=64).feed(data)
    except _http1.ParseError as e:
        assert e.name.startswith(("FP_E_CHUNK", "FP_E_TRAILER")) and e.status == 400
    else:
        assert 0 <= consumed <= len(data) and (done or consumed == len(data))
        assert sum(map(len, pieces)) <= consumed
