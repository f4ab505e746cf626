"""A scripted origin for cache tests: it records every request and answers exactly what a
test's script returns for it -- no automatic Date or Server, Content-Length added unless the
status has no content or the script sets it -- so freshness, Age and validators are all
under the test's control.  The `scripted` fixture (conftest.py) makes them."""

from __future__ import annotations

import threading
from collections.abc import Callable
from email.utils import formatdate
from typing import Any

from support import QuietHandler, ThreadedOrigin

Fields = list[tuple[str, str]]
Answer = tuple[int, Fields, bytes]


class Req:
    """One request as the origin got it."""

    def __init__(self, method: str, path: str, headers: Any) -> None:
        self.method = method
        self.path = path
        self.fields = [(k, v) for k, v in headers.items()]

    def header(self, name: str) -> str | None:
        for k, v in self.fields:
            if k.lower() == name.lower():
                return v
        return None

    get = header  # as http.client.HTTPMessage.get, for scripts written against it


Script = Callable[[int, Req], Answer]


class ScriptedOrigin(ThreadedOrigin):
    """An HTTP/1.1 origin (a thread per connection, keep-alive) that records every request
    (``seen``) and answers ``script(n, req)`` (n: 1-based number of the request).  It sends
    exactly the fields the script gives (no automatic Date or Server); Content-Length is
    added unless the status is 1xx/204/304 or the script sets it."""

    def __init__(self, script: Script) -> None:
        self.seen: list[Req] = []
        self.script = script
        lock = threading.Lock()
        origin = self

        class Handler(QuietHandler):
            def _any(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                if n:
                    self.rfile.read(n)
                req = Req(self.command, self.path, self.headers)
                with lock:
                    origin.seen.append(req)
                    k = len(origin.seen)
                status, fields, body = origin.script(k, req)
                self.send_response_only(status)
                for name, value in fields:
                    self.send_header(name, value)
                no_body = status in (204, 304) or status < 200
                if not no_body and not any(f[0].lower() == "content-length" for f in fields):
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if not no_body and self.command != "HEAD":
                    self.wfile.write(body)

            do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = _any  # noqa: N815

        self.serve(Handler)

    def count(self, method: str = "GET") -> int:
        return sum(1 for r in self.seen if r.method == method)


def cache_config(upstream: str, admin_port: int | None = None, **cache: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "cache": {"size": "4MiB", "max_entry_size": "1MiB", **cache},
        "upstreams": {"app": {"servers": [upstream], "retries": 0}},
        "routes": [{"path_prefix": "/", "upstream": "app", "cache": True}],
    }
    if admin_port is not None:
        cfg["admin"] = {"listen": f"127.0.0.1:{admin_port}"}
    return cfg


def http_date(t: float) -> str:
    return formatdate(t, usegmt=True)


def xc(r: Any) -> str | None:
    return r.header("X-Cache")
