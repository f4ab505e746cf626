#!/usr/bin/env python3
"""Cost of one compression call on 64 KiB, per algorithm and level: the most work
fastproxy does on the event loop per upstream read (its receive buffer is 64 KiB).

    python3 bench/compress_cost.py [--repeat N]

Input: the JSON bench body (bench/vs_nginx.py json_body) and, as a worst case for the
compressors, 64 KiB of random bytes.  Streaming objects as the proxy uses them:
compress(64 KiB) then a sync flush, on a fresh object per response (creation timed
separately).  Prints the best of N runs (the least disturbed by other load) in ms.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import brotli
import zstandard

sys.path.insert(0, str(Path(__file__).resolve().parent))
from vs_nginx import json_body  # noqa: E402

CHUNK = 64 << 10


def make(algo: str, level: int) -> tuple[Callable[[bytes], bytes], Callable[[], bytes]]:
    if algo == "gzip":
        c = zlib.compressobj(level, zlib.DEFLATED, 31)
        return c.compress, lambda: c.flush(zlib.Z_SYNC_FLUSH)
    if algo == "br":
        b = brotli.Compressor(quality=level, lgwin=19)
        return b.process, b.flush
    z = zstandard.ZstdCompressor(level=level).compressobj()
    return z.compress, lambda: z.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)


def best(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times) * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=30)
    args = ap.parse_args()
    inputs = {"json": json_body(CHUNK), "random": os.urandom(CHUNK)}
    print(f"{'algo':<5}{'lvl':>4}  {'input':<7}{'ms/64KiB':>9}{'MiB/s':>8}{'ratio':>7}"
          f"{'new obj ms':>11}")  # fmt: skip
    for algo, levels in (("gzip", (1, 6, 9)), ("br", (1, 4, 6)), ("zstd", (1, 3, 9))):
        for level in levels:
            for name, data in inputs.items():
                out = b""

                def once(algo: str = algo, level: int = level, data: bytes = data) -> None:
                    nonlocal out
                    comp, flush = make(algo, level)
                    out = comp(data) + flush()

                create = best(lambda algo=algo, level=level: make(algo, level), args.repeat)
                ms = best(once, args.repeat) - create
                print(
                    f"{algo:<5}{level:>4}  {name:<7}{ms:>9.2f}{CHUNK / 1048576 / ms * 1000:>8.0f}"
                    f"{len(out) / CHUNK:>7.3f}{create:>11.3f}"
                )


if __name__ == "__main__":
    main()
