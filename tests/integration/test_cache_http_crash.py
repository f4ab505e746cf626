"""End to end: a worker SIGKILLed while it stores a response leaves the
shared cache working (the store-level crash tests are in test_cache_region).

A real `fastproxy run` (master + 2 workers, [cache], [admin]) proxies a
cacheable response of almost 4 MiB from an origin that sends part of the body
and then stalls.  While it stalls, the worker holding the client connection is
provably in the middle of the store: the client got every byte the origin sent
(the worker appends to the store before it sends), and /status shows that the
store's reservation evicted the one stored entry and that nothing was
committed.  That worker is SIGKILLed, five times over; afterwards the very same
key is stored and served as a complete HIT by every worker.
"""

from __future__ import annotations

import functools
import json
import os
import queue
import random
import signal
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from support import admin_call, connection_inode, free_port, read_head, wait_for
from test_cache_region import children_of

from fastproxy.master import QUICK_DEATH

# The response killed mid-store, and the one entry stored before it: each fits
# max_entry_size (4 MiB, half the region), both together do not fit the region.
BIG = FILLER = (4 << 20) - (16 << 10)
PART = 512 << 10  # what the origin sends of BIG before it stalls
ROUNDS = 5
WORKERS = 2


def body_of(path: str, n: int) -> bytes:
    """Reproducible, path-specific, incompressible bytes."""
    return random.Random(path).randbytes(n)


@dataclass
class Stall:
    """One stalled /big answer: PART bytes of the body are out; the rest
    follows when ``release`` is set (into a closed connection, by then)."""

    release: threading.Event = field(default_factory=threading.Event)


class StallingOrigin:
    """A keep-alive HTTP/1.1 origin on a real socket, a thread per connection.

    GET /big answers BIG bytes with Content-Length and max-age=60; while
    ``stall`` is set it sends the head and PART bytes of the body, puts a
    ``Stall`` on ``stalls`` and sends the rest only after its ``release``.
    GET /filler (FILLER bytes) and GET /other/NAME?n=N answer at once.
    ``count`` counts requests per path."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.stall = True
        self.stalls: queue.Queue[Stall] = queue.Queue()
        self.count: Counter[str] = Counter()
        self.bodies: dict[str, bytes] = {
            "/big": body_of("/big", BIG),
            "/filler": body_of("/filler", FILLER),
        }
        self._lock = threading.Lock()
        self._open: list[Stall] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self.sock.close()
        for s in self._open:
            s.release.set()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buf = b""
        try:
            while (got := read_head(conn, buf)) is not None:
                head, buf = got
                target = head.split(b"\r\n", 1)[0].split(b" ")[1].decode()
                path, _, query = target.partition("?")
                with self._lock:
                    self.count[path] += 1
                body = self.bodies.get(path)
                if body is None:
                    n = int(query.removeprefix("n=")) if query.startswith("n=") else 100
                    body = body_of(target, n)
                out = (
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                    b"Cache-Control: max-age=60\r\nContent-Length: %d\r\n\r\n" % len(body)
                )
                if path == "/big" and self.stall:
                    conn.sendall(out + body[:PART])
                    s = Stall()
                    self._open.append(s)
                    self.stalls.put(s)  # the worker has the head and PART bytes
                    s.release.wait(30)
                    conn.sendall(body[PART:])  # the worker is dead by now: EPIPE
                else:
                    conn.sendall(out + body)
        except OSError:
            pass
        finally:
            conn.close()


def cache_stats(admin: int) -> dict[str, int]:
    status, body = admin_call(admin, "GET", "/status")
    assert status == 200, body
    stats: dict[str, int] = json.loads(body)["cache"]
    return stats


def owner_of_connection(pids: set[int], proxy_port: int, client_port: int) -> int | None:
    """The one process among pids holding the proxy's end of the TCP
    connection from client_port (by socket inode, /proc/net/tcp)."""
    inode = connection_inode(proxy_port, client_port)
    if inode is None:
        return None
    owners = set()
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == f"socket:[{inode}]":
                    owners.add(pid)
            except OSError:
                continue
    return owners.pop() if len(owners) == 1 else None


def started_at(pid: int) -> int:
    """A process's start time, in clock ticks since boot (/proc/PID/stat field 22)."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        return int(f.read().rpartition(b")")[2].split()[19])


def older_than(pid: int, seconds: float) -> bool:
    """Whether pid started more than seconds ago."""
    with open("/proc/uptime") as f:
        uptime = float(f.read().split()[0])
    return uptime - started_at(pid) / os.sysconf("SC_CLK_TCK") > seconds


def workers_of(master: int, gone: int = 0) -> set[int] | None:
    """The master's WORKERS workers (none of them gone), or None."""
    kids = children_of(master)
    return kids if len(kids) == WORKERS and gone not in kids else None


def stats_once_stored(admin: int, stores: int) -> dict[str, int] | None:
    """The cache stats once `stores` responses were committed, or None."""
    stats = cache_stats(admin)
    return stats if stats["stores"] == stores else None


def connect_to_worker(port: int, workers: set[int], pid: int) -> socket.socket:
    """A client connection that worker pid accepted (the kernel spreads connections
    over the workers: others are closed and tried again)."""
    for _ in range(40):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        owner = wait_for(
            functools.partial(owner_of_connection, workers, port, s.getsockname()[1]),
            5,
            "a worker to accept the connection",
        )
        if owner == pid:
            return s
        s.close()
    raise AssertionError(f"no connection landed on worker {pid}")


def read_head_and(sock: socket.socket, n: int) -> tuple[bytes, bytes]:
    """A response head and then at least n body bytes (sock's timeout bounds each read)."""
    data = b""
    while b"\r\n\r\n" not in data or len(data.partition(b"\r\n\r\n")[2]) < n:
        chunk = sock.recv(1 << 20)
        assert chunk, f"EOF after {len(data)} bytes"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return head, body


def read_to_eof(sock: socket.socket) -> int:
    """Bytes read until the peer closes or resets (sock's timeout bounds each read)."""
    n = 0
    try:
        while chunk := sock.recv(1 << 20):
            n += len(chunk)
    except ConnectionResetError:
        pass
    return n


def test_sigkill_mid_store_leaves_cache_working(make_proxy: Any, http_conn: Any) -> None:
    t_start = time.monotonic()
    origin = StallingOrigin()
    admin = free_port()
    try:
        p = make_proxy(
            {
                "server": {"workers": WORKERS},
                "admin": {"listen": f"127.0.0.1:{admin}"},
                "upstreams": {"app": {"servers": [origin.address]}},
                "cache": {"size": "8MiB", "max_entry_size": "4MiB"},
                "routes": [{"path_prefix": "/", "upstream": "app", "cache": True}],
            }
        )
        p.wait_log(r"\bready$", timeout=15)  # a death during start-up stops the master
        p.wait_log(r"admin endpoint on", timeout=10)
        assert cache_stats(admin)["capacity"] < BIG + FILLER
        victims: list[int] = []
        for rnd in range(ROUNDS):
            workers = wait_for(functools.partial(workers_of, p.pid), 15, "the workers")
            # One stored entry, which the store of /big has to evict to find room.
            before = cache_stats(admin)
            c = http_conn(p.port, timeout=10)
            r = c.roundtrip("GET", "/filler")
            assert r.status == 200 and r.header("X-Cache") == "MISS", rnd
            assert r.body == origin.bodies["/filler"]
            c.close()
            stored = wait_for(
                functools.partial(stats_once_stored, admin, before["stores"] + 1),
                5,
                "the filler's commit",
            )
            assert stored["entries"] == 1, (rnd, stored)  # so the last dead store was freed

            # The oldest worker takes the request: one that lived QUICK_DEATH, so
            # that the master restarts it at once rather than with crash back-off.
            victim = min(workers, key=started_at)
            wait_for(functools.partial(older_than, victim, QUICK_DEATH + 0.2), 5, "its age")
            s = connect_to_worker(p.port, workers, victim)
            s.sendall(b"GET /big HTTP/1.1\r\nHost: test.local\r\n\r\n")
            stall = origin.stalls.get(timeout=10)  # the origin sent the head and PART bytes
            head, part = read_head_and(s, PART)  # every byte the origin sent went through ...
            assert head.startswith(b"HTTP/1.1 200") and b"\r\nX-Cache: MISS" in head, head
            assert part == origin.bodies["/big"][:PART]
            # ... and through the store (the worker appends before it sends): the store
            # began (its reservation evicted the filler) and has not committed.
            mid = cache_stats(admin)
            assert mid["evictions"] == stored["evictions"] + 1, (rnd, stored, mid)
            assert mid["entries"] == 0 and mid["stores"] == stored["stores"], (rnd, mid)
            assert owner_of_connection(workers, p.port, s.getsockname()[1]) == victim

            os.kill(victim, signal.SIGKILL)
            victims.append(victim)
            rest = read_to_eof(s)  # the client sees the cut at once, no hang
            s.close()
            assert len(part) + rest < BIG, rest
            stall.release.set()
            # The master reaps it (its pins, its unfinished store) and replaces it.
            p.wait_log(
                rf"worker {victim} \(slot \d\) exited unexpectedly \(killed by SIGKILL\); "
                "restarting it now",
                timeout=10,
            )
            new = wait_for(functools.partial(workers_of, p.pid, victim), 15, "a replacement worker")
            for pid in new - workers:
                p.wait_log(rf"\[{pid}\] listening on", timeout=10)
            assert cache_stats(admin)["stores"] == stored["stores"]  # nothing committed

        assert p.alive() and len(set(victims)) == ROUNDS
        assert not children_of(p.pid) & set(victims)
        assert origin.count["/big"] == ROUNDS

        # The key that was mid-store five times: stored whole, then a HIT everywhere.
        origin.stall = False
        c = http_conn(p.port, timeout=10)
        t0 = time.monotonic()
        r1 = c.roundtrip("GET", "/big")  # no wait for the dead workers' fill claims
        assert time.monotonic() - t0 < 3
        assert r1.status == 200 and r1.header("X-Cache") == "MISS"
        assert r1.body == origin.bodies["/big"]
        r2 = c.roundtrip("GET", "/big")
        assert r2.status == 200 and r2.header("X-Cache") == "HIT"
        assert r2.body == origin.bodies["/big"]
        workers = wait_for(functools.partial(workers_of, p.pid), 15, "the workers")
        for pid in workers:  # every worker, the replacements too, serves the HIT
            with connect_to_worker(p.port, workers, pid) as s:
                s.sendall(b"GET /big HTTP/1.1\r\nHost: test.local\r\n\r\n")
                head, body = read_head_and(s, BIG)
            assert b"\r\nX-Cache: HIT" in head and body == origin.bodies["/big"], (pid, head)
        assert origin.count["/big"] == ROUNDS + 1
        # Other keys store and hit too (a copied small hit and a pinned larger one).
        for target in ("/other/small?n=900", "/other/mid?n=300000"):
            r1 = c.roundtrip("GET", target)
            r2 = c.roundtrip("GET", target)
            assert r1.header("X-Cache") == "MISS" and r2.header("X-Cache") == "HIT", target
            assert r1.body == r2.body == body_of(target, len(r1.body)) and r1.body, target
        assert origin.count["/other/small"] == origin.count["/other/mid"] == 1
        final = cache_stats(admin)
        assert final["entries"] == 3 and final["bytes"] <= final["capacity"], final
    finally:
        origin.close()
    assert time.monotonic() - t_start < 30
