"""The floor under a cache hit: what a plain uvloop server that answers every request
with a fixed response costs per request on this machine, pinned like the proxies in
vs_nginx.py (server on CPU 1, wrk on CPU 0, wrk -t1 -c50).

A fastproxy cache hit does everything this server does (one read, one write per request
on the same event loop) plus parsing, routing, the cache lookup and the Age header; the
difference between the two CPU costs is fastproxy's own per-hit work, the rest is the
kernel's TCP/loopback path and uvloop, which no Python server avoids.

    python3 bench/uvloop_floor.py [--rounds 3] [--duration 8] [--sizes 100,16384]

Prints req/s and CPU microseconds per request for each body size; wrk must be installed
(apt-get install -y wrk).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
# fastproxy/procinfo.py and wrk.py, loaded by path as vs_nginx.py does
from vs_nginx import parse_wrk_output, procinfo, wrk_command  # noqa: E402

PORT = 18771

SERVER = r"""
import asyncio, sys, uvloop
size = int(sys.argv[2])
RESP = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nAge: 0\r\nX-Cache: HIT\r\n"
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


def measure(size: int, rounds: int, duration: int) -> tuple[float, float]:
    """Median req/s and median CPU us per request over rounds."""
    server = subprocess.Popen(
        ["taskset", "-c", "1", sys.executable, "-c", SERVER, str(PORT), str(size)]
    )
    try:
        procinfo.wait_port("127.0.0.1", PORT, proc=server)
        rps, cpu = [], []
        for r in range(rounds):
            print(f"[size {size}] round {r + 1}/{rounds}", file=sys.stderr, flush=True)
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
    args = ap.parse_args()
    if shutil.which("wrk") is None or shutil.which("taskset") is None:
        print("needs wrk and taskset: apt-get install -y wrk util-linux", file=sys.stderr)
        return 2
    print(f"# plain uvloop fixed-response server, {time.strftime('%Y-%m-%d %H:%M UTC')}")
    print("| body bytes | req/s | CPU us/req |")
    print("|---:|---:|---:|")
    for size in (int(s) for s in args.sizes.split(",")):
        rps, cpu = measure(size, args.rounds, args.duration)
        print(f"| {size} | {rps:.0f} | {cpu:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
