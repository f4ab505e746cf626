"""Response compression through a real proxy process (issue 9): every algorithm decodes
byte-exact for Content-Length, chunked and close-delimited origins; the exclusions; server-sent
events still arrive one by one; Vary / ETag; decompress_upstream with its caps; HTTP/1.0."""

from __future__ import annotations

import http.client
import random
import socket
import threading
import time
import zlib
from typing import Any

import brotli
import pytest
import zstandard

JSON = "hdr=Content-Type:application/json"
ON: dict[str, Any] = {"compression": {"enabled": True}}


def decode(coding: str | None, body: bytes) -> bytes:
    if coding is None:
        return body
    if coding == "gzip":
        return zlib.decompress(body, 31)
    if coding == "br":
        return bytes(brotli.decompress(body))
    if coding == "zstd":
        return bytes(zstandard.ZstdDecompressor().decompressobj().decompress(body))
    raise AssertionError(f"unexpected Content-Encoding {coding!r}")


def get(conn: Any, target: str, ae: str | None, **kw: Any) -> Any:
    headers = list(kw.pop("headers", []))
    if ae is not None:
        headers.append(("Accept-Encoding", ae))
    return conn.roundtrip(kw.pop("method", "GET"), target, headers=headers, **kw)


@pytest.mark.parametrize("algo", ["gzip", "br", "zstd"])
def test_each_algorithm_decodes_byte_exact(make_proxy, http_conn, payload, algo):
    p = make_proxy(ON)
    c = http_conn(p.port, timeout=20)
    cases = [
        (f"/bytes?n=3000&{JSON}", 3000, "length"),
        (f"/bytes?n=1048576&{JSON}", 1048576, "length"),
        (f"/chunked?n=1048576&parts=7&{JSON}", 1048576, "chunked"),
    ]
    for target, n, _ in cases:
        r = get(c, target, algo)
        assert r.status == 200
        assert r.header("content-encoding") == algo, r
        assert r.header("content-length") is None
        assert r.framing == "chunked"
        assert r.header("vary") == "Accept-Encoding"
        assert decode(algo, r.body) == payload(n)
        if n > 100000:
            assert len(r.body) < n // 4  # really compressed (the pattern repeats)
    # close-delimited origin: the client still gets chunked, and keeps its connection
    r = get(c, "/stream?mib=1&mode=close", algo)  # text/plain, no length
    assert r.header("content-encoding") == algo and r.framing == "chunked"
    assert decode(algo, r.body) == b"x" * 1048576
    r = get(c, f"/bytes?n=5000&{JSON}", algo)
    assert decode(r.header("content-encoding"), r.body) == payload(5000)


def test_negotiation_follows_q_values_and_server_preference(make_proxy, http_conn):
    p = make_proxy(ON)
    c = http_conn(p.port)
    target = f"/bytes?n=4000&{JSON}"
    table = [
        (None, None),  # no Accept-Encoding: identity
        ("gzip", "gzip"),
        ("gzip, br, zstd", "zstd"),  # ties: server order zstd, br, gzip
        ("br;q=0.5, gzip;q=0.8", "gzip"),
        ("gzip;q=0, br", "br"),
        ("*", "zstd"),
        ("*;q=0", None),
        ("identity", None),
        ("gzip;q=0.5, identity", None),  # identity named with a higher q
        ("X-GZIP", "gzip"),
        ("deflate", None),  # not something we produce
    ]
    for ae, want in table:
        r = get(c, target, ae)
        assert r.header("content-encoding") == want, (ae, r)
        assert r.header("vary") == "Accept-Encoding"
        assert decode(want, r.body) == r.body if want is None else True
        assert len(decode(want, r.body)) == 4000


def test_route_override_and_algorithm_list(make_proxy, http_conn, origin):
    cfg = {
        "compression": {"enabled": True, "algorithms": ["gzip", "br"]},
        "routes": [
            {"path_prefix": "/off/", "upstream": "app", "compression": False},
            {"path_prefix": "/", "upstream": "app", "compression": {"algorithms": ["br"]}},
        ],
    }
    p = make_proxy(cfg)
    c = http_conn(p.port)
    assert get(c, f"/bytes?n=4000&{JSON}", "gzip, br, zstd").header("content-encoding") == "br"
    assert get(c, f"/bytes?n=4000&{JSON}", "gzip, zstd").header("content-encoding") is None
    assert get(c, f"/off/x?{JSON}", "br").header("content-encoding") is None


def test_exclusions(make_proxy, http_conn, ws_codec):
    p = make_proxy({"compression": {"enabled": True, "min_length": 1024}})
    c = http_conn(p.port)
    big = f"n=4000&{JSON}"

    def plain(r: Any) -> None:
        assert r.header("content-encoding") is None, r
        assert r.header("vary") is None, r

    # the control: this one is compressed
    assert get(c, f"/bytes?{big}", "gzip").header("content-encoding") == "gzip"
    r = get(c, f"/bytes?{big}", "gzip", method="HEAD")
    plain(r)
    assert r.header("content-length") == "4000"
    plain(get(c, "/status/204?hdr=Content-Type:text/plain", "gzip"))
    plain(get(c, "/status/304?hdr=Content-Type:text/plain", "gzip"))
    plain(get(c, f"/bytes?{big}", "gzip", headers=[("Range", "bytes=0-10")]))
    plain(get(c, f"/bytes?{big}", "gzip", headers=[("Cache-Control", "no-transform")]))
    r = get(c, f"/status/206?{JSON}", "gzip")
    assert r.status == 206
    plain(r)
    r = get(c, f"/bytes?{big}&hdr=Cache-Control:public,%20no-transform", "gzip")
    plain(r)
    plain(get(c, "/bytes?n=4000&hdr=Content-Type:image/png", "gzip"))
    plain(get(c, "/bytes?n=4000", "gzip"))  # no Content-Type at all
    plain(get(c, f"/bytes?n=1000&{JSON}", "gzip"))  # known to be under min_length
    # already encoded by the origin: passed through untouched
    r = get(c, "/encoded?enc=br&n=5000", "gzip, br")
    assert r.header("content-encoding") == "br" and r.header("content-length") is not None
    # a chunked body of unknown length is compressed even when it turns out short
    r = get(c, f"/chunked?n=10&{JSON}", "gzip")
    assert r.header("content-encoding") == "gzip" and decode("gzip", r.body) == bytes(range(10))
    # upgrade: the 101 and the tunnel are untouched
    key = "dGhlIHNhbXBsZSBub25jZQ=="
    w = http_conn(p.port)
    w.request(
        "GET",
        "/ws",
        headers=[
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", key),
            ("Sec-WebSocket-Version", "13"),
            ("Accept-Encoding", "gzip"),
        ],
    )
    r = w.read_response()
    assert r.status == 101 and r.header("content-encoding") is None
    w.send(ws_codec.frame(1, b"hello"))
    assert ws_codec.read_frame(w)[2] == b"hello"


def test_vary_merged_and_etag_made_weak(make_proxy, http_conn):
    p = make_proxy(ON)
    c = http_conn(p.port)
    base = f"/bytes?n=4000&{JSON}"
    r = get(c, f'{base}&hdr=ETag:"v1"&hdr=Vary:Cookie&hdr=Accept-Ranges:bytes', "gzip")
    assert r.header("content-encoding") == "gzip"
    assert r.header_all("vary") == ["Cookie, Accept-Encoding"]
    assert r.header("etag") == 'W/"v1"'
    assert r.header("accept-ranges") is None
    r = get(c, f'{base}&hdr=ETag:W/"v2"&hdr=Vary:accept-encoding', "gzip")
    assert r.header("etag") == 'W/"v2"' and r.header_all("vary") == ["accept-encoding"]
    r = get(c, f"{base}&hdr=Vary:*", "gzip")
    assert r.header_all("vary") == ["*"]
    # not compressed for this client, but it would be for others: Vary all the same
    # (a cache must not serve this identity copy as the answer to every client), while
    # ETag, Content-Length and Accept-Ranges stay: the bytes are the upstream's
    r = get(c, f'{base}&hdr=ETag:"v1"&hdr=Vary:Cookie&hdr=Accept-Ranges:bytes', None)
    assert r.header("content-encoding") is None and r.header("content-length") == "4000"
    assert r.header("etag") == '"v1"' and r.header("accept-ranges") == "bytes"
    assert r.header_all("vary") == ["Cookie, Accept-Encoding"]
    r = get(c, "/bytes?n=4000&hdr=Content-Type:image/png", "gzip")
    assert r.header("vary") is None  # never compressed for anyone: no Vary


def _read_events(sock: socket.socket, algo: str, n: int, timeout: float) -> list[float]:
    """Read a chunked compressed SSE response; the time each event was decoded."""
    dec: Any
    if algo == "gzip":
        d = zlib.decompressobj(31)
        dec = d.decompress
    elif algo == "br":
        dec = brotli.Decompressor().process
    else:
        dec = zstandard.ZstdDecompressor().decompressobj().decompress
    buf = b""
    text = b""
    times: list[float] = []
    deadline = time.monotonic() + timeout
    head_done = False
    while len(times) < n:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        data = sock.recv(65536)
        assert data, f"EOF after {len(times)} events; {buf!r}"
        buf += data
        if not head_done:
            if b"\r\n\r\n" not in buf:
                continue
            head, buf = buf.split(b"\r\n\r\n", 1)
            assert f"content-encoding: {algo}".encode() in head.lower(), head
            head_done = True
        while True:  # whole chunks only
            line, sep, rest = buf.partition(b"\r\n")
            if not sep:
                break
            size = int(line, 16)
            if size == 0 or len(rest) < size + 2:
                break
            text += dec(rest[:size])
            buf = rest[size + 2 :]
        while len(times) < text.count(b"\n\n"):
            times.append(time.monotonic())
    assert text == b"".join(b"data: event %d\n\n" % i for i in range(n))
    return times


@pytest.mark.parametrize("algo", ["gzip", "br", "zstd"])
def test_server_sent_events_arrive_one_by_one(make_proxy, algo):
    p = make_proxy({"compression": {"enabled": True, "min_length": 0}})
    with socket.create_connection(("127.0.0.1", p.port), timeout=10) as s:
        s.sendall(
            b"GET /events?n=3&gap=1 HTTP/1.1\r\nHost: t\r\nAccept-Encoding: %s\r\n\r\n"
            % algo.encode()
        )
        t0 = time.monotonic()
        times = _read_events(s, algo, 3, 10)
    # each event is readable as soon as the origin sent it (the next one comes 1 s later),
    # not when the stream ends
    assert times[0] - t0 < 0.9, (t0, times)
    assert times[1] - times[0] > 0.5 and times[2] - times[1] > 0.5, times


def test_decompress_upstream_for_clients_that_do_not_accept(make_proxy, http_conn, payload):
    p = make_proxy({"compression": {"enabled": True, "decompress_upstream": True}})
    c = http_conn(p.port, timeout=10)
    n = 300000
    for enc in ("gzip", "x-gzip", "br", "zstd"):
        r = get(c, f"/encoded?enc={enc}&n={n}", None)
        assert r.status == 200 and r.header("content-encoding") is None, (enc, p.stderr_text())
        assert r.body == payload(n)
        assert r.header("vary") == "Accept-Encoding"
        # a client that takes the upstream's coding gets the upstream's bytes
        name = "gzip" if enc == "x-gzip" else enc
        r = get(c, f"/encoded?enc={enc}&n={n}", name)
        assert r.header("content-encoding") == enc and r.header("content-length") is not None
        assert decode(name, r.body) == payload(n)
    # br upstream, gzip-only client: decoded then re-encoded (text/plain is listed)
    r = get(c, f"/encoded?enc=br&n={n}", "gzip")
    assert r.header("content-encoding") == "gzip"
    assert decode("gzip", r.body) == payload(n)


def refused(conn: Any, target: str) -> None:
    """A 502: the decoded response's head is held back until body bytes exist, and the
    caps trip within the first upstream read of a bomb, before anything is written."""
    r = get(conn, target, None)
    assert r.status == 502, r


@pytest.mark.parametrize("algo", ["gzip", "br", "zstd"])
def test_decompression_bomb_is_refused_not_an_oom(make_proxy, http_conn, algo):
    cfg = {
        "compression": {
            "decompress_upstream": True,
            "max_decompressed_size": "4MiB",
            "max_ratio": 1000000,  # only the size cap here
        }
    }
    p = make_proxy(cfg)
    rss0 = p.rss_kib()
    refused(http_conn(p.port, timeout=20), f"/encoded?enc={algo}&n=200000000&fill=zero")
    p.wait_log(r"502: decoded body over max_decompressed_size", 5)
    assert p.rss_kib() - rss0 < 100 * 1024  # nowhere near the 200 MB it would decode to
    assert get(http_conn(p.port), "/encoded?enc=gzip&n=1000", None).status == 200
    # the ratio cap catches what the size cap allows
    p2 = make_proxy({"compression": {"decompress_upstream": True, "max_ratio": 50}})
    refused(http_conn(p2.port, timeout=20), f"/encoded?enc={algo}&n=20000000&fill=zero")
    p2.wait_log(r"502: decoded body over max_ratio \(50:1\)", 5)


def test_truncated_upstream_stream_is_a_502(make_proxy, http_conn):
    p = make_proxy({"compression": {"decompress_upstream": True}})
    r = get(http_conn(p.port), "/encoded?enc=gzip&n=50000&cut=20", None)
    assert r.status == 502
    p.wait_log(r"502: truncated gzip body from upstream", 5)


def test_http10_client_gets_a_close_delimited_compressed_body(make_proxy, raw_request, payload):
    p = make_proxy(ON)
    raw = raw_request(
        p.port,
        b"GET /bytes?n=200000&" + JSON.encode() + b" HTTP/1.0\r\nAccept-Encoding: gzip\r\n\r\n",
    )
    head, _, body = raw.partition(b"\r\n\r\n")
    low = head.lower()
    assert b"content-encoding: gzip" in low
    assert b"content-length" not in low and b"transfer-encoding" not in low
    assert b"connection: close" in low
    assert zlib.decompress(body, 31) == payload(200000)


def test_backpressure_holds_for_a_slow_reader(make_proxy, http_conn):
    """64 MiB of incompressible text/plain through zstd to a client that does not read for
    1.5 s: the proxy pauses the upstream instead of buffering (RSS stays within 30 MiB),
    then every byte arrives."""
    n = 64 << 20
    p = make_proxy({"compression": {"enabled": True}})
    assert get(http_conn(p.port), "/random?n=70000", "zstd").status == 200  # warm up
    baseline = p.rss_kib()
    c = http_conn(p.port, timeout=30, rcvbuf=8192)
    c.request("GET", f"/random?n={n}", headers=[("Accept-Encoding", "zstd")])
    peak, deadline = baseline, time.monotonic() + 1.5
    while time.monotonic() < deadline:  # the client stalls; watch the proxy meanwhile
        peak = max(peak, p.rss_kib())
        time.sleep(0.05)
    r = c.read_response()
    peak = max(peak, p.rss_kib())
    assert r.header("content-encoding") == "zstd"
    assert decode("zstd", r.body) == random.Random(n).randbytes(n)  # what /random sends
    assert peak - baseline < 30 * 1024, (baseline, peak)


def test_metrics_count_compressed_responses(make_proxy, http_conn):
    p = make_proxy({"compression": {"enabled": True}, "admin": {"listen": "127.0.0.1:0"}})
    admin = int(p.wait_log(r"admin endpoint on http://127\.0\.0\.1:(\d+)", 5).group(1))
    c = http_conn(p.port)
    for _ in range(3):
        r = get(c, f"/bytes?n=40000&{JSON}", "br")
        assert r.header("content-encoding") == "br"

    def scrape() -> dict[str, float]:
        conn = http.client.HTTPConnection("127.0.0.1", admin, timeout=5)
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
        conn.close()
        out = {}
        for line in text.splitlines():
            if line.startswith("fastproxy_compress") and not line.startswith("#"):
                name, value = line.rsplit(" ", 1)
                out[name] = float(value)
        return out

    deadline = time.monotonic() + 5
    while (m := scrape()).get('fastproxy_compressed_responses_total{algorithm="br"}') != 3:
        assert time.monotonic() < deadline, m
        time.sleep(0.05)
    assert m['fastproxy_compression_bytes_in_total{algorithm="br"}'] == 3 * 40000
    out = m['fastproxy_compression_bytes_out_total{algorithm="br"}']
    assert 0 < out < 3 * 40000 / 4
    assert m['fastproxy_compressed_responses_total{algorithm="gzip"}'] == 0


def test_interim_100_continue_then_a_compressed_answer(make_proxy, http_conn, origin, payload):
    """The 1xx is relayed as is; only the final head is rewritten (same read, same buffer)."""
    origin.auto_continue = True
    p = make_proxy(ON)
    c = http_conn(p.port)
    c.request(
        "POST",
        f"/bytes?n=5000&{JSON}",
        headers=[("Expect", "100-continue"), ("Accept-Encoding", "gzip")],
        body=b"abc",
    )
    r = c.read_response()
    assert [i.status for i in r.interim] == [100]
    assert r.interim[0].header("content-encoding") is None
    assert r.header("content-encoding") == "gzip"
    assert decode("gzip", r.body) == payload(5000)


@pytest.mark.parametrize("algo", ["gzip", "br", "zstd"])
def test_decoding_a_large_body_in_bounded_slices(make_proxy, http_conn, payload, algo):
    """8 MiB from 270 B - 32 KiB of input: hundreds of 64 KiB output slices per upstream
    read, all delivered (the caps raised so that this legitimate body passes)."""
    cfg = {"compression": {"decompress_upstream": True, "max_ratio": 1_000_000}}
    p = make_proxy(cfg)
    n = 8 << 20
    r = get(http_conn(p.port, timeout=20), f"/encoded?enc={algo}&n={n}", None)
    assert r.status == 200 and r.header("content-encoding") is None
    assert len(r.body) == n and r.body == payload(n)


def test_upstream_gone_before_the_body_of_a_held_head_is_a_502(make_proxy, http_conn):
    """decompress_upstream holds the response head until body bytes exist; an upstream
    that closes (or stalls past read_timeout) before sending any is answered 502, not a
    cut connection: nothing had reached the client yet."""
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(8)
    port = lsock.getsockname()[1]
    mode = {"close": True}

    def serve() -> None:
        while True:
            try:
                conn, _ = lsock.accept()
            except OSError:
                return
            with conn:
                conn.recv(65536)
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                    b"Content-Encoding: gzip\r\nContent-Length: 5000\r\n\r\n"
                )
                if not mode["close"]:
                    conn.recv(1)  # stall until the proxy gives up

    threading.Thread(target=serve, daemon=True).start()
    try:
        cfg = {
            "compression": {"decompress_upstream": True},
            "upstreams": {"app": {"servers": [f"127.0.0.1:{port}"], "read_timeout": "0.5s"}},
        }
        p = make_proxy(cfg)
        refused(http_conn(p.port), "/x")
        p.wait_log(r"502: upstream closed mid-response", 5)
        mode["close"] = False
        r = get(http_conn(p.port), "/y", None)
        assert r.status == 504, r
        p.wait_log(r"504: upstream read timeout", 5)
    finally:
        lsock.close()
