"""bench/hit_instructions.py: the callgrind reader, and one real count."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOOL = ROOT / "bench" / "hit_instructions.py"


@pytest.fixture(scope="module")
def tool() -> Iterator[ModuleType]:
    spec = importlib.util.spec_from_file_location("_bench_hit_instructions", TOOL)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    yield mod
    sys.modules.pop(spec.name, None)


# Shaped as callgrind 3.19 writes it: compressed names, a call whose next cost
# line is the callee's inclusive cost, relative positions.
SAMPLE = """# callgrind format
version: 1
positions: line
events: Ir
summary: 1000

ob=(1) /usr/lib/libc.so.6
fl=(1) memcpy.S
fn=(1) memcpy
0 40

ob=(2) /work/fastproxy/_protocols.so
fl=(2) fp_http1.c
fn=(2) parse_head
12 300
+1 50
cob=(1)
cfi=(1)
cfn=(1)
calls=2 0
* 999
fn=(3) cache_serve
fi=(3) fp_wbuf.h
-3 200
fe=(2)
4 10
fn=(2)
7 100
"""


def test_self_costs_skip_inclusive_call_costs(tool: ModuleType) -> None:
    total, costs = tool.parse_callgrind(SAMPLE)
    assert total == 1000
    got = {(c.function, c.obj): c.ir for c in costs}
    assert got == {
        ("parse_head", "_protocols.so"): 450,  # 300 + 50 + 100; not the call's 999
        ("cache_serve", "_protocols.so"): 210,  # fi/fe change the file, not the function
        ("memcpy", "libc.so.6"): 40,
    }
    assert [c.function for c in costs] == ["parse_head", "cache_serve", "memcpy"]
    assert tool.by_object(costs) == [("_protocols.so", 660), ("libc.so.6", 40)]


@pytest.mark.slow
def test_counts_real_hits() -> None:
    """The whole tool against a real proxy under callgrind: every answer a
    HIT, and the count names the hit path."""
    if shutil.which("valgrind") is None:
        # as the fuzz test does with clang: skipped on a machine without it,
        # but CI installs it, so there a missing valgrind is a failure
        reason = "valgrind is not installed: apt-get install -y valgrind"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason} (CI=true: .ci/run installs it)")
        pytest.skip(reason)
    out = subprocess.run(
        [sys.executable, str(TOOL), "--requests", "200", "--top", "60"],
        capture_output=True, text=True, timeout=600, cwd=ROOT,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    total = next(line for line in lines if line.startswith("total: "))
    per_hit = int(total.split()[1].replace(",", ""))
    assert 500 < per_hit < 200_000
    assert "| parse_head | _protocols." in out.stdout
    assert "cache_serve" in out.stdout
