"""The scenarios of bench/vs_nginx.py and how each side is configured for them:
the origin nginx, the nginx proxy (every directive says which fastproxy setting it
mirrors) and fastproxy's TOML.  A new scenario is one register() call here."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bench_tls  # bench/bench_tls.py (bench/ is on sys.path: vs_nginx.py puts it there)


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
