"""bench/vs_nginx.py --floor: which scenarios the C floor can stand in for, how its
command is built and filled in, and how a floor run's report says what ran."""

from __future__ import annotations

import http.client
import shlex
import shutil
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest


@pytest.fixture(scope="module")
def vs(bench_module: Callable[[str], ModuleType]) -> ModuleType:
    return bench_module("vs_nginx")


def test_floor_fits_plain_keepalive_gets_only(vs: ModuleType) -> None:
    fits = {name for name, s in vs.SCENARIOS.items() if vs.floor_fits(s)}
    assert {"ka_100b", "ka_16k", "cache_100b", "cache_16k"} <= fits
    # a close per request, a body, compression, TLS, or an answer too big for one call
    for name in ("close_100b", "post_4k", "gzip_16k", "tls_ka_100b", "ka_1m"):
        assert name not in fits


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--floor", "--workers", "1,2", "--scenarios", "cache_100b"], "--workers 1"),
        (["--floor", "--workers", "1", "--scenarios", "close_100b"], "close_100b"),
        (
            ["--floor", "--workers", "1", "--fastproxy-cmd", "nginx", "--scenarios", "ka_100b"],
            "--fastproxy-cmd",
        ),
    ],
)
def test_floor_refuses_what_it_cannot_stand_in_for(
    vs: ModuleType, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    with pytest.raises(SystemExit) as exc:
        vs.parse_args(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_floor_defaults_to_one_worker_and_the_scenarios_it_fits(vs: ModuleType) -> None:
    args = vs.parse_args(["--floor"])
    assert args.worker_counts == [1]
    names = {s.name for s in args.scenario_list}
    assert {"ka_100b", "cache_100b", "cache_16k"} <= names
    assert all(vs.floor_fits(s) for s in args.scenario_list)
    assert len(vs.parse_args([]).scenario_list) == len(vs.SCENARIOS)  # without: all


def _meta(**over: Any) -> dict[str, Any]:
    meta = {
        "date": "2026-11-28T12:00:00+00:00",
        "cpu_model": "cpu",
        "cpus": 2,
        "kernel": "k",
        "command": "python3 bench/vs_nginx.py --floor",
        "nginx_version": "nginx version: nginx/1.22.1",
        "wrk_version": "wrk 4.1.0 [epoll]",
        "fastproxy_version": "(C floor: bench/c/epoll_floor.c)",
        "fastproxy_cmd": "/tmp/x/epoll_floor {port} {size}",
        "standin": False,
        "floor": True,
        "threads": 1,
        "connections": 50,
        "duration": 8,
        "rounds": 3,
        "warmup": 2,
        "pinning": {"load_cpu": 0, "proxy_cpu": 1, "pinned": True},
        "scenario_titles": {},
    }
    meta.update(over)
    return meta


def test_a_floor_run_is_labelled_as_one(vs: ModuleType) -> None:
    res = {"meta": _meta(), "scenarios": []}
    text = vs.results_markdown(res)
    assert "FLOOR RUN" in text and "Ratios floor/nginx" in text
    assert vs.column_label(_meta(floor=False, fastproxy_version="x"))[0] == "fastproxy"
    # a results.json from before the "floor" key still says what ran
    old = _meta()
    del old["floor"]
    assert vs.column_label(old)[0] == "floor"
    custom = vs.column_label(_meta(floor=False, fastproxy_version="(custom command)"))
    assert custom[0] == "fastproxy*" and "epoll_floor" in (custom[2] or "")


@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")
@pytest.mark.parametrize("size", [100, 16 << 10])
def test_the_built_floor_answers_with_the_scenario_size(
    vs: ModuleType, tmp_path: Path, size: int
) -> None:
    template = vs.build_floor(tmp_path)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    fields = {"{config}": "unused", "{port}": str(port), "{size}": str(size)}
    cmd = [vs.fill(a, fields) for a in shlex.split(template)]
    proc = subprocess.Popen(cmd)
    try:
        vs.procinfo.wait_port("127.0.0.1", port, timeout=10, proc=proc)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        for _ in range(2):  # keep-alive: the same connection answers again
            conn.request("GET", "/cached-100b/100b")
            resp = conn.getresponse()
            assert resp.status == 200
            assert resp.read() == b"x" * size
        conn.close()
    finally:
        proc.kill()
        proc.wait(timeout=10)
