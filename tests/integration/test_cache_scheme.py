"""The cache key includes the scheme (RFC 9111 section 2: a response is stored under
its request's target URI, scheme included; docs/cache.md: ``"GET " scheme "://" host
target``).  One proxy has a plain and a TLS listener in front of one caching route, and
the same Host and target over http and https must be two entries: neither is served
for the other, each gets its own HIT, and a purge by https URL removes only that one."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from support import admin_call, free_port

HOST = "cache.example"
CC = "hdr=Cache-Control:"
PATH = "/cache/scheme"
TARGET = f"{PATH}?{CC}max-age=60"


def _proxy(make_proxy: Callable[..., Any], tls_files: Any) -> tuple[Any, int, int]:
    """A cache proxy listening plain and TLS, with admin: (proxy, tls port, admin port)."""
    cert, key = tls_files.issue(HOST)
    tls_port, admin_port = free_port(), free_port()
    p = make_proxy(
        {
            "server": {
                "listen": [
                    "127.0.0.1:0",  # first: the port make_proxy reports as p.port
                    {"address": f"127.0.0.1:{tls_port}", "tls": {"cert": cert, "key": key}},
                ]
            },
            "cache": {"size": "4MiB", "max_entry_size": "1MiB"},
            "routes": [{"path_prefix": "/", "upstream": "app", "cache": True}],
            "admin": {"listen": f"127.0.0.1:{admin_port}"},
        }
    )
    p.wait_log(r"admin endpoint on", timeout=10)
    assert p.port != tls_port
    return p, tls_port, admin_port


def _get(conn: Any) -> tuple[str | None, bytes]:
    r = conn.roundtrip("GET", TARGET, host=HOST)
    assert r.status == 200, r.raw[:300]
    return r.header("X-Cache"), r.body


def _fill_both(
    p: Any, tls_port: int, origin: Any, http_conn: Any, tls_files: Any
) -> tuple[Any, Any]:
    """http: MISS then HIT; the same Host and target over https: MISS (a second origin
    request) then HIT; http still its own HIT.  Returns (plain conn, TLS conn)."""
    plain = http_conn(p.port)
    tls = http_conn(tls_port, tls=tls_files.client_context(), sni=HOST)
    assert _get(plain) == ("MISS", f"{PATH} #1\n".encode())
    assert origin.requests[-1].header("X-Forwarded-Proto") == "http"
    assert _get(plain) == ("HIT", f"{PATH} #1\n".encode())
    assert origin.cache_hits[PATH] == 1
    # the http entry must not answer the https request for the same host and target
    assert _get(tls) == ("MISS", f"{PATH} #2\n".encode())
    assert origin.cache_hits[PATH] == 2
    assert origin.requests[-1].header("X-Forwarded-Proto") == "https"
    assert _get(tls) == ("HIT", f"{PATH} #2\n".encode())
    # ... nor did storing the https response replace the http entry
    assert _get(plain) == ("HIT", f"{PATH} #1\n".encode())
    assert origin.cache_hits[PATH] == 2
    return plain, tls


def test_http_and_https_are_separate_entries(
    make_proxy: Callable[..., Any], origin: Any, http_conn: Any, tls_files: Any
) -> None:
    p, tls_port, _ = _proxy(make_proxy, tls_files)
    _fill_both(p, tls_port, origin, http_conn, tls_files)


def test_purge_by_https_url_keeps_the_http_entry(
    make_proxy: Callable[..., Any], origin: Any, http_conn: Any, tls_files: Any
) -> None:
    p, tls_port, admin_port = _proxy(make_proxy, tls_files)
    plain, tls = _fill_both(p, tls_port, origin, http_conn, tls_files)
    url = f"https://{HOST}{TARGET}"
    status, body = admin_call(admin_port, "POST", "/cache/purge", json.dumps({"url": url}).encode())
    assert (status, json.loads(body)) == (200, {"removed": 1})
    assert _get(tls) == ("MISS", f"{PATH} #3\n".encode())
    assert _get(plain) == ("HIT", f"{PATH} #1\n".encode())
    assert origin.cache_hits[PATH] == 3
    assert _get(tls) == ("HIT", f"{PATH} #3\n".encode())  # stored again under https
