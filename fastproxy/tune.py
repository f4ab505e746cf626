"""``fastproxy tune``: measure throughput per worker count and recommend one.

Usage::

    fastproxy tune -c FILE [--max-workers N] [--duration S] [--url PATH] [--write FILE]

For workers = 1, 2, ... up to ``--max-workers`` (default: twice the CPUs this process
may run on) it starts ``python3 -m fastproxy run`` on a temporary copy of FILE whose
``server.workers`` is overridden (and whose ``server.pid_file`` points into a temporary
directory, so a running instance's pid file is never touched), waits for the first
``server.listen`` address to accept connections, warms up, then runs
``wrk -t1 -c50 -d S --latency`` against ``http://LISTEN{--url}`` and records requests/s,
p99 latency and the CPU used by the whole fastproxy process tree (master + workers,
from /proc; 100 % = one core).  wrk runs on the same machine, so the numbers show the
best count *for this machine with the load generator on it*.

The recommendation is the smallest worker count whose requests/s are within 3 % of the
best and whose p99 is not worse than 1.2x the best (lowest) p99; runs with more than
1 % failed requests are ignored.  If no count meets both conditions, the count with the
most requests/s wins.  ``--write FILE`` then rewrites ``workers = ...`` in the
``[server]`` section of FILE in place (or adds it), leaving everything else untouched.

The upstreams named in the config must be running: tune sends real traffic through
fastproxy to them (``--url`` picks the path; use a cheap one).  The listen addresses
must be free (stop a running instance first).  Everything is on this machine; each
load run is bounded by ``--duration``.

The pure helpers here (wrk output parser, /proc accounting, TOML emitter, the
recommendation rule and the ``workers`` rewrite) are also used by bench/vs_nginx.py;
this module imports nothing outside the standard library.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import json
import math
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "WRK_REPORT_LUA",
    "TunePoint",
    "WrkResult",
    "dumps_toml",
    "main",
    "parse_listen",
    "parse_wrk_output",
    "recommend",
    "set_workers",
]

APT_HINT = "apt-get install -y wrk"

# Identical to bench/wrk/report.lua (a unit test keeps them in step).  wrk's done()
# prints one machine-readable line with the totals and the latency percentiles in us.
WRK_REPORT_LUA = r"""-- Machine-readable wrk summary, appended to every scenario script by
-- bench/vs_nginx.py (fastproxy/tune.py embeds an identical copy).
--
-- done() runs once after the test and prints ONE line:
--   WRK_JSON {"requests":N,"duration_us":N,...,"p50_us":N,"p99_us":N,"p999_us":N}
-- Latencies are microseconds. status_errors counts responses with status > 399
-- (what wrk itself counts as "Non-2xx or 3xx"); connect/read/write/timeouts are
-- wrk's socket errors.
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"connect_errors":%d,"read_errors":%d,"write_errors":%d,' ..
    '"status_errors":%d,"timeouts":%d,' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d,"p999_us":%d,' ..
    '"max_us":%d,"mean_us":%.1f}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9),
    latency.max, latency.mean))
end
"""

# --------------------------------------------------------------------------- wrk output


@dataclass(frozen=True, slots=True)
class WrkResult:
    """One wrk run.  Latencies in microseconds (None when wrk did not report them)."""

    requests: int
    duration_s: float
    rps: float
    p50_us: float | None = None
    p90_us: float | None = None
    p99_us: float | None = None
    p999_us: float | None = None
    max_us: float | None = None
    bytes_read: int = 0
    status_errors: int = 0  # responses with status > 399 (wrk's "Non-2xx or 3xx")
    connect_errors: int = 0
    read_errors: int = 0
    write_errors: int = 0
    timeouts: int = 0

    @property
    def socket_errors(self) -> int:
        return self.connect_errors + self.read_errors + self.write_errors + self.timeouts

    @property
    def errors(self) -> int:
        return self.status_errors + self.socket_errors

    def to_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "duration_s": self.duration_s,
            "rps": self.rps,
            "p50_us": self.p50_us,
            "p90_us": self.p90_us,
            "p99_us": self.p99_us,
            "p999_us": self.p999_us,
            "max_us": self.max_us,
            "bytes_read": self.bytes_read,
            "status_errors": self.status_errors,
            "connect_errors": self.connect_errors,
            "read_errors": self.read_errors,
            "write_errors": self.write_errors,
            "timeouts": self.timeouts,
        }


_TIME_UNITS_US = {"us": 1.0, "ms": 1e3, "s": 1e6, "m": 60e6, "h": 3600e6}
_SIZE_UNITS = {"B": 1, "KB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30, "TB": 1 << 40}
_RE_JSON = re.compile(r"^WRK_JSON (\{.*\})\s*$", re.M)
_RE_TOTAL = re.compile(
    r"^\s*(\d+) requests in ([\d.]+)(us|ms|s|m|h), ([\d.]+)([KMGT]?B) read", re.M
)
_RE_RPS = re.compile(r"^Requests/sec:\s+([\d.]+)", re.M)
_RE_PCT = re.compile(r"^\s+(50|75|90|99(?:\.\d+)?)%\s+([\d.]+)(us|ms|s|m|h)\s*$", re.M)
_RE_NON2XX = re.compile(r"^\s*Non-2xx or 3xx responses: (\d+)", re.M)
_RE_SOCKET = re.compile(
    r"^\s*Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", re.M
)


def _time_us(value: str, unit: str) -> float:
    return float(value) * _TIME_UNITS_US[unit]


def parse_wrk_output(text: str) -> WrkResult:
    """Parse wrk's stdout.

    Uses the ``WRK_JSON`` line printed by WRK_REPORT_LUA when present (exact counts and
    p99.9); otherwise falls back to wrk's human-readable summary (``--latency`` gives
    p50/p90/p99, there is no p99.9).  Raises ValueError when neither is there.
    """
    m = _RE_JSON.search(text)
    if m:
        d = json.loads(m.group(1))
        duration_s = d["duration_us"] / 1e6
        requests = int(d["requests"])
        return WrkResult(
            requests=requests,
            duration_s=duration_s,
            rps=requests / duration_s if duration_s > 0 else 0.0,
            p50_us=float(d["p50_us"]),
            p90_us=float(d["p90_us"]),
            p99_us=float(d["p99_us"]),
            p999_us=float(d["p999_us"]),
            max_us=float(d["max_us"]),
            bytes_read=int(d["bytes"]),
            status_errors=int(d["status_errors"]),
            connect_errors=int(d["connect_errors"]),
            read_errors=int(d["read_errors"]),
            write_errors=int(d["write_errors"]),
            timeouts=int(d["timeouts"]),
        )
    total = _RE_TOTAL.search(text)
    rps = _RE_RPS.search(text)
    if not total or not rps:
        raise ValueError("not a wrk summary (no 'N requests in' / 'Requests/sec:' lines)")
    pct = {p: _time_us(v, u) for p, v, u in _RE_PCT.findall(text)}
    non2xx = _RE_NON2XX.search(text)
    sock = _RE_SOCKET.search(text)
    c, r, w, t = (int(x) for x in sock.groups()) if sock else (0, 0, 0, 0)
    return WrkResult(
        requests=int(total.group(1)),
        duration_s=_time_us(total.group(2), total.group(3)) / 1e6,
        rps=float(rps.group(1)),
        p50_us=pct.get("50"),
        p90_us=pct.get("90"),
        p99_us=pct.get("99"),
        bytes_read=int(float(total.group(4)) * _SIZE_UNITS[total.group(5)]),
        status_errors=int(non2xx.group(1)) if non2xx else 0,
        connect_errors=c,
        read_errors=r,
        write_errors=w,
        timeouts=t,
    )


def wrk_command(
    url: str,
    *,
    duration: int,
    threads: int,
    connections: int,
    script: str | os.PathLike[str] | None = None,
    headers: Sequence[str] = (),
    extra: Sequence[str] = (),
) -> list[str]:
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--latency"]
    for h in headers:
        cmd += ["-H", h]
    cmd += list(extra)
    if script is not None:
        cmd += ["-s", os.fspath(script)]
    return [*cmd, url]


# --------------------------------------------------------------------------- /proc

_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the ``comm`` (which may contain spaces)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            raw = fh.read().decode("ascii", "replace")
    except OSError:
        return None
    return raw[raw.rfind(")") + 2 :].split()


def proc_tree(root: int) -> list[int]:
    """root and all its descendants, found through the ppid field of /proc/*/stat."""
    children: dict[int, list[int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return [root]
    for name in entries:
        if not name.isdigit():
            continue
        f = _stat_fields(int(name))
        if f is not None:
            children.setdefault(int(f[1]), []).append(int(name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, ()))
    return out


def start_time(pid: int) -> int | None:
    """Process start time in clock ticks since boot (identifies a pid against reuse)."""
    f = _stat_fields(pid)
    return int(f[19]) if f else None


def cpu_seconds(pids: Iterable[int]) -> float:
    """utime+stime (+cutime+cstime: reaped children) summed over pids, in seconds.

    /proc/PID/stat already sums all threads of a process (/proc/PID/task/*), live and
    exited, so threads need no separate walk; cutime/cstime keep the time of a child
    that exits mid-measurement in the total.
    """
    ticks = 0
    for pid in pids:
        f = _stat_fields(pid)
        if f is not None:
            ticks += int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])
    return ticks / _CLK_TCK


def machine_busy_seconds(cpu: int | None = None) -> float:
    """CPU seconds spent not idle since boot, by all CPUs or by CPU cpu (/proc/stat;
    steal counts as busy)."""
    want = "cpu" if cpu is None else f"cpu{cpu}"
    try:
        with open("/proc/stat", encoding="ascii") as fh:
            for line in fh:
                f = line.split()
                if f and f[0] == want:
                    # cpuN user nice system idle iowait irq softirq steal guest guest_nice
                    return sum(int(x) for x in (f[1:4] + f[6:9])) / _CLK_TCK
    except (OSError, ValueError):
        pass
    return 0.0


def _status_kib(pid: int, key: str) -> int:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith(key):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def rss_kib(pids: Iterable[int]) -> int:
    """Sum of VmRSS over pids (shared pages are counted once per process)."""
    return sum(_status_kib(pid, "VmRSS:") for pid in pids)


def hwm_kib(pids: Iterable[int]) -> int:
    """Sum of VmHWM (each process's own RSS peak) over pids."""
    return sum(_status_kib(pid, "VmHWM:") for pid in pids)


# --------------------------------------------------------------------------- processes


def port_open(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.settimeout(1.0)
        try:
            s.connect((host, port))
        except OSError:
            return False
        return True


def wait_port(
    host: str,
    port: int,
    *,
    up: bool = True,
    timeout: float = 30.0,
    proc: subprocess.Popen[Any] | None = None,
    interval: float = 0.02,
) -> None:
    """Wait until host:port accepts connections (up) or refuses them (not up).

    Raises RuntimeError if proc exits first, TimeoutError after timeout seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        if port_open(host, port) == up:
            return
        if up and proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with status {proc.returncode} before listening")
        if time.monotonic() > deadline:
            state = "accept" if up else "stop accepting"
            raise TimeoutError(f"{host}:{port} did not {state} connections in {timeout:g}s")
        time.sleep(interval)


def stop_process(proc: subprocess.Popen[Any], timeout: float = 15.0) -> None:
    """SIGTERM proc (graceful), wait; on timeout SIGKILL it and its descendants.

    Descendants are identified by (pid, start time) taken before the signal, so a
    recycled pid is never hit.
    """
    if proc.poll() is not None:
        return
    family = [(pid, start_time(pid)) for pid in proc_tree(proc.pid)]
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait(5)
    deadline = time.monotonic() + timeout
    for pid, st in family[1:]:  # children left behind (normally none)
        while st is not None and start_time(pid) == st:
            if time.monotonic() > deadline:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
                break
            time.sleep(0.05)


# --------------------------------------------------------------------------- TOML

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _toml_key(key: str) -> str:
    return key if _BARE_KEY.match(key) else _toml_str(key)


def _toml_str(s: str) -> str:
    out = ['"']
    for ch in s:
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch in "\b\t\n\f\r":
            out.append({"\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return _toml_str(v)
    if isinstance(v, _dt.datetime | _dt.date | _dt.time):
        return v.isoformat()
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, Mapping):
        inner = ", ".join(f"{_toml_key(str(k))} = {_toml_value(x)}" for k, x in v.items())
        return "{ " + inner + " }" if inner else "{}"
    raise TypeError(f"cannot write {type(v).__name__} as TOML")


def _is_aot(v: Any) -> bool:
    return isinstance(v, list | tuple) and bool(v) and all(isinstance(x, Mapping) for x in v)


def _emit_table(path: list[str], table: Mapping[str, Any], out: list[str], aot: bool) -> None:
    scalars = [(k, v) for k, v in table.items() if not isinstance(v, Mapping) and not _is_aot(v)]
    tables = [(k, v) for k, v in table.items() if isinstance(v, Mapping)]
    aots = [(k, v) for k, v in table.items() if _is_aot(v)]
    if path and (aot or scalars or not (tables or aots)):
        name = ".".join(_toml_key(p) for p in path)
        if out:
            out.append("")
        out.append(f"[[{name}]]" if aot else f"[{name}]")
    for k, v in scalars:
        out.append(f"{_toml_key(k)} = {_toml_value(v)}")
    for k, v in tables:
        _emit_table([*path, k], v, out, aot=False)
    for k, v in aots:
        for item in v:
            _emit_table([*path, k], item, out, aot=True)


def dumps_toml(data: Mapping[str, Any]) -> str:
    """A small TOML writer for what tomllib returns (tables, arrays, scalars, dates)."""
    out: list[str] = []
    _emit_table([], data, out, aot=False)
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------- config


def parse_listen(text: str) -> tuple[str, int]:
    """ "host:port", "[v6]:port" or ":port" -> (host to connect to, port).

    Wildcard hosts become the loopback address of the same family.
    """
    text = text.strip()
    if text.startswith("["):
        host, _, port = text[1:].partition("]:")
    else:
        host, sep, port = text.rpartition(":")
        if not sep:
            raise ValueError(f"listen address {text!r} has no ':port'")
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return host, int(port)


def listen_addresses(config: Mapping[str, Any]) -> list[tuple[str, int]]:
    listen = config.get("server", {}).get("listen", ["127.0.0.1:8080"])
    if isinstance(listen, str):
        listen = [listen]
    out = []
    for item in listen:
        if isinstance(item, Mapping):  # tolerate a future { address = "..." } form
            item = item.get("address", item.get("listen", ""))
        out.append(parse_listen(str(item)))
    if not out:
        raise ValueError("server.listen is empty")
    return out


_RE_TABLE_HEADER = re.compile(r"^\s*\[")
_RE_SERVER_HEADER = re.compile(r"""^\s*\[\s*(server|"server"|'server')\s*\]\s*(#.*)?$""")
_RE_WORKERS = re.compile(
    r"""^(?P<lead>\s*(?:workers|"workers"|'workers')\s*=\s*)"""
    r"""(?P<value>"[^"]*"|'[^']*'|[^\s#]+)(?P<tail>.*)$"""
)
_RE_DOTTED_WORKERS = re.compile(
    r"""^(?P<lead>\s*(?:server|"server")\s*\.\s*(?:workers|"workers")\s*=\s*)"""
    r"""(?P<value>"[^"]*"|'[^']*'|[^\s#]+)(?P<tail>.*)$"""
)


def set_workers(text: str, workers: int | str) -> str:
    """Return TOML text with ``server.workers`` set to workers, everything else kept.

    Replaces the value of the ``workers = ...`` line in the ``[server]`` section
    (keeping its indentation and trailing comment), or a top-level
    ``server.workers = ...``; otherwise inserts ``workers = N`` right after the
    ``[server]`` header, or appends a ``[server]`` section.  The result is checked
    with tomllib; ValueError if the input is not valid TOML or the edit fails.
    """
    tomllib.loads(text)  # refuse to edit what is not TOML
    value = _toml_value(workers)
    nl = "\r\n" if "\r\n" in text else "\n"
    lines = text.splitlines(keepends=True)

    def body(line: str) -> tuple[str, str]:
        stripped = line.rstrip("\r\n")
        return stripped, line[len(stripped) :]

    new: str | None = None
    section: str | None = ""  # "" = top level, "server" = [server], None = elsewhere
    insert_at: int | None = None
    for i, line in enumerate(lines):
        content, end = body(line)
        if _RE_TABLE_HEADER.match(content):
            if _RE_SERVER_HEADER.match(content):
                section, insert_at = "server", i + 1
            else:
                section = None
            continue
        regex = _RE_DOTTED_WORKERS if section == "" else _RE_WORKERS if section else None
        m = regex.match(content) if regex is not None else None
        if m:
            lines[i] = f"{m['lead']}{value}{m['tail']}{end}"
            new = "".join(lines)
            break
    if new is None:
        if insert_at is not None:
            if insert_at > 0 and not lines[insert_at - 1].endswith(("\n", "\r")):
                lines[insert_at - 1] += nl
            lines.insert(insert_at, f"workers = {value}{nl}")
            new = "".join(lines)
        else:
            sep = "" if not text or text.endswith(("\n", "\r")) else nl
            blank = nl if text.strip() else ""
            new = f"{text}{sep}{blank}[server]{nl}workers = {value}{nl}"
    try:
        check = tomllib.loads(new)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"could not set workers: the edit broke the file ({exc})") from None
    if check.get("server", {}).get("workers") != workers:
        raise ValueError("could not set workers: [server] workers is defined in a way not handled")
    return new


def write_workers(path: str | os.PathLike[str], workers: int | str) -> None:
    """set_workers() on a file, replaced atomically, permissions kept."""
    p = Path(path)
    with open(p, encoding="utf-8", newline="") as fh:
        text = fh.read()
    new = set_workers(text, workers)
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(new)
        with contextlib.suppress(OSError):
            os.chmod(tmp, p.stat().st_mode & 0o7777)
        os.replace(tmp, p)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


# --------------------------------------------------------------------------- recommendation


@dataclass(frozen=True, slots=True)
class TunePoint:
    workers: int
    rps: float
    p99_us: float
    cpu_pct: float = 0.0
    requests: int = 0
    errors: int = 0
    processes: int = 0  # size of the fastproxy process tree during the run
    failed: str | None = None  # why the run produced no usable number

    @property
    def usable(self) -> bool:
        if self.failed is not None or self.rps <= 0 or not math.isfinite(self.p99_us):
            return False
        return self.errors <= 0.01 * max(self.requests, 1)


def recommend(
    points: Sequence[TunePoint], rps_tolerance: float = 0.03, p99_factor: float = 1.2
) -> int | None:
    """The smallest worker count with req/s >= (1 - rps_tolerance) x best req/s and
    p99 <= p99_factor x best (lowest) p99.  Unusable points (failed, > 1 % errors) are
    ignored; if no point meets both conditions the one with the most req/s wins;
    None if nothing is usable."""
    ok = [p for p in points if p.usable]
    if not ok:
        return None
    best_rps = max(p.rps for p in ok)
    best_p99 = min(p.p99_us for p in ok)
    for p in sorted(ok, key=lambda p: p.workers):
        if p.rps >= (1.0 - rps_tolerance) * best_rps and p.p99_us <= p99_factor * best_p99:
            return p.workers
    return max(ok, key=lambda p: (p.rps, -p.workers)).workers


def format_table(points: Sequence[TunePoint], chosen: int | None = None) -> str:
    rows = [
        f"{'workers':>7}  {'req/s':>10}  {'p99 ms':>8}  {'CPU %':>6}  {'errors':>7}  {'procs':>5}"
    ]
    for p in points:
        mark = "  <- recommended" if p.workers == chosen else ""
        if p.failed is not None:
            rows.append(f"{p.workers:>7}  failed: {p.failed}")
            continue
        rows.append(
            f"{p.workers:>7}  {p.rps:>10.0f}  {p.p99_us / 1000:>8.2f}  {p.cpu_pct:>6.0f}"
            f"  {p.errors:>7}  {p.processes:>5}{mark}"
        )
    return "\n".join(rows)


# --------------------------------------------------------------------------- the run


def _cpus() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - non-Linux
        return os.cpu_count() or 1


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="fastproxy tune",
        description=(
            "Run fastproxy with the config at workers = 1..N, load it with wrk and "
            "recommend a worker count. The config's upstreams must be running."
        ),
    )
    ap.add_argument("-c", "--config", required=True, metavar="FILE", help="fastproxy TOML")
    ap.add_argument(
        "--max-workers",
        type=int,
        default=2 * _cpus(),
        metavar="N",
        help="try workers = 1..N (default: 2 x CPUs = %(default)s)",
    )
    ap.add_argument(
        "--duration",
        type=int,
        default=10,
        metavar="S",
        help="seconds per measured run (default 10)",
    )
    ap.add_argument(
        "--warmup",
        type=int,
        default=2,
        metavar="S",
        help="seconds of warm-up per count (default 2)",
    )
    ap.add_argument("--url", default="/", metavar="PATH", help="request path to load (default: /)")
    ap.add_argument(
        "-H",
        "--header",
        action="append",
        default=[],
        metavar="'Name: value'",
        help="extra request header for wrk (repeatable), e.g. 'Host: example.com'",
    )
    ap.add_argument("-t", "--threads", type=int, default=1, help="wrk threads (default 1)")
    ap.add_argument("--connections", type=int, default=50, help="wrk connections (default 50)")
    ap.add_argument(
        "--write",
        metavar="FILE",
        help="set 'workers = <recommended>' in FILE's [server] section in place",
    )
    ap.add_argument("--json", metavar="FILE", help="also write the measurements as JSON")
    # Testing aid: command template replacing `python3 -m fastproxy run -c {config}`.
    ap.add_argument("--fastproxy-cmd", help=argparse.SUPPRESS)
    return ap


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


@contextlib.contextmanager
def _running(cmd: list[str], log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=log,
            start_new_session=True,  # Ctrl-C reaches only us; we stop it ourselves
        )
    try:
        yield proc
    finally:
        stop_process(proc)


def _run_wrk(cmd: list[str], timeout: float) -> WrkResult:
    try:
        r = subprocess.run(
            cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"wrk did not finish within {timeout:.0f}s") from None
    if r.returncode != 0:
        raise RuntimeError(f"wrk failed ({r.returncode}): {r.stderr.strip() or r.stdout.strip()}")
    return parse_wrk_output(r.stdout)


def _preflight(host: str, port: int, path: str, headers: Sequence[str]) -> int:
    import http.client

    conn = http.client.HTTPConnection(host, port, timeout=10)
    try:
        hdrs = dict(h.split(":", 1) for h in headers if ":" in h)
        conn.request("GET", path, headers={k.strip(): v.strip() for k, v in hdrs.items()})
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


def _measure(
    args: argparse.Namespace,
    workers: int,
    base: dict[str, Any],
    tmp: Path,
    addrs: list[tuple[str, int]],
    script: Path,
) -> TunePoint:
    host, port = addrs[0]
    cfg = _deep_copy(base)
    server = cfg.setdefault("server", {})
    server["workers"] = workers
    server["pid_file"] = str(tmp / "fastproxy.pid")
    cfg_path = tmp / f"workers-{workers}.toml"
    cfg_path.write_text(dumps_toml(cfg), encoding="utf-8")
    if args.fastproxy_cmd:
        cmd = [a.replace("{config}", str(cfg_path)) for a in shlex.split(args.fastproxy_cmd)]
    else:
        cmd = [sys.executable, "-m", "fastproxy", "run", "-c", str(cfg_path)]
    log_path = tmp / f"workers-{workers}.log"
    url_host = f"[{host}]" if ":" in host else host
    url = f"http://{url_host}:{port}{args.url}"
    try:
        with _running(cmd, log_path) as proc:
            try:
                wait_port(host, port, up=True, timeout=30, proc=proc)
            except (RuntimeError, TimeoutError) as exc:
                raise RuntimeError(f"{exc}\n--- fastproxy stderr ---\n{_tail(log_path)}") from None
            status = _preflight(host, port, args.url, args.header)
            if status >= 500:
                raise RuntimeError(
                    f"GET {args.url} through fastproxy answered {status}: "
                    "are the config's upstreams running?"
                )
            if status >= 400:
                _log(f"warning: GET {args.url} answered {status}; wrk counts these as errors")
            common = dict(threads=args.threads, connections=args.connections, script=script)
            if args.warmup > 0:
                _run_wrk(
                    wrk_command(url, duration=args.warmup, headers=args.header, **common),
                    timeout=args.warmup + 30,
                )
            pids = proc_tree(proc.pid)
            cpu0, t0 = cpu_seconds(pids), time.monotonic()
            res = _run_wrk(
                wrk_command(url, duration=args.duration, headers=args.header, **common),
                timeout=args.duration + 30,
            )
            wall = time.monotonic() - t0
            pids_end = proc_tree(proc.pid)
            cpu = cpu_seconds(set(pids) | set(pids_end)) - cpu0
            if proc.poll() is not None:
                raise RuntimeError(f"fastproxy exited ({proc.returncode}) during the run")
        wait_port(host, port, up=False, timeout=30)
    except (RuntimeError, TimeoutError, OSError, ValueError) as exc:
        return TunePoint(workers, 0.0, math.inf, failed=str(exc).strip())
    return TunePoint(
        workers=workers,
        rps=res.rps,
        p99_us=res.p99_us if res.p99_us is not None else math.inf,
        cpu_pct=100.0 * cpu / wall if wall > 0 else 0.0,
        requests=res.requests,
        errors=res.errors,
        processes=len(pids_end),
    )


def _deep_copy(v: Any) -> Any:
    if isinstance(v, Mapping):
        return {k: _deep_copy(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_deep_copy(x) for x in v]
    return v


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if shutil.which("wrk") is None:
        print(APT_HINT)
        return 2
    for name in ("max_workers", "duration", "threads", "connections"):
        if getattr(args, name) < 1:
            _log(f"fastproxy tune: --{name.replace('_', '-')} must be >= 1")
            return 2
    if not args.url.startswith("/"):
        _log("fastproxy tune: --url must be a path starting with '/'")
        return 2
    try:
        with open(args.config, "rb") as fh:
            base = tomllib.load(fh)
        addrs = listen_addresses(base)
    except (OSError, tomllib.TOMLDecodeError, ValueError) as exc:
        _log(f"fastproxy tune: {args.config}: {exc}")
        return 2
    busy = [addrs[i] for i in range(len(addrs)) if port_open(*addrs[i])]
    admin = base.get("admin", {}).get("listen") if isinstance(base.get("admin"), dict) else None
    if isinstance(admin, str):
        with contextlib.suppress(ValueError):
            a = parse_listen(admin)
            if port_open(*a):
                busy.append(a)
    if busy:
        where = ", ".join(f"{h}:{p}" for h, p in busy)
        _log(f"fastproxy tune: {where} already accepts connections; stop what listens there")
        return 1
    host, port = addrs[0]
    _log(
        f"fastproxy tune: workers 1..{args.max_workers}, {args.duration}s each "
        f"(+{args.warmup}s warm-up), wrk -t{args.threads} -c{args.connections} "
        f"http://{host}:{port}{args.url}"
    )
    points: list[TunePoint] = []

    def _on_sigterm(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    old_handler = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        with tempfile.TemporaryDirectory(prefix="fastproxy-tune-") as tmpdir:
            tmp = Path(tmpdir)
            script = tmp / "report.lua"
            script.write_text(WRK_REPORT_LUA, encoding="utf-8")
            for w in range(1, args.max_workers + 1):
                _log(f"[tune] workers={w}/{args.max_workers} ...")
                p = _measure(args, w, base, tmp, addrs, script)
                points.append(p)
                _log("[tune] " + format_table([p]).splitlines()[1].strip())
                if p.failed is not None and w == 1:
                    _log("fastproxy tune: the first run failed; not trying more workers")
                    break
    except KeyboardInterrupt:
        # _running() has stopped fastproxy; subprocess.run() has killed wrk
        _log("fastproxy tune: interrupted")
        if points:
            print(format_table(points))
        return 130
    finally:
        signal.signal(signal.SIGTERM, old_handler)
    chosen = recommend(points)
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "config": args.config,
                    "url": args.url,
                    "duration_s": args.duration,
                    "points": [
                        {
                            "workers": p.workers,
                            "rps": p.rps,
                            "p99_us": p.p99_us if math.isfinite(p.p99_us) else None,
                            "cpu_pct": p.cpu_pct,
                            "requests": p.requests,
                            "errors": p.errors,
                            "processes": p.processes,
                            "failed": p.failed,
                        }
                        for p in points
                    ],
                    "recommended": chosen,
                },
                indent=2,
            )
            + "\n",
            encoding="utf-8",
        )
    if chosen is None:
        print("no usable measurement; nothing recommended")
        return 1
    print(format_table(points, chosen))
    print(
        f"\nrecommended: workers = {chosen}  (smallest count within 3% of the best req/s "
        "with p99 <= 1.2x the best p99)"
    )
    if args.write:
        try:
            write_workers(args.write, chosen)
        except (OSError, ValueError) as exc:
            _log(f"fastproxy tune: --write {args.write}: {exc}")
            return 1
        print(f"wrote workers = {chosen} to {args.write}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
