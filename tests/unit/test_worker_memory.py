"""fastproxy.worker.keep_freed_memory: memory freed by one response (a
compressor's state) must serve the next one, not go back to the kernel and
come back as fresh pages, each faulted in and zero-filled."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

# A fresh interpreter each time, since glibc's thresholds move with a process's
# history (importing fastproxy alone raises them).  The blocks are what sixteen
# gzip responses finishing together free: zlib's deflate state is four blocks
# of 64 KiB each, written through.
CHURN = r"""
import ctypes, resource, sys
from fastproxy.worker import keep_freed_memory   # imported either way: same history
if sys.argv[1] == "keep":
    keep_freed_memory()
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
libc.memset.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t]
def one_round():
    blocks = [libc.malloc(64 << 10) for _ in range(16 * 4)]
    for b in blocks:
        libc.memset(b, 1, 64 << 10)
    for b in reversed(blocks):
        libc.free(b)
for _ in range(5):
    one_round()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    one_round()
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 20)
"""


def faults_per_round(mode: str) -> float:
    out = subprocess.run(
        [sys.executable, "-c", CHURN, mode], capture_output=True, text=True, check=True, timeout=60
    )
    return float(out.stdout)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc thresholds")
def test_freed_memory_is_reused_not_faulted_in_again() -> None:
    default = faults_per_round("default")
    if default < 64:
        pytest.skip(f"glibc kept the 4 MiB by itself here ({default} faults per round)")
    # glibc's own thresholds trimmed most of the 4 MiB: about 900 pages per round here
    assert faults_per_round("keep") < 4
