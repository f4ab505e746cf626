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
import atexit
import contextlib
import datetime as dt
import http.client
import importlib.util
import json
import os
import platform
import resource
import shlex
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
WRK_DIR = HERE / "wrk"
INSTALL_HINT = "apt-get install -y wrk nginx"


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
_wrk = _load("wrk")
WRK_REPORT_LUA, parse_wrk_output, wrk_command = (
    _wrk.WRK_REPORT_LUA,
    _wrk.parse_wrk_output,
    _wrk.wrk_command,
)
dumps_toml = _load("toml_edit").dumps_toml

sys.path.insert(0, str(HERE))
import bench_tls  # noqa: E402  (bench/bench_tls.py, beside this script)

PREFLIGHT_CA: list[Path] = []  # the current TLS scenario's certificate

# --------------------------------------------------------------------------- scenarios


@dataclass(frozen=True)
class Scenario:
    """One load shape.  A new scenario (cache hit, TLS, gzip, ...) is one register() call:
    the hooks add origin/nginx/fastproxy configuration for it, and both proxies are
    started fresh for every scenario, so hooks never leak into other scenarios."""

    name: str
    path: str  # request path on the proxy
    title: str  # one line for the report
    expect_len: int | None  # response body length checked before measuring (None: any)
    method: str = "GET"
    body_len: int = 0  # request body size (the preflight check sends it too)
    wrk_headers: tuple[str, ...] = ()  # wrk -H ...
    lua: str | None = None  # file in bench/wrk/ run before the report script
    expect_status: int = 200
    origin_conf: str = ""  # extra directives in the origin's server {} block
    nginx_conf: str = ""  # extra directives in the nginx proxy's location / {} block
    fastproxy_conf: Mapping[str, Any] = field(default_factory=dict)  # deep-merged into TOML
    tls: bool = False  # clients speak TLS to both proxies (same cert and ciphers)
    fastproxy_only: bool = False  # nothing comparable in nginx (br, zstd): no nginx rounds
    identity_len: int | None = None  # body size before compression, for the ratio
    # extra directives in the nginx proxy's http {} block; "{prefix}" and "{name}" are
    # replaced by the instance's private directory and name (proxy_cache_path)
    nginx_http_conf: str = ""


SCENARIOS: dict[str, Scenario] = {}


def register(s: Scenario) -> Scenario:
    if s.name in SCENARIOS:
        raise ValueError(f"scenario {s.name!r} registered twice")
    SCENARIOS[s.name] = s
    return s


ORIGIN_FILES = {"100b": 100, "16k": 16 << 10, "1m": 1 << 20}
JSON_FILES = {"16k.json": 16 << 10, "256k.json": 256 << 10}  # served from /json/


def json_body(size: int) -> bytes:
    """A JSON array of API-like records, exactly `size` bytes: compresses like real
    responses do (repeated keys, varying values), unlike a run of one byte."""
    out, i = [], 0
    total = 2
    while True:
        rec = json.dumps(
            {
                "id": i,
                "name": f"user-{i * 7919 % 10007}",
                "email": f"u{i * 31 % 977}@example.com",
                "active": i % 3 != 0,
                "score": round((i * 2654435761 % 1000) / 7, 3),
                "tags": ["alpha", "beta", "gamma", "delta"][: 1 + i % 4],
            }
        )
        if total + len(rec) + 1 > size:
            break
        out.append(rec)
        total += len(rec) + 1
        i += 1
    body = ("[" + ",".join(out) + "]").encode()
    return body[:-1] + b" " * (size - len(body)) + b"]"  # whitespace pads it exactly


def _compression_scenario(algo: str, name: str, size: int) -> Scenario:
    """GET a JSON file with Accept-Encoding: algo.  gzip is compared with nginx `gzip on`
    at the same level, types and minimum length; br and zstd run on fastproxy only."""
    level = {"gzip": 6, "br": 4, "zstd": 3}[algo]
    nginx = (
        "            gzip on;                   # [compression] enabled = true\n"
        f"            gzip_comp_level {level};       # levels = {{ gzip = {level} }}\n"
        '            gzip_types application/json;   # types = ["application/json"]\n'
        "            gzip_min_length 1024;      # min_length = 1024\n"
        "            gzip_proxied any;          # compress proxied responses too\n"
        "            gzip_vary on;              # Vary: Accept-Encoding, as fastproxy\n"
        if algo == "gzip"
        else ""
    )
    return Scenario(
        f"{algo}_{name}",
        f"/json/{name}.json",
        f"keep-alive GET, {name.upper().replace('K', ' KiB')} JSON, Accept-Encoding: {algo}"
        + ("" if algo == "gzip" else " (fastproxy only: nginx has no " + algo + " here)"),
        None,
        wrk_headers=(f"Accept-Encoding: {algo}",),
        nginx_conf=nginx,
        fastproxy_conf={
            "compression": {
                "enabled": True,
                "algorithms": [algo],
                "levels": {algo: level},
                "min_length": 1024,
                "types": ["application/json"],
            }
        },
        fastproxy_only=algo != "gzip",
        identity_len=size,
    )


register(Scenario("ka_100b", "/100b", "keep-alive GET, 100 B body", 100))
register(Scenario("ka_16k", "/16k", "keep-alive GET, 16 KiB body", 16 << 10))
register(Scenario("ka_1m", "/1m", "keep-alive GET, 1 MiB body", 1 << 20))
register(
    Scenario(
        "close_100b",
        "/100b",
        "new client connection per request (Connection: close), 100 B body",
        100,
        wrk_headers=("Connection: close",),
    )
)
register(
    Scenario(
        "post_4k",
        "/post",
        "keep-alive POST with a 4 KiB body, 2 B answer",
        2,
        method="POST",
        body_len=4096,
        lua="post_4k.lua",
    )
)
for _algo in ("gzip", "br", "zstd"):
    for _name, _size in (("16k", 16 << 10), ("256k", 256 << 10)):
        register(_compression_scenario(_algo, _name, _size))


def _cache_scenario(name: str, file: str, size: int) -> Scenario:
    """Cache hits: the origin marks the file cacheable for an hour, both proxies store
    it on the first request (the preflight) and answer every measured request from
    their cache.  nginx proxy_cache mirrors the [cache] / route settings."""
    loc = f"/cached-{name}/"
    return Scenario(
        f"cache_{name}",
        f"{loc}{file}",
        f"keep-alive GET, {f'{size >> 10} KiB' if size >= 1024 else f'{size} B'} body, "
        "cache hit (fastproxy cache vs nginx proxy_cache)",
        size,
        origin_conf=(
            f"        location {loc} {{\n"
            f"            rewrite ^{loc}(.*)$ /$1 break;\n"
            '            add_header Cache-Control "max-age=3600";\n'
            "        }\n"
        ),
        nginx_http_conf=(
            # [cache] size = "256MiB"; files under the instance's private prefix
            "    proxy_cache_path {prefix}/{name}-cache levels=1:2 keys_zone=fpcache:16m\n"
            "                     max_size=256m inactive=60m use_temp_path=off;\n"
        ),
        nginx_conf=(
            "            proxy_cache fpcache;       # [[routes]] cache = true\n"
            "            proxy_cache_key $scheme://$http_host$request_uri;  # default cache_key\n"
            "            proxy_cache_lock on;       # request coalescing\n"
            '            proxy_cache_lock_timeout 5s;   # [cache] lock_timeout = "5s"\n'
            "            # freshness from the origin's Cache-Control: max-age=3600, as fastproxy\n"
        ),
        fastproxy_conf={
            "cache": {"size": "256MiB", "lock_timeout": "5s"},
            "routes": [{"path_prefix": "/", "upstream": "app", "cache": True}],
        },
    )


register(_cache_scenario("100b", "100b", 100))
register(_cache_scenario("16k", "16k", 16 << 10))

register(Scenario("tls_ka_100b", "/100b", "TLS, keep-alive GET, 100 B body", 100, tls=True))
register(
    Scenario(
        "tls_close_100b",
        "/100b",
        "TLS, a new connection and full handshake per request (Connection: close), 100 B",
        100,
        wrk_headers=("Connection: close",),
        tls=True,
    )
)

# --------------------------------------------------------------------------- configs

_TEMP_PATHS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")


def _nginx_common(prefix: Path, name: str, workers: int) -> str:
    """Main context + the opening of http {}; each instance has its own pid file, error
    log and temp paths inside the private prefix, so nothing under /var is touched."""
    user = "user root;\n" if os.geteuid() == 0 else ""  # workers must read our temp dir
    temps = "".join(f"    {t}_temp_path {prefix / (name + '-' + t)};\n" for t in _TEMP_PATHS)
    return (
        f"{user}worker_processes {workers};\n"
        f"pid {prefix / (name + '.pid')};\n"
        f"error_log {prefix / (name + '-error.log')} warn;\n"
        "events { worker_connections 4096; }\n"
        "http {\n" + temps
    )


def origin_conf(
    prefix: Path, www: Path, port: int, workers: int, scenarios: Sequence[Scenario]
) -> str:
    extra = "".join(s.origin_conf for s in scenarios)
    return _nginx_common(prefix, "origin", workers) + (
        "    access_log off;\n"
        "    default_type application/octet-stream;\n"
        "    sendfile on;\n"
        "    tcp_nopush on;\n"
        "    open_file_cache max=64;            # no open()/fstat() per request\n"
        "    keepalive_timeout 75s;\n"
        "    keepalive_requests 1000000;        # the proxies decide when to re-connect\n"
        "    server {\n"
        f"        listen 127.0.0.1:{port} backlog=4096;\n"
        f"        root {www};\n"
        "        location /json/ { types { } default_type application/json; }\n"
        "        location = /post {\n"
        "            client_body_buffer_size 8k;\n"
        "            client_max_body_size 1m;\n"
        "            # `return` reads the whole body off the socket and discards it\n"
        "            # (ngx_http_discard_request_body) before the connection is reused.\n"
        '            return 200 "ok";\n'
        "        }\n"
        f"{extra}"
        "    }\n"
        "}\n"
    )


def nginx_proxy_conf(
    prefix: Path, name: str, port: int, origin_port: int, workers: int, s: Scenario
) -> str:
    """nginx configured like fastproxy_config(); each setting says which fastproxy
    setting (explicit in the TOML or fastproxy's default) it mirrors."""
    tls = bench_tls.nginx_server_directives(*tls_files(prefix)) if s.tls else ""
    return _nginx_common(prefix, name, workers) + (
        # worker_processes = [server] workers.  worker_connections 4096 (above) only
        # needs to exceed -c plus the idle upstream connections; fastproxy has no cap.
        '    access_log off;                    # [log] access = "off"\n'
        '    keepalive_timeout 75s;             # [server] keepalive_timeout = "75s"\n'
        "    keepalive_requests 1000;           # fastproxy keepalive_requests default 1000\n"
        "    client_header_timeout 10s;         # fastproxy client_header_timeout default\n"
        "    client_body_timeout 30s;           # fastproxy client_body_timeout default\n"
        "    send_timeout 60s;                  # fastproxy client_send_timeout default\n"
        "    client_max_body_size 1g;           # fastproxy max_body_size default 1 GiB\n"
        "    client_body_buffer_size 8k;        # nginx x86-64 default; 4 KiB POST in memory\n"
        "    upstream app {                     # [upstreams.app]\n"
        f"        server 127.0.0.1:{origin_port};   # servers = [...]\n"
        "        keepalive 32;                  # keepalive = 32 idle conns (per worker)\n"
        "        keepalive_timeout 60s;         # fastproxy upstream keepalive_timeout default\n"
        "        keepalive_requests 1000;       # fastproxy upstream keepalive_requests default\n"
        "    }\n"
        + s.nginx_http_conf.replace("{prefix}", str(prefix)).replace("{name}", name)
        + "    server {\n"
        f"        listen 127.0.0.1:{port}{' ssl' if s.tls else ''};  # [server] listen\n"
        f"{tls}"
        '        location / {                   # [[routes]] path_prefix = "/"\n'
        '            proxy_pass http://app;     # upstream = "app"\n'
        "            proxy_http_version 1.1;    # HTTP/1.1 + empty Connection header:\n"
        '            proxy_set_header Connection "";   # reuse upstream connections\n'
        '            proxy_set_header Host $http_host; # fastproxy upstream host = "pass"\n'
        "            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n"
        '            #                          # ^ fastproxy x_forwarded_for = "append"\n'
        '            proxy_connect_timeout 5s;  # connect_timeout = "5s"\n'
        '            proxy_read_timeout 60s;    # read_timeout = "60s"\n'
        '            proxy_send_timeout 60s;    # send_timeout = "60s"\n'
        "            # nginx defaults kept: proxy_buffering on (8 x 4k buffers; a body that\n"
        "            # outruns the client spills to proxy_temp_path in the temp dir, up to\n"
        "            # proxy_max_temp_file_size 1024m) and proxy_request_buffering on.\n"
        "            proxy_buffering on;\n"
        f"{s.nginx_conf}"
        "        }\n"
        "    }\n"
        "}\n"
    )


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    for k, v in extra.items():
        if isinstance(v, Mapping) and isinstance(base.get(k), dict):
            _merge(base[k], v)
        else:
            base[k] = v
    return base


def fastproxy_config(
    prefix: Path, port: int, origin_port: int, workers: int, s: Scenario
) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "server": {
            "listen": [f"127.0.0.1:{port}"],
            "workers": workers,
            "keepalive_timeout": "75s",
            # not the default /tmp/fastproxy.pid: never clobber a running instance's
            "pid_file": str(prefix / "fastproxy.pid"),
        },
        "log": {"access": "off"},
        "upstreams": {
            "app": {
                "servers": [f"127.0.0.1:{origin_port}"],
                "keepalive": 32,
                "connect_timeout": "5s",
                "read_timeout": "60s",
                "send_timeout": "60s",
            }
        },
        "routes": [{"path_prefix": "/", "upstream": "app"}],
    }
    if s.tls:
        cfg["server"]["listen"] = [bench_tls.fastproxy_listen(port, *tls_files(prefix))]
    return _merge(cfg, s.fastproxy_conf)


def tls_files(prefix: Path) -> tuple[Path, Path]:
    """The scenario's certificate and key (written by run_scenario for TLS scenarios)."""
    return prefix / "bench-cert.pem", prefix / "bench-key.pem"


def scheme(s: Scenario) -> str:
    return "https" if s.tls else "http"


# --------------------------------------------------------------------------- processes

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


def summarize(rounds: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Median and spread over the rounds.  A column no round has (wrk's report
    line missing, say) is None rather than an error that would lose the run."""
    if not rounds:
        return None

    def col(key: str) -> list[float]:
        return [r[key] for r in rounds if r.get(key) is not None]

    def med(key: str) -> float | None:
        xs = col(key)
        return statistics.median(xs) if xs else None

    def top(key: str) -> float | None:
        xs = col(key)
        return max(xs) if xs else None

    rps = col("rps")
    processes = top("processes")
    return {
        "rounds": len(rounds),
        "rps_median": med("rps"),
        "rps_min": min(rps) if rps else None,
        "rps_max": max(rps) if rps else None,
        "p50_us": med("p50_us"),
        "p99_us": med("p99_us"),
        "p999_us": med("p999_us"),
        "cpu_s_per_1k": med("cpu_s_per_1k"),
        "cpu_pct": med("cpu_pct"),
        "peak_rss_mib": top("peak_rss_mib"),
        "errors": int(sum(col("errors"))),
        "requests": int(sum(col("requests"))),
        "origin_cpu_pct": med("origin_cpu_pct"),
        "wrk_cpu_pct": med("wrk_cpu_pct"),
        "other_cpu_pct": med("other_cpu_pct"),
        "other_cpu_pct_max": top("other_cpu_pct"),
        "proxy_core_other_pct": med("proxy_core_other_pct"),
        "processes": int(processes) if processes is not None else None,
    }


# --------------------------------------------------------------------------- machine info


def _first_line(cmd: list[str]) -> str:
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    text = (r.stdout or "") + (r.stderr or "")
    return text.strip().splitlines()[0] if text.strip() else ""


def cpu_model() -> str:
    try:
        r = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10)
        for line in r.stdout.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.TimeoutExpired):
        pass
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


# --------------------------------------------------------------------------- reports

FAIRNESS = (
    "Cores: with workers=1 each proxy is pinned to CPU {proxy_cpu} (`taskset -c {proxy_cpu}`)"
    " and wrk, the origin nginx and this script to CPU {load_cpu}. Both proxies therefore"
    " get one whole core that no other process of the benchmark runs on (other programs"
    " on the machine can; the report measures how much), and the load side (wrk and"
    " origin, same binaries, same settings, same core) is identical for both; they never"
    " run at the same time (rounds alternate), so neither can steal the other's core."
    " What differs between the two columns is only the proxy. When the proxy core is"
    " saturated (proxy CPU % near 100) req/s measures the proxy's per-core throughput;"
    " when it is not, something else was the limit (the load core, other programs on the"
    " machine) and the ratio understates the difference; CPU s/1k req stays comparable"
    " either way. With workers=N nothing is"
    " pinned (the default deployment): the proxy's workers, wrk and the origin share all"
    " cores under the kernel scheduler, identically for both proxies, and that run"
    " shows how each proxy does when it has to compete for CPU with its neighbours."
)


def _ms(us: float | None) -> str:
    return "-" if us is None else f"{us / 1000:.2f}"


def _num(x: float | None, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def _ratio(a: float | None, b: float | None) -> str:
    return "-" if not a or not b else f"{a / b:.2f}"


def column_label(m: Mapping[str, Any]) -> tuple[str, str, str | None]:
    """What ran in fastproxy's place: (table label, chart label, warning for the top
    of the report, or None when it was fastproxy)."""
    if m["standin"]:
        return (
            "fastproxy*",
            "fastproxy (stand-in: nginx)",
            '**HARNESS VALIDATION RUN: the "fastproxy" column is NOT fastproxy but a'
            f" stand-in (`{m['fastproxy_cmd']}`, an nginx proxy configured exactly like the"
            " nginx column). Ratios should be ~1.00; the spread shows the noise floor.**",
        )
    if m.get("floor") or str(m.get("fastproxy_version")).startswith("(C floor"):
        return (
            "floor",
            "C floor (bench/c/epoll_floor.c)",
            "**FLOOR RUN: the first column is NOT fastproxy but bench/c/epoll_floor.c, a C"
            " epoll server answering each read with the scenario's response, without"
            " parsing: the least any server can spend per request on this machine. A"
            " target ratio below floor/nginx cannot be met by a server that reads and"
            " sends once per request.**",
        )
    if m.get("fastproxy_version") == "(custom command)":
        return (
            "fastproxy*",
            "custom command",
            f'**The "fastproxy*" column is the command `{m["fastproxy_cmd"]}`.**',
        )
    return "fastproxy", "fastproxy", None


def results_markdown(res: dict[str, Any]) -> str:
    m = res["meta"]
    fp_label, _, banner = column_label(m)
    lines = [
        f"# {fp_label} vs nginx, end to end ({m['date'][:10]})",
        "",
    ]
    if banner:
        lines += [banner, ""]
    lines += [
        f"- machine: {m['cpu_model']}, {m['cpus']} CPUs, Linux {m['kernel']}; other"
        f" processes used {m.get('background_cpu_pct_before', 0):.0f} % of a core just before"
        " the run",
        f"- date: {m['date']}",
        f"- command: `{m['command']}`",
        f"- {m['nginx_version']}; {m['wrk_version'].split(' [')[0]}; fastproxy:"
        f" {m['fastproxy_version'] or '-'}",
        f"- load: wrk -t{m['threads']} -c{m['connections']} --latency, {m['duration']} s per"
        f" round, {m['rounds']} round(s) per proxy interleaved (fastproxy, nginx, ...) after"
        f" {m['warmup']} s warm-up of each",
        "- req/s: median over rounds, spread = min-max; p50/p99/p99.9: median over rounds"
        " of wrk's per-run percentiles; CPU s/1k req: proxy process tree (master + workers)"
        " utime+stime from /proc per 1,000 requests, median; proxy CPU %: same, 100 = one"
        " core; peak RSS: max over rounds of the sum of VmRSS over the tree, sampled every"
        " 0.2 s; errors: status > 399 + socket errors, all rounds",
        "",
        FAIRNESS.format(**m["pinning"]),
        "",
        "| scenario | w | proxy | req/s | spread (min-max) | p50 ms | p99 ms | p99.9 ms"
        " | CPU s/1k req | proxy CPU % | peak RSS MiB | errors |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for sc in res["scenarios"]:
        for name in ("fastproxy", "nginx"):
            s = sc["summary"].get(name)
            label = fp_label if name == "fastproxy" else name
            if s is None:
                what = "not run" if name == "nginx" and sc.get("fastproxy_only") else "failed"
                lines.append(
                    f"| {sc['name']} | {sc['workers']} | {label} | {what} | | | | | | | | |"
                )
                continue
            lines.append(
                f"| {sc['name']} | {sc['workers']} | {label} | {s['rps_median']:.0f}"
                f" | {s['rps_min']:.0f}-{s['rps_max']:.0f} | {_ms(s['p50_us'])}"
                f" | {_ms(s['p99_us'])} | {_ms(s['p999_us'])} | {_num(s['cpu_s_per_1k'], '.4f')}"
                f" | {_num(s['cpu_pct'], '.0f')} | {_num(s['peak_rss_mib'], '.1f')}"
                f" | {s['errors']} |"
            )
    lines += [
        "",
        f"Ratios {fp_label}/nginx (req/s: above 1 = {fp_label} faster; CPU per request:"
        f" below 1 = {fp_label} cheaper):",
        "",
        "| scenario | w | req/s ratio | CPU/req ratio | p99 ratio | wrk + origin CPU %"
        " | other CPU % | other CPU % on the proxy core |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for sc in res["scenarios"]:
        f, n = sc["summary"].get("fastproxy"), sc["summary"].get("nginx")
        both = [x for x in (f, n) if x]
        load = " / ".join(f"{x['wrk_cpu_pct']:.0f} + {x['origin_cpu_pct']:.0f}" for x in both)
        other = " / ".join(
            f"{x['other_cpu_pct']:.0f} (max {x['other_cpu_pct_max']:.0f})" for x in both
        )
        core = " / ".join(
            "-" if x["proxy_core_other_pct"] is None else f"{x['proxy_core_other_pct']:.0f}"
            for x in both
        )
        rps = _ratio(f and f["rps_median"], n and n["rps_median"])
        cpu = _ratio(f and f["cpu_s_per_1k"], n and n["cpu_s_per_1k"])
        p99 = _ratio(f and f["p99_us"], n and n["p99_us"])
        lines.append(
            f"| {sc['name']} | {sc['workers']} | {rps} | {cpu} | {p99} | {load or '-'}"
            f" | {other or '-'} | {core or '-'} |"
        )
    lines += [
        "",
        "wrk + origin CPU % and other CPU % are medians over the fastproxy / nginx rounds"
        " (100 = one core). Other CPU % is the machine's busy time (/proc/stat, including"
        " steal) minus proxy, origin, wrk and this script: anything else that ran during"
        " the rounds (kernel threads such as ksoftirqd included); on the proxy core: the"
        " same for the pinned proxy's own core (w=1)."
        " Above ~10 % the numbers are noisy; prefer the CPU s/1k req ratio.",
    ]
    notes = []
    idle = [
        f"{sc['name']} ("
        + ", ".join(
            f"{k} {v['cpu_pct']:.0f} %" for k, v in sc["summary"].items() if v["cpu_pct"] < 90
        )
        + ")"
        for sc in res["scenarios"]
        if sc["pinned"] and any(v["cpu_pct"] < 90 for v in sc["summary"].values())
    ]
    if idle:
        notes.append(
            "- w=1 runs whose proxy core was less than 90 % busy, so the proxy was not the"
            " only bottleneck (load core, latency, or other programs; see the columns"
            " above) and req/s ratios understate differences; compare CPU s/1k req: "
            + "; ".join(idle)
            + "."
        )
    for sc in res["scenarios"]:
        if sc.get("error"):
            notes.append(f"- {sc['name']} w={sc['workers']}: FAILED: {sc['error'].splitlines()[0]}")
        for name in ("fastproxy", "nginx"):
            s = sc["summary"].get(name)
            if s and name == "fastproxy" and sc["workers"] > 1 and s["processes"] < 2:
                notes.append(
                    f"- {sc['name']} w={sc['workers']}: fastproxy ran as ONE process although"
                    f" workers = {sc['workers']} (this build runs a single worker), while nginx"
                    f" ran {sc['summary'].get('nginx', {}).get('processes', '?')} (master +"
                    " workers)."
                )
            if s and s["errors"]:
                notes.append(f"- {sc['name']} w={sc['workers']} {name}: {s['errors']} errors.")
    for sc in res["scenarios"]:
        if sc.get("compression_ratio"):
            notes.append(
                f"- {sc['name']} w={sc['workers']}: compressed size / original: "
                + ", ".join(f"{k} {v:.3f}" for k, v in sc["compression_ratio"].items())
                + "."
            )
    if notes:
        lines += ["", "Notes:", "", *notes]
    lines += ["", "Scenarios:", ""]
    for name, title in res["meta"]["scenario_titles"].items():
        lines.append(f"- `{name}`: {title}")
    return "\n".join(lines) + "\n"


def write_chart(res: dict[str, Any], path: Path) -> bool:
    """Grouped bars per scenario, fastproxy vs nginx: req/s (whiskers min-max) and proxy
    CPU per request.  Log y axes, since 1 MiB bodies and 100 B bodies differ by 30x;
    the fastproxy/nginx ratio is written over each pair."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("pip install matplotlib", file=sys.stderr)
        return False
    m = res["meta"]
    scs = [sc for sc in res["scenarios"] if sc["summary"]]
    if not scs:
        return False
    labels = [f"{sc['name']}\nw={sc['workers']}" for sc in scs]
    fp_label = column_label(m)[1]
    series = [("fastproxy", fp_label, "#1f77b4"), ("nginx", "nginx", "#2ca02c")]
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(max(8, 1.1 * len(scs) + 3), 9))
    width = 0.38
    xs = list(range(len(scs)))
    tops: dict[str, list[float]] = {"rps": [0.0] * len(scs), "cpu": [0.0] * len(scs)}
    for i, (key, label, color) in enumerate(series):
        off = [x + (i - 0.5) * width for x in xs]
        med, lo, hi, cpu = [], [], [], []
        for j, sc in enumerate(scs):
            s = sc["summary"].get(key)
            med.append(s["rps_median"] if s else float("nan"))
            lo.append(s["rps_median"] - s["rps_min"] if s else 0)
            hi.append(s["rps_max"] - s["rps_median"] if s else 0)
            # X s per 1000 requests = X ms per request = 1000 X us per request
            cpu.append(s["cpu_s_per_1k"] * 1000 if s else float("nan"))
            if s:
                tops["rps"][j] = max(tops["rps"][j], s["rps_max"])
                tops["cpu"][j] = max(tops["cpu"][j], cpu[-1])
        ax1.bar(off, med, width, yerr=[lo, hi], capsize=3, label=label, color=color)
        ax2.bar(off, cpu, width, label=label, color=color)
    for j, sc in enumerate(scs):
        f, n = sc["summary"].get("fastproxy"), sc["summary"].get("nginx")
        if f and n:
            for ax, key, top in (
                (ax1, "rps_median", tops["rps"][j]),
                (ax2, "cpu_s_per_1k", tops["cpu"][j]),
            ):
                ax.annotate(
                    f"x{f[key] / n[key]:.2f}",
                    (xs[j], top),
                    xytext=(0, 4),
                    textcoords="offset points",
                    ha="center",
                    fontsize=8,
                )
    ax1.set_ylabel("requests/s (median; whiskers min-max)")
    ax2.set_ylabel("proxy CPU per request (µs, median)")
    for ax in (ax1, ax2):
        ax.set_yscale("log")
        ax.margins(y=0.15)
        ax.set_xticks(xs)
        ax.set_xticklabels(labels, fontsize=8)
        ax.grid(axis="y", which="both", alpha=0.25)
    ax1.set_title(f"throughput, higher is better (x = {fp_label} / nginx; log scale)", fontsize=10)
    ax2.set_title(
        f"CPU per request of the proxy process tree, lower is better (x = {fp_label} / nginx)",
        fontsize=10,
    )
    title = (
        f"{column_label(m)[0]} vs nginx, reverse proxy on loopback - {m['date'][:10]}\n"
        f"{m['cpu_model']}, {m['cpus']} CPUs; wrk -t{m['threads']} -c{m['connections']},"
        f" {m['duration']} s x {m['rounds']} rounds per proxy; w=1 pinned, w={m['cpus']} not"
    )
    if m["standin"]:
        title += "\nHARNESS VALIDATION: the fastproxy bars are an nginx stand-in"
    fig.suptitle(title, fontsize=10, x=0.45)
    handles, names = ax1.get_legend_handles_labels()
    fig.legend(handles, names, loc="upper right", fontsize=8)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def print_summary(res: dict[str, Any]) -> None:
    print(
        f"{'scenario':<12}{'w':>2}  {'fastproxy r/s':>13}  {'nginx r/s':>10}  {'ratio':>6}"
        f"  {'CPU/req ratio':>13}  {'p99 fp/ng ms':>14}"
    )
    for sc in res["scenarios"]:
        f, n = sc["summary"].get("fastproxy"), sc["summary"].get("nginx")
        if f and sc.get("fastproxy_only"):
            print(
                f"{sc['name']:<12}{sc['workers']:>2}  {f['rps_median']:>13.0f}"
                f"  {'(fastproxy only)':>34}  {_ms(f['p99_us']):>6}"
            )
            continue
        if not f or not n:
            print(
                f"{sc['name']:<12}{sc['workers']:>2}  FAILED: "
                f"{(sc.get('error') or 'no data').splitlines()[0]}"
            )
            continue
        print(
            f"{sc['name']:<12}{sc['workers']:>2}  {f['rps_median']:>13.0f}"
            f"  {n['rps_median']:>10.0f}"
            f"  {f['rps_median'] / n['rps_median']:>6.2f}"
            f"  {f['cpu_s_per_1k'] / n['cpu_s_per_1k']:>13.2f}"
            f"  {_ms(f['p99_us']):>6}/{_ms(n['p99_us']):<7}"
        )


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
    global NGINX
    nginx_bin = shutil.which("nginx", path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")
    if shutil.which("wrk") is None or nginx_bin is None:
        print(INSTALL_HINT)
        return 2
    if args.floor and shutil.which("gcc") is None:
        print("--floor builds bench/c/epoll_floor.c: apt-get install -y gcc")
        return 2
    NGINX = nginx_bin
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
        fp_version = _first_line([sys.executable, "-m", "fastproxy", "--version"])
    res: dict[str, Any] = {
        "meta": {
            "date": started.isoformat(timespec="seconds"),
            "cpu_model": cpu_model(),
            "cpus": n_cpus,
            "kernel": platform.release(),
            "python": platform.python_version(),
            "nginx_version": _first_line([nginx_bin, "-v"]),
            "wrk_version": _first_line(["wrk", "-v"]),
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
