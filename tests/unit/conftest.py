"""Shared fixtures for the unit tests.

`simd` runs a test once on the SIMD scanning path and once on the scalar path
of the C HTTP/1.1 parser (csrc/fp_scan.h).  The parser test modules apply it
to every test with ``pytestmark = pytest.mark.usefixtures("simd")``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest


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
