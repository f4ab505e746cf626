"""scan_request/scan_response: the allocation-free entry points agree with
the object-building parser on length and errors."""

import pytest

from fastproxy import _http1

GOOD = b"GET /a HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc"


def test_scan_request_returns_the_head_length() -> None:
    head = _http1.parse_request(GOOD)
    assert head is not None
    assert _http1.scan_request(GOOD) == head.head_len


def test_scan_request_incomplete_is_zero() -> None:
    assert _http1.scan_request(GOOD[:20]) == 0


@pytest.mark.parametrize(
    "data, name",
    [
        (
            b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
            "FP_E_TE_WITH_CL",
        ),
        (b"GET / HTTP/1.1\r\n\r\n", "FP_E_HOST_MISSING"),
    ],
)
def test_scan_request_errors_match_parse_request(data: bytes, name: str) -> None:
    with pytest.raises(_http1.ParseError) as e:
        _http1.scan_request(data)
    assert e.value.name == name


def test_scan_response() -> None:
    data = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
    assert _http1.scan_response(data) == len(data)
    with pytest.raises(_http1.ParseError):
        _http1.scan_response(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n")
