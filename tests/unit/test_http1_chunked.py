"""The chunked transfer coding decoder (RFC 9112 7.1) through _http1.ChunkedDecoder.

feed(data) -> (body pieces, done, consumed).  Before `done`, every byte given is
consumed; once done, `consumed` stops exactly after the final CRLF, so bytes
after it belong to the next message.  Framing is strict: unlike heads, chunk
lines must end in CRLF (a bare LF is an error).
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastproxy import _http1

pytestmark = pytest.mark.usefixtures("simd")

ParseError = _http1.ParseError
CODES = {
    "FP_E_CHUNK_SIZE": -26,
    "FP_E_CHUNK_OVERFLOW": -27,
    "FP_E_CHUNK_EXT": -28,
    "FP_E_CHUNK_CRLF": -29,
    "FP_E_TRAILER": -30,
}


def decode(data: bytes, **kw) -> tuple[bytes, bool, int]:
    pieces, done, consumed = _http1.ChunkedDecoder(**kw).feed(data)
    assert all(isinstance(p, bytes) and p for p in pieces)
    return b"".join(pieces), done, consumed


def decode_bytewise(data: bytes, **kw) -> tuple[bytes, bool, int]:
    """Feed one byte at a time; stop at done.  Every byte before it is consumed."""
    dec = _http1.ChunkedDecoder(**kw)
    body = b""
    for i in range(len(data)):
        pieces, done, consumed = dec.feed(data[i : i + 1])
        body += b"".join(pieces)
        assert consumed == 1
        if done:
            return body, True, i + 1
    return body, False, len(data)


def check_error(exc: ParseError, name: str) -> None:
    assert (exc.name, exc.code, exc.status) == (name, CODES[name], 400), exc


# ---- valid bodies --------------------------------------------------------------------

# (id, data, body, consumed or None for len(data), kwargs)
VALID = [
    ("empty", b"0\r\n\r\n", b"", None, {}),
    ("simple", b"5\r\nhello\r\n0\r\n\r\n", b"hello", None, {}),
    ("multiple", b"5\r\nhello\r\n1\r\n \r\n6\r\nworld!\r\n0\r\n\r\n", b"hello world!", None, {}),
    (
        "hex-lower",
        b"a\r\n0123456789\r\n1f\r\n" + b"x" * 31 + b"\r\n0\r\n\r\n",
        b"0123456789" + b"x" * 31,
        None,
        {},
    ),
    (
        "hex-upper",
        b"A\r\n0123456789\r\n1F\r\n" + b"x" * 31 + b"\r\n0\r\n\r\n",
        b"0123456789" + b"x" * 31,
        None,
        {},
    ),
    ("hex-mixed", b"1aB\r\n" + b"y" * 0x1AB + b"\r\n0\r\n\r\n", b"y" * 0x1AB, None, {}),
    ("leading-zeros", b"0000000000000000000005\r\nhello\r\n0\r\n\r\n", b"hello", None, {}),
    ("last-chunk-zeros", b"5\r\nhello\r\n000\r\n\r\n", b"hello", None, {}),
    ("binary-data", b"6\r\n\r\n\x00\xff0\n\r\n0\r\n\r\n", b"\r\n\x00\xff0\n", None, {}),
    ("data-looks-like-chunk", b"5\r\n0\r\n\r\n\r\n0\r\n\r\n", b"0\r\n\r\n", None, {}),
    ("ext-simple", b"5;a=b\r\nhello\r\n0\r\n\r\n", b"hello", None, {}),
    ("ext-quoted", b'5;a=b;c="d;e"\r\nhello\r\n0\r\n\r\n', b"hello", None, {}),
    ("ext-name-only", b"5;foo\r\nhello\r\n0;bar\r\n\r\n", b"hello", None, {}),
    ("ext-bws", b"5 ; a = b\r\nhello\r\n0\t;x\r\n\r\n", b"hello", None, {}),
    ("ext-obs-text", b'5;a="\x80\xff"\r\nhello\r\n0\r\n\r\n', b"hello", None, {}),
    (
        "ext-per-line-bound",
        b"5;abcdef\r\nhello\r\n0;abcdef\r\n\r\n",
        b"hello",
        None,
        {"max_ext": 8},
    ),
    ("trailer", b"5\r\nhello\r\n0\r\nX-Sum: 1\r\n\r\n", b"hello", None, {}),
    ("trailers", b"0\r\nA: 1\r\nb-c: x y\t\r\nEmpty:\r\nO: \x80\xff\r\n\r\n", b"", None, {}),
    ("next-message-left", b"5\r\nhello\r\n0\r\n\r\nGET / HTTP/1.1\r\n", b"hello", 15, {}),
    ("next-after-trailers", b"0\r\nT: v\r\n\r\n0\r\n\r\n", b"", 11, {}),
]


@pytest.mark.parametrize(
    "data, body, consumed, kw", [v[1:] for v in VALID], ids=[v[0] for v in VALID]
)
def test_valid_chunked(data: bytes, body: bytes, consumed: int | None, kw: dict) -> None:
    assert decode(data, **kw) == (body, True, len(data) if consumed is None else consumed)


@pytest.mark.parametrize(
    "data, body, consumed, kw", [v[1:] for v in VALID], ids=[v[0] for v in VALID]
)
def test_valid_chunked_bytewise(data: bytes, body: bytes, consumed: int | None, kw: dict) -> None:
    assert decode_bytewise(data, **kw) == (body, True, len(data) if consumed is None else consumed)


@pytest.mark.parametrize(
    "data, body, consumed, kw", [v[1:] for v in VALID], ids=[v[0] for v in VALID]
)
def test_valid_chunked_every_two_way_split(
    data: bytes, body: bytes, consumed: int | None, kw: dict
) -> None:
    end = len(data) if consumed is None else consumed
    for cut in range(len(data) + 1):
        dec = _http1.ChunkedDecoder(**kw)
        p1, d1, c1 = dec.feed(data[:cut])
        if d1:
            assert cut >= end and c1 == end
            got = b"".join(p1)
        else:
            assert c1 == cut
            p2, d2, c2 = dec.feed(data[cut:])
            assert d2 and cut + c2 == end
            got = b"".join(p1 + p2)
        assert got == body


def test_incomplete_body_consumes_everything() -> None:
    dec = _http1.ChunkedDecoder()
    assert dec.feed(b"") == ([], False, 0)
    assert dec.feed(b"a;x=y\r") == ([], False, 6)
    assert dec.feed(b"\n01234") == ([b"01234"], False, 6)
    assert dec.feed(b"56789\r\n0\r\nT: v\r") == ([b"56789"], False, 15)
    assert dec.feed(b"\n\r") == ([], False, 2)
    assert dec.feed(b"\nrest") == ([], True, 1)
    assert dec.feed(b"more") == ([], True, 0)


def test_large_declared_chunk_streams() -> None:
    dec = _http1.ChunkedDecoder()
    assert dec.feed(b"7fffffffffffffff\r\nabc") == ([b"abc"], False, 21)
    assert dec.feed(b"x" * 1000) == ([b"x" * 1000], False, 1000)


# ---- errors -------------------------------------------------------------------------------

# (id, data, error, kwargs)
ERRORS = [
    ("size-nonhex", b"g\r\nhello\r\n0\r\n\r\n", "FP_E_CHUNK_SIZE", {}),
    ("size-nonhex-after-digit", b"5g\r\nhello\r\n0\r\n\r\n", "FP_E_CHUNK_SIZE", {}),
    ("size-missing", b"\r\nhello\r\n0\r\n\r\n", "FP_E_CHUNK_SIZE", {}),
    ("size-missing-ext", b";a=b\r\nhello\r\n0\r\n\r\n", "FP_E_CHUNK_SIZE", {}),
    ("size-minus", b"-5\r\nhello\r\n0\r\n\r\n", "FP_E_CHUNK_SIZE", {}),
    ("size-plus", b"+5\r\nhello\r\n0\r\n\r\n", "FP_E_CHUNK_SIZE", {}),
    ("size-0x-prefix", b"0x5\r\nhello\r\n0\r\n\r\n", "FP_E_CHUNK_SIZE", {}),
    ("size-leading-sp", b" 5\r\nhello\r\n0\r\n\r\n", "FP_E_CHUNK_SIZE", {}),
    ("size-junk-after-bws", b"5 x\r\nhello\r\n0\r\n\r\n", "FP_E_CHUNK_SIZE", {}),
    ("size-bare-lf", b"5\nhello\r\n0\r\n\r\n", "FP_E_CHUNK_SIZE", {}),
    ("size-bare-cr", b"5\rhello\r\n0\r\n\r\n", "FP_E_CHUNK_SIZE", {}),
    ("size-second-chunk", b"5\r\nhello\r\nzz\r\n", "FP_E_CHUNK_SIZE", {}),
    ("overflow-17-f", b"f" * 17 + b"\r\n", "FP_E_CHUNK_OVERFLOW", {}),
    ("overflow-16-f", b"f" * 16 + b"\r\n", "FP_E_CHUNK_OVERFLOW", {}),
    ("overflow-2^63+1", b"8000000000000001\r\n", "FP_E_CHUNK_OVERFLOW", {}),
    ("overflow-after-zeros", b"0" * 20 + b"1" + b"0" * 16 + b"\r\n", "FP_E_CHUNK_OVERFLOW", {}),
    ("overflow-64-digits", b"1" * 64 + b"\r\n", "FP_E_CHUNK_OVERFLOW", {}),
    ("ext-too-long", b"5;" + b"a" * 5000 + b"\r\nhello\r\n0\r\n\r\n", "FP_E_CHUNK_EXT", {}),
    (
        "ext-too-long-small-bound",
        b"5;" + b"a" * 17 + b"\r\nhello\r\n0\r\n\r\n",
        "FP_E_CHUNK_EXT",
        {"max_ext": 8},
    ),
    ("ext-too-long-last-chunk", b"0;" + b"a" * 17 + b"\r\n\r\n", "FP_E_CHUNK_EXT", {"max_ext": 8}),
    ("ext-nul", b"5;a\x00b\r\nhello\r\n0\r\n\r\n", "FP_E_CHUNK_EXT", {}),
    ("ext-bare-lf", b"5;a\nhello\r\n0\r\n\r\n", "FP_E_CHUNK_EXT", {}),
    ("ext-del", b"5;a=\x7f\r\nhello\r\n0\r\n\r\n", "FP_E_CHUNK_EXT", {}),
    ("data-no-crlf", b"5\r\nhelloX\r\n0\r\n\r\n", "FP_E_CHUNK_CRLF", {}),
    ("data-too-long", b"5\r\nhello!\r\n0\r\n\r\n", "FP_E_CHUNK_CRLF", {}),
    ("data-cr-then-junk", b"5\r\nhello\rX\n0\r\n\r\n", "FP_E_CHUNK_CRLF", {}),
    ("data-bare-lf", b"5\r\nhello\n0\r\n\r\n", "FP_E_CHUNK_CRLF", {}),
    ("trailer-too-long", b"0\r\nX: " + b"v" * 20000 + b"\r\n\r\n", "FP_E_TRAILER", {}),
    (
        "trailer-too-long-small-bound",
        b"0\r\nX: " + b"v" * 40 + b"\r\n\r\n",
        "FP_E_TRAILER",
        {"max_trailer": 32},
    ),
    (
        "trailer-many-lines",
        b"0\r\n" + b"X: 1\r\n" * 10 + b"\r\n",
        "FP_E_TRAILER",
        {"max_trailer": 32},
    ),
    ("trailer-no-colon", b"0\r\nNoColon\r\n\r\n", "FP_E_TRAILER", {}),
    ("trailer-empty-name", b"0\r\n: v\r\n\r\n", "FP_E_TRAILER", {}),
    ("trailer-name-sp", b"0\r\nBad Name: v\r\n\r\n", "FP_E_TRAILER", {}),
    ("trailer-ws-before-colon", b"0\r\nX : v\r\n\r\n", "FP_E_TRAILER", {}),
    ("trailer-obs-fold", b"0\r\nX: v\r\n w\r\n\r\n", "FP_E_TRAILER", {}),
    ("trailer-value-nul", b"0\r\nX: a\x00\r\n\r\n", "FP_E_TRAILER", {}),
    ("trailer-bare-lf", b"0\r\nX: v\n\r\n", "FP_E_TRAILER", {}),
    ("trailer-bare-cr", b"0\r\nX: v\rw\r\n\r\n", "FP_E_TRAILER", {}),
    ("final-bare-lf", b"0\r\n\n", "FP_E_TRAILER", {}),
    ("final-cr-junk", b"0\r\n\rX", "FP_E_TRAILER", {}),
]


@pytest.mark.parametrize("data, name, kw", [v[1:] for v in ERRORS], ids=[v[0] for v in ERRORS])
def test_chunked_error(data: bytes, name: str, kw: dict) -> None:
    with pytest.raises(ParseError) as ei:
        _http1.ChunkedDecoder(**kw).feed(data)
    check_error(ei.value, name)


@pytest.mark.parametrize("data, name, kw", [v[1:] for v in ERRORS], ids=[v[0] for v in ERRORS])
def test_chunked_error_bytewise(data: bytes, name: str, kw: dict) -> None:
    dec = _http1.ChunkedDecoder(**kw)
    with pytest.raises(ParseError) as ei:
        for i in range(len(data)):
            dec.feed(data[i : i + 1])
    check_error(ei.value, name)


def test_leading_zeros_do_not_overflow() -> None:
    assert decode(b"0" * 100 + b"5\r\nhello\r\n" + b"0" * 100 + b"\r\n\r\n")[:2] == (b"hello", True)


def test_largest_size_accepted() -> None:
    assert decode(b"7FFFFFFFFFFFFFFF\r\nab") == (b"ab", False, 20)


def test_extension_bound_is_per_line() -> None:
    ext = b";" + b"e" * 6
    data = b"1" + ext + b"\r\na\r\n1" + ext + b"\r\nb\r\n0" + ext + b"\r\n\r\n"
    assert decode(data, max_ext=8) == (b"ab", True, len(data))


def test_trailer_bound_is_inclusive() -> None:
    """max_trailer bounds the trailer section: its field lines with their CRLFs."""
    section = b"X: 1\r\nYy: 22\r\n"
    data = b"0\r\n" + section + b"\r\n"
    assert decode(data, max_trailer=len(section)) == (b"", True, len(data))
    with pytest.raises(ParseError) as ei:
        decode(data, max_trailer=len(section) - 1)
    check_error(ei.value, "FP_E_TRAILER")


# ---- hypothesis: any split gives the same body --------------------------------------------


@st.composite
def chunked_bodies(draw) -> tuple[bytes, bytes]:
    chunks = draw(st.lists(st.binary(min_size=1, max_size=40), max_size=8))
    ext = st.sampled_from([b"", b";a", b";a=b", b';c="d;e"', b" ;x=1;y", b"\t;q"])
    out = []
    for c in chunks:
        size = format(len(c), "x")
        size = size.upper() if draw(st.booleans()) else size
        out.append(
            b"0" * draw(st.integers(0, 3)) + size.encode() + draw(ext) + b"\r\n" + c + b"\r\n"
        )
    out.append(b"0" * draw(st.integers(1, 3)) + draw(ext) + b"\r\n")
    names = st.text("abcXYZ-_!~09", min_size=1, max_size=8).map(str.encode)
    values = st.binary(max_size=12).map(lambda v: bytes(b for b in v if b >= 0x20 and b != 0x7F))
    for name, value in draw(st.lists(st.tuples(names, values), max_size=3)):
        out.append(name + b":" + value + b"\r\n")
    out.append(b"\r\n")
    return b"".join(out), b"".join(chunks)


@settings(max_examples=300, deadline=None)
@given(
    case=chunked_bodies(),
    cuts=st.lists(st.integers(0, 2000), max_size=8),
    tail=st.binary(max_size=8),
)
def test_random_splits_same_body(case: tuple[bytes, bytes], cuts: list[int], tail: bytes) -> None:
    encoded, body = case
    data = encoded + tail
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    dec = _http1.ChunkedDecoder()
    got, total, done = b"", 0, False
    for a, b in zip(points, points[1:], strict=False):
        pieces, done, consumed = dec.feed(data[a:b])
        got += b"".join(pieces)
        total += consumed
        if done:
            break
        assert consumed == b - a
    assert done
    assert got == body
    assert total == len(encoded)
