"""bench/vs_nginx.py's bookkeeping, without nginx or wrk: summarize() (median and
spread of the rounds), the fastproxy/nginx ratios of the report, Progress, the
results.json / results.md / results.png writers on a small synthetic run shaped
like bench/results/*/results.json, and main() in subprocesses where it must not
need the tools: the install hint when wrk is not on PATH, and --replot.

The interleaving of the measured rounds (fastproxy, nginx, fastproxy, ...) is
built inline in run_scenario() (``proxies[r % len(proxies)]``), which needs a
running origin, both proxies and wrk: there is no seam to test it without them,
so it is not tested here.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "bench" / "vs_nginx.py"
RESULTS = ROOT / "bench" / "results"


@pytest.fixture(scope="module")
def vs(bench_module: Callable[[str], ModuleType]) -> ModuleType:
    return bench_module("vs_nginx")


def rnd(rps: float, **kw: Any) -> dict[str, Any]:
    """One round as run_wrk() returns it (every key of a real round); kw overrides."""
    r: dict[str, Any] = {
        "requests": int(rps),
        "duration_s": 1.0,
        "rps": rps,
        "p50_us": 100.0,
        "p90_us": 200.0,
        "p99_us": 1000.0,
        "p999_us": 2000.0,
        "max_us": 3000.0,
        "bytes_read": 100 * int(rps),
        "status_errors": 0,
        "connect_errors": 0,
        "read_errors": 0,
        "write_errors": 0,
        "timeouts": 0,
        "errors": 0,
        "cpu_s": 1.0,
        "cpu_s_per_1k": 0.005,
        "cpu_pct": 99.0,
        "peak_rss_mib": 50.0,
        "hwm_sum_mib": 50.0,
        "processes": 2,
        "origin_cpu_pct": 10.0,
        "wrk_cpu_pct": 60.0,
        "harness_cpu_pct": 0.5,
        "other_cpu_pct": 1.0,
        "proxy_core_other_pct": 0.0,
        "wall_s": 1.0,
    }
    r.update(kw)
    return r


# Four fastproxy rounds (an even count: medians are the mean of the middle two) and
# three nginx rounds (odd: the middle one), in measurement order, not sorted.
FP_ROUNDS = [
    rnd(
        100.0,
        requests=1000,
        p50_us=100.0,
        p99_us=1000.0,
        p999_us=5000.0,
        cpu_s_per_1k=0.004,
        cpu_pct=95.0,
        peak_rss_mib=50.0,
        errors=0,
        processes=2,
        origin_cpu_pct=10.0,
        wrk_cpu_pct=50.0,
        other_cpu_pct=1.0,
        proxy_core_other_pct=0.0,
    ),
    rnd(
        1000.0,
        requests=4000,
        p50_us=200.0,
        p99_us=4000.0,
        p999_us=8000.0,
        cpu_s_per_1k=0.002,
        cpu_pct=97.0,
        peak_rss_mib=52.5,
        errors=1,
        processes=2,
        origin_cpu_pct=20.0,
        wrk_cpu_pct=60.0,
        other_cpu_pct=2.0,
        proxy_core_other_pct=1.0,
    ),
    rnd(
        200.0,
        requests=2000,
        p50_us=300.0,
        p99_us=2000.0,
        p999_us=6000.0,
        cpu_s_per_1k=0.006,
        cpu_pct=99.0,
        peak_rss_mib=51.0,
        errors=0,
        processes=3,
        origin_cpu_pct=30.0,
        wrk_cpu_pct=70.0,
        other_cpu_pct=4.0,
        proxy_core_other_pct=3.0,
    ),
    rnd(
        300.0,
        requests=3000,
        p50_us=400.0,
        p99_us=3000.0,
        p999_us=7000.0,
        cpu_s_per_1k=0.005,
        cpu_pct=93.0,
        peak_rss_mib=49.0,
        errors=2,
        processes=2,
        origin_cpu_pct=40.0,
        wrk_cpu_pct=80.0,
        other_cpu_pct=9.0,
        proxy_core_other_pct=4.0,
    ),
]
NG_ROUNDS = [
    rnd(200.0, p99_us=1000.0, cpu_s_per_1k=0.005, cpu_pct=80.0, processes=3),
    rnd(150.0, p99_us=500.0, cpu_s_per_1k=0.004, cpu_pct=85.0, processes=3),
    rnd(220.0, p99_us=3000.0, cpu_s_per_1k=0.007, cpu_pct=99.0, processes=3),
]


# --------------------------------------------------------------------------- summarize


def test_summarize_even_count_median_is_the_mean_of_the_middle_two(vs: ModuleType) -> None:
    s = vs.summarize(FP_ROUNDS)
    assert s["rounds"] == 4
    assert s["rps_median"] == pytest.approx(250.0)  # sorted 100 200 | 300 1000 (mean: 400)
    assert (s["rps_min"], s["rps_max"]) == (100.0, 1000.0)  # the spread
    assert s["p50_us"] == pytest.approx(250.0)
    assert s["p99_us"] == pytest.approx(2500.0)
    assert s["p999_us"] == pytest.approx(6500.0)
    assert s["cpu_s_per_1k"] == pytest.approx(0.0045)  # sorted .002 .004 | .005 .006
    assert s["cpu_pct"] == pytest.approx(96.0)
    assert s["origin_cpu_pct"] == pytest.approx(25.0)
    assert s["wrk_cpu_pct"] == pytest.approx(65.0)
    assert s["other_cpu_pct"] == pytest.approx(3.0)  # sorted 1 2 | 4 9
    assert s["other_cpu_pct_max"] == 9.0
    assert s["proxy_core_other_pct"] == pytest.approx(2.0)  # sorted 0 1 | 3 4
    # totals and maxima, not medians
    assert s["peak_rss_mib"] == 52.5
    assert s["errors"] == 3 and s["requests"] == 10000 and s["processes"] == 3


def test_summarize_odd_count_median_is_the_middle_round(vs: ModuleType) -> None:
    s = vs.summarize(NG_ROUNDS)
    assert s["rounds"] == 3
    assert s["rps_median"] == 200.0
    assert (s["rps_min"], s["rps_max"]) == (150.0, 220.0)
    assert s["p99_us"] == 1000.0
    assert s["cpu_s_per_1k"] == 0.005
    assert s["cpu_pct"] == 85.0
    assert s["requests"] == 200 + 150 + 220


def test_summarize_single_round_and_none(vs: ModuleType) -> None:
    assert vs.summarize([]) is None
    s = vs.summarize([rnd(123.0)])
    assert s["rps_median"] == s["rps_min"] == s["rps_max"] == 123.0


def test_summarize_skips_missing_values(vs: ModuleType) -> None:
    # unpinned rounds have no proxy-core figure; a round without p99.9 (wrk's own
    # summary, no report line) does not count in that median
    rounds = [
        rnd(100.0, proxy_core_other_pct=None, p999_us=None),
        rnd(200.0, proxy_core_other_pct=None, p999_us=4000.0),
        rnd(300.0, proxy_core_other_pct=None, p999_us=8000.0),
    ]
    s = vs.summarize(rounds)
    assert s["proxy_core_other_pct"] is None
    assert s["p999_us"] == pytest.approx(6000.0)
    assert s["rps_median"] == 200.0


def test_summarize_a_column_no_round_has_is_none_not_an_error(vs: ModuleType) -> None:
    # wrk's report line missing from every round: no latencies at all.  The run's
    # other figures must still be summarized and reported, not lost to an error.
    rounds = [rnd(100.0, p50_us=None, p99_us=None, p999_us=None) for _ in range(3)]
    s = vs.summarize(rounds)
    assert s["p50_us"] is None and s["p99_us"] is None and s["p999_us"] is None
    assert s["rps_median"] == 100.0 and s["rounds"] == 3


def test_cache_scenario_titles(vs: ModuleType) -> None:
    titles = {name: sc.title for name, sc in vs.SCENARIOS.items() if name.startswith("cache_")}
    assert titles["cache_16k"].startswith("keep-alive GET, 16 KiB body, cache hit")
    assert titles["cache_100b"].startswith("keep-alive GET, 100 B body, cache hit")


# --------------------------------------------------------------------------- Progress


def test_progress_prints_lines_with_elapsed_time_when_not_a_tty(
    vs: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    p = vs.Progress(4)
    assert not p.tty  # capsys: stderr is not a terminal
    p.t0 = time.monotonic() - 65
    assert p.elapsed() == "01:05"
    p.t0 = time.monotonic() - 3725
    assert p.elapsed() == "01:02:05"
    p.set("[scenario 1/4 ka_100b w=1] round 2/6 nginx")
    p.note("something failed")
    p.tick()  # nothing without a terminal
    p.done()
    err = capsys.readouterr().err
    assert err == (
        "[scenario 1/4 ka_100b w=1] round 2/6 nginx  elapsed 01:02:05\nsomething failed\n"
    )


# --------------------------------------------------------------------------- reports


def synthetic_results(vs: ModuleType) -> dict[str, Any]:
    """Three scenarios as main() collects them: measured against both proxies (w=1,
    pinned), fastproxy only (w=2, a compression scenario), and one that failed."""
    ng_busy = [dict(r, proxy_core_other_pct=None) for r in NG_ROUNDS]
    br_rounds = [
        rnd(500.0, processes=1, proxy_core_other_pct=None),
        rnd(700.0, processes=1, proxy_core_other_pct=None),
    ]
    scenarios: list[dict[str, Any]] = [
        {
            "name": "ka_100b",
            "title": "keep-alive GET, 100 B body",
            "workers": 1,
            "pinned": True,
            "path": "/100b",
            "wrk_cmd": "taskset -c 0 wrk -t1 -c50 -d1s --latency -s ka_100b.lua "
            "http://127.0.0.1:PORT/100b",
            "rounds": {"fastproxy": FP_ROUNDS, "nginx": ng_busy},
            "summary": {},
            "fastproxy_only": False,
            "error": None,
            "commands": {"fastproxy": "taskset -c 1 python3 -m fastproxy run -c x.toml"},
        },
        {
            "name": "br_16k",
            "title": "keep-alive GET, 16 KiB JSON, Accept-Encoding: br (fastproxy only)",
            "workers": 2,
            "pinned": False,
            "path": "/json/16k.json",
            "wrk_cmd": "wrk ...",
            "rounds": {"fastproxy": br_rounds, "nginx": []},
            "summary": {},
            "fastproxy_only": True,
            "error": None,
            "compression_ratio": {"fastproxy": 0.25},
        },
        {
            "name": "close_100b",
            "title": "new client connection per request (Connection: close), 100 B body",
            "workers": 1,
            "pinned": True,
            "path": "/100b",
            "wrk_cmd": "",
            "rounds": {"fastproxy": [], "nginx": []},
            "summary": {},
            "fastproxy_only": False,
            "error": "fastproxy did not start: boom\n--- log ---",
        },
    ]
    for sc in scenarios:  # as run_scenario() does in its finally:
        for name in ("fastproxy", "nginx"):
            summ = vs.summarize(sc["rounds"][name])
            if summ is not None:
                sc["summary"][name] = summ
    return {
        "meta": {
            "date": "2026-11-29T06:00:58+00:00",
            "cpu_model": "Test CPU",
            "cpus": 2,
            "kernel": "6.1.0-test",
            "python": "3.11.7",
            "nginx_version": "nginx version: nginx/1.22.1",
            "wrk_version": "wrk debian/4.1.0-3+b2 [epoll] Copyright (C) 2012 Will Glozer",
            "fastproxy_version": "fastproxy 0.1.0",
            "fastproxy_cmd": "python3 -m fastproxy run -c {config}",
            "standin": False,
            "floor": False,
            "command": "python3 bench/vs_nginx.py --quick",
            "threads": 1,
            "connections": 50,
            "duration": 3,
            "rounds": 2,
            "warmup": 1,
            "pinning": {"load_cpu": 0, "proxy_cpu": 1, "pinned": True},
            "rss_method": "max of sum(VmRSS) over the proxy process tree, sampled every 0.2 s",
            "scenario_titles": {sc["name"]: sc["title"] for sc in scenarios},
            "background_cpu_pct_before": 3.0,
            "finished": "2026-11-29T06:02:44+00:00",
            "interrupted": False,
        },
        "scenarios": scenarios,
    }


def test_synthetic_results_have_the_shape_of_a_real_run(vs: ModuleType) -> None:
    real_files = sorted(RESULTS.glob("*/results.json"))
    if not real_files:
        pytest.skip("no bench/results/*/results.json to compare the shape with")
    real = json.loads(real_files[-1].read_text())
    ours = synthetic_results(vs)
    assert set(ours["meta"]) >= set(real["meta"])
    sc, real_sc = ours["scenarios"][0], real["scenarios"][0]
    assert set(sc) >= set(real_sc)
    assert set(sc["rounds"]["fastproxy"][0]) == set(real_sc["rounds"]["fastproxy"][0])
    assert set(sc["summary"]["fastproxy"]) == set(real_sc["summary"]["fastproxy"])


def test_markdown_table_spread_and_ratios(vs: ModuleType) -> None:
    md = vs.results_markdown(synthetic_results(vs))
    lines = md.splitlines()
    assert lines[0] == "# fastproxy vs nginx, end to end (2026-11-29)"
    assert "HARNESS VALIDATION" not in md and "FLOOR RUN" not in md
    assert (
        "- load: wrk -t1 -c50 --latency, 3 s per round, 2 round(s) per proxy interleaved"
        " (fastproxy, nginx, ...) after 1 s warm-up of each"
    ) in lines
    versions = "- nginx version: nginx/1.22.1; wrk debian/4.1.0-3+b2; fastproxy: fastproxy 0.1.0"
    assert versions in lines  # wrk's version without its " [epoll] Copyright ..." tail
    assert "pinned to CPU 1 (`taskset -c 1`) and wrk, the origin nginx and this script" in md
    # medians, spread min-max, ms latencies, CPU per 1k, CPU %, peak RSS, error total
    for row in (
        "ka_100b | 1 | fastproxy | 250 | 100-1000 | 0.25 | 2.50 | 6.50 | 0.0045 | 96 | 52.5 | 3",
        "ka_100b | 1 | nginx | 200 | 150-220 | 0.10 | 1.00 | 2.00 | 0.0050 | 85 | 50.0 | 0",
        "br_16k | 2 | fastproxy | 600 | 500-700 | 0.10 | 1.00 | 2.00 | 0.0050 | 99 | 50.0 | 0",
    ):
        assert f"| {row} |" in lines, row
    assert "| br_16k | 2 | nginx | not run | | | | | | | | |" in lines
    assert "| close_100b | 1 | fastproxy | failed | | | | | | | | |" in lines
    assert "| close_100b | 1 | nginx | failed | | | | | | | | |" in lines
    # ratios fastproxy/nginx: req/s 250/200, CPU/req 0.0045/0.005, p99 2500/1000;
    # load columns fastproxy / nginx: wrk + origin medians 65 + 25 / 60 + 10, other CPU
    # median (max) 3 (9) / 1 (1), proxy core 2 / - (nginx's rounds here have none)
    assert (
        "| ka_100b | 1 | 1.25 | 0.90 | 2.50 | 65 + 25 / 60 + 10 | 3 (max 9) / 1 (max 1) | 2 / - |"
    ) in lines
    assert "| br_16k | 2 | - | - | - | 60 + 10 | 1 (max 1) | - |" in lines
    assert "| close_100b | 1 | - | - | - | - | - | - |" in lines
    notes = lines[lines.index("Notes:") :]
    assert any("less than 90 % busy" in n and "ka_100b (nginx 85 %)." in n for n in notes)
    assert "- close_100b w=1: FAILED: fastproxy did not start: boom" in notes
    assert "- ka_100b w=1 fastproxy: 3 errors." in notes
    assert any(n.startswith("- br_16k w=2: fastproxy ran as ONE process") for n in notes)
    assert "- br_16k w=2: compressed size / original: fastproxy 0.250." in notes
    assert lines[-3:] == [
        "- `ka_100b`: keep-alive GET, 100 B body",
        "- `br_16k`: keep-alive GET, 16 KiB JSON, Accept-Encoding: br (fastproxy only)",
        "- `close_100b`: new client connection per request (Connection: close), 100 B body",
    ]


def test_markdown_labels_a_standin_run(vs: ModuleType) -> None:
    res = synthetic_results(vs)
    res["meta"].update(standin=True, fastproxy_version="(nginx stand-in)", fastproxy_cmd="nginx")
    md = vs.results_markdown(res)
    assert md.startswith("# fastproxy* vs nginx")
    assert "HARNESS VALIDATION RUN" in md
    assert "| ka_100b | 1 | fastproxy* | 250 |" in md


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_write_reports_json_markdown_png(
    vs: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    res = synthetic_results(vs)
    out = tmp_path / "out" / "run"  # created by write_reports
    vs.write_reports(res, out)
    stdout = capsys.readouterr().out

    text = (out / "results.json").read_text()
    assert text.endswith("}\n")
    assert json.loads(text) == res
    assert (out / "results.md").read_text() == vs.results_markdown(res)

    # print_summary: one line per scenario, with the ratios
    rows = {ln.split()[0]: ln.split() for ln in stdout.splitlines()[1:] if ln[:1].isalpha()}
    assert rows["ka_100b"][:6] == ["ka_100b", "1", "250", "200", "1.25", "0.90"]
    assert rows["br_16k"][:4] == ["br_16k", "2", "600", "(fastproxy"]
    assert rows["close_100b"][:4] == ["close_100b", "1", "FAILED:", "fastproxy"]

    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert not (out / "results.png").exists()
        assert stdout.rstrip().endswith(f"wrote {out / 'results.json'}, {out / 'results.md'}")
        pytest.skip("matplotlib is not installed: results.png not checked")
    assert stdout.rstrip().endswith(
        f"wrote {out / 'results.json'}, {out / 'results.md'}, {out / 'results.png'}"
    )
    # two scenarios with data (the failed one has no bars): figsize (max(8, 1.1 * 2 + 3), 9)
    # at 110 dpi
    assert _png_size(out / "results.png") == (880, 990)


def test_stored_results_still_render(vs: ModuleType) -> None:
    """--replot must keep working on the results committed so far."""
    files = sorted(RESULTS.glob("**/results.json"))
    if not files:
        pytest.skip("no bench/results/**/results.json")
    for f in files:
        res = json.loads(f.read_text())
        md = vs.results_markdown(res)
        for sc in res["scenarios"]:
            assert f"| {sc['name']} | {sc['workers']} |" in md, f


# --------------------------------------------------------------------------- main()


def _isolated_env(path_dir: Path, tmp_dir: Path) -> dict[str, str]:
    return {
        "PATH": str(path_dir),
        "TMPDIR": str(tmp_dir),
        "PYTHONDONTWRITEBYTECODE": "1",
        "LANG": "C.UTF-8",
        # matplotlib's font cache lives under HOME; without it each run rebuilds one
        **({"HOME": os.environ["HOME"]} if "HOME" in os.environ else {}),
    }


TRAPS = ("apt-get", "apt", "sudo", "pip", "pip3", "dpkg", "snap")


@pytest.mark.parametrize("bin_dir", ["empty", "traps"])
def test_main_without_wrk_prints_the_install_hint_and_does_nothing(
    vs: ModuleType, tmp_path: Path, bin_dir: str
) -> None:
    """PATH without wrk: exit 2 and the one apt-get line, before anything runs.
    ("traps": PATH holds only package installers that record being called.)"""
    bin_path = tmp_path / "bin"
    bin_path.mkdir()
    called = tmp_path / "called"
    if bin_dir == "traps":
        for name in TRAPS:
            trap = bin_path / name
            trap.write_text(f'#!/bin/sh\necho "{name} $*" >> {called}\nexit 1\n')
            trap.chmod(0o755)
    tmp_dir = tmp_path / "tmp"
    tmp_dir.mkdir()
    out = tmp_path / "out"
    r = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--out", str(out)],
        cwd=tmp_path,
        env=_isolated_env(bin_path, tmp_dir),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2, r.stderr
    assert r.stdout == "apt-get install -y wrk nginx\n"
    assert vs.INSTALL_HINT == "apt-get install -y wrk nginx"
    assert r.stderr == ""
    assert not called.exists(), called.read_text()
    assert not out.exists()  # no reports
    assert list(tmp_dir.iterdir()) == []  # no run directory either
    assert sorted(p.name for p in bin_path.iterdir()) == sorted(TRAPS if bin_dir == "traps" else ())


def test_main_replot_rewrites_the_reports_from_json_without_wrk(
    vs: ModuleType, tmp_path: Path
) -> None:
    res = synthetic_results(vs)
    out = tmp_path / "run"
    out.mkdir()
    (out / "results.json").write_text(json.dumps(res))
    (out / "results.md").write_text("stale\n")
    empty = tmp_path / "bin"
    empty.mkdir()
    r = subprocess.run(
        [sys.executable, str(SCRIPT), "--replot", str(out)],
        cwd=tmp_path,
        env=_isolated_env(empty, tmp_path),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert (out / "results.md").read_text() == vs.results_markdown(res)
    assert json.loads((out / "results.json").read_text()) == res
    assert f"wrote {out / 'results.json'}, {out / 'results.md'}" in r.stdout
    if "pip install matplotlib" in r.stderr:  # the subprocess has no matplotlib
        assert not (out / "results.png").exists()
    else:
        assert _png_size(out / "results.png") == (880, 990)
