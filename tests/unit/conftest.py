"""Shared fixtures for the unit tests.

`bench_module` loads a script of bench/ by path (bench/ is not a package),
registered in sys.modules while the test module runs, as dataclasses need.

`simd` runs a test once on the SIMD scanning path and once on the scalar path
of the C HTTP/1.1 parser (csrc/fp_scan.h).  The parser test modules apply it
to every test with ``pytestmark = pytest.mark.usefixtures("simd")``.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture(scope="module")
def bench_module() -> Iterator[Callable[[str], ModuleType]]:
    """load(name) -> bench/NAME.py as a module; unregistered after the test module."""
    names: list[str] = []

    def load(name: str) -> ModuleType:
        path = BENCH / f"{name}.py"
        if not path.exists():
            pytest.skip(f"bench/{name}.py not present")
        spec = importlib.util.spec_from_file_location(f"_bench_{name}", path)
        assert spec is not None and spec.loader is not None
        mod = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = mod
        names.append(spec.name)
        spec.loader.exec_module(mod)
        return mod

    yield load
    for name in names:
        sys.modules.pop(name, None)


@pytest.fixture(params=[True, False], ids=["simd", "scalar"])
def simd(request: pytest.FixtureRequest) -> Iterator[bool]:
    """Select the SIMD (True) or scalar (False) scan; restore the old choice after."""
    from fastproxy import _http1  # imported here so non-parser tests never need the build

    on: bool = request.param
    if on and not _http1.simd_available():
        pytest.skip("the SIMD scan is not compiled in (FASTPROXY_NO_SIMD or no SSE2)")
    prev = _http1.set_simd(on)
    try:
        yield on
    finally:
        _http1.set_simd(prev)
