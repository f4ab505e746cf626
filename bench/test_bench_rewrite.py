"""Head-rewriting micro-benchmarks: fastproxy's C rewriter beside a plain
Python rewrite of the same head, in the same run.

Run:  python3 -m pytest bench -k rewrite --benchmark-only -p no:cacheprovider

`_rewrite.time_rewrite_request` times the C rewrite alone (hop-by-hop
removal, X-Forwarded-*, Via, a set rule) of an already-parsed head into a
reused buffer, 1,000 times in a C loop: what the data plane does per request.
`_rewrite.rewrite_request` is the Python view (parse + rules + bytes per
call).  The reference does the same rewrite in plain Python from an
already-parsed header list, as a Python proxy would, also 1,000 times."""

import pytest
from samples import REQUEST_HEAD, RESPONSE_HEAD

from fastproxy import _http1, _rewrite

GROUP_REQ = "rewrite-request"
GROUP_RESP = "rewrite-response"
HOP = {
    b"connection",
    b"keep-alive",
    b"proxy-connection",
    b"te",
    b"trailer",
    b"transfer-encoding",
    b"upgrade",
}


def python_rewrite(headers: list[tuple[bytes, bytes]], client_ip: bytes) -> bytes:
    """The reference: filter hop-by-hop fields, add forwarding fields, join."""
    named = set()
    for name, value in headers:
        if name.lower() == b"connection":
            named.update(t.strip().lower() for t in value.split(b","))
    out = [b"GET /static/js/app.8f3a2c1e.js?v=20240115 HTTP/1.1"]
    host = b""
    for name, value in headers:
        low = name.lower()
        if low in HOP or low in named or low == b"x-forwarded-for":
            continue
        if low == b"host":
            host = value
        out.append(name + b": " + value)
    out += [
        b"X-Forwarded-For: " + client_ip,
        b"X-Real-IP: " + client_ip,
        b"X-Forwarded-Proto: http",
        b"X-Forwarded-Host: " + host,
        b"Via: 1.1 fastproxy",
        b"X-Env: prod",
    ]
    return b"\r\n".join(out) + b"\r\n\r\n"


PARSED = [(n, v) for n, v, _ in _http1.parse_request(REQUEST_HEAD).headers]


@pytest.mark.benchmark(group=GROUP_REQ)
def test_rewrite_request_x1000_fastproxy_c(benchmark) -> None:
    ns = benchmark(_rewrite.time_rewrite_request, REQUEST_HEAD, 1000, set=[("X-Env", "prod")])
    assert ns > 0


@pytest.mark.benchmark(group=GROUP_REQ)
def test_rewrite_request_x1000_python_reference(benchmark) -> None:
    def loop() -> bytes:
        for _ in range(1000):
            out = python_rewrite(PARSED, b"127.0.0.1")
        return out

    assert b"X-Forwarded-For" in benchmark(loop)


@pytest.mark.benchmark(group=GROUP_REQ)
def test_rewrite_request_fastproxy(benchmark) -> None:
    out = benchmark(_rewrite.rewrite_request, REQUEST_HEAD, via=True, set=[("X-Env", "prod")])
    assert b"X-Forwarded-For: 127.0.0.1\r\n" in out and b"Connection" not in out


@pytest.mark.benchmark(group=GROUP_REQ)
def test_rewrite_request_parse_only_fastproxy(benchmark) -> None:
    assert benchmark(_http1.scan_request, REQUEST_HEAD) == len(REQUEST_HEAD)


@pytest.mark.benchmark(group=GROUP_REQ)
def test_rewrite_request_python_reference(benchmark) -> None:
    # the reference does the same work: byte for byte fastproxy's output
    assert python_rewrite(PARSED, b"127.0.0.1") == _rewrite.rewrite_request(
        REQUEST_HEAD, via=True, set=[("X-Env", "prod")]
    )
    out = benchmark(python_rewrite, PARSED, b"127.0.0.1")
    assert b"X-Forwarded-For: 127.0.0.1\r\n" in out and b"Connection" not in out


@pytest.mark.benchmark(group=GROUP_RESP)
def test_rewrite_response_fastproxy(benchmark) -> None:
    out = benchmark(_rewrite.rewrite_response, RESPONSE_HEAD)
    assert out.startswith(b"HTTP/1.1 200 OK\r\n") and b"Connection" not in out


# The response reference, mirroring python_rewrite for the request: the same head
# (samples.RESPONSE_HEAD), already parsed, rewritten as fastproxy's defaults do
# (hop-by-hop and Connection-named fields dropped, the framing field re-emitted last,
# no Via, no rules), to the same bytes as _rewrite.rewrite_response.
RESPONSE = _http1.parse_response(RESPONSE_HEAD)
PARSED_RESPONSE = [(n, v) for n, v, _ in RESPONSE.headers]


def python_rewrite_response(headers: list[tuple[bytes, bytes]], length: int) -> bytes:
    """The reference: filter hop-by-hop fields and the old framing, add the framing, join."""
    named = set()
    for name, value in headers:
        if name.lower() == b"connection":
            named.update(t.strip().lower() for t in value.split(b","))
    out = [b"HTTP/1.1 200 OK"]
    for name, value in headers:
        low = name.lower()
        if low in HOP or low in named or low == b"content-length":
            continue
        out.append(name + b": " + value)
    out.append(b"Content-Length: %d" % length)
    return b"\r\n".join(out) + b"\r\n\r\n"


@pytest.mark.benchmark(group=GROUP_RESP)
def test_rewrite_response_python_reference(benchmark) -> None:
    length = RESPONSE.content_length
    assert python_rewrite_response(PARSED_RESPONSE, length) == _rewrite.rewrite_response(
        RESPONSE_HEAD
    )
    out = benchmark(python_rewrite_response, PARSED_RESPONSE, length)
    assert out.startswith(b"HTTP/1.1 200 OK\r\n") and b"Connection" not in out
