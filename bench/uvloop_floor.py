"""The floors under a cache hit: what a server that answers every request with a fixed
response costs per request on this machine, pinned like the proxies in vs_nginx.py
(server on CPU 1, wrk on CPU 0, wrk -t1 -c50).  Two servers:

- uvloop: a plain asyncio Protocol on uvloop, writing through its transport;
- c: bench/c/epoll_floor.c, one epoll loop in C, one read(2) per request and the
  answer in one system call, sent the way fastproxy sends a keep-alive hit (one
  sendfile(2) from a memfd from 16 KiB of body, one send(2) below), no parsing at
  all: the least any server can spend here.  Built with gcc on the fly.

A fastproxy cache hit does everything these servers do plus parsing, routing, the cache
lookup and the Age header.  Its cost less the C floor is fastproxy's own per-hit work;
the C floor itself is the kernel's TCP/loopback path, which no server avoids.

    python3 bench/uvloop_floor.py [--rounds 3] [--duration 8] [--sizes 100,16384]
                                  [--servers uvloop,c]

Prints req/s and CPU microseconds per request for each server and body size; wrk must
be installed (apt-get install -y wrk), and gcc for the C server.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
# fastproxy/procinfo.py and wrk.py, loaded by path as vs_nginx.py does
from vs_nginx import parse_wrk_output, procinfo, wrk_command  # noqa: E402

PORT = 18771

# A fixed-response server on uvloop: PORT SIZE [HEAD FIELDS, each ending in
# CRLF].  Also the origin of bench/hit_instructions.py.
SERVER = r"""
import asyncio, sys, uvloop
size = int(sys.argv[2])
FLOOR = "Content-Type: text/plain\r\nAge: 0\r\nX-Cache: HIT\r\n"
fields = sys.argv[3] if len(sys.argv) > 3 else FLOOR
RESP = (b"HTTP/1.1 200 OK\r\n" + fields.encode() +
        b"Content-Length: %d\r\n\r\n" % size) + b"x" * size

class Fixed(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(RESP * data.count(b"\r\n\r\n"))

async def main():
    server = await asyncio.get_running_loop().create_server(Fixed, "127.0.0.1", int(sys.argv[1]))
    await server.serve_forever()

uvloop.run(main())
"""


C_SOURCE = Path(__file__).resolve().parent / "c" / "epoll_floor.c"


def server_command(kind: str, size: int, build_dir: Path) -> list[str]:
    if kind == "uvloop":
        return [sys.executable, "-c", SERVER, str(PORT), str(size)]
    binary = build_dir / "epoll_floor"
    if not binary.exists():
        subprocess.run(["gcc", "-O2", "-o", str(binary), str(C_SOURCE)], check=True)
    return [str(binary), str(PORT), str(size)]


def measure(
    kind: str, size: int, rounds: int, duration: int, build_dir: Path
) -> tuple[float, float]:
    """Median req/s and median CPU us per request over rounds."""
    server = subprocess.Popen(["taskset", "-c", "1", *server_command(kind, size, build_dir)])
    try:
        procinfo.wait_port("127.0.0.1", PORT, proc=server)
        rps, cpu = [], []
        for r in range(rounds):
            print(f"[{kind} {size}] round {r + 1}/{rounds}", file=sys.stderr, flush=True)
            before = procinfo.cpu_seconds([server.pid])
            cmd = wrk_command(
                f"http://127.0.0.1:{PORT}/", duration=duration, threads=1, connections=50
            )
            out = subprocess.run(
                ["taskset", "-c", "0", *cmd], capture_output=True, text=True, check=True
            ).stdout
            used = procinfo.cpu_seconds([server.pid]) - before
            res = parse_wrk_output(out)
            rps.append(res.rps)
            cpu.append(used / res.requests * 1e6)
        return statistics.median(rps), statistics.median(cpu)
    finally:
        procinfo.stop_process(server)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=8)
    ap.add_argument("--sizes", default="100,16384")
    ap.add_argument("--servers", default="uvloop,c", help="uvloop and/or c")
    args = ap.parse_args()
    kinds = args.servers.split(",")
    if set(kinds) - {"uvloop", "c"}:
        ap.error("--servers takes uvloop and/or c")
    needs = ["wrk", "taskset"] + (["gcc"] if "c" in kinds else [])
    if missing := [tool for tool in needs if shutil.which(tool) is None]:
        print(f"needs {', '.join(missing)}: apt-get install -y wrk util-linux gcc", file=sys.stderr)
        return 2
    print(f"# fixed-response floors, {time.strftime('%Y-%m-%d %H:%M UTC')}")
    print("| server | body bytes | req/s | CPU us/req |")
    print("|---|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as build_dir:
        for size in (int(s) for s in args.sizes.split(",")):
            for kind in kinds:
                rps, cpu = measure(kind, size, args.rounds, args.duration, Path(build_dir))
                print(f"| {kind} | {size} | {rps:.0f} | {cpu:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
