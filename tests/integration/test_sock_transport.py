"""fastproxy's own listener and transport for plain-TCP clients
(fastproxy/_socktransport.pxi): every way a connection can end leaves no
socket behind, a queued answer drains before the close, a slow reader
pauses the upstream, running out of descriptors pauses accepting and
recovers, and the peer's address comes from accept4 for IPv4 and IPv6.
FASTPROXY_UVLOOP_ACCEPT=1 goes back to uvloop's server: both serve alike."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import resource
import signal
import socket
import struct
import subprocess
import sys
import time
from typing import Any

import pytest
from support import connection_inode, has_ipv6_loopback, tcp_sockets, wait_for

import fastproxy
from fastproxy import procinfo
from fastproxy import proxy as proxy_module


def _worker(p: Any) -> int:
    [pid] = wait_for(lambda: procinfo.proc_tree(p.pid)[1:] or None, 10, "the worker")
    return pid


def _accepted(pid: int, port: int) -> int:
    """The client connections process pid holds open on its listening port:
    its sockets whose local port is `port`, less the listening ones."""
    conns = {str(ino) for lp, _, state, ino in tcp_sockets() if lp == port and state != "0A"}
    held = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            held += os.readlink(f"/proc/{pid}/fd/{fd}")[8:-1] in conns  # socket:[inode]
    return held


def _connect(port: int, host: str = "127.0.0.1") -> socket.socket:
    s = socket.create_connection((host, port), timeout=5)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def _until_close(s: socket.socket) -> bytes:
    out = bytearray()
    while chunk := s.recv(1 << 16):
        out += chunk
    return bytes(out)


def _reset(s: socket.socket) -> None:
    """Close with a reset (SO_LINGER 0), as a client that gives up does."""
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


def test_every_way_a_connection_ends_leaves_no_socket_behind(make_proxy, origin, payload):
    p = make_proxy()
    pid = _worker(p)
    with _connect(p.port) as s:  # seen while open: the count can see them at all
        s.sendall(b"GET /bytes?n=10 HTTP/1.1\r\nHost: t\r\n\r\n")
        assert s.recv(4096).startswith(b"HTTP/1.1 200")
        assert _accepted(pid, p.port) == 1

    for _ in range(30):  # a new connection per request, closed by the proxy
        with _connect(p.port) as s:
            s.sendall(b"GET /bytes?n=100 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            assert _until_close(s).endswith(payload(100))
    for _ in range(10):  # keep-alive, closed by the client between requests
        with _connect(p.port) as s:
            s.sendall(b"GET /bytes?n=100 HTTP/1.1\r\nHost: t\r\n\r\n")
            assert s.recv(4096).startswith(b"HTTP/1.1 200")
    for _ in range(10):  # refused: 400 and a close
        with _connect(p.port) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: x\r\n\r\n")
            assert _until_close(s).startswith(b"HTTP/1.1 400")
    for _ in range(10):  # reset by the client in the middle of a large answer
        s = _connect(p.port)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.sendall(b"GET /stream?mib=8 HTTP/1.1\r\nHost: t\r\n\r\n")
        assert s.recv(4096).startswith(b"HTTP/1.1 200")
        _reset(s)
    for _ in range(10):  # connected, then gone before sending anything
        _reset(_connect(p.port))

    wait_for(lambda: _accepted(pid, p.port) == 0, 10, "every client socket closed")
    assert p.alive()
    with _connect(p.port) as s:
        s.sendall(b"GET /bytes?n=5 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        assert _until_close(s).endswith(payload(5))


def test_a_slow_reader_gets_the_whole_answer_then_the_close(make_proxy, origin):
    """4 MiB with `Connection: close` to a client that reads nothing for a
    while: the socket fills, the rest is queued (the upstream paused at the
    high-water mark), and the close waits for the queue to drain.  (A
    receive buffer much smaller than 64 KiB would make this TCP's test, not
    ours: each window update waits for a delayed ACK.)"""
    p = make_proxy()
    s = _connect(p.port)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    s.sendall(b"GET /stream?mib=4 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    time.sleep(0.5)  # nothing read: the proxy's socket and queue fill
    s.settimeout(20)
    data = _until_close(s)
    s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    assert body == b"x" * (4 << 20)


def test_out_of_descriptors_pauses_accepting_then_recovers(make_proxy, origin):
    p = make_proxy()
    pid = _worker(p)
    with _connect(p.port) as s:  # the upstream connection and everything else opened
        s.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        assert _until_close(s).startswith(b"HTTP/1.1 200")
    wait_for(lambda: _accepted(pid, p.port) == 0, 5, "the connection closed")
    soft, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    used = len(os.listdir(f"/proc/{pid}/fd"))
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (used + 2, hard))
    held = [_connect(p.port) for _ in range(6)]  # queued or accepted: 2 fit
    try:
        p.wait_log(r"accept on .* failed: Too many open files; not accepting for 0\.5s", 10)
    finally:
        for s in held:
            s.close()
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (soft, hard))
    with _connect(p.port) as s:  # accepting again, within the pause
        s.settimeout(5)
        s.sendall(b"GET /after HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        assert _until_close(s).endswith(b"GET /after")
    assert p.alive()


@pytest.mark.skipif(not has_ipv6_loopback(), reason="no IPv6 loopback here")
def test_the_peer_address_comes_from_accept_for_ipv6(make_proxy, origin):
    p = make_proxy({"server": {"listen": ["[::1]:0"]}})
    port = int(p.wait_log(r"listening on ::1:(\d+)").group(1))
    with _connect(port, "::1") as s:
        s.sendall(b"GET /v6 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        assert _until_close(s).startswith(b"HTTP/1.1 200")
    [req] = origin.wait_requests(1)
    assert req.header("X-Forwarded-For") == "::1"


@pytest.mark.parametrize("uvloop_accept", [False, True], ids=["own", "uvloop"])
def test_both_listeners_serve_and_report_the_peer(origin, monkeypatch, uvloop_accept):
    """The embedded engine on either listener: the same answers, the peer's
    address in X-Forwarded-For, and the server object each one builds."""
    uvloop = pytest.importorskip("uvloop")
    monkeypatch.setattr(proxy_module, "UVLOOP_ACCEPT", uvloop_accept)
    config = fastproxy.Config.from_dict(
        {
            "server": {"listen": ["127.0.0.1:0"], "pid_file": False},
            "log": {"access": "off"},
            "upstreams": {"app": {"servers": [origin.address]}},
            "routes": [{"path_prefix": "/", "upstream": "app"}],
        }
    )

    def client(port: int) -> list[bytes]:
        answers = []
        with _connect(port) as s:
            for i in range(3):
                s.sendall(f"GET /k{i} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
                answers.append(s.recv(4096))
        with _connect(port) as s:
            s.sendall(b"GET /c HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            answers.append(_until_close(s))
        return answers

    async def main() -> tuple[str, list[bytes]]:
        async with fastproxy.Proxy(config) as proxy:
            [(_, port)] = proxy.addresses
            kind = type(next(iter(proxy._servers.values()))).__name__
            loop = asyncio.get_running_loop()
            return kind, await asyncio.wait_for(loop.run_in_executor(None, client, port), 20)

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        kind, answers = runner.run(main())
    assert (kind == "SockServer") is not uvloop_accept, kind
    assert [a.rsplit(b"\r\n\r\n", 1)[1] for a in answers] == [
        b"GET /k0",
        b"GET /k1",
        b"GET /k2",
        b"GET /c",
    ]
    assert [r.header("X-Forwarded-For") for r in origin.wait_requests(4)] == ["127.0.0.1"] * 4


def test_a_port_in_use_is_an_oserror_naming_the_address():
    """The embedded engine binds plain listeners itself now: a port taken by
    another socket (no SO_REUSEPORT there) fails start() with an OSError
    that keeps the errno and names the address, as uvloop's did."""
    uvloop = pytest.importorskip("uvloop")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        addr = f"127.0.0.1:{taken.getsockname()[1]}"
        config = fastproxy.Config.from_dict(
            {
                "server": {"listen": [addr], "pid_file": False},
                "upstreams": {"app": {"servers": ["127.0.0.1:9"]}},
                "routes": [{"path_prefix": "/", "upstream": "app"}],
            }
        )

        async def main() -> None:
            async with fastproxy.Proxy(config):
                pass

        with pytest.raises(OSError) as info:
            uvloop.run(main())
    assert info.value.errno == errno.EADDRINUSE
    assert str(info.value) == f"cannot listen on {addr}: Address already in use"


# An embedding program that forks (no exec) while connections are open: the
# child holds a copy of every socket until it exits.
FORKING_EMBEDDER = r"""
import asyncio, os, signal, sys
import uvloop
import fastproxy

config = fastproxy.Config.from_dict({
    "server": {"listen": ["127.0.0.1:0"], "pid_file": False},
    "log": {"access": "off"},
    "upstreams": {"app": {"servers": [sys.argv[1]]}},
    "routes": [{"path_prefix": "/", "upstream": "app"}],
})

def fork():
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:            # holds every inherited socket until the parent is gone
        os.close(w)
        os.read(r, 1)
        os._exit(0)
    os.close(r)
    print("forked", pid, flush=True)   # (w stays open: closed when this process ends)

async def main():
    async with fastproxy.Proxy(config) as proxy:
        asyncio.get_running_loop().add_signal_handler(signal.SIGUSR2, fork)
        print("port", proxy.addresses[0][1], flush=True)
        await asyncio.Event().wait()

uvloop.run(main())
"""


def _epoll_targets(pid: int) -> set[int]:
    """The inodes of every file registered in any epoll set process pid holds."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/{pid}/fd/{fd}") != "anon_inode:[eventpoll]":
                continue
            with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                for line in f:
                    if line.startswith("tfd:"):
                        inodes.add(int(line.split("ino:")[1].split()[0], 16))
    return inodes


def test_a_closed_connection_leaves_the_read_loop_even_when_a_fork_holds_its_socket(
    origin, tmp_path
):
    """Closing a socket takes it out of an epoll set only when no process
    holds it any more: after a fork without exec (an embedding program's
    multiprocessing, say) the child holds them all.  A keep-alive
    connection that joined the read loop's set must then leave it before
    its socket is closed, or the set goes on naming a freed protocol."""
    script = tmp_path / "embed.py"
    script.write_text(FORKING_EMBEDDER)
    proc = subprocess.Popen(
        [sys.executable, str(script), origin.address],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        port = int(proc.stdout.readline().split()[1])
        s = _connect(port)
        s.sendall(b"GET /k HTTP/1.1\r\nHost: t\r\n\r\n")  # keep-alive: it joins the set
        assert s.recv(4096).startswith(b"HTTP/1.1 200")
        inode = connection_inode(port, s.getsockname()[1])  # the proxy's end
        assert inode is not None
        wait_for(lambda: inode in _epoll_targets(proc.pid), 5, "the connection in the set")
        proc.send_signal(signal.SIGUSR2)
        assert proc.stdout.readline().startswith("forked")
        # The proxy ends the connection after this answer: its close alone
        # would leave the socket in the set, held open by the child.
        s.sendall(b"GET /c HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        assert s.recv(4096).startswith(b"HTTP/1.1 200")
        wait_for(lambda: inode not in _epoll_targets(proc.pid), 5, "the connection out of the set")
        s.close()  # an event on the socket, which a stale registration would report
        with _connect(port) as s2:  # and it goes on serving
            s2.sendall(b"GET /after HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            assert _until_close(s2).endswith(b"GET /after")
        assert proc.poll() is None
    finally:
        proc.kill()
        _, err = proc.communicate(timeout=10)
    assert "Traceback" not in err, err
