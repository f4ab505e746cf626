"""Build the extensions with ASan + UBSan and run the HTTP/1 unit tests on them.

The repository is copied into tmp_path (so the working tree's in-place .so
files and build/ stay out of it), built with FASTPROXY_SANITIZE=1 into a
temporary build directory, and `pytest tests/unit -k "http1 or compression"`
(the parser, and the Accept-Encoding / head-patch code of fp_encoding) runs in a child
interpreter with gcc's libasan and libubsan preloaded (python itself is not
sanitized, so the runtimes must come first).  PYTHONMALLOC=malloc routes
Python's small objects (the `bytes` handed to the parser included) through
ASan's allocator, so an over-read past a bytes buffer is caught too.

The copy's fastproxy/ source package is renamed after the build: the child's
cwd and pytest's rootdir insertion then cannot shadow the build directory,
and a check in the same environment proves the sanitized module is the one
imported.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOP_LEVEL_SKIP = {".git", "build", "dist", ".venv", ".benchmarks", ".pytest_cache", ".ruff_cache"}
ANYWHERE_SKIP = {"__pycache__", ".pytest_cache"}


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def _unavailable(reason: str) -> None:
    if _in_ci():
        pytest.fail(f"{reason} (CI=true: the sanitizer build must run in CI)")
    pytest.skip(reason)


def _ignore(directory: str, names: list[str]) -> set[str]:
    top = Path(directory).resolve() == ROOT
    return {
        n
        for n in names
        if n in ANYWHERE_SKIP
        or n.endswith((".so", ".pyd", ".egg-info"))
        or (top and n in TOP_LEVEL_SKIP)
    }


def _gcc_runtime(gcc: str, name: str) -> str:
    out = subprocess.run(
        [gcc, f"-print-file-name={name}"], capture_output=True, text=True, check=True
    ).stdout.strip()
    # gcc echoes the bare name back when it has no such library
    if not os.path.isabs(out) or not os.path.exists(out):
        _unavailable(f"gcc has no {name} (apt-get install libasan8 libubsan1 or gcc)")
    return out


def _show(proc: subprocess.CompletedProcess) -> str:
    cmd = " ".join(map(str, proc.args))
    return f"$ {cmd}\nexit {proc.returncode}\n{proc.stdout[-20000:]}\n{proc.stderr[-20000:]}"


@pytest.mark.slow
def test_http1_unit_tests_under_asan_ubsan(tmp_path: Path) -> None:
    gcc = shutil.which("gcc")
    if gcc is None:
        _unavailable("gcc not on PATH")
    if not (ROOT / "setup.py").exists():
        pytest.fail("setup.py is missing")
    preload = ":".join([_gcc_runtime(gcc, "libasan.so"), _gcc_runtime(gcc, "libubsan.so")])

    src = tmp_path / "src"
    lib = tmp_path / "build-lib"
    tmp = tmp_path / "build-temp"
    shutil.copytree(ROOT, src, ignore=_ignore, symlinks=True)

    build_env = dict(os.environ)
    build_env["FASTPROXY_SANITIZE"] = "1"
    # The default compiler of this interpreter (gcc) must build it: the
    # runtimes preloaded below are gcc's, and clang's ASan ABI differs.
    for var in ("CC", "CXX", "LDSHARED", "CFLAGS", "LDFLAGS"):
        build_env.pop(var, None)
    build = subprocess.run(
        [
            sys.executable,
            "setup.py",
            "build_ext",
            "--build-lib",
            str(lib),
            "--build-temp",
            str(tmp),
        ],
        cwd=src,
        env=build_env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert build.returncode == 0, _show(build)

    built = sorted((lib / "fastproxy").glob("_http1*.so"))
    assert built, f"no fastproxy/_http1*.so under {lib}\n{_show(build)}"
    assert b"__asan_" in built[0].read_bytes(), f"{built[0]} is not ASan-instrumented"
    assert b"__ubsan_" in built[0].read_bytes(), f"{built[0]} is not UBSan-instrumented"

    # build_ext writes only extension modules: add the pure-Python part of the
    # package beside them, then hide the source package in the copy.
    shutil.copytree(
        src / "fastproxy",
        lib / "fastproxy",
        dirs_exist_ok=True,
        ignore=shutil.ignore_patterns("*.so", "*.c", "*.cpp", "*.pyx", "*.pxd", "__pycache__"),
    )
    (src / "fastproxy").rename(src / "_fastproxy_sources")

    env = dict(os.environ)
    env.pop("PYTHONSAFEPATH", None)
    env.update(
        LD_PRELOAD=preload,
        ASAN_OPTIONS="detect_leaks=0",
        UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1",
        PYTHONMALLOC="malloc",
        PYTHONDONTWRITEBYTECODE="1",
        PYTHONPATH=os.pathsep.join(filter(None, [str(lib), os.environ.get("PYTHONPATH")])),
    )

    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import ctypes, fastproxy._http1 as m; print(m.__file__); "
            "print(hasattr(ctypes.CDLL(None), '__asan_init'))",
        ],
        cwd=src,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert probe.returncode == 0, _show(probe)
    module_file, asan_live = probe.stdout.splitlines()[-2:]
    assert Path(module_file).resolve().is_relative_to(lib.resolve()), (
        f"the child imported {module_file}, not the sanitized build under {lib}"
    )
    assert asan_live == "True", f"the ASan runtime is not loaded in the child\n{_show(probe)}"

    # --capture=sys: pytest captures Python-level output only, so a sanitizer
    # report written to fd 2 survives the abort that follows it
    pytest_args = ["-q", "-p", "no:cacheprovider", "--capture=sys", "tests/unit"]
    pytest_args += ["-k", "http1 or compression"]
    tests = subprocess.run(
        [sys.executable, "-m", "pytest", *pytest_args],
        cwd=src,
        env=env,
        capture_output=True,
        text=True,
        errors="replace",
        timeout=1800,
    )
    print(tests.stdout[-20000:])
    print(tests.stderr[-20000:], file=sys.stderr)
    assert tests.returncode != 5, f"no unit test matched -k\n{_show(tests)}"
    assert tests.returncode == 0, _show(tests)
    assert " passed" in tests.stdout, _show(tests)
    for marker in ("ERROR: AddressSanitizer", "runtime error:"):
        assert marker not in tests.stdout + tests.stderr, _show(tests)
