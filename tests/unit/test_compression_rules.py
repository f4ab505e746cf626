"""Compression decisions in C (csrc/fp_encoding.c) through the small Python wrappers of
fastproxy._compress, and the [compression] config section."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastproxy._compress import Policy, accept_q, patch_head
from fastproxy.config import CompressionConfig, Config, ConfigError

ALL = Policy(CompressionConfig(enabled=True))  # server order zstd, br, gzip
GZ_BR = Policy(CompressionConfig(enabled=True, algorithms=("gzip", "br")))


@pytest.mark.parametrize(
    ("accept", "all_three", "gzip_br"),
    [
        (b"", "identity", "identity"),
        (b"gzip", "gzip", "gzip"),
        (b"gzip, deflate, br, zstd", "zstd", "gzip"),  # ties: server preference
        (b"br;q=0.5, gzip;q=0.8", "gzip", "gzip"),
        (b"gzip;q=0.8, br;q=0.9", "br", "br"),
        (b"zstd;q=0.1, gzip;q=0.2, br;q=0.15", "gzip", "gzip"),
        (b"gzip;q=0", "identity", "identity"),  # refused
        (b"gzip;q=0, *", "zstd", "br"),
        (b"*", "zstd", "gzip"),
        (b"*;q=0", "identity", "identity"),
        (b"*;q=0.5, br;q=1", "br", "br"),
        (b"identity", "identity", "identity"),
        (b"identity;q=1, gzip;q=0.5", "identity", "identity"),  # identity strictly better
        (b"identity;q=0.5, gzip;q=0.5", "gzip", "gzip"),
        (b"gzip, identity;q=0", "gzip", "gzip"),
        (b"GZip;Q=0.7", "gzip", "gzip"),  # case-insensitive codings and parameter
        (b"x-gzip", "gzip", "gzip"),
        (b"deflate, compress", "identity", "identity"),
        (b"gzip;q=1.5", "identity", "identity"),  # malformed weight: element ignored
        (b"gzip;q=0.1234", "identity", "identity"),
        (b"gzip;q=", "identity", "identity"),
        (b"gzip ; q=0.5 ,br;q=0.4", "gzip", "gzip"),  # OWS around ";"
        (b" , ,gzip,,", "gzip", "gzip"),  # empty list elements
        (b"gzip;level=1", "gzip", "gzip"),  # unknown parameters are ignored
        (b"zstd;q=0.001", "zstd", "identity"),
        (b"br;q=0, br;q=0.5", "br", "br"),  # named twice: the higher weight
    ],
)
def test_q_value_selection(accept: bytes, all_three: str, gzip_br: str) -> None:
    assert ALL.negotiate(accept) == all_three
    assert GZ_BR.negotiate(accept) == gzip_br


def test_disabled_policy_never_picks_a_coding() -> None:
    off = Policy(CompressionConfig(enabled=False, decompress_upstream=True))
    assert off.negotiate(b"gzip, br, zstd") == "identity"


def test_effective_q_values() -> None:
    q = accept_q(b"gzip;q=0.5, *;q=0.1")
    assert q == {"identity": 0.1, "gzip": 0.5, "br": 0.1, "zstd": 0.1}
    assert accept_q(b"br")["identity"] == 1.0  # identity acceptable unless excluded
    assert accept_q(b"identity;q=0")["identity"] == 0.0
    assert accept_q(b"")["gzip"] == 0.0


@pytest.mark.parametrize(
    ("ctype", "listed"),
    [
        (b"text/html", True),
        (b"TEXT/HTML; charset=utf-8", True),
        (b"text/event-stream", True),
        (b"application/json", True),
        (b"application/json;charset=utf-8", True),
        (b"  application/javascript", True),
        (b"image/svg+xml", True),
        (b"image/png", False),
        (b"application/octet-stream", False),
        (b"application/jsonx", False),
        (b"texts/html", False),
        (b"text", False),
        (b"", False),
    ],
)
def test_type_list(ctype: bytes, listed: bool) -> None:
    assert ALL.type_listed(ctype) is listed


def test_type_list_wildcards() -> None:
    p = Policy(CompressionConfig(enabled=True, types=("*/*",)))
    assert p.type_listed(b"image/png") and not p.type_listed(b"nonsense")
    p = Policy(CompressionConfig(enabled=True, types=("application/*",)))
    assert p.type_listed(b"application/wasm") and not p.type_listed(b"text/html")


HEAD = (
    b"HTTP/1.1 200 OK\r\n"
    b"Content-Type: application/json\r\n"
    b"Content-Length: 5000\r\n"
    b'ETag: "abc"\r\n'
    b"Vary: Cookie\r\n"
    b"Accept-Ranges: bytes\r\n"
    b"vary: Origin\r\n"
    b"X-Other: 1\r\n"
    b"\r\n"
)


def test_patch_head_for_a_compressed_body() -> None:
    out = patch_head(HEAD, "br")
    assert out == (
        b"HTTP/1.1 200 OK\r\n"
        b"Content-Type: application/json\r\n"
        b'ETag: W/"abc"\r\n'
        b"X-Other: 1\r\n"
        b"Content-Encoding: br\r\n"
        b"Vary: Cookie, Origin, Accept-Encoding\r\n"
        b"\r\n"
    )


def test_patch_head_keeps_vary_that_already_covers_it() -> None:
    h = b'HTTP/1.1 200 OK\r\nETag: W/"w"\r\nVary: Accept-Encoding, Cookie\r\n\r\n'
    assert patch_head(h, "gzip") == (
        b'HTTP/1.1 200 OK\r\nETag: W/"w"\r\nContent-Encoding: gzip\r\n'
        b"Vary: Accept-Encoding, Cookie\r\n\r\n"
    )
    h = b"HTTP/1.1 200 OK\r\nVary: *\r\n\r\n"
    assert patch_head(h, "zstd") == (
        b"HTTP/1.1 200 OK\r\nContent-Encoding: zstd\r\nVary: *\r\n\r\n"
    )


def test_patch_head_for_a_decoded_body() -> None:
    h = b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 10\r\n\r\n"
    want = b"HTTP/1.1 200 OK\r\nVary: Accept-Encoding\r\n\r\n"
    assert patch_head(h, "identity", decoded=True) == want


def test_patch_head_vary_only() -> None:
    assert patch_head(HEAD, "identity", vary_only=True) == (
        b"HTTP/1.1 200 OK\r\n"
        b"Content-Type: application/json\r\n"
        b"Content-Length: 5000\r\n"
        b'ETag: "abc"\r\n'
        b"Accept-Ranges: bytes\r\n"
        b"X-Other: 1\r\n"
        b"Vary: Cookie, Origin, Accept-Encoding\r\n"
        b"\r\n"
    )


def test_patch_head_replaces_content_encoding_identity() -> None:
    h = b"HTTP/1.1 200 OK\r\nContent-Encoding: identity\r\nContent-Length: 9\r\n\r\n"
    assert patch_head(h, "gzip") == (
        b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nVary: Accept-Encoding\r\n\r\n"
    )


# ---------------------------------------------------------------------------- config

BASE = """
[upstreams.app]
servers = ["127.0.0.1:9000"]
"""


def test_defaults_and_route_overrides() -> None:
    cfg = Config.from_toml(
        BASE
        + """
[compression]
enabled = true
levels = { gzip = 5 }
min_length = "2k"

[[routes]]
path_prefix = "/api/"
upstream = "app"
compression = { algorithms = ["gzip"], levels = { br = 9 } }

[[routes]]
path_prefix = "/raw/"
upstream = "app"
compression = false

[[routes]]
upstream = "app"
"""
    )
    api, raw, rest = cfg.routes
    assert cfg.compression.enabled and cfg.compression.min_length == 2048
    assert api.compression.algorithms == ("gzip",)
    assert dict(api.compression.levels) == {"gzip": 5, "br": 9, "zstd": 3}
    assert api.compression.min_length == 2048  # inherited
    assert not raw.compression.active
    assert rest.compression == cfg.compression
    assert CompressionConfig().enabled is False
    assert dict(CompressionConfig().levels) == {"zstd": 3, "br": 4, "gzip": 6}


def test_route_can_turn_compression_on() -> None:
    cfg = Config.from_toml(BASE + '[[routes]]\nupstream = "app"\ncompression = true\n')
    assert cfg.routes[0].compression.enabled


@pytest.mark.parametrize(
    ("text", "path", "line", "message"),
    [
        ("[compression]\nenabled = 1\n", "compression.enabled", 2, "expected boolean"),
        ('[compression]\nalgorithms = ["lz4"]\n', "compression.algorithms", 2, "unknown"),
        ("[compression]\nalgorithms = []\n", "compression.algorithms", 2, "at least one"),
        ('[compression]\nalgorithms = ["br", "br"]\n', "compression.algorithms", 2, "twice"),
        ("[compression]\nlevels = { gzip = 10 }\n", "compression.levels.gzip", 2, "1..9"),
        ("[compression]\nlevels = { br = -1 }\n", "compression.levels.br", 2, "0..9"),
        ("[compression]\nlevels = { lz = 1 }\n", "compression.levels.lz", 2, "unknown"),
        ('[compression]\ntypes = ["html"]\n', "compression.types", 2, "media type"),
        ("[compression]\nmin_length = -1\n", "compression.min_length", 2, ""),
        ("[compression]\nmax_ratio = 1\n", "compression.max_ratio", 2, ">= 2"),
        ("[compression]\nmax_decompressed_size = 0\n", "compression.max_decompressed_size",
         2, "greater than 0"),
        ("[compression]\nenabeld = true\n", "compression.enabeld", 2, "did you mean 'enabled'"),
        ("compression = true\n", "compression", 1, "expected table"),
        ('[[routes]]\nupstream = "app"\ncompression = "yes"\n', "routes[0].compression", 3,
         "expected table"),
        ('[[routes]]\nupstream = "app"\ncompression = { level = 1 }\n',
         "routes[0].compression.level", 3, "did you mean 'levels'"),
    ],
)  # fmt: skip
def test_config_errors_name_key_and_line(text: str, path: str, line: int, message: str) -> None:
    top = not text.startswith("[[routes]]")
    with pytest.raises(ConfigError) as exc:
        Config.from_toml(text + BASE if top else BASE + text)
    issues = exc.value.issues
    assert len(issues) == 1, issues
    assert issues[0].path == path
    assert message in issues[0].message
    assert issues[0].line == (line if top else line + BASE.count("\n")), issues


# ---------------------------------------------------------------------------- properties

CANON = {"gzip": "gzip", "x-gzip": "gzip", "br": "br", "zstd": "zstd", "identity": "identity"}
SPELLINGS = [*CANON, "*", "deflate", "compress", "GZIP", "Br", "ZSTD", "Identity"]


def reference(elements: list[tuple[str, int | None]], pref: tuple[str, ...]) -> str:
    """RFC 9110 12.5.3 on already-parsed elements (name, q in thousandths or None)."""
    named: dict[str, int] = {}
    star: int | None = None
    for name, q in elements:
        w = 1000 if q is None else q
        low = name.lower()
        if low == "*":
            star = w if star is None else max(star, w)
        elif low in CANON:
            c = CANON[low]
            named[c] = max(named.get(c, -1), w)

    def eff(c: str) -> int:
        if c in named:
            return named[c]
        if star is not None:
            return star
        return 1000 if c == "identity" else 0

    best, best_q = "identity", 0
    for c in pref:
        if eff(c) > best_q:
            best, best_q = c, eff(c)
    id_q = named.get("identity", star if star is not None else -1)
    return "identity" if best != "identity" and id_q > best_q else best


def render_q(q: int, style: int) -> str:
    if q == 1000:
        return ["1", "1.0", "1.000"][style % 3]
    if q == 0:
        return ["0", "0.0", "0.000"][style % 3]
    return "0." + f"{q:03d}".rstrip("0") if style % 2 else f"0.{q:03d}"


@st.composite
def accept_encodings(draw: st.DrawFn) -> tuple[bytes, list[tuple[str, int | None]]]:
    elements = draw(
        st.lists(
            st.tuples(
                st.sampled_from(SPELLINGS),
                st.none() | st.integers(0, 1000),
                st.integers(0, 5),
            ),
            max_size=6,
        )
    )
    ows = ["", " ", "\t", "  "]
    parts = []
    for name, q, style in elements:
        text = name
        if q is not None:
            text += f"{ows[style % 4]};{ows[(style + 1) % 4]}{'qQ'[style % 2]}={render_q(q, style)}"
        parts.append(text)
    sep = draw(st.sampled_from([",", ", ", " ,\t", ",,"]))
    return sep.join(parts).encode(), [(n, q) for n, q, _ in elements]


@given(accept_encodings(), st.permutations(["zstd", "br", "gzip"]), st.integers(1, 3))
@settings(max_examples=400, deadline=None)
def test_negotiation_matches_the_rfc_reference(
    case: tuple[bytes, list[tuple[str, int | None]]], order: list[str], n: int
) -> None:
    header, elements = case
    pref = tuple(order[:n])
    policy = Policy(CompressionConfig(enabled=True, algorithms=pref))
    assert policy.negotiate(header) == reference(elements, pref), header


@given(st.binary(max_size=200))
@settings(max_examples=500, deadline=None)
def test_negotiation_of_arbitrary_bytes_is_safe(header: bytes) -> None:
    got = ALL.negotiate(header)
    assert got in ("identity", "gzip", "br", "zstd")
    if got != "identity":
        assert accept_q(header)[got] > 0
