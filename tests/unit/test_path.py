"""Route-matching path normalisation: fastproxy._rewrite.normalize_path
(csrc/fp_path.c).

The normalised path is only what routing matches on; the target forwarded
upstream stays the client's bytes (RFC 9110 7.7).  Normalisation follows
RFC 3986: percent-encoded unreserved characters are decoded (6.2.2.2), other
escapes are upper-cased (6.2.2.1), dot-segments are removed (5.2.4) and runs
of '/' are merged.  A '..' climbing above the root, an encoded NUL and a
malformed escape are refused with ValueError (the proxy answers 400).
"""

from __future__ import annotations

import re

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from fastproxy import _rewrite

normalize_path = _rewrite.normalize_path

NORMALISED = [
    # percent-decoding of unreserved characters (RFC 3986 2.3, 6.2.2.2)
    (b"/%61dmin", b"/admin"),
    (b"/%41DMIN", b"/ADMIN"),  # decoding never changes case
    (b"/%7e", b"/~"),
    (b"/%7E", b"/~"),
    (b"/%2d%2E%5f", b"/-._"),
    (b"/%30%39", b"/09"),
    # dot-segments (RFC 3986 5.2.4)
    (b"/public/../admin", b"/admin"),
    (b"/./admin", b"/admin"),
    (b"/a/b/../c/./d", b"/a/c/d"),
    (b"/a/b/../../c", b"/c"),
    (b"/a/./b", b"/a/b"),
    (b"/%2e/admin", b"/admin"),
    (b"/x/%2e%2e/admin", b"/admin"),
    (b"/x/.%2E/admin", b"/admin"),
    (b"/x/%2E./admin", b"/admin"),
    # a segment that only contains dots but is not "." or ".." is a name
    (b"/...", b"/..."),
    (b"/a/..b", b"/a/..b"),
    (b"/a/b..", b"/a/b.."),
    (b"/.hidden", b"/.hidden"),
    # slash runs
    (b"//admin", b"/admin"),
    (b"///admin//x", b"/admin/x"),
    (b"/a//b", b"/a/b"),
    # the trailing slash is part of the path and is kept
    (b"/", b"/"),
    (b"//", b"/"),
    (b"/a/", b"/a/"),
    (b"/a//", b"/a/"),
    (b"/a/.", b"/a/"),
    (b"/a/b/..", b"/a/"),
    (b"/a/..", b"/"),
    (b"/a/./", b"/a/"),
    # reserved / other escapes stay encoded, upper-cased (RFC 3986 6.2.2.1)
    (b"/a%2Fb", b"/a%2Fb"),
    (b"/a%2fb", b"/a%2Fb"),
    (b"/%2f%2F", b"/%2F%2F"),
    (b"/%3f", b"/%3F"),
    (b"/%25", b"/%25"),
    (b"/%2541", b"/%2541"),  # an escaped '%' is not decoded twice
    (b"/%c3%a9", b"/%C3%A9"),
    (b"/%20", b"/%20"),
    # an encoded '/' does not split segments, so it does not start a dot-segment
    (b"/a%2F..", b"/a%2F.."),
    (b"/..%2F", b"/..%2F"),
    # nothing else changes
    (b"/Admin", b"/Admin"),
    (b"/a;b=c/d", b"/a;b=c/d"),
    (b"/~user", b"/~user"),
]


@pytest.mark.parametrize(("raw", "want"), NORMALISED, ids=[r.decode() for r, _ in NORMALISED])
def test_normalize(raw: bytes, want: bytes) -> None:
    assert normalize_path(raw) == want


REFUSED = [
    (b"/%00", "encoded NUL"),
    (b"/a%00b", "encoded NUL"),
    (b"/..", "dot-segment above the root"),
    (b"/../admin", "dot-segment above the root"),
    (b"/a/../..", "dot-segment above the root"),
    (b"/a/../../b", "dot-segment above the root"),
    (b"/%2e%2e", "dot-segment above the root"),
    (b"/.%2e/admin", "dot-segment above the root"),
    (b"/./..", "dot-segment above the root"),
    (b"/%", "bad percent-escape"),
    (b"/%4", "bad percent-escape"),
    (b"/%zz", "bad percent-escape"),
    (b"/%4g", "bad percent-escape"),
    (b"/%g4", "bad percent-escape"),
    (b"/a%", "bad percent-escape"),
    (b"/a%4", "bad percent-escape"),
    (b"/%%41", "bad percent-escape"),
    (b"/a%/b", "bad percent-escape"),
    (b"", "not an absolute path"),
    (b"admin", "not an absolute path"),
    (b"*", "not an absolute path"),
]


@pytest.mark.parametrize(("raw", "why"), REFUSED, ids=[r.decode() or "empty" for r, _ in REFUSED])
def test_refused(raw: bytes, why: str) -> None:
    with pytest.raises(ValueError, match=re.escape(why)):
        normalize_path(raw)


def test_escape_at_the_very_end_is_decoded() -> None:
    # The bound check must allow an escape whose last digit is the last byte.
    assert normalize_path(b"/a%41") == b"/aA"
    assert normalize_path(b"/%2F") == b"/%2F"


def test_long_path_is_handled() -> None:
    raw = b"/" + b"/".join([b"seg%41"] * 2000) + b"/"
    assert normalize_path(raw) == b"/" + b"/".join([b"segA"] * 2000) + b"/"
    deep = b"/" + b"a/" * 5000 + b"../" * 5000 + b"x"
    assert normalize_path(deep) == b"/x"


# ------------------------------------------------------------------ property

_PIECES = st.sampled_from(
    ["/", "//", ".", "..", "a", "b", "Z", "~", "-", "_", "%2e", "%2E", "%2f", "%2F", "%41", "%61"]
    + ["%7e", "%25", "%3f", "%c3", "%", "%4", "%zz", "%00", "...", ".a"]
)
PATHS = st.lists(_PIECES, max_size=30).map(lambda xs: ("/" + "".join(xs)).encode())
UNRESERVED_ESCAPE = re.compile(rb"%(?:[46][1-9A-Fa-f]|[57][0-9Aa]|3[0-9]|2[dDeE]|5[fF]|7[eE])")


@settings(max_examples=2000, deadline=None)
@given(PATHS)
@example(b"/a/b/../c/./d")
@example(b"/.%2e")
@example(b"/a/%2e")
@example(b"/a/.%2E/")
def test_normalised_form_is_canonical(raw: bytes) -> None:
    try:
        out = normalize_path(raw)
    except ValueError:
        return
    assert out.startswith(b"/")
    assert len(out) <= len(raw)
    assert b"//" not in out
    assert b"/./" not in out
    assert b"/../" not in out
    assert not out.endswith(b"/.")
    assert not out.endswith(b"/..")
    assert not UNRESERVED_ESCAPE.search(out), "an unreserved character stayed encoded"
    for esc in re.findall(rb"%(..)", out):
        assert esc == esc.upper(), "an escape was not upper-cased"
    assert normalize_path(out) == out, "normalising twice changed the path"


@settings(max_examples=1000, deadline=None)
@given(PATHS)
def test_refusal_is_stable(raw: bytes) -> None:
    # Whatever is refused is refused with one of the documented reasons and
    # never crashes; whatever is accepted is accepted again after a '/'.
    try:
        out = normalize_path(raw)
    except ValueError as e:
        assert str(e) in {
            "bad percent-escape",
            "encoded NUL",
            "dot-segment above the root",
        }
        return
    assert normalize_path(b"/" + out) == out
