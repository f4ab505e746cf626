"""Lingering close: when the proxy ends a connection while the client may
still be sending (a refused body, a bad head with more behind it), it sends
its answer and a FIN, then reads and drops what comes until the client closes
(or goes quiet), instead of closing at once -- a close with unread data is a
reset, and the client then fails to send or loses the answer (nginx's
lingering_close, on by default)."""

from __future__ import annotations

import socket
import threading
import time

BODY = 4 << 20  # far over the 64 KiB limit below, and over the socket buffers


def _send_body_and_read(
    port: int, head: bytes, body_len: int, pause: float = 0
) -> tuple[BaseException | None, bytes]:
    """Send `head` and `body_len` bytes (`pause` seconds between them)
    while reading in parallel, as curl does: (the send's error or None,
    everything read until EOF)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    got = bytearray()

    def reader() -> None:
        try:
            while chunk := s.recv(65536):
                got.extend(chunk)
        except OSError:
            pass

    t = threading.Thread(target=reader)
    t.start()
    err: BaseException | None = None
    try:
        s.sendall(head)
        time.sleep(pause)
        block = b"x" * 65536
        for _ in range(body_len // len(block)):
            s.sendall(block)
        s.shutdown(socket.SHUT_WR)
    except OSError as exc:
        err = exc
    t.join(15)
    s.close()
    return err, bytes(got)


def test_refused_body_is_drained_not_reset(make_proxy, origin):
    proxy = make_proxy({"server": {"max_body_size": "64KiB"}})
    head = f"POST /up HTTP/1.1\r\nHost: h\r\nContent-Length: {BODY}\r\n\r\n".encode()
    err, got = _send_body_and_read(proxy.port, head, BODY)
    assert err is None, f"the upload failed: {err!r} (a reset instead of a lingering close)"
    assert got.startswith(b"HTTP/1.1 413 "), got[:200]
    assert origin.requests == []


def test_local_answer_to_an_unread_body_is_drained(make_proxy, origin):
    """A `return` route answers without reading the body; the client asked
    to close, and its body comes after the answer (none of it was read)."""
    proxy = make_proxy(
        {
            "routes": [
                {"path_prefix": "/gone", "return": 410},
                {"path_prefix": "/", "upstream": "app"},
            ]
        }
    )
    head = f"POST /gone HTTP/1.1\r\nHost: h\r\nConnection: close\r\nContent-Length: {BODY}\r\n\r\n"
    err, got = _send_body_and_read(proxy.port, head.encode(), BODY, pause=0.3)
    assert err is None, f"the upload failed: {err!r}"
    assert got.startswith(b"HTTP/1.1 410 "), got[:200]
    assert origin.requests == []


def test_bad_head_with_more_behind_it_is_drained(make_proxy, origin):
    proxy = make_proxy()
    head = b"GET /x HTTP/1.1\r\nHost: h\r\nX-A: a\x00b\r\n\r\n"
    err, got = _send_body_and_read(proxy.port, head, BODY)
    assert err is None, f"sending failed: {err!r}"
    assert got.startswith(b"HTTP/1.1 400 "), got[:200]
    assert got.count(b"HTTP/1.1 ") == 1


def _open(s: socket.socket) -> bool:
    """Probe: two bytes 0.2 s apart; a closed peer answers the first with a reset."""
    try:
        s.sendall(b"z")
        time.sleep(0.2)
        s.sendall(b"z")
        return True
    except OSError:
        return False


def test_a_quiet_client_is_closed_after_the_linger_timeout(make_proxy):
    """One that neither sends nor closes is not kept: closed about 5 s after
    the last bytes it sent (LINGER_TIMEOUT)."""
    proxy = make_proxy({"server": {"max_body_size": "1KiB"}})
    s = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
    s.sendall(b"POST /up HTTP/1.1\r\nHost: h\r\nContent-Length: 5000\r\n\r\n" + b"x" * 100)
    got = b""
    while b"\r\n\r\n" not in got:
        got += s.recv(65536)
    assert got.startswith(b"HTTP/1.1 413 ")
    while s.recv(65536):  # the rest of the answer, then the FIN right behind it
        pass
    time.sleep(1)
    assert _open(s), "closed at once: no lingering"  # read and dropped, and the timer restarts
    time.sleep(6)
    assert not _open(s), "a quiet lingering client was kept open"
    s.close()
    assert proxy.alive()
