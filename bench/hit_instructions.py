"""Instructions per cache hit, counted by valgrind's callgrind: fastproxy's own
user-space work on a hit, by function, as a count that does not drift.

CPU time per hit (vs_nginx.py, uvloop_floor.py) is what the targets are judged
on, but on a shared VM it drifts by 15-40 % between runs, so a change worth 2-5 %
of a hit cannot be told from noise.  An instruction count can: the same build
gives the same count, run after run.  It leaves out the kernel (about 85 % of a
hit's CPU, the same for any server: see uvloop_floor.py) and says nothing of
cache misses, so use it to compare builds of fastproxy, not servers.

What runs: an origin (one cacheable response of --size bytes), an
embedded fastproxy.Proxy with [cache] and access log off under
`valgrind --tool=callgrind`, and a client in this process that sends --requests
keep-alive GETs on one connection, one at a time, each of which must be a HIT.
Counting covers only the read loop's callback (ReadLoop.ready, where a
keep-alive hit runs from its read(2) to its answer) and starts after a warm-up
(callgrind_control -z), ending with a dump (callgrind_control -d).  Left out:
the event loop's turn around the callback (uvloop, epoll_pwait, the GIL: about
1,600 instructions per turn, which under wrk -c50 serves 8-9 hits) and
timers, whose share would grow with the wall time valgrind stretches.  So the
count per hit does not depend on --requests.  An answer the socket does not
take whole leaves partly from uvloop's transport, later, outside the callback:
the tool refuses such a run (use a smaller --size; 16 KiB is taken whole).

    python3 bench/hit_instructions.py [--size 100] [--requests 2000] [--top 25]
                                      [--json FILE] [--mode hit|proxied|close]

--mode proxied counts a keep-alive request sent upstream (no cache on the
route) and --mode close a new connection carrying one request with
`Connection: close`; both count the whole process (loop turns and timers
included, so compare builds, at the same --requests), since their work is
spread over several callbacks.

Needs valgrind (apt-get install -y valgrind).  Takes 10-20 s.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import NamedTuple

sys.path.insert(0, str(Path(__file__).resolve().parent))
# fastproxy/procinfo.py (loaded by path), a free loopback port, a log's tail
from uvloop_floor import SERVER  # noqa: E402
from vs_nginx import _tail, free_port, procinfo  # noqa: E402

# the origin: uvloop_floor.py's fixed-response server with these fields
ORIGIN_FIELDS = "Cache-Control: max-age=3600\r\nContent-Type: text/plain\r\n"

PROXY = r"""
import sys, fastproxy
cfg = fastproxy.Config.from_dict({
    "server": {"listen": ["127.0.0.1:%d" % int(sys.argv[1])], "keepalive_requests": 10**9},
    "log": {"access": "off"},
    "cache": {"size": "64MiB"},
    "upstreams": {"app": {"servers": ["127.0.0.1:%d" % int(sys.argv[2])], "keepalive": 8}},
    "routes": [{"path_prefix": "/", "upstream": "app", "cache": sys.argv[3] == "hit"}],
})
fastproxy.Proxy(cfg).run()
"""


TOOLS = ("valgrind", "callgrind_control")

# Count only inside the read loop's callback (its Python-facing wrapper, so
# the toggle is not undone by the implementation it calls): every
# instruction of a keep-alive hit from read(2) to the answer sent (when the
# socket takes it whole, which measure() checks), and none
# of the loop turn around it or of timers, whose share would grow with the
# wall time valgrind stretches.
COLLECT_IN = "__pyx_pw_*ReadLoop*ready"


class Cost(NamedTuple):
    ir: int
    function: str
    obj: str


def parse_callgrind(text: str) -> tuple[int, list[Cost]]:
    """The self cost of every function in a callgrind output file recording
    the one event Ir (the format: valgrind's "Callgrind Format
    Specification"), largest first, and their sum.

    A cost line after `calls=` is the call's inclusive cost, the callee's, so
    it is skipped, as is the position line after `jump=`/`jcnd=`.  Recursion
    levels (callgrind's "name'2") count as their function.  The sum must equal
    the file's `totals:`; its `summary:` is not used, since callgrind 3.19
    writes there the inclusive cost of main's call chain, which differs."""
    names: dict[tuple[str, str], str] = {}
    npos = 1
    totals: int | None = None
    obj = fn = "?"
    skip_next = False
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
        if skip_next:
            skip_next = False
            continue
        head = line[0]
        if head.isdigit() or head in "+-*":
            parts = line.split()
            if len(parts) > npos:
                self_ir[(obj, fn)] += int(parts[npos])
            continue
        key, sep, value = line.partition("=")
        if sep:
            if key == "ob":
                obj = name("ob", value)
            elif key == "fn":
                fn = re.sub(r"'\d+$", "", name("fn", value))
            elif key == "cob":
                name("ob", value)
            elif key == "cfn":
                name("fn", value)
            elif key in ("fl", "fi", "fe", "cfi", "cfl"):
                name("fl", value)
            elif key in ("calls", "jump", "jcnd"):
                skip_next = True
        elif line.startswith("events:"):
            if line.split()[1:] != ["Ir"]:
                raise ValueError(f"expected the one event Ir, got {line!r}")
        elif line.startswith("positions:"):
            npos = len(line.split()) - 1
        elif line.startswith("totals:"):
            totals = int(line.split()[1])
    total = sum(self_ir.values())
    if totals is not None and totals != total:
        raise ValueError(f"self costs add up to {total}, the file's totals to {totals}")
    merged: dict[tuple[str, str], int] = defaultdict(int)
    for (o, f), ir in self_ir.items():
        merged[(Path(o).name, f)] += ir
    costs = [Cost(ir, f, o) for (o, f), ir in merged.items() if ir]
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


def control(pid: int, command: str, log: Path) -> None:
    """callgrind_control -z (zero) or -d (dump) on the proxy, bounded in time."""
    done = subprocess.run(
        ["callgrind_control", command, str(pid)], capture_output=True, text=True, timeout=120
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"callgrind_control {command} failed:\n{done.stdout}{done.stderr}{_tail(log)}"
        )


MODES = ("hit", "proxied", "close")
COUNTED = {
    "hit": "cache hit (user space, in ReadLoop.ready)",
    "proxied": "proxied keep-alive request (user space, whole process)",
    "close": "new connection, one request, Connection: close (user space, whole process)",
}


def measure(size: int, requests: int, out_dir: Path, mode: str = "hit") -> tuple[int, list[Cost]]:
    out = out_dir / "callgrind.out"
    log = out_dir / "proxy.log"  # valgrind's and the proxy's stderr
    origin_port, proxy_port = free_port(), free_port()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        origin = subprocess.Popen(
            [sys.executable, "-c", SERVER, str(origin_port), str(size), ORIGIN_FIELDS],
            stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        procs.append(origin)
        with open(log, "wb") as err:
            proxy = subprocess.Popen(
                [
                    "valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                    *(["--collect-atstart=no", f"--toggle-collect={COLLECT_IN}"]
                      if mode == "hit" else []),
                    sys.executable, "-c", PROXY, str(proxy_port), str(origin_port), mode,
                ],
                stdin=subprocess.DEVNULL, stdout=err, stderr=err, start_new_session=True,
            )  # fmt: skip
        procs.append(proxy)
        procinfo.wait_port("127.0.0.1", origin_port, proc=origin)
        try:
            procinfo.wait_port("127.0.0.1", proxy_port, timeout=300, proc=proxy)
        except (RuntimeError, TimeoutError) as exc:
            raise RuntimeError(
                f"the proxy under valgrind did not start: {exc}\n{_tail(log)}"
            ) from exc
        request = f"GET /hit HTTP/1.1\r\nHost: 127.0.0.1:{proxy_port}\r\n\r\n".encode()
        if mode == "close":
            request = request[:-2] + b"Connection: close\r\n\r\n"
            for counted in (False, True):  # 30 warm-up connections, then the counted ones
                if counted:
                    control(proxy.pid, "-z", log)
                for _ in range(requests if counted else 30):
                    with socket.create_connection(("127.0.0.1", proxy_port), timeout=60) as s:
                        exchange(s, request, size)
                        while s.recv(65536):  # to the proxy's close
                            pass
            control(proxy.pid, "-d", log)
        else:
            answer = hit if mode == "hit" else exchange
            with socket.create_connection(("127.0.0.1", proxy_port), timeout=60) as sock:
                exchange(sock, request, size)  # the miss that stores it (hit)
                for _ in range(20):  # warm-up, not counted
                    answer(sock, request, size)
                control(proxy.pid, "-z", log)
                for _ in range(requests):
                    answer(sock, request, size)
                control(proxy.pid, "-d", log)
        dumps = sorted(out_dir.glob("callgrind.out.*"))
        if not dumps:
            raise RuntimeError("callgrind wrote no dump")
        total, costs = parse_callgrind(dumps[0].read_text())
        if total < requests * 100:
            where = f"in {COLLECT_IN}: renamed by Cython?" if mode == "hit" else "in the proxy"
            raise RuntimeError(f"almost nothing counted {where}")
        if mode == "hit" and any(c.obj.startswith("loop.") for c in costs):
            # a hit calls into uvloop only when the socket did not take the
            # whole answer: the rest then leaves from the transport, later,
            # outside the counted callback
            raise RuntimeError("answers went through uvloop's transport: use a smaller --size")
        return total, costs
    finally:
        # a second Ctrl-C or SIGTERM must not cut the clean-up short
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for p in reversed(procs):
            with contextlib.suppress(Exception):
                procinfo.stop_process(p, timeout=60)


def stop_on_sigterm() -> None:
    """SIGTERM unwinds like Ctrl-C, so the finally clauses stop what was started."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=100, help="response body bytes (100)")
    ap.add_argument("--requests", type=int, default=2000, help="counted hits (2000)")
    ap.add_argument("--top", type=int, default=25, help="functions listed (25)")
    ap.add_argument("--json", type=Path, help="also write the counts here")
    ap.add_argument("--mode", choices=MODES, default="hit", help="what is counted (hit)")
    args = ap.parse_args()
    if args.requests < 1 or args.size < 0:
        ap.error("--requests must be at least 1 and --size not negative")
    if missing := [t for t in TOOLS if shutil.which(t) is None]:
        print(f"needs {', '.join(missing)}: apt-get install -y valgrind", file=sys.stderr)
        return 2
    stop_on_sigterm()
    with tempfile.TemporaryDirectory() as tmp:
        try:
            total, costs = measure(args.size, args.requests, Path(tmp), args.mode)
        except RuntimeError as exc:
            print(f"hit_instructions: {exc}", file=sys.stderr)
            return 1
    n = args.requests
    print(f"# instructions per {COUNTED[args.mode]}, {args.size} B body, {n} counted")
    print(f"\ntotal: {total / n:,.0f} Ir per {args.mode}\n")
    print(f"| object | Ir per {args.mode} | share |")
    print("|---|---:|---:|")
    for obj, ir in by_object(costs):
        if ir * 200 >= total:  # objects at 0.5 % and up
            print(f"| {obj} | {ir / n:,.0f} | {100 * ir / total:.1f} % |")
    print(f"\n| function (self) | object | Ir per {args.mode} | share |")
    print("|---|---|---:|---:|")
    for c in costs[: args.top]:
        print(f"| {c.function} | {c.obj} | {c.ir / n:,.0f} | {100 * c.ir / total:.1f} % |")
    if args.json:
        args.json.write_text(json.dumps({
            "mode": args.mode, "size": args.size, "requests": n, "ir_per_hit": total / n,
            "functions": [{"function": c.function, "object": c.obj, "ir_per_hit": c.ir / n}
                          for c in costs],
        }, indent=1))  # fmt: skip
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM, after the clean-up
        sys.exit(130)
