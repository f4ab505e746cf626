"""Fixtures for the fastproxy integration tests: a real origin, a real proxy process, raw clients.

Everything runs on 127.0.0.1 with ephemeral ports, and every wait is bounded.  Helpers are
handed out as fixtures; the classes behind them live beside this file (importable: pytest
puts this directory on sys.path): recording_origin.py (``origin``), http_client.py
(``http_conn``, ``raw_request``, ``read_response``), scripted_origin.py and raw_origin.py,
with plain helpers in support.py.

Fixtures (the interface is stable):

``scripted`` / ``raw_origin`` -> factories of origins that answer what a test's script
    says: ``scripted_origin.ScriptedOrigin`` (HTTP-level, for cache tests) and
    ``raw_origin.RawOrigin`` (byte-level, records every byte, for hostile responses).

``origin`` -> ``Origin`` (function scope)
    A threaded HTTP/1.1 origin (one thread per TCP connection, keep-alive supported).
    Attributes: ``host``, ``port``, ``address`` (``"127.0.0.1:PORT"``), ``url(path)``,
    ``requests`` (list of ``OriginRequest``, in arrival order), ``connections`` (TCP
    connections accepted so far), ``open_connections``, ``ws_frames`` (list of
    ``(opcode, masked, payload)`` received on ``/ws``), ``reset()``,
    ``wait_requests(n, timeout=5) -> list``.
    Knobs (plain attributes, set them before sending requests):
    ``close_after_response`` (bool, default False: answer every request with
    ``Connection: close`` and close), ``drop_after_response`` (bool, default False: close the
    connection after each response *without* announcing it, like a keep-alive timeout race),
    ``tls_context`` (``ssl.SSLContext`` or None: the origin speaks TLS with it),
    ``auto_continue`` (bool, default False: send
    ``100 Continue`` on every endpoint when the request has ``Expect: 100-continue``;
    ``/continue`` always does), ``extra_headers`` (list of ``(name, value)`` added to every
    response).
    ``OriginRequest`` fields: ``method``, ``target``, ``version`` (str), ``headers``
    (list of ``(name, value)`` str pairs, as received, in order), ``body`` (bytes, de-chunked;
    empty for ``/sink``), ``body_len``, ``chunked`` (request used Transfer-Encoding: chunked),
    ``raw_head`` (bytes), ``client_port`` (the proxy's source port = which upstream TCP
    connection), ``conn_id`` (1-based accept counter); helpers ``header(name)`` (first value
    or None, case-insensitive), ``header_all(name)``, ``path``.
    Endpoints (``HEAD`` works on all of them: same headers, no body; ``hdr=Name:Value`` in
    the query adds a response header, repeatable):
      /echo                  200, body = request body (Content-Length)
      /bytes?n=N             200, ``payload(N)``, Content-Length
      /chunked?n=N&parts=K   200, ``payload(N)`` as K chunks; ``trailer=Name:Value`` adds one
      /close?n=N             200, ``payload(N)``, no length: the body ends when the origin closes
      /status/NNN            status NNN, body ``b"status NNN\\n"`` (no body for 1xx/204/304);
                             ``cl=N`` sends ``Content-Length: N`` with no body (for 304)
      /slow?delay=S          sleeps S seconds, then 200 ``b"slow"``
      /stream?mib=M          M MiB of ``b"x"`` in 64 KiB writes, Content-Length (backpressure);
                             ``mode=chunked`` sends 64 KiB chunks, ``mode=close`` no length
      /sink?rate=R           reads the body without storing it (at most R MiB/s if given),
                             200 with the byte count as body
      /continue              sends ``HTTP/1.1 100 Continue`` first if Expect: 100-continue, then
                             reads the body and echoes it
      /ws                    RFC 6455 echo: 101 with Sec-WebSocket-Accept, echoes text/binary
                             frames unmasked, answers ping with pong and close with close;
                             ``/ws?lenient=1`` accepts a handshake without ``Upgrade: websocket``
      /head                  200, body ``b"hello head\\n"`` (11 bytes)
      /random?n=N            200, N pseudo-random (incompressible) bytes seeded by N,
                             ``Content-Type: text/plain``, Content-Length: the bytes of
                             ``random.Random(N).randbytes(N)``
      /events?n=N&gap=S      server-sent events: 200 ``text/event-stream``, chunked, N events
                             ``data: event I\\n\\n`` (I = 0..N-1), one chunk each, S seconds
                             apart (default 0.2); ``mode=close`` sends them with no length
      /encoded?enc=E&n=N     200, ``payload(N)`` compressed with E (``gzip``, ``br`` or
                             ``zstd``; ``x-gzip`` is sent as gzip with that name), with
                             ``Content-Encoding: E``, Content-Length and ``Content-Type:
                             text/plain``; ``fill=zero`` compresses N zero bytes instead (a
                             decompression bomb for large N); ``cut=K`` drops the last K
                             bytes of the compressed body (a truncated stream)
      /cache/ANY             (cache tests) 200, body ``f"{path} #{N}\\n"`` where N counts the
                             requests for that path (``origin.cache_hits[path]``), also in
                             ``X-Origin-Count``; ``Content-Type: text/plain``; ``n=N`` pads
                             the body to N bytes with ``.``; ``etag=E`` sends ``ETag: "E"``
                             and answers 304 when If-None-Match names it; ``echo=Name``
                             appends `` Name=<request value>``; ``status=NNN``;
                             ``delay=S`` sleeps S seconds first; ``hdr=`` as everywhere;
                             ``origin.cache_status = NNN`` makes every /cache/ answer NNN;
                             ``cut=K`` sends all but the last K body bytes, then closes
      anything else          200, body ``f"{method} {target}"``

``make_proxy(config=None, *, merge=True, argv=None, cwd=None, env=None, wait_ready=True,
ready_timeout=15) -> ProxyProcess``
    Starts ``python -m fastproxy run -c FILE`` and waits for its ``listening on`` log line.
    ``config`` is deep-merged into the default config (dicts merge recursively, other values
    replace, ``None`` deletes a key); ``merge=False`` uses ``config`` as is.  Default::

        {"server": {"listen": ["127.0.0.1:0"], "pid_file": False},
         "log": {"access": "off"},
         "upstreams": {"app": {"servers": [origin.address]}},
         "routes": [{"path_prefix": "/", "upstream": "app"}]}

    ``argv`` (list of str) runs ``python -m fastproxy *argv`` instead, writing no config
    (e.g. the demo).  ``cwd`` defaults to a fresh empty directory.  Every process is stopped
    at teardown (SIGTERM, then SIGKILL after 5 s).
    ``ProxyProcess``: ``port``, ``host``, ``addresses``, ``pid``, ``url(path)``,
    ``config_path``, ``config_text``, ``stderr_text()``, ``stdout_text()``,
    ``wait_log(regex, timeout=5) -> re.Match`` (searches stderr lines), ``rss_kib()`` (VmRSS),
    ``alive()``, ``stop(timeout=10) -> returncode`` (SIGTERM, wait, SIGKILL fallback),
    ``signal(sig)``.

``proxy`` -> ``ProxyProcess``: ``make_proxy()`` with the default config.

``toml_dumps(dict) -> str``: the tiny TOML emitter used for configs (top-level arrays of
tables become ``[[name]]``; deeper tables inside them are inline).

``raw_request(port, data, read_until_close=True, timeout=5) -> bytes``
    Connects, sends ``data`` in one write, and returns everything read until the proxy
    closes (``read_until_close=True``) or the raw bytes of exactly one response
    (``read_until_close=False``; interim 1xx responses are included).  A timeout raises
    ``RawTimeout`` (a ``TimeoutError``) whose ``.data`` holds the bytes read so far.

``http_conn(port, timeout=5, rcvbuf=None, tls=None, sni=None) -> HTTPConn`` (factory; closed
at teardown; ``rcvbuf`` sets SO_RCVBUF before connecting; ``tls`` = an ``ssl.SSLContext``
speaks TLS, e.g. ``tls_files.client_context()``, with ``sni`` as the server name)
    ``send(bytes)``, ``request(method, target, headers=(), body=None, version="HTTP/1.1",
    host="test.local", chunked=False) -> None`` (adds Host and Content-Length/chunked framing
    unless the header is given; ``chunked`` may be a list of byte chunks),
    ``read_response(method="GET", interim=False, timeout=None) -> Response``,
    ``roundtrip(method, target, **kw) -> Response``,
    ``at_eof(timeout=2) -> bool`` (True if the peer closed with no more data),
    ``sock``, ``reader`` (its receive buffer: ``read_until(sep)``, ``read_exact(n)``,
    ``read_some(max_n)``, ``read_to_eof()``, ``deadline`` = monotonic time or None),
    ``close()``.

``read_response(conn_or_socket, method="GET", interim=False, timeout=5) -> Response``
    Parses one response: status line, headers, then the body framed per RFC 9112 section 6.3
    (HEAD/1xx/204/304 have none; chunked; Content-Length; else until close).  With
    ``interim=False`` 1xx responses other than 101 are collected into ``.interim`` and the
    final response is returned; with ``interim=True`` a 1xx is returned by itself.
    ``Response``: ``version``, ``status``, ``reason``, ``headers`` (list of str pairs),
    ``body``, ``raw`` (bytes of the head and body as received), ``framing``
    (``"none"|"length"|"chunked"|"close"``), ``trailers``, ``interim``; ``header(name)``,
    ``header_all(name)``.

``tls_files`` -> ``TLSFiles``: a trustme CA (``ca``, ``ca_path``), ``issue(*names, stem=None,
ca=None) -> (cert_path, key_path)``, ``client_context(alpn=None)`` (trusts the CA, no host
check), ``connect(port, sni=None, ctx=None) -> ssl.SSLSocket``.

``payload(n) -> bytes``: the deterministic byte pattern /bytes, /chunked and /close send.

``ws_codec``: ``frame(opcode, data, mask=True, fin=True) -> bytes`` (RFC 6455; clients mask)
and ``read_frame(conn: HTTPConn, timeout=5) -> (opcode, masked, payload)``.

``embed(config_dict) -> Embedded`` (factory; stopped at teardown): a ``fastproxy.Proxy``
in a thread of the test process (embedded_proxy.py), with ``proxy``, ``loop``,
``loop_errors``, ``call(fn)`` (runs fn on its loop), ``stats()`` and ``frozen()`` (holds the
loop inside one callback while the block runs).

``read_response`` on a bare socket uses a fresh buffer each call, so for several responses
on one connection use an ``HTTPConn``.
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from embedded_proxy import Embedded
from http_client import HTTPConn, Response, _raw_request, _read_response, _Reader
from raw_origin import RawOrigin, RawReq
from recording_origin import Origin, _payload, ws_frame, ws_read_frame
from scripted_origin import Script, ScriptedOrigin
from support import LabelOrigin

import fastproxy
from fastproxy import procinfo

# The fastproxy tree the proxy processes run from; FASTPROXY_TEST_TREE points the tests at
# another built checkout (e.g. to check that a test fails without a fix).
REPO = Path(os.environ.get("FASTPROXY_TEST_TREE") or Path(__file__).resolve().parents[2])


# ---------------------------------------------------------------------------------------------
# TOML emitter
# ---------------------------------------------------------------------------------------------

_BARE = re.compile(r"[A-Za-z0-9_-]+")


def _key(k: str) -> str:
    return k if _BARE.fullmatch(k) else _str(k)


def _str(s: str) -> str:
    return json.dumps(s, ensure_ascii=False).replace("\x7f", "\\u007F")


def _value(v: Any) -> str:
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
        return _str(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, dict):
        items = [f"{_key(k)} = {_value(x)}" for k, x in v.items() if x is not None]
        return "{ " + ", ".join(items) + " }" if items else "{}"
    raise TypeError(f"cannot write {type(v).__name__} as TOML")


def _is_table_array(v: Any) -> bool:
    return isinstance(v, (list, tuple)) and bool(v) and all(isinstance(x, dict) for x in v)


def _drop_none(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _drop_none(x) for k, x in v.items() if x is not None}
    if isinstance(v, (list, tuple)):
        return [_drop_none(x) for x in v]
    return v


def _toml_dumps(doc: dict[str, Any]) -> str:
    out: list[str] = []

    def table(d: dict[str, Any], prefix: list[str]) -> None:
        for k, v in d.items():
            if v is None or isinstance(v, dict) or (not prefix and _is_table_array(v)):
                continue
            out.append(f"{_key(k)} = {_value(v)}")
        for k, v in d.items():
            if isinstance(v, dict):
                out.append("")
                out.append("[" + ".".join(_key(p) for p in [*prefix, k]) + "]")
                table(v, [*prefix, k])
        if not prefix:
            for k, v in d.items():
                if _is_table_array(v):
                    for item in v:
                        out.append("")
                        out.append(f"[[{_key(k)}]]")
                        for ik, iv in item.items():
                            if iv is not None:
                                out.append(f"{_key(ik)} = {_value(iv)}")

    table(doc, [])
    text = "\n".join(out).lstrip("\n") + "\n"
    parsed = tomllib.loads(text)
    want = _drop_none(doc)
    if json.dumps(parsed, sort_keys=True, default=str) != json.dumps(
        want, sort_keys=True, default=str
    ):
        raise AssertionError(f"TOML emitter round-trip mismatch:\n{text}")
    return text


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        if v is None:
            out.pop(k, None)
        elif isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


# ---------------------------------------------------------------------------------------------
# The proxy process
# ---------------------------------------------------------------------------------------------

_LISTEN_RE = re.compile(r"listening on (\S+?):(\d+)\b")


class ProxyProcess:
    def __init__(
        self,
        argv: list[str],
        cwd: Path,
        env: dict[str, str] | None = None,
        config_path: Path | None = None,
        config_text: str = "",
    ) -> None:
        self.config_path = config_path
        self.config_text = config_text
        self.host = ""
        self.port = 0
        self.addresses: list[tuple[str, int]] = []
        self._stderr: list[str] = []
        self._stdout: list[str] = []
        self._cond = threading.Condition()
        full_env = dict(os.environ)
        full_env["PYTHONPATH"] = str(REPO) + os.pathsep + full_env.get("PYTHONPATH", "")
        full_env["PYTHONUNBUFFERED"] = "1"
        full_env.update(env or {})
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "fastproxy", *argv],
            cwd=cwd,
            env=full_env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
        )
        self.pid = self.proc.pid
        self._threads = [
            threading.Thread(target=self._drain, args=(stream, sink), daemon=True)
            for stream, sink in ((self.proc.stderr, self._stderr), (self.proc.stdout, self._stdout))
        ]
        for t in self._threads:
            t.start()

    def _drain(self, stream: Any, sink: list[str]) -> None:
        for line in stream:
            with self._cond:
                sink.append(line)
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def wait_log(self, regex: str | re.Pattern[str], timeout: float = 5) -> re.Match[str]:
        """Wait for a stderr line matching ``regex``; fail with the log on timeout/exit."""
        pat = re.compile(regex)
        deadline = time.monotonic() + timeout
        seen = 0
        with self._cond:
            while True:
                while seen < len(self._stderr):
                    m = pat.search(self._stderr[seen])
                    seen += 1
                    if m:
                        return m
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(
                        f"no log line matching {pat.pattern!r} in {timeout}s; "
                        f"stderr:\n{self.stderr_text()}"
                    )
                if self.proc.poll() is not None and not self._threads[0].is_alive():
                    raise RuntimeError(
                        f"proxy exited ({self.proc.returncode}) before logging "
                        f"{pat.pattern!r}; stderr:\n{self.stderr_text()}"
                    )
                self._cond.wait(min(left, 0.1))

    def wait_ready(self, timeout: float = 15) -> None:
        m = self.wait_log(_LISTEN_RE, timeout)
        line = m.string
        self.addresses = [
            (h, int(p)) for h, p in re.findall(r"(\S+?):(\d+)(?:,|\s|$)", line[m.start() + 13 :])
        ]
        self.host, self.port = m.group(1), int(m.group(2))

    def url(self, path: str = "/") -> str:
        return f"http://{self.host}:{self.port}{path}"

    def stderr_text(self) -> str:
        with self._cond:
            return "".join(self._stderr)

    def stdout_text(self) -> str:
        with self._cond:
            return "".join(self._stdout)

    def rss_kib(self) -> int:
        """VmRSS of the whole process tree: `fastproxy run -c` is a master whose
        workers (its children) do the proxying."""
        total = procinfo.rss_kib(procinfo.proc_tree(self.pid))
        if total == 0:
            raise RuntimeError("no VmRSS")
        return total

    def alive(self) -> bool:
        return self.proc.poll() is None

    def signal(self, sig: int) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def stop(self, timeout: float = 10) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        for t in self._threads:
            t.join(2)
        return self.proc.returncode


# ---------------------------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def origin() -> Iterator[Origin]:
    o = Origin()
    o.start()
    try:
        yield o
    finally:
        o.stop()


@pytest.fixture
def scripted() -> Iterator[Callable[[Script], ScriptedOrigin]]:
    """scripted(script): a started scripted_origin.ScriptedOrigin, closed after the test."""
    made: list[ScriptedOrigin] = []

    def make(script: Script) -> ScriptedOrigin:
        made.append(ScriptedOrigin(script))
        return made[-1]

    yield make
    for o in made:
        o.close()


@pytest.fixture
def raw_origin() -> Iterator[Callable[..., RawOrigin]]:
    """raw_origin(script, read_bodies=True): a started raw_origin.RawOrigin, closed after."""
    made: list[RawOrigin] = []

    def make(script: Callable[[RawReq], list[Any]], read_bodies: bool = True) -> RawOrigin:
        made.append(RawOrigin(script, read_bodies))
        return made[-1]

    yield make
    for o in made:
        o.close()


@pytest.fixture
def label_origins() -> Iterator[Callable[[str], LabelOrigin]]:
    """label_origins("A"): a started support.LabelOrigin, stopped after the test."""
    made: list[LabelOrigin] = []

    def make(name: str) -> LabelOrigin:
        made.append(LabelOrigin(name))
        return made[-1]

    yield make
    for o in made:
        o.close()


@pytest.fixture
def make_proxy(
    origin: Origin, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[..., ProxyProcess]]:
    procs: list[ProxyProcess] = []

    def factory(
        config: dict[str, Any] | None = None,
        *,
        merge: bool = True,
        argv: list[str] | None = None,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
        wait_ready: bool = True,
        ready_timeout: float = 15,
    ) -> ProxyProcess:
        workdir = Path(cwd) if cwd is not None else tmp_path_factory.mktemp("proxy")
        if argv is None:
            default = {
                "server": {"listen": ["127.0.0.1:0"], "pid_file": False},
                "log": {"access": "off"},
                "upstreams": {"app": {"servers": [origin.address]}},
                "routes": [{"path_prefix": "/", "upstream": "app"}],
            }
            doc = _merge(default, config or {}) if merge else (config or {})
            text = _toml_dumps(doc)
            cfg_dir = tmp_path_factory.mktemp("cfg")
            path = cfg_dir / "fastproxy.toml"
            path.write_text(text)
            p = ProxyProcess(["run", "-c", str(path)], workdir, env, path, text)
        else:
            p = ProxyProcess(list(argv), workdir, env)
        procs.append(p)
        if wait_ready:
            p.wait_ready(ready_timeout)
        return p

    yield factory
    for p in procs:
        p.stop(timeout=5)


@pytest.fixture
def proxy(make_proxy: Callable[..., ProxyProcess]) -> ProxyProcess:
    return make_proxy()


@pytest.fixture
def toml_dumps() -> Callable[[dict[str, Any]], str]:
    return _toml_dumps


@pytest.fixture
def raw_request() -> Callable[..., bytes]:
    return _raw_request


@pytest.fixture
def http_conn() -> Iterator[Callable[..., HTTPConn]]:
    conns: list[HTTPConn] = []

    def factory(
        port: int,
        timeout: float = 5,
        rcvbuf: int | None = None,
        tls: ssl.SSLContext | None = None,
        sni: str | None = None,
    ) -> HTTPConn:
        c = HTTPConn(port, timeout, rcvbuf=rcvbuf, tls=tls, sni=sni)
        conns.append(c)
        return c

    yield factory
    for c in conns:
        c.close()


@pytest.fixture
def read_response() -> Callable[..., Response]:
    def read(
        conn: HTTPConn | socket.socket,
        method: str = "GET",
        interim: bool = False,
        timeout: float | None = 5,
    ) -> Response:
        if isinstance(conn, HTTPConn):
            return _read_response(conn.reader, method, interim, timeout)
        return _read_response(_Reader(conn), method, interim, timeout)

    return read


@pytest.fixture
def payload() -> Callable[[int], bytes]:
    return _payload


class _WSCodec:
    """RFC 6455 framing for tests: ``frame(opcode, data, mask=True, fin=True) -> bytes`` and
    ``read_frame(conn: HTTPConn) -> (opcode, masked, payload)``."""

    frame = staticmethod(ws_frame)

    @staticmethod
    def read_frame(conn: HTTPConn, timeout: float = 5) -> tuple[int, bool, bytes]:
        conn.reader.deadline = time.monotonic() + timeout
        try:
            return ws_read_frame(conn.reader)
        finally:
            conn.reader.deadline = None


@pytest.fixture
def ws_codec() -> _WSCodec:
    return _WSCodec()


# ---------------------------------------------------------------------------------------------
# TLS: a test CA (trustme) and certificates written as files the proxy config names
# ---------------------------------------------------------------------------------------------


class TLSFiles:
    """``ca`` (trustme.CA), ``ca_path``; ``issue(*names, stem=None, ca=None) -> (cert, key)``
    writes a leaf certificate for ``names`` (a name may be ``*.x`` or an IP);
    ``client_context(**kw)`` trusts the CA; ``connect(port, sni=None, ctx=None)`` returns a
    connected ``ssl.SSLSocket`` (handshake done)."""

    def __init__(self, directory: Path) -> None:
        import trustme

        self.dir = directory
        self.ca = trustme.CA()
        self.ca_path = str(directory / "ca.pem")
        self.ca.cert_pem.write_to_path(self.ca_path)
        self._n = 0

    def issue(self, *names: str, stem: str | None = None, ca: Any = None) -> tuple[str, str]:
        self._n += 1
        stem = stem or f"leaf{self._n}"
        leaf = (ca or self.ca).issue_cert(*names)
        cert, key = str(self.dir / f"{stem}.crt"), str(self.dir / f"{stem}.key")
        Path(cert).write_bytes(b"".join(b.bytes() for b in leaf.cert_chain_pems))
        leaf.private_key_pem.write_to_path(key)
        return cert, key

    def client_context(self, alpn: list[str] | None = None) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=self.ca_path)
        ctx.check_hostname = False  # tests check which certificate came back themselves
        if alpn:
            ctx.set_alpn_protocols(alpn)
        return ctx

    def connect(
        self, port: int, sni: str | None = None, ctx: ssl.SSLContext | None = None, timeout=5.0
    ) -> ssl.SSLSocket:
        raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        try:
            return (ctx or self.client_context()).wrap_socket(raw, server_hostname=sni)
        except BaseException:
            raw.close()
            raise


@pytest.fixture
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    return TLSFiles(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def embed() -> Iterator[Callable[[dict[str, Any]], Embedded]]:
    started: list[Embedded] = []

    def make(conf: dict[str, Any]) -> Embedded:
        e = Embedded(fastproxy.Config.from_dict(conf))
        started.append(e)
        return e.start()

    yield make
    for e in started:
        e.stop()
