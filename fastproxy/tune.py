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

The pure helpers it uses live in fastproxy.wrk (wrk command and output),
fastproxy.procinfo (/proc accounting) and fastproxy.toml_edit (TOML emitter, the
``workers`` rewrite); bench/vs_nginx.py uses them too.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastproxy.procinfo import (
    cpu_seconds,
    port_open,
    proc_tree,
    stop_process,
    wait_port,
)
from fastproxy.toml_edit import (
    dumps_toml,
    listen_addresses,
    parse_listen,
    set_workers,
    write_workers,
)
from fastproxy.wrk import APT_HINT, WRK_REPORT_LUA, WrkResult, parse_wrk_output, wrk_command

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
                if p.failed is not None and "\n" in p.failed:  # the row shows line 1;
                    _log(p.failed.split("\n", 1)[1])  # fastproxy's stderr says why
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
