"""Python view of the C HTTP/1.1 parser (csrc/fp_http1.h).

The data plane calls the C functions directly from Cython; this module exists
for tests, tools and the embedding API.  Every call builds Python objects, so
it is not the hot path.
"""

from typing import Literal

class ParseError(ValueError):
    code: int  # the FP_E_* value (negative)
    name: str  # "FP_E_TARGET"
    status: (
        int  # the HTTP status a server answers it with (400, 414, 431, 501, 505; 502 for responses)
    )

BodyKind = Literal["none", "length", "chunked", "until_close"]

class Head:
    method: bytes | None  # requests
    target: bytes | None  # requests
    status: int  # responses, 0 for requests
    reason: bytes | None  # responses
    version: tuple[int, int]  # (1, 0) or (1, 1)
    headers: list[tuple[bytes, bytes, int]]  # (name, value, known-header id or 0)
    head_len: int  # bytes of the head including the empty line
    body_kind: BodyKind
    content_length: int | None  # for body_kind == "length"
    keep_alive: bool
    upgrade: bool
    expect_continue: bool

def parse_request(
    data: bytes,
    *,
    max_line: int = 8192,
    max_head: int = 65536,
    max_headers: int = 100,
    guard: bool = False,
    framing: bool = True,
) -> Head | None:
    """Parse a request head; None when more bytes are needed.

    Raises ParseError.  guard=True copies data so that it ends exactly at a
    PROT_NONE page: any over-read crashes (useful under the sanitizer build).
    framing=False skips fp_request_framing (head syntax only)."""

def parse_response(
    data: bytes,
    *,
    request_method: bytes = b"GET",
    max_line: int = 8192,
    max_head: int = 65536,
    max_headers: int = 100,
    guard: bool = False,
    framing: bool = True,
) -> Head | None: ...
def scan_request(
    data: bytes, max_line: int = 8192, max_head: int = 65536, max_headers: int = 100
) -> int:
    """Parse and frame a request head as the data plane does, building no
    Python objects: the head length, 0 when incomplete.  Raises ParseError."""

def scan_response(
    data: bytes, max_line: int = 8192, max_head: int = 65536, max_headers: int = 100
) -> int: ...

class RequestParser:
    """Incremental use of fp_parse_request with its resume hint."""

    def __init__(
        self, *, max_line: int = 8192, max_head: int = 65536, max_headers: int = 100
    ) -> None: ...
    def feed(self, chunk: bytes) -> Head | None:
        """Append chunk; return the Head once complete (then the parser is spent)."""

class ChunkedDecoder:
    def __init__(self, max_ext: int = 4096, max_trailer: int = 16384) -> None: ...
    def feed(self, data: bytes) -> tuple[list[bytes], bool, int]:
        """Decode data: (body pieces, done, bytes consumed).  Unconsumed bytes
        after done belong to the next message.  Raises ParseError."""

def header_id(name: bytes) -> int: ...
def header_name(id: int) -> str | None: ...

HEADER_IDS: dict[str, int]  # canonical name -> id
ERRORS: dict[int, tuple[str, int]]  # FP_E_* code -> (name, status)

def simd_available() -> bool: ...
def set_simd(on: bool) -> bool:
    """Choose the SIMD or scalar scanning path; returns the previous choice."""
