"""`fastproxy tune` end to end: the real command, real wrk, a real fastproxy per worker
count, in front of the test origin (tests/integration/conftest.py), all on 127.0.0.1.

One run: workers 1..2, one second of load each, no warm-up (the smallest options tune
accepts), ``--write`` into the very config it measured and ``--json`` beside it.  The
run is bounded by a timeout; on expiry tune gets SIGTERM first, so it stops the
fastproxy and wrk it started itself.  Skipped when wrk is not installed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
from support import free_port

REPO = Path(os.environ.get("FASTPROXY_TEST_TREE") or Path(__file__).resolve().parents[2])
TIMEOUT = 60  # seconds for the whole tune run; it normally takes well under 15

CONFIG = """\
# fastproxy tune test: everything but `workers` below must survive --write as is
[server]
listen = ["127.0.0.1:{port}"]   # the address tune loads
workers = 7        # tune --write replaces this value only

keepalive_timeout = "75s"

[log]
access = "off"   # no log line per request

[upstreams.app]
servers = ["{origin}"]
keepalive = 32
# workers = 5  (a comment in another table: must stay)

[[routes]]
path_prefix = "/"
upstream = "app"
"""

HEADER = f"{'workers':>7}  {'req/s':>10}  {'p99 ms':>8}  {'CPU %':>6}  {'errors':>7}  {'procs':>5}"
ROW = re.compile(
    r"^\s*(?P<workers>\d+)\s+(?P<rps>\d+)\s+(?P<p99>\d+\.\d\d)\s+(?P<cpu>\d+)"
    r"\s+(?P<errors>\d+)\s+(?P<procs>\d+)(?P<mark>  <- recommended)?$"
)


def run_tune(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    cmd = [sys.executable, "-m", "fastproxy", "tune", *args]
    proc = subprocess.Popen(
        cmd,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out, err = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.terminate()  # tune stops its fastproxy and wrk on SIGTERM
        try:
            out, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        pytest.fail(f"fastproxy tune ran over {TIMEOUT}s\n{out}\n{err}")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


@pytest.mark.slow
def test_tune_measures_each_worker_count_and_writes_the_choice(origin: Any, tmp_path: Path) -> None:
    if shutil.which("wrk") is None:
        pytest.skip("wrk is not installed (apt-get install -y wrk): tune needs it")
    port = free_port()
    config = tmp_path / "fastproxy.toml"
    original = CONFIG.format(port=port, origin=origin.address)
    config.write_text(original)
    report = tmp_path / "tune.json"

    r = run_tune(
        [
            "-c",
            str(config),
            "--max-workers",
            "2",
            "--duration",
            "1",
            "--warmup",
            "0",
            "--connections",
            "10",
            "--url",
            "/tune",
            "--write",
            str(config),
            "--json",
            str(report),
        ],
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stdout + r.stderr

    # the table: the header, then one row of numbers per worker count, in order
    lines = r.stdout.splitlines()
    assert lines[0] == HEADER, r.stdout
    rows = [ROW.match(line) for line in lines[1:3]]
    assert all(rows), r.stdout
    assert [int(m["workers"]) for m in rows if m] == [1, 2]
    assert lines[3] == "", r.stdout  # nothing else in the table (no "failed:" row)
    for m in rows:
        assert m is not None
        assert int(m["rps"]) > 0 and float(m["p99"]) > 0, m.group(0)
        # master + workers: the config's `workers = 7` was overridden for each run
        assert int(m["procs"]) == int(m["workers"]) + 1, m.group(0)

    # one recommendation, the same in the table, the summary line, the JSON and the file
    marked = [int(m["workers"]) for m in rows if m and m["mark"]]
    assert len(marked) == 1, r.stdout
    chosen = marked[0]
    assert lines[4].startswith(f"recommended: workers = {chosen}  ("), r.stdout
    assert lines[5:] == [f"wrote workers = {chosen} to {config}"], r.stdout

    data = json.loads(report.read_text())
    assert data["recommended"] == chosen
    points = data["points"]
    assert [p["workers"] for p in points] == [1, 2]
    for p, m in zip(points, rows, strict=True):
        assert m is not None and p["failed"] is None
        assert f"{p['rps']:.0f}" == m["rps"] and f"{p['p99_us'] / 1000:.2f}" == m["p99"]
        assert p["processes"] == int(m["procs"]) and p["requests"] > 0
        assert p["errors"] == int(m["errors"]) <= 0.01 * p["requests"]  # tune's "usable"
    # the load went through fastproxy to the origin: every request wrk counted, plus
    # tune's one check request per count, reached it, all for --url
    total = sum(p["requests"] for p in points)
    seen = origin.wait_requests(total + 2, timeout=5)
    assert len(seen) >= total + 2
    assert {req.target for req in seen} == {"/tune"}

    # --write changed the value of [server] workers and nothing else, byte for byte
    written = config.read_text()
    expected = original.replace("workers = 7        # tune", f"workers = {chosen}        # tune", 1)
    assert written == expected
    want = tomllib.loads(original)
    want["server"]["workers"] = chosen
    assert tomllib.loads(written) == want

    # tune stopped every fastproxy it started
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0, "something still listens on the port"


def test_tune_says_why_fastproxy_would_not_start(tmp_path: Path) -> None:
    # a config fastproxy refuses: tune's output must carry fastproxy's own error
    # (key and line), not only "exited before listening"
    if shutil.which("wrk") is None:
        pytest.skip("wrk is not installed (apt-get install -y wrk): tune needs it")
    config = tmp_path / "fastproxy.toml"
    config.write_text(
        CONFIG.format(port=free_port(), origin="127.0.0.1:9").replace(
            "keepalive = 32", "keepalive = 32\nworkerz = 2"
        )
    )
    r = run_tune(["-c", str(config), "--max-workers", "2", "--duration", "1"], cwd=tmp_path)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "no usable measurement" in r.stdout
    assert "upstreams.app.workerz: unknown key" in r.stderr, r.stderr
    assert "not trying more workers" in r.stderr
