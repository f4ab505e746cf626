"""The `fastproxy` command line: --version, --help, `check` and `run` with bad configs.

Every command runs as ``python -m fastproxy ...`` in a subprocess with a bounded timeout;
nothing here opens a listening socket except the one `run` test that uses port 0.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from fastproxy._version import __version__

REPO = Path(__file__).resolve().parents[2]

GOOD = """\
[server]
listen = ["127.0.0.1:0"]
pid_file = false

[log]
access = "off"

[upstreams.app]
servers = ["127.0.0.1:9001"]

[[routes]]
path_prefix = "/"
upstream = "app"
"""

# line 4: unknown key, line 11: undefined upstream
BAD = """\
[server]
listen = ["127.0.0.1:0"]
pid_file = false
keepalive_timout = "5s"

[upstreams.app]
servers = ["127.0.0.1:9001"]

[[routes]]
path_prefix = "/"
upstream = "nope"
"""


def fastproxy(
    *args: str, cwd: Path | None = None, timeout: float = 30
) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run(
        [sys.executable, "-m", "fastproxy", *args],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def write(tmp_path: Path):
    def write(name: str, text: str) -> Path:
        p = tmp_path / name
        p.write_text(text)
        return p

    return write


def test_version() -> None:
    r = fastproxy("--version")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"fastproxy {__version__}"
    assert re.fullmatch(r"\d+\.\d+\.\d+\S*", __version__)


def test_help_lists_the_commands() -> None:
    r = fastproxy("--help")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("usage: fastproxy")
    for cmd in ("run", "check", "tune"):
        assert re.search(rf"^\s+{cmd}\s+\S", r.stdout, re.M), f"{cmd} missing:\n{r.stdout}"
    assert "--version" in r.stdout


def test_no_command_prints_usage_and_fails() -> None:
    r = fastproxy()
    assert r.returncode != 0
    assert "usage: fastproxy" in r.stdout + r.stderr


def test_unknown_command_fails() -> None:
    r = fastproxy("frobnicate")
    assert r.returncode != 0
    assert "frobnicate" in r.stderr


@pytest.mark.parametrize("sub", ["run", "check"])
def test_subcommand_help(sub: str) -> None:
    r = fastproxy(sub, "--help")
    assert r.returncode == 0, r.stderr
    assert "-c" in r.stdout and "--config" in r.stdout


def test_check_good_config_prints_ok(write) -> None:
    path = write("good.toml", GOOD)
    r = fastproxy("check", "-c", str(path))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "ok"
    assert r.stderr == ""


def test_check_long_option_and_default_file(write, tmp_path: Path) -> None:
    path = write("fastproxy.toml", GOOD)
    r = fastproxy("check", "--config", str(path))
    assert (r.returncode, r.stdout.strip()) == (0, "ok"), r.stderr
    # with no -c, ./fastproxy.toml is used
    r = fastproxy("check", cwd=tmp_path)
    assert (r.returncode, r.stdout.strip()) == (0, "ok"), r.stderr


def test_check_without_any_config_fails(tmp_path: Path) -> None:
    r = fastproxy("check", cwd=tmp_path)
    assert r.returncode != 0
    assert "fastproxy.toml" in r.stderr
    assert r.stdout.strip() != "ok"


def test_check_reports_every_error_with_file_line_and_key(write) -> None:
    path = write("bad.toml", BAD)
    r = fastproxy("check", "-c", str(path))
    assert r.returncode != 0
    assert "ok" not in r.stdout.split()
    err = r.stderr
    assert f"{path}:4: server.keepalive_timout: unknown key 'keepalive_timout'" in err, err
    assert "did you mean 'keepalive_timeout'" in err
    assert f"{path}:11: routes[0].upstream: undefined upstream 'nope'" in err, err
    assert "(defined: app)" in err
    assert "2 error(s)" in err
    # in file order
    assert err.index(":4: ") < err.index(":11: ")


def test_check_syntax_error_has_a_line(write) -> None:
    path = write("syntax.toml", '[server]\nlisten = ["127.0.0.1:0"\n\n[log]\n')
    r = fastproxy("check", "-c", str(path))
    assert r.returncode != 0
    assert re.search(rf"{re.escape(str(path))}:\d+: TOML syntax error", r.stderr), r.stderr


def test_check_unreadable_file(tmp_path: Path) -> None:
    missing = tmp_path / "missing.toml"
    r = fastproxy("check", "-c", str(missing))
    assert r.returncode != 0
    assert str(missing) in r.stderr
    assert "cannot read" in r.stderr


def test_check_wrong_types_are_reported(write) -> None:
    text = GOOD.replace("pid_file = false", "pid_file = false\nmax_headers = true")
    path = write("types.toml", text)
    r = fastproxy("check", "-c", str(path))
    assert r.returncode != 0
    assert f"{path}:4: server.max_headers: expected integer, got boolean" in r.stderr, r.stderr


def test_run_with_bad_config_exits_nonzero_with_the_errors(write) -> None:
    path = write("bad.toml", BAD)
    r = fastproxy("run", "-c", str(path), timeout=30)
    assert r.returncode != 0
    assert f"{path}:4: server.keepalive_timout" in r.stderr, r.stderr
    assert f"{path}:11: routes[0].upstream" in r.stderr
    assert "listening on" not in r.stderr


def test_run_with_missing_config_exits_nonzero(tmp_path: Path) -> None:
    r = fastproxy("run", "-c", str(tmp_path / "nope.toml"), timeout=30)
    assert r.returncode != 0
    assert "cannot read" in r.stderr
