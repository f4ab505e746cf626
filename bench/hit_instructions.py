"""Instructions per cache hit, counted by valgrind's callgrind: fastproxy's own
user-space work on a hit, by function, as a count that does not drift.

CPU time per hit (vs_nginx.py, uvloop_floor.py) is what the targets are judged
on, but on a shared VM it drifts by 15-40 % between runs, so a change worth 2-5 %
of a hit cannot be told from noise.  An instruction count can: the same build
gives the same count, run after run.  It leaves out the kernel (about 85 % of a
hit's CPU, the same for any server: see uvloop_floor.py) and says nothing of
cache misses, so use it to compare builds of fastproxy, not servers.

What runs: an origin (asyncio, one cacheable response of --size bytes), an
embedded fastproxy.Proxy with [cache] and access log off under
`valgrind --tool=callgrind`, and a client in this process that sends --requests
keep-alive GETs on one connection, one at a time, each of which must be a HIT.
Counting starts after a warm-up (callgrind_control -z) and ends with a dump
(callgrind_control -d), so it covers exactly those requests.  One request is in
flight at a time, so each hit also pays a whole turn of the event loop (two
epoll_wait calls); under wrk -c50 a turn serves about 3 requests.

    python3 bench/hit_instructions.py [--size 100] [--requests 2000] [--top 25]
                                      [--json FILE]

Needs valgrind (apt-get install -y valgrind).  Takes about a minute.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import NamedTuple

sys.path.insert(0, str(Path(__file__).resolve().parent))
from vs_nginx import procinfo  # noqa: E402  (fastproxy/procinfo.py, loaded by path)

ORIGIN_PORT = 18781
PROXY_PORT = 18782

ORIGIN = r"""
import asyncio, sys
size = int(sys.argv[2])
RESP = (b"HTTP/1.1 200 OK\r\nCache-Control: max-age=3600\r\nContent-Type: text/plain\r\n"
        b"Content-Length: %d\r\n\r\n" % size) + b"x" * size

class Origin(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(RESP * data.count(b"\r\n\r\n"))

async def main():
    server = await asyncio.get_running_loop().create_server(Origin, "127.0.0.1", int(sys.argv[1]))
    await server.serve_forever()

asyncio.run(main())
"""

PROXY = r"""
import sys, fastproxy
cfg = fastproxy.Config.from_dict({
    "server": {"listen": ["127.0.0.1:%d" % int(sys.argv[1])], "keepalive_requests": 10**9},
    "log": {"access": "off"},
    "cache": {"size": "64MiB"},
    "upstreams": {"app": {"servers": ["127.0.0.1:%d" % int(sys.argv[2])], "keepalive": 8}},
    "routes": [{"path_prefix": "/", "upstream": "app", "cache": True}],
})
fastproxy.Proxy(cfg).run()
"""


class Cost(NamedTuple):
    ir: int
    function: str
    obj: str


def parse_callgrind(text: str) -> tuple[int, list[Cost]]:
    """The summary and the self cost of every function in a callgrind output
    file with the single event Ir (the format: valgrind's "Callgrind Format
    Specification"), largest first.  A cost line after `calls=` is the call's
    inclusive cost and belongs to the callee, so it is skipped."""
    names: dict[tuple[str, str], str] = {}
    total = 0
    obj = fn = "?"
    after_calls = False
    self_ir: dict[tuple[str, str], int] = defaultdict(int)

    def name(kind: str, value: str) -> str:
        # "(id) name" defines a compressed name, "(id)" uses it
        if value.startswith("("):
            ref, _, rest = value.partition(")")
            if rest.strip():
                names[(kind, ref)] = rest.strip()
            return names.get((kind, ref), "?")
        return value

    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        if after_calls:
            after_calls = False
            continue
        head = line[0]
        if head.isdigit() or head in "+-*":
            parts = line.split()
            if len(parts) >= 2:
                self_ir[(obj, fn)] += int(parts[-1])
            continue
        key, sep, value = line.partition("=")
        if sep:
            if key == "ob":
                obj = name("ob", value)
            elif key == "fn":
                fn = name("fn", value)
            elif key == "cob":
                name("ob", value)
            elif key == "cfn":
                name("fn", value)
            elif key in ("fl", "fi", "fe", "cfi", "cfl"):
                name("fl", value)
            elif key == "calls":
                after_calls = True
        elif line.startswith("summary:"):
            total = int(line.split()[1])
    costs = [Cost(ir, f, Path(o).name) for (o, f), ir in self_ir.items() if ir]
    costs.sort(key=lambda c: -c.ir)
    return total, costs


def by_object(costs: list[Cost]) -> list[tuple[str, int]]:
    sums: dict[str, int] = defaultdict(int)
    for c in costs:
        sums[c.obj] += c.ir
    return sorted(sums.items(), key=lambda kv: -kv[1])


def exchange(sock: socket.socket, request: bytes, size: int) -> bytes:
    """One request and its whole answer, which must be a 200 with `size`
    bytes of body; returns the head."""
    sock.sendall(request)
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise RuntimeError("the proxy closed the connection")
        buf += chunk
    head, _, body = buf.partition(b"\r\n\r\n")
    while len(body) < size:
        chunk = sock.recv(65536)
        if not chunk:
            raise RuntimeError("the proxy closed the connection mid-body")
        body += chunk
    if not head.startswith(b"HTTP/1.1 200 ") or len(body) != size:
        raise RuntimeError(f"not a whole 200 answer of {size} bytes: {head!r}")
    return head


def hit(sock: socket.socket, request: bytes, size: int) -> None:
    if b"\r\nX-Cache: HIT\r\n" not in exchange(sock, request, size) + b"\r\n":
        raise RuntimeError("not a cache hit")


def measure(size: int, requests: int, out_dir: Path) -> tuple[int, list[Cost]]:
    out = out_dir / "callgrind.out"
    origin = subprocess.Popen(
        [sys.executable, "-c", ORIGIN, str(ORIGIN_PORT), str(size)], stdin=subprocess.DEVNULL
    )
    proxy = subprocess.Popen(
        [
            "valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
            sys.executable, "-c", PROXY, str(PROXY_PORT), str(ORIGIN_PORT),
        ],
        stdin=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        procinfo.wait_port("127.0.0.1", ORIGIN_PORT, proc=origin)
        procinfo.wait_port("127.0.0.1", PROXY_PORT, timeout=300, proc=proxy)
        request = f"GET /hit HTTP/1.1\r\nHost: 127.0.0.1:{PROXY_PORT}\r\n\r\n".encode()
        with socket.create_connection(("127.0.0.1", PROXY_PORT), timeout=60) as sock:
            exchange(sock, request, size)  # the miss that stores it
            for _ in range(20):  # warm-up hits, not counted
                hit(sock, request, size)
            subprocess.run(["callgrind_control", "-z", str(proxy.pid)], check=True,
                           capture_output=True)  # fmt: skip
            for _ in range(requests):
                hit(sock, request, size)
            subprocess.run(["callgrind_control", "-d", str(proxy.pid)], check=True,
                           capture_output=True)  # fmt: skip
        dumps = sorted(out_dir.glob("callgrind.out.*"))
        if not dumps:
            raise RuntimeError("callgrind wrote no dump")
        return parse_callgrind(dumps[0].read_text())
    finally:
        procinfo.stop_process(proxy, timeout=60)
        procinfo.stop_process(origin)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=100, help="response body bytes (100)")
    ap.add_argument("--requests", type=int, default=2000, help="counted hits (2000)")
    ap.add_argument("--top", type=int, default=25, help="functions listed (25)")
    ap.add_argument("--json", type=Path, help="also write the counts here")
    args = ap.parse_args()
    if args.requests < 1 or args.size < 0:
        ap.error("--requests must be at least 1 and --size not negative")
    if missing := [t for t in ("valgrind", "callgrind_control") if shutil.which(t) is None]:
        print(f"needs {', '.join(missing)}: apt-get install -y valgrind", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        total, costs = measure(args.size, args.requests, Path(tmp))
    n = args.requests
    print(f"# instructions per cache hit, {args.size} B body, {n} hits on one connection")
    print(f"\ntotal: {total / n:,.0f} Ir per hit (user space, callgrind)\n")
    print("| object | Ir per hit | share |")
    print("|---|---:|---:|")
    for obj, ir in by_object(costs):
        if ir * 200 >= total:  # objects at 0.5 % and up
            print(f"| {obj} | {ir / n:,.0f} | {100 * ir / total:.1f} % |")
    print("\n| function (self) | object | Ir per hit | share |")
    print("|---|---|---:|---:|")
    for c in costs[: args.top]:
        print(f"| {c.function} | {c.obj} | {c.ir / n:,.0f} | {100 * c.ir / total:.1f} % |")
    if args.json:
        args.json.write_text(json.dumps({
            "size": args.size, "requests": n, "ir_per_hit": total / n,
            "functions": [{"function": c.function, "object": c.obj, "ir_per_hit": c.ir / n}
                          for c in costs],
        }, indent=1))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
