"""fastproxy.worker.keep_freed_memory: memory freed by one response (a
compressor's state) must serve the next one, not go back to the kernel and
come back as fresh pages, each faulted in and zero-filled."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# A fresh interpreter each time, since glibc's thresholds move with a process's
# history.  One round frees what 64 gzip responses finishing together free:
# zlib's deflate state is four blocks of 64 KiB each, written through.  First, a
# 1 MiB block: from the heap (kept) or mmap()ed (handed back when freed)?
CHURN = r"""
import ctypes, resource, sys
from fastproxy.worker import keep_freed_memory   # imported either way: same history
kept = keep_freed_memory() if sys.argv[1] == "keep" else None
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
libc.memset.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t]
FIELDS = "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost"
class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in FIELDS.split()]
libc.mallinfo2.restype = MallInfo2
mapped = libc.mallinfo2().hblkhd
big = libc.malloc(1 << 20)
mmapped = libc.mallinfo2().hblkhd > mapped
libc.free(big)
def one_round():
    blocks = [libc.malloc(64 << 10) for _ in range(64 * 4)]
    for b in blocks:
        libc.memset(b, 1, 64 << 10)
    for b in reversed(blocks):
        libc.free(b)
for _ in range(3):
    one_round()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    one_round()
faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 10
print(kept, faults, mmapped)
"""


def churn(mode: str, **env: str) -> tuple[str, float, bool]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "GLIBC_"))}
    out = subprocess.run(
        [sys.executable, "-c", CHURN, mode],
        capture_output=True, text=True, check=True, timeout=60, cwd=ROOT, env=clean | env,
    )  # fmt: skip
    kept, faults, mmapped = out.stdout.split()
    return kept, float(faults), mmapped == "True"


glibc_only = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc")


@glibc_only
def test_freed_memory_is_reused_not_faulted_in_again() -> None:
    # glibc's own thresholds: most of the 16 MiB trimmed and faulted in again
    # each round (about 3,900 pages here), and a 1 MiB block mmap()ed
    _, faults, mmapped = churn("default")
    assert faults > 1000 and mmapped
    kept, faults, mmapped = churn("keep")
    assert kept == "True"
    assert faults < 4 and not mmapped


@glibc_only
def test_malloc_settings_from_the_environment_are_left_alone() -> None:
    kept, _, _ = churn("keep", MALLOC_TRIM_THRESHOLD_="131072")
    assert kept == "False"
    kept, _, _ = churn("keep", GLIBC_TUNABLES="glibc.malloc.mmap_threshold=65536")
    assert kept == "False"
