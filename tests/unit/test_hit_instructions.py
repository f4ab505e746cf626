"""bench/hit_instructions.py: the callgrind reader, and one real count."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOOL = ROOT / "bench" / "hit_instructions.py"


@pytest.fixture(scope="module")
def tool(bench_module: Callable[[str], ModuleType]) -> ModuleType:
    return bench_module("hit_instructions")


# Shaped as callgrind 3.19 writes it: compressed names (some first named in
# a call's cfn=, used later in fn=), a call whose next cost line is the
# callee's inclusive cost, a jump whose next line is a bare position, a
# recursion level ("'2"), relative positions.  summary: is not the total.
SAMPLE = """# callgrind format
version: 1
positions: line
events: Ir
summary: 999999

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
cfn=(4) memset
calls=2 0
* 999
jump=3 +2
+1
fn=(3) cache_serve
fi=(3) fp_wbuf.h
-3 200
fe=(2)
4 10
fn=(2)
7 100
fn=(5) parse_head'2
7 5

ob=(1)
fl=(1)
fn=(4)
0 7
totals: 712
"""


def test_self_costs_skip_inclusive_call_costs(tool: ModuleType) -> None:
    total, costs = tool.parse_callgrind(SAMPLE)
    assert total == 712  # the sum of self costs, which totals: confirms
    got = {(c.function, c.obj): c.ir for c in costs}
    assert got == {
        ("parse_head", "_protocols.so"): 455,  # 300 + 50 + 100 + 5 ('2); not the call's 999
        ("cache_serve", "_protocols.so"): 210,  # fi/fe change the file, not the function
        ("memcpy", "libc.so.6"): 40,
        ("memset", "libc.so.6"): 7,  # named in cfn=, used in fn=
    }
    assert [c.function for c in costs] == ["parse_head", "cache_serve", "memcpy", "memset"]
    assert tool.by_object(costs) == [("_protocols.so", 665), ("libc.so.6", 47)]


def test_a_file_that_does_not_add_up_is_refused(tool: ModuleType) -> None:
    with pytest.raises(ValueError, match="add up to 712"):
        tool.parse_callgrind(SAMPLE.replace("totals: 712", "totals: 713"))
    with pytest.raises(ValueError, match="one event Ir"):
        tool.parse_callgrind(SAMPLE.replace("events: Ir", "events: Ir Dr"))


def _run_tool(args: list[str], tmp_path: Path) -> tuple[str, dict]:
    """The tool on a real proxy under callgrind: (stdout, the --json counts)."""
    missing = [t for t in ("valgrind", "callgrind_control") if shutil.which(t) is None]
    if missing:
        # as the fuzz test does with clang: skipped on a machine without it,
        # but CI installs it, so there a missing valgrind is a failure
        reason = f"{', '.join(missing)} not installed: apt-get install -y valgrind"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason} (CI=true: .ci/run installs it)")
        pytest.skip(reason)
    out_json = tmp_path / "counts.json"
    cmd = [sys.executable, str(TOOL), *args, "--json", str(out_json)]
    proc = subprocess.Popen(
        cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip
    try:
        stdout, stderr = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:  # timed out: the tool stops its children on SIGTERM
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(180)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    assert proc.returncode == 0, stderr
    counts = json.loads(out_json.read_text())
    summed = sum(f["ir_per_hit"] for f in counts["functions"])
    assert summed == pytest.approx(counts["ir_per_hit"], rel=1e-9)
    total = next(line for line in stdout.splitlines() if line.startswith("total: "))
    assert round(counts["ir_per_hit"]) == int(total.split()[1].replace(",", ""))
    return stdout, counts


@pytest.mark.slow
def test_counts_real_hits(tmp_path: Path) -> None:
    """The whole tool against a real proxy under callgrind: every answer a
    HIT, and the count names the hit path."""
    stdout, counts = _run_tool(["--requests", "200", "--top", "60"], tmp_path)
    assert counts["mode"] == "hit"
    assert 500 < counts["ir_per_hit"] < 200_000
    assert "| parse_head | _protocols." in stdout
    assert "cache_serve" in stdout


@pytest.mark.slow
@pytest.mark.parametrize(
    "mode, names",
    [
        ("proxied", ("UpstreamProtocol_read_head", "fp_rewrite_request")),
        ("close", ("fp_sock_accept", "SockServer", "ClientProtocol_made")),
    ],
)
def test_counts_real_proxied_requests_and_connections(
    tmp_path: Path, mode: str, names: tuple[str, ...]
) -> None:
    """--mode proxied and close count the whole process: the count names the
    upstream path, and for close the connection's set-up, and costs more than
    a hit (3,000-4,000 here)."""
    _, counts = _run_tool(["--mode", mode, "--requests", "50", "--top", "80"], tmp_path)
    assert counts["mode"] == mode
    assert 5_000 < counts["ir_per_hit"] < 500_000
    functions = [f["function"] for f in counts["functions"]]
    for name in names:
        assert any(name in f for f in functions), (name, functions[:40])
