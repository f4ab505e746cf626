"""The micro-benchmarks in bench/ (test_bench_*.py) run once each, with
pytest-benchmark's timing disabled, so CI notices when one rots (an API it calls
changed, a reference no longer matches, an import broke).

They run in a subprocess (``python -m pytest bench --benchmark-disable``), as a
developer runs them; bench/conftest.py only puts bench/ on sys.path, and nothing
collected there needs wrk, nginx or valgrind (those tools belong to the scripts in
bench/, which pytest does not collect).  A JUnit XML report says what ran.
"""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench"


def test_micro_benchmarks_run_once(tmp_path: Path) -> None:
    pytest.importorskip("pytest_benchmark", reason="pytest-benchmark is not installed")
    files = sorted(p.stem for p in BENCH.glob("test_bench_*.py"))
    assert files, "no bench/test_bench_*.py"
    report = tmp_path / "bench.xml"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "bench",
            "-q",
            "-p",
            "no:cacheprovider",
            "--benchmark-disable",
            f"--junitxml={report}",
        ],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]

    suite = ET.parse(report).getroot().find("testsuite")
    assert suite is not None
    cases = suite.findall("testcase")
    skipped = [c for c in cases if c.find("skipped") is not None]
    assert int(suite.get("failures", "0")) == 0 and int(suite.get("errors", "0")) == 0
    assert len(cases) == int(suite.get("tests", "-1"))
    # every benchmark file contributed tests that ran, none was skipped wholesale
    ran = Counter(c.get("classname", "").split(".")[-1] for c in cases if c not in skipped)
    assert {f: ran[f] for f in files if ran[f] == 0} == {}, (ran, r.stdout[-2000:])
    assert len(skipped) < len(cases)
