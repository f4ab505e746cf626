#!/usr/bin/env python3
"""Time the C head parser alone (no Python objects): bench/c/bench_parse.c.

Usage:  python3 bench/bench_c_parse.py [--iterations N] [--repeats R] [--no-pin]

Writes the request and response heads of bench/samples.py to a temporary
directory, builds bench/c/bench_parse.c with the C parser sources (PARSER_C in setup.py) using
`gcc -O2 -march=x86-64-v2` (plain -O2 when the compiler refuses that flag),
and runs it pinned to CPU 1 with `taskset -c 1` when taskset and that CPU are
available.  Prints the machine, the date and the exact commands first, then
ns per parse for the SIMD and the scalar scanning path.
"""

import argparse
import ast
import datetime
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CSRC = ROOT / "csrc"
sys.path.insert(0, str(HERE))

from samples import REQUEST_HEAD, RESPONSE_HEAD  # noqa: E402

# Used only if setup.py has no PARSER_C list.
FALLBACK_SOURCES = ["fp_http1.c", "fp_scan.c", "fp_framing.c", "fp_chunked.c", "fp_known_headers.c"]


def parser_sources() -> list[Path]:
    """The pure C parser sources: PARSER_C of setup.py (read, not imported)."""
    try:
        tree = ast.parse((ROOT / "setup.py").read_text())
        for node in tree.body:
            if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "PARSER_C" for t in node.targets
            ):
                return [ROOT / s for s in ast.literal_eval(node.value)]
    except (OSError, SyntaxError, ValueError):
        pass
    return [CSRC / n for n in FALLBACK_SOURCES]


def machine() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.strip().lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return platform.processor() or platform.machine()


def compiler_version(cc: str) -> str:
    try:
        return subprocess.run([cc, "--version"], capture_output=True, text=True).stdout.split("\n")[
            0
        ]
    except OSError:
        return "?"


def build(cc: str, out: Path) -> list[str]:
    sources = [str(HERE / "c" / "bench_parse.c"), *map(str, parser_sources())]
    last = None
    for flags in (["-O2", "-march=x86-64-v2"], ["-O2"]):
        cmd = [cc, *flags, f"-I{CSRC}", *sources, "-o", str(out)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode == 0:
            return cmd
        last = proc
        print(f"# build failed with {' '.join(flags)}, retrying:\n{proc.stderr}", file=sys.stderr)
    assert last is not None
    sys.exit(f"cannot build bench_parse:\n{last.stderr}")


def pin_prefix(enabled: bool) -> list[str]:
    if not enabled:
        return []
    if shutil.which("taskset") is None:
        print("# taskset not found: running unpinned")
        return []
    if hasattr(os, "sched_getaffinity") and 1 not in os.sched_getaffinity(0):
        print("# CPU 1 is not available to this process: running unpinned")
        return []
    return ["taskset", "-c", "1"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--iterations", type=int, default=200_000, help="parses per timed repeat")
    ap.add_argument("--repeats", type=int, default=21, help="timed repeats (best and median shown)")
    ap.add_argument("--no-pin", action="store_true", help="do not pin with taskset -c 1")
    ap.add_argument("--cc", default=os.environ.get("CC", "gcc"), help="C compiler (gcc)")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="fp-bench-") as tmp:
        tmpdir = Path(tmp)
        req = tmpdir / "request.http"
        resp = tmpdir / "response.http"
        req.write_bytes(REQUEST_HEAD)
        resp.write_bytes(RESPONSE_HEAD)
        exe = tmpdir / "bench_parse"
        build_cmd = build(args.cc, exe)
        run_cmd = [
            *pin_prefix(not args.no_pin),
            str(exe),
            str(req),
            str(resp),
            str(args.iterations),
            str(args.repeats),
        ]
        print(f"# machine:  {machine()} ({os.cpu_count()} CPUs, {platform.platform()})")
        print(f"# date:     {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}")
        print(f"# compiler: {compiler_version(args.cc)}")
        print(f"# build:    {shlex.join(build_cmd)}")
        print(f"# run:      {shlex.join(run_cmd)}")
        print(f"# request head {len(REQUEST_HEAD)} B, response head {len(RESPONSE_HEAD)} B")
        sys.stdout.flush()
        return subprocess.run(run_cmd).returncode


if __name__ == "__main__":
    sys.exit(main())
