"""wrk, the HTTP load generator: its command line, and its output parsed.

Shared by ``fastproxy tune`` and bench/vs_nginx.py.  WRK_REPORT_LUA is the
one copy of the Lua summary script both append to every run.  Standard
library only.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

APT_HINT = "apt-get install -y wrk"

# The one copy (fastproxy tune and bench/vs_nginx.py both use it).  wrk's done()
# prints one machine-readable line with the totals and the latency percentiles in us.
WRK_REPORT_LUA = r"""-- Machine-readable wrk summary, appended to every scenario script by
-- bench/vs_nginx.py and by fastproxy tune (both take it from fastproxy/wrk.py).
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
