"""Head-parsing micro-benchmarks: fastproxy._http1 against httptools (llhttp).

Run:  python3 -m pytest bench -k parse --benchmark-only -p no:cacheprovider

Inputs (bench/samples.py, shared with bench/bench_c_parse.py): a ~600-byte
browser GET with 12 header fields and a ~300-byte response head with 8.

What is compared
  * fastproxy: `_http1.parse_request` / `parse_response` with defaults, i.e.
    syntax + framing (fp_request_framing / fp_response_framing), returning a
    Head with every field as Python bytes.  This is the Python wrapper, not the
    data plane (which calls the C parser from Cython without building objects);
    bench/bench_c_parse.py times the C parser alone.
  * fastproxy scan: `_http1.scan_request` / `scan_response`, the data plane's
    work (parse into C slots + framing) called from Python, returning only the
    head length.  This is the figure the project's "5x httptools as called
    from Python" target refers to: httptools cannot parse without handing
    every field to Python callbacks, fastproxy's data plane never needs to.
  * httptools: a NEW HttpRequestParser / HttpResponseParser per message, with
    no-op callbacks for the URL/status, every header name and value, and the
    message events.  This is the fairer pairing: parse_request is a stateless
    one-shot call that materialises every field, and a fresh parser that hands
    every field to Python as bytes does the same amount of work.  httptools
    has no reset(); a parser can only be reused across keep-alive messages whose
    body it has been fed, which works for the body-less GET (reported as
    `..._httptools_reused`, the best case for llhttp) but not for the response
    head, whose Content-Length leaves the parser waiting for body bytes.
"""

import httptools
import pytest
from samples import REQUEST_HEAD, REQUEST_HEADERS, RESPONSE_HEAD, RESPONSE_HEADERS

from fastproxy import _http1

GROUP_REQUEST = f"parse-request-{len(REQUEST_HEAD)}B-{REQUEST_HEADERS}h"
GROUP_RESPONSE = f"parse-response-{len(RESPONSE_HEAD)}B-{RESPONSE_HEADERS}h"


class NoopCallbacks:
    """httptools protocol whose callbacks do nothing (bytes are still built)."""

    def on_message_begin(self) -> None:
        pass

    def on_url(self, url: bytes) -> None:
        pass

    def on_status(self, status: bytes) -> None:
        pass

    def on_header(self, name: bytes, value: bytes) -> None:
        pass

    def on_headers_complete(self) -> None:
        pass

    def on_message_complete(self) -> None:
        pass


class Collect(NoopCallbacks):
    """Used once per test, outside the timing, to check what was parsed."""

    def __init__(self) -> None:
        self.headers: list[tuple[bytes, bytes]] = []
        self.complete = False

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.complete = True


NOOP = NoopCallbacks()


def httptools_request_fresh(data: bytes) -> httptools.HttpRequestParser:
    parser = httptools.HttpRequestParser(NOOP)
    parser.feed_data(data)
    return parser


def httptools_response_fresh(data: bytes) -> httptools.HttpResponseParser:
    parser = httptools.HttpResponseParser(NOOP)
    parser.feed_data(data)
    return parser


# ---- request ---------------------------------------------------------------


@pytest.mark.benchmark(group=GROUP_REQUEST)
def test_parse_request_fastproxy(benchmark) -> None:
    head = benchmark(_http1.parse_request, REQUEST_HEAD)
    assert head is not None
    assert len(head.headers) == REQUEST_HEADERS
    assert head.head_len == len(REQUEST_HEAD)
    assert head.body_kind == "none" and head.keep_alive


@pytest.mark.benchmark(group=GROUP_REQUEST)
def test_parse_request_fastproxy_scan(benchmark) -> None:
    assert benchmark(_http1.scan_request, REQUEST_HEAD) == len(REQUEST_HEAD)


@pytest.mark.benchmark(group=GROUP_REQUEST)
def test_parse_request_httptools(benchmark) -> None:
    check = Collect()
    httptools.HttpRequestParser(check).feed_data(REQUEST_HEAD)
    assert check.complete and len(check.headers) == REQUEST_HEADERS

    parser = benchmark(httptools_request_fresh, REQUEST_HEAD)
    assert parser.get_method() == b"GET" and parser.should_keep_alive()


@pytest.mark.benchmark(group=GROUP_REQUEST)
def test_parse_request_httptools_reused(benchmark) -> None:
    parser = httptools.HttpRequestParser(NOOP)
    benchmark(parser.feed_data, REQUEST_HEAD)  # keep-alive: each feed is a new message
    assert parser.should_keep_alive()


# ---- response --------------------------------------------------------------


@pytest.mark.benchmark(group=GROUP_RESPONSE)
def test_parse_response_fastproxy(benchmark) -> None:
    head = benchmark(_http1.parse_response, RESPONSE_HEAD)
    assert head is not None
    assert head.status == 200 and len(head.headers) == RESPONSE_HEADERS
    assert head.body_kind == "length" and head.content_length == 48213


@pytest.mark.benchmark(group=GROUP_RESPONSE)
def test_parse_response_fastproxy_scan(benchmark) -> None:
    assert benchmark(_http1.scan_response, RESPONSE_HEAD) == len(RESPONSE_HEAD)


@pytest.mark.benchmark(group=GROUP_RESPONSE)
def test_parse_response_httptools(benchmark) -> None:
    check = Collect()
    httptools.HttpResponseParser(check).feed_data(RESPONSE_HEAD)
    assert check.complete and len(check.headers) == RESPONSE_HEADERS

    parser = benchmark(httptools_response_fresh, RESPONSE_HEAD)
    assert parser.get_status_code() == 200
