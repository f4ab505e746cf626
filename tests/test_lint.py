"""Lint is part of the test suite: ruff for Python, cython-lint for Cython,
and the rule that csrc/ stays pure C (no Python.h)."""

import pathlib
import re
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent


def run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)


def test_ruff_check() -> None:
    r = run(sys.executable, "-m", "ruff", "check", ".")
    assert r.returncode == 0, r.stdout + r.stderr


def test_ruff_format() -> None:
    r = run(sys.executable, "-m", "ruff", "format", "--check", ".")
    assert r.returncode == 0, r.stdout + r.stderr


def test_cython_lint() -> None:
    files = sorted(
        str(p.relative_to(ROOT))
        for pattern in ("*.pyx", "*.pxd", "*.pxi")
        for p in (ROOT / "fastproxy").glob(pattern)
    )
    assert files, "no Cython files found"
    exe = shutil.which("cython-lint")
    if exe is None:
        pytest.fail("cython-lint is not installed: pip install -e '.[test]'")
    r = run(exe, *files)
    assert r.returncode == 0, r.stdout + r.stderr


def test_csrc_is_pure_c() -> None:
    offenders = [
        p.name
        for p in (ROOT / "csrc").glob("*.[ch]")
        if re.search(r'#\s*include\s*[<"]Python\.h[>"]', p.read_text())
    ]
    assert offenders == []
