"""Cache hits with large bodies, which a plain-TCP client gets by sendfile(2)
straight from the cache region (docs/cache.md "Sending hits"): the bytes are
the origin's whatever the client's pace, pipelining or TLS, and a response
still queued in the client's socket is not changed by the eviction and reuse
of the entry's memory."""

from __future__ import annotations

import random
import socket
import threading
import time
from typing import Any

import pytest

from fastproxy._cache import PAGED_MIN, SENDFILE_MIN

CC = "hdr=Cache-Control:max-age=60"


def _cfg(sendfile: bool = True, **server: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "cache": {"size": "4MiB", "max_entry_size": "1MiB", "sendfile": sendfile},
        "routes": [{"path_prefix": "/", "upstream": "app", "cache": True}],
    }
    if server:
        cfg["server"] = server
    return cfg


def expected(path: str, n: int) -> bytes:
    """The origin's /cache/ body for the first request of path (tests/integration/conftest.py)."""
    return f"{path} #1\n".encode().ljust(n, b".")


@pytest.mark.parametrize("sendfile", [True, False])
def test_large_hits_carry_the_stored_bytes(make_proxy: Any, http_conn: Any, sendfile: bool) -> None:
    p = make_proxy(_cfg(sendfile))
    c = http_conn(p.port)
    for n in (PAGED_MIN - 1, PAGED_MIN, SENDFILE_MIN - 1, SENDFILE_MIN, 200_000, 1_000_000):
        path = f"/cache/big{n}"
        t = f"{path}?n={n}&{CC}"
        miss = c.roundtrip("GET", t)
        hit = c.roundtrip("GET", t)
        assert (miss.header("X-Cache"), hit.header("X-Cache")) == ("MISS", "HIT"), n
        assert hit.body == miss.body == expected(path, n), n
        assert hit.header("Content-Length") == str(n)
        head = c.roundtrip("HEAD", t)
        assert head.header("X-Cache") == "HIT" and head.body == b""
        assert head.header("Content-Length") == str(n)


def test_http10_and_close_get_the_body_before_the_close(
    make_proxy: Any, http_conn: Any, raw_request: Any
) -> None:
    p = make_proxy(_cfg())
    t = f"/cache/ten?n=100000&{CC}"
    http_conn(p.port).roundtrip("GET", t)
    for req in (
        f"GET {t} HTTP/1.0\r\nHost: test.local\r\n\r\n",
        f"GET {t} HTTP/1.1\r\nHost: test.local\r\nConnection: close\r\n\r\n",
    ):
        data = raw_request(p.port, req.encode())  # read until the proxy closes
        head, body = data.split(b"\r\n\r\n", 1)
        assert b"X-Cache: HIT" in head and b"Connection: close" in head
        assert body == expected("/cache/ten", 100000)


@pytest.mark.parametrize("n", [900000, SENDFILE_MIN - 100])
def test_slow_reader_gets_the_whole_body(make_proxy: Any, http_conn: Any, n: int) -> None:
    """A small receive buffer: sendfile (900 KB) or sendmsg (just under
    SENDFILE_MIN) takes part of the answer, the transport sends the rest."""
    p = make_proxy(_cfg())
    t = f"/cache/slow?n={n}&{CC}"
    http_conn(p.port).roundtrip("GET", t)
    c = http_conn(p.port, rcvbuf=4096, timeout=20)
    for _ in range(3):
        r = c.roundtrip("GET", t)
        assert r.header("X-Cache") == "HIT" and r.body == expected("/cache/slow", n)


def test_pipelined_large_hits_keep_their_order(make_proxy: Any, http_conn: Any) -> None:
    p = make_proxy(_cfg())
    paths = [f"/cache/pipe{i}" for i in range(3)]
    warm = http_conn(p.port)
    for i, path in enumerate(paths):
        warm.roundtrip("GET", f"{path}?n={40000 + i * 7000}&{CC}")
    c = http_conn(p.port, timeout=10)
    line = "GET {}?n={}&{} HTTP/1.1\r\nHost: test.local\r\n\r\n"
    c.send(
        b"".join(
            line.format(path, 40000 + (i % 3) * 7000, CC).encode()
            for i, path in enumerate(paths * 2)
        )
    )
    for i, path in enumerate(paths * 2):
        r = c.read_response()
        assert r.header("X-Cache") == "HIT"
        assert r.body == expected(path, 40000 + (i % 3) * 7000)


def test_tls_client_gets_large_hits_copied(make_proxy: Any, http_conn: Any, tls_files: Any) -> None:
    cert = tls_files.issue("app.example")
    listen = [{"address": "127.0.0.1:0", "tls": {"cert": cert[0], "key": cert[1]}}]
    p = make_proxy(_cfg(listen=listen))
    c = http_conn(p.port, tls=tls_files.client_context(), sni="app.example", timeout=10)
    t = f"/cache/tls?n=300000&{CC}"
    assert c.roundtrip("GET", t, host="app.example").header("X-Cache") == "MISS"
    r = c.roundtrip("GET", t, host="app.example")
    assert r.header("X-Cache") == "HIT" and r.body == expected("/cache/tls", 300000)


def test_queued_response_survives_eviction_and_reuse(make_proxy: Any, http_conn: Any) -> None:
    """The client asks for a large hit and reads nothing: on loopback its socket
    queues references to the cache's pages.  Other responses then fill the
    cache several times over (the entry is evicted and its memory reused);
    the client must still read the original bytes."""
    p = make_proxy(_cfg())
    n = 256 << 10
    t = f"/cache/victim?n={n}&{CC}"
    http_conn(p.port).roundtrip("GET", t)
    lazy = socket.create_connection(("127.0.0.1", p.port), timeout=10)
    lazy.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    try:
        lazy.sendall(f"GET {t} HTTP/1.1\r\nHost: test.local\r\n\r\n".encode())
        other = http_conn(p.port, timeout=10)
        for i in range(40):  # 40 x 256 KiB through a 4 MiB cache
            path = f"/cache/fill{i}"
            r = other.roundtrip("GET", f"{path}?n={n}&{CC}")
            assert r.body == expected(path, n)
        assert other.roundtrip("GET", t).header("X-Cache") == "MISS"  # really evicted
        data = b""
        while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < n:
            chunk = lazy.recv(1 << 20)
            assert chunk, data[:200]
            data += chunk
        head, body = data.split(b"\r\n\r\n", 1)
        assert b"X-Cache: HIT" in head
        assert body == expected("/cache/victim", n)
    finally:
        lazy.close()


def test_two_workers_churning_the_cache_never_mix_bodies(make_proxy: Any, http_conn: Any) -> None:
    """Two workers, eight clients, 24 responses of about 260 KB through a 4 MiB
    cache that holds about fifteen: entries are sendfile'd, evicted and their
    memory reused across processes all the time, and every body must still be
    its own."""
    cfg = _cfg()
    cfg["server"] = {"workers": 2}
    p = make_proxy(cfg)
    sizes = {i: 250_000 + i * 1000 for i in range(24)}
    errors: list[str] = []
    seen: list[str] = []

    def client(seed: int) -> None:
        rnd = random.Random(seed)
        c = http_conn(p.port, timeout=20)
        for _ in range(60):
            i = rnd.randrange(24)
            path = f"/cache/churn{i}"
            r = c.roundtrip("GET", f"{path}?n={sizes[i]}&{CC}")
            seen.append(r.header("X-Cache") or "")
            # The origin numbers each fetch of a path ("#N"); with that taken
            # from the first line, every other byte is known.
            first = r.body.split(b"\n", 1)[0].decode("latin-1")
            want = (first + "\n").encode().ljust(sizes[i], b".")
            if not first.startswith(f"{path} #") or r.body != want:
                errors.append(f"{path}: {r.body[:60]!r} ({len(r.body)} bytes)")

    threads = [threading.Thread(target=client, args=(s,)) for s in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors[:5]
    # Both paths ran: hits (sendfile) and misses well past the 24 first fetches
    # (evictions).
    assert seen.count("HIT") > 100 and seen.count("MISS") > 48, (
        seen.count("HIT"),
        seen.count("MISS"),
    )


def test_answer_in_flight_keeps_its_head_when_the_next_second_rewrites_it(
    make_proxy: Any, http_conn: Any
) -> None:
    """A keep-alive hit of a page-laid body leaves as one sendfile of the ready
    head (kept in the region right before the body) and the body.  The first
    client reads nothing, so its socket still refers to the page holding its
    head; a hit in a later second has another Age and rewrites the ready head.
    The first client must still read its own head, with the older Age."""
    p = make_proxy(_cfg())
    n = PAGED_MIN + 3000
    t = f"/cache/ready?n={n}&{CC}"
    assert http_conn(p.port).roundtrip("GET", t).header("X-Cache") == "MISS"
    lazy = http_conn(p.port, timeout=10)
    lazy.send(f"GET {t} HTTP/1.1\r\nHost: test.local\r\n\r\n".encode())
    # the lazy client's answer leaves within this second (Age is whole seconds)
    other = http_conn(p.port, timeout=10)
    first = other.roundtrip("GET", t)
    time.sleep(1.05 - time.time() % 1)  # into the next second: Age goes up by one
    later = other.roundtrip("GET", t)
    mine = lazy.read_response()
    for r in (first, later, mine):
        assert r.header("X-Cache") == "HIT" and r.body == expected("/cache/ready", n)
        assert r.header("Content-Length") == str(n)
    assert int(later.header("Age")) == int(first.header("Age")) + 1
    assert int(mine.header("Age")) == int(first.header("Age"))


def test_hits_of_every_connection_kind_in_one_second_get_their_own_head(
    make_proxy: Any, http_conn: Any, raw_request: Any
) -> None:
    """Keep-alive HTTP/1.1, keep-alive HTTP/1.0 and closing clients interleaved
    on one page-laid entry: the ready head holds one of them at a time, and
    every client gets its own Connection handling and the same body."""
    p = make_proxy(_cfg())
    n = PAGED_MIN + 100
    t = f"/cache/kinds?n={n}&{CC}"
    ka = http_conn(p.port)
    assert ka.roundtrip("GET", t).header("X-Cache") == "MISS"
    ten = socket.create_connection(("127.0.0.1", p.port), timeout=10)
    try:
        for _ in range(3):
            r = ka.roundtrip("GET", t)
            assert r.header("Connection") is None and r.body == expected("/cache/kinds", n)
            ten.sendall(
                f"GET {t} HTTP/1.0\r\nHost: test.local\r\nConnection: keep-alive\r\n\r\n".encode()
            )
            data = b""
            while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < n:
                chunk = ten.recv(65536)
                assert chunk, data[:200]
                data += chunk
            head, body = data.split(b"\r\n\r\n", 1)
            assert b"X-Cache: HIT" in head and body == expected("/cache/kinds", n)
            assert b"\r\nConnection: keep-alive\r\n" in head + b"\r\n"
            closed = raw_request(
                p.port,
                f"GET {t} HTTP/1.1\r\nHost: test.local\r\nConnection: close\r\n\r\n".encode(),
            )
            head, body = closed.split(b"\r\n\r\n", 1)
            assert b"X-Cache: HIT" in head and b"Connection: close" in head
            assert body == expected("/cache/kinds", n)
    finally:
        ten.close()


@pytest.mark.parametrize("small", [100, PAGED_MIN + 100])
def test_hit_behind_a_queued_answer_waits_its_turn(
    make_proxy: Any, http_conn: Any, small: int
) -> None:
    """A slow reader's large answer is partly queued in the transport when its
    next request hits the cache: that hit goes behind the queued bytes, never
    straight into the socket ahead of them.  (The reader makes room in the
    socket before asking; uvloop usually refills it first, so this guards the
    order rather than proving the queue check in direct_fd().)"""
    p = make_proxy(_cfg())
    n = 50_000  # what the socket does not take stays under the transport's high-water mark
    big, little = f"/cache/q-big?n={n}&{CC}", f"/cache/q-small?n={small}&{CC}"
    warm = http_conn(p.port)
    warm.roundtrip("GET", big)
    warm.roundtrip("GET", little)
    for _ in range(3):
        c = http_conn(p.port, rcvbuf=4096, timeout=10)
        c.send(f"GET {big} HTTP/1.1\r\nHost: test.local\r\n\r\n".encode())
        assert c.reader._fill()  # part of the answer read: room in the socket, the rest queued
        c.send(f"GET {little} HTTP/1.1\r\nHost: test.local\r\n\r\n".encode())
        first, second = c.read_response(), c.read_response()
        assert first.body == expected("/cache/q-big", n)
        assert second.header("X-Cache") == "HIT"
        assert second.body == expected("/cache/q-small", small)
