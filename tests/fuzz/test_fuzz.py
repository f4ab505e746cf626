"""Build tests/fuzz/fuzz_http1.c with libFuzzer + ASan + UBSan and run it.

The run time is FASTPROXY_FUZZ_SECONDS (default 10; CI sets 60).  The seed
corpus is copied first: libFuzzer writes the inputs it finds into its corpus
directory and the checked-in seeds must stay small.  Without clang the test is
skipped locally but fails under CI=true, where clang is installed (apt packages
clang and libclang-rt-14-dev), so a broken toolchain cannot pass silently.
"""

import ast
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CSRC = ROOT / "csrc"
HERE = Path(__file__).resolve().parent
TARGET = HERE / "fuzz_http1.c"
SEEDS = HERE / "corpus"

# Used only if setup.py has no PARSER_C list.
FALLBACK_SOURCES = ["fp_http1.c", "fp_scan.c", "fp_framing.c", "fp_chunked.c", "fp_known_headers.c"]


def parser_sources() -> list[Path]:
    """The pure C parser sources: PARSER_C of setup.py (read, not imported)."""
    try:
        tree = ast.parse((ROOT / "setup.py").read_text())
        for node in tree.body:
            if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "PARSER_C" for t in node.targets
            ):
                return [ROOT / s for s in ast.literal_eval(node.value)]
    except (OSError, SyntaxError, ValueError):
        pass
    return [CSRC / n for n in FALLBACK_SOURCES]


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def _unavailable(reason: str) -> None:
    if _in_ci():
        pytest.fail(f"{reason} (CI=true: the fuzz test must run in CI)")
    pytest.skip(reason)


def _fuzz_seconds() -> int:
    raw = os.environ.get("FASTPROXY_FUZZ_SECONDS", "10")
    try:
        seconds = int(raw)
    except ValueError:
        pytest.fail(f"FASTPROXY_FUZZ_SECONDS must be an integer, got {raw!r}")
    return max(1, seconds)


@pytest.mark.fuzz
def test_fuzz_http1(tmp_path: Path) -> None:
    clang = shutil.which("clang")
    if clang is None:
        _unavailable("clang not on PATH (apt-get install clang libclang-rt-14-dev)")
    assert (CSRC / "fp_http1.c").exists(), "csrc/fp_http1.c is missing"

    binary = tmp_path / "fuzz_http1"
    build = [
        clang,
        "-fsanitize=fuzzer,address,undefined",
        # UBSan only reports by default; make every finding abort the run
        "-fno-sanitize-recover=undefined",
        "-g",
        "-O1",
        f"-I{CSRC}",
        str(TARGET),
        *map(str, parser_sources()),
        "-o",
        str(binary),
    ]
    proc = subprocess.run(build, capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        if "libclang_rt" in proc.stderr:  # the sanitizer/libFuzzer runtime is missing
            _unavailable(f"clang has no sanitizer runtime (libclang-rt-14-dev):\n{proc.stderr}")
        pytest.fail(f"building the fuzz target failed:\n$ {' '.join(build)}\n{proc.stderr}")

    corpus = tmp_path / "corpus"
    shutil.copytree(SEEDS, corpus)
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    seconds = _fuzz_seconds()
    run = [
        str(binary),
        str(corpus),
        f"-max_total_time={seconds}",
        "-max_len=4096",
        "-timeout=10",  # one input taking longer is a hang: a failure
        "-rss_limit_mb=2048",
        "-print_final_stats=1",
        f"-artifact_prefix={artifacts}/",
    ]
    env = dict(os.environ)
    env["ASAN_OPTIONS"] = "abort_on_error=1:detect_leaks=1:allocator_may_return_null=0"
    env["UBSAN_OPTIONS"] = "halt_on_error=1:print_stacktrace=1"
    proc = subprocess.run(
        run,
        capture_output=True,
        text=True,
        errors="replace",
        env=env,
        timeout=seconds + 300,
    )
    if proc.returncode != 0:
        found = []
        for art in sorted(artifacts.iterdir()):
            data = art.read_bytes()
            found.append(f"{art.name} ({len(data)} bytes): {data[:512]!r}")
            found.append(f"  reproduce: {binary} {art}")
        pytest.fail(
            f"fuzzer exited with {proc.returncode}\n$ {' '.join(run)}\n"
            + "\n".join(found)
            + "\n--- output (tail) ---\n"
            + proc.stderr[-12000:]
        )
    # libFuzzer prints "Done N runs in S second(s)" when it ends normally
    assert "Done " in proc.stderr, proc.stderr[-4000:]
