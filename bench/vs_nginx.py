#!/usr/bin/env python3
"""End-to-end benchmark: fastproxy vs nginx as a reverse proxy, on loopback.

    python3 bench/vs_nginx.py [--quick] [--scenarios a,b] [--rounds N] [--duration S]
                              [--threads T] [--connections C] [--out DIR]

What runs (all on 127.0.0.1, every process started here is stopped here, by pid):

* origin  - an nginx serving fixed bodies /100b, /16k, /1m (files generated into a temp
            dir) and answering POST /post with 200 "ok"; access_log off,
            keepalive_requests 1000000 (never the limiting side of a connection).
* nginx   - an nginx reverse proxy configured like the fastproxy config below; every
            directive and why it is there is commented in nginx_proxy_conf().
* fastproxy - ``python3 -m fastproxy run -c FILE`` with the config of fastproxy_config().
* wrk     - ``wrk -t1 -c50 -dS --latency -s <scenario lua + the report script>``.

For each scenario and each worker count (1 and N = CPUs available), both proxies are
started fresh, checked with one request each (status and body length), warmed up, then
measured in interleaved rounds: fastproxy, nginx, fastproxy, nginx, ...  Each round is
one wrk run of --duration seconds.  Per round: requests/s, latency p50/p99/p99.9 (wrk's
own histogram, printed by the Lua done() hook), errors (status > 399 and socket
errors), CPU seconds of the proxy's whole process tree (utime+stime from /proc, master
and workers), and its peak RSS (sum of VmRSS over the tree, sampled every 0.2 s).

Cores (see bench/README.md): workers=1 pins the proxy to CPU 1 and wrk + origin (and
this script) to CPU 0, so each proxy gets one whole, identical core and the load side
is the same for both; workers=N leaves everything unpinned, as a default deployment.

Results: results.json, results.md and results.png (matplotlib, if installed) in --out
(default bench/results/).  Exit status: 0 all scenarios measured, 1 some failed,
2 wrk/nginx missing or bad arguments, 130 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import resource
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
WRK_DIR = HERE / "wrk"
INSTALL_HINT = "apt-get install -y wrk nginx"


sys.path.insert(0, str(HERE))
import bench_tls  # noqa: E402  (bench/bench_tls.py, beside this script)
import vs_nginx_procs  # noqa: E402  (main() sets its NGINX)

# beside this script: starting, checking and stopping the processes of a run
from vs_nginx_procs import (  # noqa: E402
    _STARTED,
    PREFLIGHT_CA,
    Proxy,
    ScenarioError,
    _load,
    _sigterm,
    _tail,  # noqa: F401  (re-exported: uvloop_floor.py reads it here)
    cleanup,
    free_port,
    nginx_cmd,
    origin_check,
    pinned,
    preflight,
    procinfo,
    start,
    start_and_wait,
    stop,
)

# beside this script: the reports (vs_nginx_report.py) and the scenarios with the
# origin/nginx/fastproxy configs for each (vs_nginx_scenarios.py)
from vs_nginx_report import (  # noqa: E402
    column_label,  # noqa: F401  (re-exported: the harness tests read it here)
    cpu_model,
    first_line,
    print_summary,
    results_markdown,
    summarize,
    write_chart,
)
from vs_nginx_scenarios import (  # noqa: E402
    JSON_FILES,
    ORIGIN_FILES,
    SCENARIOS,
    Scenario,
    fastproxy_config,
    json_body,
    nginx_proxy_conf,
    origin_conf,
    scheme,
)

# fastproxy/wrk.py and toml_edit.py, loaded by path as procinfo is (vs_nginx_procs._load)
_wrk = _load("wrk")
WRK_REPORT_LUA, parse_wrk_output, wrk_command = (
    _wrk.WRK_REPORT_LUA,
    _wrk.parse_wrk_output,
    _wrk.wrk_command,
)
dumps_toml = _load("toml_edit").dumps_toml


# --------------------------------------------------------------------------- progress


class Progress:
    def __init__(self, total: int) -> None:
        self.total = total
        self.t0 = time.monotonic()
        self.tty = sys.stderr.isatty()
        self.label = ""

    def elapsed(self) -> str:
        s = int(time.monotonic() - self.t0)
        return (
            f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"
            if s >= 3600
            else (f"{s // 60:02d}:{s % 60:02d}")
        )

    def set(self, label: str) -> None:
        self.label = label
        if self.tty:
            self.tick()
        else:
            print(f"{label}  elapsed {self.elapsed()}", file=sys.stderr, flush=True)

    def tick(self) -> None:
        if self.tty:
            sys.stderr.write(f"\r\x1b[K{self.label}  elapsed {self.elapsed()}")
            sys.stderr.flush()

    def note(self, msg: str) -> None:
        if self.tty:
            sys.stderr.write("\r\x1b[K")
        print(msg, file=sys.stderr, flush=True)
        if self.tty and self.label:
            self.tick()

    def done(self) -> None:
        if self.tty:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()


# --------------------------------------------------------------------------- measuring


@dataclass
class Load:
    """How wrk is run (identical for both proxies)."""

    threads: int
    connections: int
    cpu: int | None  # CPU for wrk, None = unpinned
    scripts: Path  # dir with the combined Lua scripts
    proxy_cpu: int | None = None  # the proxy's CPU when pinned


def wrk_script(s: Scenario, into: Path) -> Path:
    """The scenario's Lua (if any) followed by the report script
    (fastproxy.wrk.WRK_REPORT_LUA); wrk takes one -s file."""
    path = into / f"{s.name}.lua"
    parts = [(WRK_DIR / s.lua).read_text()] if s.lua else []
    parts.append(WRK_REPORT_LUA)
    path.write_text("\n".join(parts))
    return path


def run_wrk(
    p: Proxy,
    s: Scenario,
    load: Load,
    duration: int,
    tick: Callable[[], None] = lambda: None,
    origin: subprocess.Popen[Any] | None = None,
) -> dict[str, Any]:
    """One wrk run against p; returns the round's measurements."""
    cmd = pinned(
        wrk_command(
            f"{scheme(s)}://127.0.0.1:{p.port}{s.path}",
            duration=duration,
            threads=load.threads,
            connections=load.connections,
            script=load.scripts / f"{s.name}.lua",
            headers=s.wrk_headers,
        ),
        load.cpu,
    )
    pids0 = pids = procinfo.proc_tree(p.proc.pid)
    origin_pids = procinfo.proc_tree(origin.pid) if origin else []
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    self0 = resource.getrusage(resource.RUSAGE_SELF)
    busy0 = procinfo.machine_busy_seconds()
    core0 = procinfo.machine_busy_seconds(load.proxy_cpu) if load.proxy_cpu is not None else 0.0
    cpu0 = procinfo.cpu_seconds(pids)
    ocpu0 = procinfo.cpu_seconds(origin_pids)
    peak_kib = procinfo.rss_kib(pids)
    t0 = time.monotonic()
    wrk = subprocess.Popen(
        cmd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    _STARTED.append(wrk)
    n = 0
    try:
        while True:
            try:
                out, err = wrk.communicate(timeout=0.2)
                break
            except subprocess.TimeoutExpired:
                pass
            n += 1
            if n % 5 == 0:  # workers may come and go: re-walk the tree every second
                pids = procinfo.proc_tree(p.proc.pid)
                tick()
            peak_kib = max(peak_kib, procinfo.rss_kib(pids))
            if time.monotonic() - t0 > duration + 30:
                wrk.kill()
                wrk.communicate()
                raise ScenarioError(f"wrk against {p.name} did not finish in {duration + 30}s")
    finally:
        if wrk.poll() is None:  # interrupted: do not leave it running
            wrk.kill()
            wrk.communicate()
        with contextlib.suppress(ValueError):
            _STARTED.remove(wrk)
    wall = time.monotonic() - t0
    pids_end = procinfo.proc_tree(p.proc.pid)
    cpu = procinfo.cpu_seconds(set(pids0) | set(pids_end)) - cpu0  # + workers started meanwhile
    ocpu = procinfo.cpu_seconds(origin_pids) - ocpu0
    busy = procinfo.machine_busy_seconds() - busy0
    core = (
        procinfo.machine_busy_seconds(load.proxy_cpu) - core0 if load.proxy_cpu is not None else 0
    )
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    self1 = resource.getrusage(resource.RUSAGE_SELF)
    wrk_cpu = (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime)
    self_cpu = (self1.ru_utime + self1.ru_stime) - (self0.ru_utime + self0.ru_stime)
    # Whatever else ran on the machine meanwhile (other programs, hypervisor steal):
    # the noise indicator.  The idle other proxy is in here too (normally ~0).
    other = max(0.0, busy - cpu - ocpu - wrk_cpu - self_cpu)
    hwm_kib = procinfo.hwm_kib(pids_end)
    if p.proc.poll() is not None:
        raise ScenarioError(f"{p.name} exited ({p.proc.returncode}) during the run\n{_tail(p.log)}")
    if wrk.returncode != 0:
        raise ScenarioError(f"wrk against {p.name} failed: {(err or out).strip()}")
    try:
        res = parse_wrk_output(out)
    except ValueError as exc:
        raise ScenarioError(f"wrk against {p.name}: {exc}: {out!r}") from None
    reqs = max(res.requests, 1)
    return {
        **res.to_dict(),
        "errors": res.errors,
        "cpu_s": round(cpu, 3),
        "cpu_s_per_1k": cpu / reqs * 1000,
        "cpu_pct": 100 * cpu / wall,
        "peak_rss_mib": peak_kib / 1024,
        "hwm_sum_mib": hwm_kib / 1024,
        "processes": len(pids_end),
        "origin_cpu_pct": 100 * ocpu / wall,
        "wrk_cpu_pct": 100 * wrk_cpu / wall,
        "harness_cpu_pct": 100 * self_cpu / wall,
        "other_cpu_pct": 100 * other / wall,
        # pinned runs: what else ran on the proxy's own core (other programs, steal)
        "proxy_core_other_pct": (
            100 * max(0.0, core - cpu) / wall if load.proxy_cpu is not None else None
        ),
        "wall_s": wall,
    }


# --------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="bench/vs_nginx.py",
        description="End-to-end benchmark of fastproxy against nginx (see bench/README.md).",
    )
    ap.add_argument("--quick", action="store_true", help="3 s rounds, 2 rounds per proxy")
    ap.add_argument(
        "--scenarios",
        help=f"comma-separated subset of: {', '.join(SCENARIOS)} (default: all; with"
        " --floor: those it fits)",
    )
    ap.add_argument("--rounds", type=int, help="rounds per proxy (default 3, --quick 2)")
    ap.add_argument("--duration", type=int, help="seconds per round (default 10, --quick 3)")
    ap.add_argument("--warmup", type=int, help="warm-up seconds per proxy (default 2, quick 1)")
    ap.add_argument("-t", "--threads", type=int, default=1, help="wrk -t (default 1)")
    ap.add_argument("-c", "--connections", type=int, default=50, help="wrk -c (default 50)")
    ap.add_argument(
        "--workers",
        help="comma-separated worker counts (default: 1,N with N = CPUs available)",
    )
    ap.add_argument("--out", default=str(HERE / "results"), help="output dir (bench/results)")
    # Harness validation / development: the command that runs "fastproxy"; {config} is
    # the TOML path, {port} the port to listen on, {size} the scenario's body size.
    # The value "nginx" stands in a second nginx proxy configured like the nginx one,
    # to prove the harness before fastproxy runs.
    ap.add_argument("--fastproxy-cmd", help=argparse.SUPPRESS)
    ap.add_argument(
        "--floor",
        action="store_true",
        help="run the C floor (bench/c/epoll_floor.c, built with gcc) in fastproxy's place:"
        " what nginx costs against the least any server spends (1 worker, GET scenarios)",
    )
    ap.add_argument("--keep-tmp", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument(
        "--replot",
        metavar="DIR",
        help="only re-render DIR/results.md and DIR/results.png from DIR/results.json",
    )
    args = ap.parse_args(argv)
    args.rounds = args.rounds or (2 if args.quick else 3)
    args.duration = args.duration or (3 if args.quick else 10)
    args.warmup = args.warmup if args.warmup is not None else (1 if args.quick else 2)
    if args.floor and args.workers is None:
        args.workers = "1"
    if args.scenarios is None:
        args.scenarios = ",".join(
            n for n, s in SCENARIOS.items() if not args.floor or floor_fits(s)
        )
    names = [n.strip() for n in args.scenarios.split(",") if n.strip()]
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown or not names:
        ap.error(f"unknown scenario(s) {unknown}; known: {', '.join(SCENARIOS)}")
    args.scenario_list = [SCENARIOS[n] for n in names]
    try:
        args.worker_counts = sorted({int(w) for w in (args.workers or "").split(",") if w})
    except ValueError:
        ap.error("--workers takes comma-separated integers, e.g. 1,2")
    if any(w < 1 for w in args.worker_counts):
        ap.error("--workers must be >= 1")
    if min(args.rounds, args.duration, args.threads, args.connections) < 1 or args.warmup < 0:
        ap.error("--rounds, --duration, --threads, --connections must be >= 1")
    if args.floor:
        if args.fastproxy_cmd:
            ap.error("--floor and --fastproxy-cmd both name what runs in fastproxy's place")
        if args.worker_counts != [1]:
            ap.error("--floor is one process: it takes --workers 1")
        unfit = [s.name for s in args.scenario_list if not floor_fits(s)]
        if unfit:
            ap.error(f"--floor answers plain keep-alive GETs of up to 16 KiB, not {unfit}")
    return args


def floor_fits(s: Scenario) -> bool:
    """The floor answers every read with one fixed response, in one call that must
    fit the socket: plain keep-alive GETs with a known body of up to 16 KiB."""
    return (
        s.method == "GET"
        and not s.body_len
        and not s.wrk_headers
        and s.lua is None
        and not s.tls
        and s.identity_len is None
        and not s.fastproxy_only
        and s.expect_status == 200
        and s.expect_len is not None
        and s.expect_len <= 16 << 10
    )


FLOOR_CMD = "epoll_floor {port} {size}"  # built from bench/c/epoll_floor.c per run


def build_floor(into: Path) -> str:
    """bench/c/epoll_floor.c built into `into`: the --fastproxy-cmd of a floor run."""
    binary = into / "epoll_floor"
    subprocess.run(["gcc", "-O2", "-o", str(binary), str(HERE / "c" / "epoll_floor.c")], check=True)
    return f"{binary} {FLOOR_CMD.split(' ', 1)[1]}"


@contextlib.contextmanager
def affinity(cpus: set[int] | None) -> Iterator[None]:
    """Run this script (and so the wrk it starts) on cpus for the block."""
    old = os.sched_getaffinity(0)
    if cpus:
        os.sched_setaffinity(0, cpus)
    try:
        yield
    finally:
        os.sched_setaffinity(0, old)


def write_reports(res: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(res, indent=2) + "\n")
    (out / "results.md").write_text(results_markdown(res))
    chart = write_chart(res, out / "results.png")
    print_summary(res)
    print(
        f"wrote {out / 'results.json'}, {out / 'results.md'}"
        + (f", {out / 'results.png'}" if chart else "")
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.replot:
        out = Path(args.replot)
        write_reports(json.loads((out / "results.json").read_text()), out)
        return 0
    nginx_bin = shutil.which("nginx", path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")
    if shutil.which("wrk") is None or nginx_bin is None:
        print(INSTALL_HINT)
        return 2
    if args.floor and shutil.which("gcc") is None:
        print("--floor builds bench/c/epoll_floor.c: apt-get install -y gcc")
        return 2
    vs_nginx_procs.NGINX = nginx_bin
    cpus = sorted(os.sched_getaffinity(0))
    n_cpus = len(cpus)
    worker_counts = args.worker_counts or sorted({1, n_cpus})
    can_pin = n_cpus >= 2 and shutil.which("taskset") is not None
    load_cpu, proxy_cpu = (cpus[0], cpus[1]) if can_pin else (None, None)
    standin = args.fastproxy_cmd is not None and args.fastproxy_cmd.strip() == "nginx"

    signal.signal(signal.SIGTERM, _sigterm)
    out = Path(args.out)
    started = dt.datetime.now().astimezone()
    if args.floor:
        fp_version = "(C floor: bench/c/epoll_floor.c)"
    elif standin:
        fp_version = "(nginx stand-in)"
    elif args.fastproxy_cmd:
        fp_version = "(custom command)"
    else:
        fp_version = first_line([sys.executable, "-m", "fastproxy", "--version"])
    res: dict[str, Any] = {
        "meta": {
            "date": started.isoformat(timespec="seconds"),
            "cpu_model": cpu_model(),
            "cpus": n_cpus,
            "kernel": platform.release(),
            "python": platform.python_version(),
            "nginx_version": first_line([nginx_bin, "-v"]),
            "wrk_version": first_line(["wrk", "-v"]),
            "fastproxy_version": fp_version,
            "fastproxy_cmd": FLOOR_CMD
            if args.floor
            else args.fastproxy_cmd or "python3 -m fastproxy run -c {config}",
            "standin": standin,
            "floor": args.floor,
            "command": shlex.join(["python3", "bench/vs_nginx.py", *(argv or sys.argv[1:])]),
            "threads": args.threads,
            "connections": args.connections,
            "duration": args.duration,
            "rounds": args.rounds,
            "warmup": args.warmup,
            "pinning": {"load_cpu": load_cpu, "proxy_cpu": proxy_cpu, "pinned": can_pin},
            "rss_method": "max of sum(VmRSS) over the proxy process tree, sampled every 0.2 s",
            "scenario_titles": {s.name: s.title for s in args.scenario_list},
        },
        "scenarios": [],
    }
    busy0, t0 = procinfo.machine_busy_seconds(), time.monotonic()
    time.sleep(1.0)  # a measurement window, not a wait for an event
    background = 100 * (procinfo.machine_busy_seconds() - busy0) / (time.monotonic() - t0)
    res["meta"]["background_cpu_pct_before"] = round(background, 1)
    if background > 10:
        print(
            f"warning: the machine is busy before the run ({background:.0f} % of a core used"
            " by other processes); results will be noisy",
            file=sys.stderr,
        )
    tmp = Path(tempfile.mkdtemp(prefix="fastproxy-vs-nginx-"))
    os.chmod(tmp, 0o755)  # nginx workers may run as another user
    total = len(worker_counts) * len(args.scenario_list)
    progress = Progress(total)
    failed = 0
    interrupted = False
    try:
        if args.floor:
            try:
                args.fastproxy_cmd = build_floor(tmp)
            except (OSError, subprocess.CalledProcessError) as exc:
                raise SystemExit(f"building bench/c/epoll_floor.c failed: {exc}") from None
        www = tmp / "www"
        www.mkdir()
        os.chmod(www, 0o755)
        for fname, size in ORIGIN_FILES.items():
            (www / fname).write_bytes(b"x" * size)
        (www / "json").mkdir()
        os.chmod(www / "json", 0o755)
        for fname, size in JSON_FILES.items():
            (www / "json" / fname).write_bytes(json_body(size))
        scripts = tmp / "lua"
        scripts.mkdir()
        for s in args.scenario_list:
            wrk_script(s, scripts)
        idx = 0
        for workers in worker_counts:
            pin = workers == 1 and can_pin
            load = Load(
                args.threads,
                args.connections,
                load_cpu if pin else None,
                scripts,
                proxy_cpu if pin else None,
            )
            with affinity({load_cpu} if pin and load_cpu is not None else None):
                origin_port = free_port()
                oconf = tmp / f"origin-w{workers}.conf"
                oconf.write_text(origin_conf(tmp, www, origin_port, workers, args.scenario_list))
                origin = start(
                    pinned(nginx_cmd(oconf, tmp), load.cpu), tmp / f"origin-w{workers}.log"
                )
                try:
                    procinfo.wait_port("127.0.0.1", origin_port, timeout=30, proc=origin)
                except (RuntimeError, TimeoutError) as exc:
                    raise SystemExit(
                        f"origin nginx did not start: {exc}\n{_tail(tmp / 'origin-error.log')}"
                    ) from None
                for s in args.scenario_list:
                    idx += 1
                    head = f"[scenario {idx}/{total} {s.name} w={workers}]"
                    entry = run_scenario(
                        res["scenarios"],
                        s,
                        workers,
                        pin,
                        proxy_cpu if pin else None,
                        origin,
                        origin_port,
                        load,
                        tmp,
                        args,
                        head,
                        progress,
                    )
                    if entry.get("error"):
                        failed += 1
                        progress.note(f"{head} FAILED: {entry['error']}")
                stop(origin)
    except KeyboardInterrupt:
        interrupted = True
        progress.note("interrupted; stopping everything started here")
    finally:
        progress.done()
        cleanup()
        if not args.keep_tmp:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"kept {tmp}", file=sys.stderr)
    res["meta"]["finished"] = dt.datetime.now().astimezone().isoformat(timespec="seconds")
    res["meta"]["interrupted"] = interrupted
    if res["scenarios"]:
        write_reports(res, out)
    if interrupted:
        return 130
    return 1 if failed else 0


def fill(arg: str, fields: Mapping[str, str]) -> str:
    for key, value in fields.items():
        arg = arg.replace(key, value)
    return arg


def run_scenario(
    sink: list[dict[str, Any]],
    s: Scenario,
    workers: int,
    pin: bool,
    proxy_cpu: int | None,
    origin: subprocess.Popen[Any],
    origin_port: int,
    load: Load,
    tmp: Path,
    args: argparse.Namespace,
    head: str,
    progress: Progress,
) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": s.name,
        "title": s.title,
        "workers": workers,
        "pinned": pin,
        "path": s.path,
        "wrk_cmd": "",
        "rounds": {"fastproxy": [], "nginx": []},
        "summary": {},
        "fastproxy_only": s.fastproxy_only,
        "error": None,
    }
    sink.append(entry)  # before anything runs: an interrupted scenario keeps its rounds
    prefix = tmp / f"{s.name}-w{workers}"
    prefix.mkdir()
    os.chmod(prefix, 0o755)
    if s.tls:
        cert, _ = bench_tls.write_cert(prefix)  # the same certificate for both proxies
        PREFLIGHT_CA[:] = [cert]  # the preflight request verifies it
    proxies: list[Proxy] = []
    try:
        progress.set(f"{head} starting proxies")
        fp_port, ng_port = free_port(), free_port()
        while ng_port == fp_port:
            ng_port = free_port()
        # fastproxy (or its stand-in)
        fp_toml = prefix / "fastproxy.toml"
        fp_toml.write_text(dumps_toml(fastproxy_config(prefix, fp_port, origin_port, workers, s)))
        if args.fastproxy_cmd and args.fastproxy_cmd.strip() == "nginx":
            conf = prefix / "standin.conf"
            conf.write_text(nginx_proxy_conf(prefix, "standin", fp_port, origin_port, workers, s))
            fp_cmd = nginx_cmd(conf, prefix)
        elif args.fastproxy_cmd:
            fields = {"{config}": str(fp_toml), "{port}": str(fp_port), "{size}": str(s.expect_len)}
            fp_cmd = [fill(a, fields) for a in shlex.split(args.fastproxy_cmd)]
        else:
            fp_cmd = [sys.executable, "-m", "fastproxy", "run", "-c", str(fp_toml)]
        proxies.append(
            start_and_wait(
                "fastproxy", pinned(fp_cmd, proxy_cpu), fp_port, prefix / "fastproxy.log"
            )
        )
        if not s.fastproxy_only:
            conf = prefix / "nginx.conf"
            conf.write_text(nginx_proxy_conf(prefix, "nginx", ng_port, origin_port, workers, s))
            proxies.append(
                start_and_wait(
                    "nginx",
                    pinned(nginx_cmd(conf, prefix), proxy_cpu),
                    ng_port,
                    prefix / "nginx.log",
                )
            )
        entry["wrk_cmd"] = shlex.join(
            pinned(
                wrk_command(
                    f"{scheme(s)}://127.0.0.1:PORT{s.path}",
                    duration=args.duration,
                    threads=load.threads,
                    connections=load.connections,
                    script=f"{s.name}.lua",
                    headers=s.wrk_headers,
                ),
                load.cpu,
            )
        )
        entry["commands"] = {"fastproxy": shlex.join(pinned(fp_cmd, proxy_cpu))}
        for p in proxies:
            try:
                n = preflight(p.name, p.port, s)
                if s.identity_len:  # compression scenarios: bytes sent / identity bytes
                    entry.setdefault("compression_ratio", {})[p.name] = n / s.identity_len
            except ScenarioError as exc:
                raise ScenarioError(
                    f"{exc}\n(origin directly: {origin_check(origin_port, s)})\n"
                    f"--- {p.name} log ---\n{_tail(p.log)}"
                ) from None
        for p in proxies:
            if args.warmup:
                progress.set(f"{head} warm-up {p.name}")
                run_wrk(p, s, load, args.warmup, progress.tick)
        total_rounds = len(proxies) * args.rounds
        for r in range(total_rounds):
            p = proxies[r % len(proxies)]
            progress.set(f"{head} round {r + 1}/{total_rounds} {p.name}")
            entry["rounds"][p.name].append(
                run_wrk(p, s, load, args.duration, progress.tick, origin)
            )
    except ScenarioError as exc:
        entry["error"] = str(exc)
    except KeyboardInterrupt:
        entry["error"] = "interrupted"
        raise
    finally:
        for name in ("fastproxy", "nginx"):
            summ = summarize(entry["rounds"][name])
            if summ is not None:
                entry["summary"][name] = summ
        for p in reversed(proxies):
            stop(p.proc)
    return entry


if __name__ == "__main__":
    sys.exit(main())
