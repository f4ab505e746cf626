"""Bodies the data plane sends with sendfile(2) straight from the cache region's
memfd (csrc/fp_cache.h "paged" bodies): their layout, the ready head in front
of them (head + body in one sendfile), and the safety rule that makes it
correct -- bytes a socket has not delivered yet never change, even when the
entry is evicted and its memory reused at once, or its ready head rewritten."""

from __future__ import annotations

import fcntl
import os
import socket
from collections.abc import Iterator

import pytest

from fastproxy._cache import PAGED_MIN, READY_EXTRA, CacheRegion

PAGE = 4096


def pattern(tag: bytes, n: int) -> bytes:
    return (tag * (n // len(tag) + 1))[:n]


@pytest.fixture
def region() -> CacheRegion:
    return CacheRegion(1 << 20, 512 << 10, 0)


@pytest.fixture
def tcp_pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    """A connected loopback TCP pair (sender, receiver); the receiver reads
    nothing until the test says so, so sent pages sit in its queue."""
    with socket.create_server(("127.0.0.1", 0)) as srv:
        rx = socket.create_connection(srv.getsockname())
        tx, _ = srv.accept()
    rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    try:
        yield tx, rx
    finally:
        tx.close()
        rx.close()


def recv_exactly(s: socket.socket, n: int) -> bytes:
    s.settimeout(10)
    out = bytearray()
    while len(out) < n:
        chunk = s.recv(n - len(out))
        assert chunk, f"connection closed after {len(out)} of {n} bytes"
        out += chunk
    return bytes(out)


def first_page(off: int, head: bytes) -> int:
    """Where a paged body's own pages start: its ready head room is in front."""
    return off - len(head) - READY_EXTRA


def test_large_bodies_own_their_pages_with_room_for_a_ready_head(region: CacheRegion) -> None:
    assert region.fd >= 0
    assert fcntl.fcntl(region.fd, fcntl.F_GETFL) & os.O_NOATIME  # no atime update per sendfile
    head = b"HTTP/1.1 200 OK\r\nX-Long-Head: " + b"h" * 333 + b"\r\n\r\n"
    for n in (PAGED_MIN, PAGED_MIN + 3333, 300000):
        key = b"GET http://h/%d" % n
        body = pattern(b"%d|" % n, n)
        assert region.put(key, head, body)
        off, got = region._body_file_offset(key)
        assert got == body
        assert first_page(off, head) > 0 and first_page(off, head) % PAGE == 0
        assert os.pread(region.fd, n, off) == body  # what sendfile will read
    region.check()


def test_small_bodies_and_anonymous_regions_are_not_paged(region: CacheRegion) -> None:
    region.put(b"small", b"H", b"x" * (PAGED_MIN - 1))
    assert region._body_file_offset(b"small") == (-1, b"x" * (PAGED_MIN - 1))
    anon = CacheRegion(1 << 20, 512 << 10, 0, sendfile=False)
    assert anon.fd == -1
    anon.put(b"big", b"H", b"y" * 50000)
    assert anon._body_file_offset(b"big") == (-1, b"y" * 50000)
    anon.check()


def test_streamed_store_that_outgrows_its_hint_becomes_paged(region: CacheRegion) -> None:
    body = pattern(b"stream|", 150000)
    assert region.put(b"s", b"HEAD", body, chunk=7000, hint=100)
    off, got = region._body_file_offset(b"s")
    assert got == body and first_page(off, b"HEAD") % PAGE == 0
    # A hint larger than the body: the commit gives the unused pages back.
    short = PAGED_MIN + 3333
    assert region.put(b"t", b"HEAD", body[:short], chunk=5000, hint=200000)
    off, got = region._body_file_offset(b"t")
    assert got == body[:short] and first_page(off, b"HEAD") % PAGE == 0
    region.check()
    assert region.stats()["bytes"] < 150000 + short + 5 * PAGE


def test_sendfile_hands_the_body_to_a_real_socket(
    region: CacheRegion, tcp_pair: tuple[socket.socket, socket.socket]
) -> None:
    tx, rx = tcp_pair
    body = pattern(b"0123456789abcdef", 64 << 10)
    region.put(b"k", b"H", body)
    assert region._sendfile_for_test(b"k", tx.fileno()) == len(body)
    assert recv_exactly(rx, len(body)) == body
    region.put(b"small", b"H", b"s" * 100)
    assert region._sendfile_for_test(b"small", tx.fileno()) == -1


def test_body_in_flight_survives_eviction_and_reuse(
    region: CacheRegion, tcp_pair: tuple[socket.socket, socket.socket]
) -> None:
    """The hazard sendfile brings: loopback TCP queues references to the
    region's pages, not copies, until the receiver reads them.  Deleting the
    entry and refilling the whole region with other bytes must not change
    what the receiver gets (the freed pages are dropped, not rewritten)."""
    tx, rx = tcp_pair
    body = pattern(b"ORIGINAL-", 96 << 10)
    region.put(b"victim", b"H", body)
    assert region._sendfile_for_test(b"victim", tx.fileno()) == len(body)
    assert region.delete(b"victim") == 1
    for i in range(40):  # several times the region: every byte is reused
        region.put(b"other%d" % i, b"H", pattern(b"%02dXXXXXX-" % i, 96 << 10))
    assert region.stats()["evictions"] > 0
    assert recv_exactly(rx, len(body)) == body
    region.check()
    for i in range(40):
        got = region.get(b"other%d" % i)
        assert got is None or got[1] == pattern(b"%02dXXXXXX-" % i, 96 << 10)


def test_body_in_flight_survives_replacement_by_a_new_response(
    region: CacheRegion, tcp_pair: tuple[socket.socket, socket.socket]
) -> None:
    tx, rx = tcp_pair
    old = pattern(b"v1.", 32 << 10)
    region.put(b"k", b"H", old)
    assert region._sendfile_for_test(b"k", tx.fileno()) == len(old)
    for i in range(60):  # the same key stored again and again: the old chunk is reused
        region.put(b"k", b"H", pattern(b"v%d." % (i + 2), 32 << 10))
    assert recv_exactly(rx, len(old)) == old
    region.check()


def test_pages_of_unsent_bodies_are_kept(region: CacheRegion) -> None:
    """Only bodies that went out by sendfile lose their pages when freed (a
    fresh page costs a fault on the next store): a store/evict churn with no
    sendfile keeps the region's memory mapped and the data intact."""
    for i in range(100):
        region.put(b"k%d" % (i % 7), b"H", pattern(b"%d-" % i, 40000))
    region.check()
    for i in range(93, 100):
        assert region.get(b"k%d" % (i % 7))[1] == pattern(b"%d-" % i, 40000)


def test_ready_head_and_body_leave_in_one_sendfile(
    region: CacheRegion, tcp_pair: tuple[socket.socket, socket.socket]
) -> None:
    tx, rx = tcp_pair
    body = pattern(b"body-", 20000)
    region.put(b"k", b"HTTP/1.1 200 OK\r\n", body)
    h1 = b"HTTP/1.1 200 OK\r\nAge: 1\r\nContent-Length: 20000\r\n\r\n"
    assert region._sendfile_for_test(b"k", tx.fileno(), h1, 1000) == len(h1) + len(body)
    assert region._sendfile_for_test(b"k", tx.fileno(), h1, 1000) == len(h1) + len(body)
    assert recv_exactly(rx, 2 * (len(h1) + len(body))) == (h1 + body) * 2
    region.check()


def test_ready_head_changes_at_most_once_a_second(
    region: CacheRegion, tcp_pair: tuple[socket.socket, socket.socket]
) -> None:
    tx, rx = tcp_pair
    body = pattern(b"b.", 17000)
    region.put(b"k", b"H\r\n", body)
    keep, close = b"H\r\nAge: 0\r\n\r\n", b"H\r\nAge: 0\r\nConnection: x\r\n\r\n"
    assert region._sendfile_for_test(b"k", tx.fileno(), keep, 50) > 0
    # another head in the same second: no rewrite, the caller sends a copy
    assert region._sendfile_for_test(b"k", tx.fileno(), close, 50) == -1
    assert region._sendfile_for_test(b"k", tx.fileno(), keep, 50) > 0
    assert region._sendfile_for_test(b"k", tx.fileno(), close, 51) > 0
    assert recv_exactly(rx, 3 * len(body) + 2 * len(keep) + len(close)) == (
        keep + body + keep + body + close + body
    )
    # a head longer than the room kept for it is never written there
    assert region._sendfile_for_test(b"k", tx.fileno(), b"x" * (3 + READY_EXTRA + 1), 52) == -1
    region.check()


def test_ready_head_is_not_rewritten_under_another_pin(
    region: CacheRegion, tcp_pair: tuple[socket.socket, socket.socket]
) -> None:
    """Another pin may be reading the bytes in front of the body right now (a
    worker between its compare and its sendfile): only the sole pin rewrites."""
    tx, rx = tcp_pair
    body = pattern(b"p", 16384)
    region.put(b"k", b"H\r\n", body)
    assert region._sendfile_for_test(b"k", tx.fileno(), b"A\r\n\r\n", 7) > 0
    pin = region._pin_for_test(b"k")
    assert pin >= 0
    assert region._sendfile_for_test(b"k", tx.fileno(), b"B\r\n\r\n", 8) == -1
    region._release_for_test(pin)
    assert region._sendfile_for_test(b"k", tx.fileno(), b"B\r\n\r\n", 8) > 0
    assert recv_exactly(rx, 2 * (len(body) + 5)) == b"A\r\n\r\n" + body + b"B\r\n\r\n" + body


def test_answer_in_flight_survives_a_ready_head_rewrite(
    region: CacheRegion, tcp_pair: tuple[socket.socket, socket.socket]
) -> None:
    """The rewrite's hazard: the receiver has not read the first answer, so the
    socket still refers to the page holding its head and the body's first
    bytes.  Rewriting drops that page instead of writing into it."""
    tx, rx = tcp_pair
    body = pattern(b"FIRST-PAGE-", 40000)
    region.put(b"k", b"HTTP/1.1 200 OK\r\n", body)
    sent = []
    for t in range(10):  # a head of another length each second
        head = b"HTTP/1.1 200 OK\r\nAge: %d\r\n\r\n" % (t * 997)
        n = region._sendfile_for_test(b"k", tx.fileno(), head, 2000 + t)
        assert n == len(head) + len(body)
        sent.append(head + body)
    want = b"".join(sent)
    assert recv_exactly(rx, len(want)) == want
    assert region._body_file_offset(b"k")[1] == body
    region.check()


@pytest.mark.parametrize("streamed", [False, True])
def test_paged_body_room_stops_at_its_last_page(streamed: bool) -> None:
    """The allocator may round a chunk a few bytes into the page after the
    body's last one, a page the next chunk shares and that is never dropped
    for a socket: the body's room must stop before it (the check says so), and
    a streamed body that goes past its hint moves instead of spilling there."""
    region = CacheRegion(4 << 20, 1 << 20, 0)
    for hlen in range(200, 1400, 5):  # the chunk's rounding depends on where its head ends
        head = b"h" * hlen
        body = pattern(b"%d." % hlen, PAGED_MIN + (PAGE - (hlen + READY_EXTRA) % PAGE) + 10)
        key = b"k"
        if streamed:
            assert region.put(key, head, body, chunk=4096, hint=PAGED_MIN)
        else:
            assert region.put(key, head, body[:PAGED_MIN])
        region.check()
        assert region.get(key)[1] == (body if streamed else body[:PAGED_MIN])
        region.delete(key)
