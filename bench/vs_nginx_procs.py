"""The processes of a bench/vs_nginx.py run: starting them (every one is recorded and
stopped by pid, at exit too), waiting for their ports, the preflight request that checks
each proxy and the origin answer like the scenario says, and the standard-library helpers
of the fastproxy package (procinfo, wrk, TOML) loaded by path."""

from __future__ import annotations

import atexit
import contextlib
import http.client
import importlib.util
import socket
import ssl
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from vs_nginx_scenarios import Scenario

ROOT = Path(__file__).resolve().parent.parent


def _load(module: str) -> ModuleType:
    """fastproxy/<module>.py by path: the wrk, /proc and TOML helpers are standard-library
    only, and loading the files alone keeps this benchmark usable whatever state the rest
    of the package (C extensions, installation) is in."""
    spec = importlib.util.spec_from_file_location(
        f"_fastproxy_{module}", ROOT / f"fastproxy/{module}.py"
    )
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up here
    spec.loader.exec_module(mod)
    return mod


procinfo = _load("procinfo")
PREFLIGHT_CA: list[Path] = []  # the current TLS scenario's certificate

_STARTED: list[subprocess.Popen[Any]] = []


def cleanup() -> None:
    """Stop every process this script started and that still runs (newest first)."""
    while _STARTED:
        proc = _STARTED.pop()
        with contextlib.suppress(Exception):
            procinfo.stop_process(proc, timeout=20)


atexit.register(cleanup)


def _sigterm(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pinned(cmd: list[str], cpu: int | None) -> list[str]:
    return cmd if cpu is None else ["taskset", "-c", str(cpu), *cmd]


def start(cmd: list[str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as fh:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=fh,
            stderr=fh,
            start_new_session=True,  # Ctrl-C reaches only this script; it stops them
        )
    _STARTED.append(proc)
    return proc


def stop(proc: subprocess.Popen[Any] | None) -> None:
    if proc is None:
        return
    procinfo.stop_process(proc, timeout=20)
    with contextlib.suppress(ValueError):
        _STARTED.remove(proc)


NGINX = "nginx"  # main() puts the full path here (Debian installs it in /usr/sbin)


def nginx_cmd(conf: Path, prefix: Path) -> list[str]:
    return [
        NGINX,
        "-e",
        str(conf.with_suffix(".startup.log")),
        "-p",
        f"{prefix}/",
        "-c",
        str(conf),
        "-g",
        "daemon off;",
    ]


def _tail(path: Path, n: int = 12) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


class ScenarioError(RuntimeError):
    pass


@dataclass
class Proxy:
    name: str  # "fastproxy" or "nginx"
    proc: subprocess.Popen[bytes]
    port: int
    log: Path


def start_and_wait(name: str, cmd: list[str], port: int, log: Path) -> Proxy:
    proc = start(cmd, log)
    try:
        procinfo.wait_port("127.0.0.1", port, up=True, timeout=30, proc=proc)
    except (RuntimeError, TimeoutError) as exc:
        stop(proc)
        raise ScenarioError(f"{name} did not start: {exc}\n{_tail(log)}") from None
    return Proxy(name, proc, port, log)


def preflight(name: str, port: int, s: Scenario, tls: bool | None = None) -> int:
    """One request like the scenario's: status and body length must be as expected.
    Returns the body length (as sent: compressed, for the compression scenarios)."""
    if s.tls if tls is None else tls:
        ctx = ssl.create_default_context(cafile=str(PREFLIGHT_CA[0])) if PREFLIGHT_CA else None
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(
            "127.0.0.1", port, timeout=10, context=ctx
        )
    else:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        headers = dict(h.split(": ", 1) for h in s.wrk_headers)
        body = b"a" * s.body_len if s.body_len else None
        conn.request(s.method, s.path, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
    except (OSError, http.client.HTTPException) as exc:
        raise ScenarioError(f"{name}: {s.method} {s.path} failed: {exc!r}") from None
    finally:
        conn.close()
    if resp.status != s.expect_status or s.expect_len not in (None, len(data)):
        raise ScenarioError(
            f"{name}: {s.method} {s.path} answered {resp.status} with {len(data)} bytes, "
            f"expected {s.expect_status} with {s.expect_len}"
        )
    if s.identity_len and resp.getheader("Content-Encoding") is None and name != "origin":
        raise ScenarioError(f"{name}: {s.path} was not compressed")
    return len(data)


def origin_check(port: int, s: Scenario) -> str:
    """One request straight to the origin, to tell a proxy failure from an origin one."""
    try:
        preflight("origin", port, s, tls=False)
    except ScenarioError as exc:
        return f"FAILED too: {exc}"
    return "ok"
