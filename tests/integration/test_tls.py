"""TLS listeners end to end (real proxy processes, certificates made by trustme):
handshake and request, SNI, protocol versions, ALPN, forwarding headers, HSTS, the
redirect-to-https listener, mTLS, bad input on a TLS port, certificate reload."""

from __future__ import annotations

import re
import shutil
import signal
import socket
import ssl
import time
from pathlib import Path

import pytest


def _tls_listen(cert: tuple[str, str], **tls) -> dict:
    return {"address": "127.0.0.1:0", "tls": {"cert": cert[0], "key": cert[1], **tls}}


def _leaf_names(sock: ssl.SSLSocket) -> list[str]:
    cert = sock.getpeercert()
    assert cert is not None
    return [v for k, v in cert.get("subjectAltName", ()) if k == "DNS"]


def _get(sock, read_response, target="/", host="app.example", headers=""):
    sock.sendall(f"GET {target} HTTP/1.1\r\nHost: {host}\r\n{headers}\r\n".encode())
    return read_response(sock)


def _ports(p, n: int) -> list[int]:
    """The ports of the first n listeners, in config order (one worker logs them in order)."""
    found: list[int] = []

    def enough() -> bool:
        found[:] = [int(x) for x in re.findall(r"listening on \S+?:(\d+)", p.stderr_text())]
        return len(found) >= n

    assert _wait(enough), p.stderr_text()
    return found[:n]


def _plain(port: int) -> socket.socket:
    """A plain listener beside the TLS one sits on 127.0.0.2 (one address twice is one
    listener)."""
    return socket.create_connection(("127.0.0.2", port), timeout=5)


def _wait(cond, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.02)
    return cond()


# ---------------------------------------------------------------------------------------------
# Handshake, SNI, versions, ALPN


def test_handshake_and_request(origin, make_proxy, tls_files, read_response):
    cert = tls_files.issue("app.example")
    p = make_proxy({"server": {"listen": [_tls_listen(cert)]}})
    with tls_files.connect(p.port, "app.example") as s:
        assert s.version() in ("TLSv1.2", "TLSv1.3")
        r = _get(s, read_response, "/hello")
        assert r.status == 200
        assert r.body == b"GET /hello"
        r = _get(s, read_response, "/again")  # keep-alive over TLS
        assert r.body == b"GET /again"
    [req, _] = origin.wait_requests(2)
    assert req.header("X-Forwarded-Proto") == "https"


def test_large_bodies_both_ways(origin, make_proxy, tls_files, read_response, payload):
    """Bodies bigger than any buffer: uvloop's TLS reads go straight into the
    protocol's own buffer, growing and sliding it like plain reads."""
    p = make_proxy({"server": {"listen": [_tls_listen(tls_files.issue("app.example"))]}})
    body = payload(3 << 20)
    with tls_files.connect(p.port, "app.example") as s:
        r = _get(s, read_response, "/bytes?n=5000000")
        assert (r.status, r.body) == (200, payload(5000000))
        s.sendall(
            b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % len(body) + body
        )
        r = read_response(s, method="POST")
        assert r.status == 200 and r.body == body


def test_websocket_over_tls(origin, make_proxy, tls_files, http_conn, ws_codec):
    p = make_proxy({"server": {"listen": [_tls_listen(tls_files.issue("app.example"))]}})
    c = http_conn(p.port, tls=tls_files.client_context(), sni="app.example")
    c.request(
        "GET",
        "/ws",
        headers=[
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ("Sec-WebSocket-Version", "13"),
        ],
    )
    assert c.read_response().status == 101
    big = bytes(range(256)) * 400
    c.send(ws_codec.frame(2, big))
    assert ws_codec.read_frame(c) == (2, False, big)
    c.send(ws_codec.frame(8, (1000).to_bytes(2, "big")))
    assert ws_codec.read_frame(c) == (8, False, (1000).to_bytes(2, "big"))


def test_sni_picks_certificate_and_default(make_proxy, tls_files, read_response):
    default = tls_files.issue("default.example")
    a = tls_files.issue("a.example")
    b = tls_files.issue("*.b.example")
    tls = {
        "certificates": [
            {"cert": a[0], "key": a[1], "server_names": ["a.example"]},
            {"cert": b[0], "key": b[1], "server_names": ["*.b.example"]},
        ]
    }
    p = make_proxy({"server": {"listen": [_tls_listen(default, **tls)]}, "log": {"level": "debug"}})
    for sni, want in [
        ("a.example", "a.example"),
        ("x.b.example", "*.b.example"),
        (None, "default.example"),
        ("unknown.example", "default.example"),  # unknown name: the default, no failure
        ("y.x.b.example", "default.example"),  # a wildcard covers one label only
    ]:
        with tls_files.connect(p.port, sni) as s:
            assert _leaf_names(s) == [want], sni
            assert _get(s, read_response).status == 200
    p.wait_log(r"DEBUG .*no certificate for SNI name 'unknown.example'")


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1])
def test_old_protocol_versions_refused(make_proxy, tls_files, version):
    p = make_proxy({"server": {"listen": [_tls_listen(tls_files.issue("app.example"))]}})
    ctx = tls_files.client_context()
    ctx.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    ctx.maximum_version = version
    ctx.set_ciphers("ALL:@SECLEVEL=0")
    with pytest.raises((ssl.SSLError, ConnectionError)):
        tls_files.connect(p.port, "app.example", ctx).close()
    assert p.alive()


def test_min_version_13_refuses_12(make_proxy, tls_files):
    cert = tls_files.issue("app.example")
    p = make_proxy({"server": {"listen": [_tls_listen(cert, min_version="1.3")]}})
    ctx = tls_files.client_context()
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    with pytest.raises(ssl.SSLError):
        tls_files.connect(p.port, "app.example", ctx).close()
    with tls_files.connect(p.port, "app.example") as s:
        assert s.version() == "TLSv1.3"


def test_tls12_uses_forward_secret_aead(make_proxy, tls_files):
    p = make_proxy({"server": {"listen": [_tls_listen(tls_files.issue("app.example"))]}})
    ctx = tls_files.client_context()
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    with tls_files.connect(p.port, "app.example", ctx) as s:
        name, proto, _ = s.cipher()
        assert proto == "TLSv1.2"
        assert name.startswith("ECDHE-") and ("GCM" in name or "CHACHA20" in name)
        assert s.compression() is None


def test_alpn_offers_http11_only(make_proxy, tls_files):
    p = make_proxy({"server": {"listen": [_tls_listen(tls_files.issue("app.example"))]}})
    ctx = tls_files.client_context(alpn=["h2", "http/1.1"])
    with tls_files.connect(p.port, "app.example", ctx) as s:
        assert s.selected_alpn_protocol() == "http/1.1"
    ctx = tls_files.client_context(alpn=["h2"])
    with tls_files.connect(p.port, "app.example", ctx) as s:
        assert s.selected_alpn_protocol() is None  # h2 is never agreed to


# ---------------------------------------------------------------------------------------------
# Forwarding headers, HSTS, redirect to https


def test_forwarded_proto_and_hsts(origin, make_proxy, tls_files, read_response):
    cert = tls_files.issue("app.example")
    p = make_proxy(
        {
            "server": {
                "listen": ["127.0.0.2:0", _tls_listen(cert, hsts="max-age=31536000")],
                "forwarded": True,
            }
        }
    )
    plain_port, tls_port = _ports(p, 2)
    with tls_files.connect(tls_port, "app.example") as s:
        r = _get(s, read_response, headers="X-Forwarded-Proto: http\r\n")
    assert r.header("Strict-Transport-Security") == "max-age=31536000"
    [req] = origin.wait_requests(1)
    assert req.header_all("X-Forwarded-Proto") == ["https"]  # the client's copy is replaced
    assert req.header("Forwarded").endswith(";proto=https")
    with _plain(plain_port) as s:
        r = _get(s, read_response)
    assert r.header("Strict-Transport-Security") is None  # only on TLS listeners
    req = origin.wait_requests(2)[1]
    assert req.header("X-Forwarded-Proto") == "http"
    assert req.header("Forwarded").endswith(";proto=http")


def test_plain_listener_redirects_to_https(origin, make_proxy, tls_files, read_response):
    cert = tls_files.issue("app.example")
    p = make_proxy(
        {
            "server": {
                "listen": [
                    {"address": "127.0.0.2:0", "redirect_https": True, "https_port": 8443},
                    _tls_listen(cert),
                ]
            }
        }
    )
    plain = _ports(p, 2)[0]

    def ask(method: str, target: str, host: str, body: bytes = b"") -> tuple[int, str | None]:
        with _plain(plain) as s:
            s.sendall(
                f"{method} {target} HTTP/1.1\r\nHost: {host}\r\n"
                f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            r = read_response(s, method=method)
            return r.status, r.header("Location")

    assert ask("GET", "/a/b?x=1&y=2", "app.example:8080") == (
        301,
        "https://app.example:8443/a/b?x=1&y=2",
    )
    assert ask("HEAD", "/h", "app.example")[0] == 301
    # other methods: 308 keeps the method and the body
    assert ask("POST", "/form", "app.example", b"k=v") == (308, "https://app.example:8443/form")
    assert ask("GET", "/", "evil.example/path")[0] == 400  # not a host: no redirect built
    assert origin.requests == []


# ---------------------------------------------------------------------------------------------
# Client certificates


def _mtls_proxy(make_proxy, tls_files, verify):
    cert = tls_files.issue("app.example")
    tls = {"client_ca": tls_files.ca_path, "verify_client": verify}
    return make_proxy({"server": {"listen": [_tls_listen(cert, **tls)]}})


def _client_cert_ctx(tls_files, name="client.example"):
    ctx = tls_files.client_context()
    leaf = tls_files.ca.issue_cert(name, common_name="alice", organization_name="Example")
    leaf.configure_cert(ctx)
    return ctx


def test_mtls_required(origin, make_proxy, tls_files, read_response):
    p = _mtls_proxy(make_proxy, tls_files, "required")
    with (
        pytest.raises((ssl.SSLError, ConnectionError)),
        tls_files.connect(p.port, "app.example") as s,
    ):
        # TLS 1.3: the refusal of a missing certificate arrives after the handshake
        _get(s, lambda sock: sock.recv(1) or (_ for _ in ()).throw(ConnectionError("eof")))
    ctx = _client_cert_ctx(tls_files)
    with tls_files.connect(p.port, "app.example", ctx) as s:
        r = _get(s, read_response, headers="X-Client-Cert-Subject: CN=forged\r\n")
    assert r.status == 200
    [req] = origin.wait_requests(1)
    [subject] = req.header_all("X-Client-Cert-Subject")
    assert subject.startswith("CN=alice,") and subject.endswith(",O=Example")  # RFC 4514 order


def test_mtls_optional_strips_forged_header(origin, make_proxy, tls_files, read_response):
    p = _mtls_proxy(make_proxy, tls_files, "optional")
    with tls_files.connect(p.port, "app.example") as s:
        r = _get(s, read_response, headers="X-Client-Cert-Subject: CN=forged\r\n")
    assert r.status == 200
    [req] = origin.wait_requests(1)
    assert req.header("X-Client-Cert-Subject") is None
    with tls_files.connect(p.port, "app.example", _client_cert_ctx(tls_files)) as s:
        assert _get(s, read_response).status == 200
    subject = origin.wait_requests(2)[1].header("X-Client-Cert-Subject")
    assert subject.startswith("CN=alice,") and subject.endswith(",O=Example")


# ---------------------------------------------------------------------------------------------
# Bad input on a TLS port


def test_plain_http_on_tls_port(make_proxy, tls_files, raw_request, read_response):
    p = make_proxy(
        {
            "server": {"listen": [_tls_listen(tls_files.issue("app.example"))]},
            "log": {"level": "debug"},
        }
    )
    out = raw_request(p.port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert not out.startswith(b"HTTP/")  # no plaintext answer leaks out
    assert p.alive()
    p.wait_log(r"DEBUG .*TLS handshake did not complete")
    with tls_files.connect(p.port, "app.example") as s:
        assert _get(s, read_response).status == 200


def test_handshake_timeout_closes_silent_client(make_proxy, tls_files):
    cert = tls_files.issue("app.example")
    p = make_proxy({"server": {"listen": [_tls_listen(cert)], "tls_handshake_timeout": "300ms"}})
    with socket.create_connection(("127.0.0.1", p.port), timeout=5) as s:
        s.sendall(b"\x16\x03\x01")  # the start of a ClientHello, then nothing
        t0 = time.monotonic()
        assert s.recv(100) == b""  # closed by the proxy
        assert time.monotonic() - t0 < 4
    assert p.alive()


# ---------------------------------------------------------------------------------------------
# Reload


def test_sighup_swaps_certificate_request_in_flight_finishes(make_proxy, tls_files, read_response):
    old = tls_files.issue("old.example", stem="site")
    p = make_proxy({"server": {"listen": [_tls_listen(old)]}})
    early = tls_files.connect(p.port, "old.example")
    early.sendall(b"GET /slow?delay=1.5 HTTP/1.1\r\nHost: app.example\r\n\r\n")
    tls_files.issue("new.example", stem="site")  # same file names, new contents
    p.signal(signal.SIGHUP)
    p.wait_log(r"reloaded: generation 2", timeout=15)

    def served_new() -> bool:
        with tls_files.connect(p.port, "new.example") as s:
            return _leaf_names(s) == ["new.example"]

    assert _wait(served_new)
    r = read_response(early)  # the old generation finishes what it started
    assert (r.status, r.body) == (200, b"slow")
    early.close()


def test_embedded_reload_swaps_certificate_connection_stays(tls_files, origin, tmp_path):
    """Proxy.reload (one process): new handshakes get the new certificate and a
    connection opened before keeps serving requests on the old one."""
    import asyncio

    import uvloop

    from fastproxy import Proxy
    from fastproxy.config import Config
    from fastproxy.tls import TLSError

    cert = tls_files.issue("old.example", stem="site")
    tls = f'{{ cert = "{cert[0]}", key = "{cert[1]}" }}'
    text = (
        "[server]\n"
        f'listen = [{{ address = "127.0.0.1:0", tls = {tls} }}]\n'
        'pid_file = false\n[log]\naccess = "off"\n'
        f'[upstreams.app]\nservers = ["{origin.address}"]\n'
    )

    def request(s: ssl.SSLSocket, target: str) -> bytes:
        s.sendall(f"GET {target} HTTP/1.1\r\nHost: a\r\n\r\n".encode())
        data = b""
        while not data.endswith(target.encode()):
            chunk = s.recv(4096)
            assert chunk, data
            data += chunk
        return data

    async def main() -> None:
        async with Proxy(Config.from_toml(text)) as proxy:
            port = proxy.addresses[0][1]
            early = await asyncio.to_thread(tls_files.connect, port, "old.example")
            assert b"200 OK" in await asyncio.to_thread(request, early, "/one")
            tls_files.issue("new.example", stem="site")
            await proxy.reload(Config.from_toml(text))
            fresh = await asyncio.to_thread(tls_files.connect, port, "new.example")
            assert _leaf_names(fresh) == ["new.example"]
            fresh.close()
            assert _leaf_names(early) == ["old.example"]
            assert b"200 OK" in await asyncio.to_thread(request, early, "/two")
            early.close()
            Path(cert[1]).write_text("not a key\n")  # broken: refused, old one stays
            with pytest.raises(TLSError, match="site.key"):
                await proxy.reload(Config.from_toml(text))
            again = await asyncio.to_thread(tls_files.connect, port, "new.example")
            assert _leaf_names(again) == ["new.example"]
            assert b"200 OK" in await asyncio.to_thread(request, again, "/three")
            again.close()

    uvloop.run(main())


def test_broken_certificate_on_reload_keeps_old(make_proxy, tls_files, read_response):
    good = tls_files.issue("app.example", stem="site")
    p = make_proxy({"server": {"listen": [_tls_listen(good)]}})
    shutil.copy(good[0], good[0] + ".bak")
    with open(good[0], "w") as fh:
        fh.write("-----BEGIN CERTIFICATE-----\nbroken\n-----END CERTIFICATE-----\n")
    p.signal(signal.SIGHUP)
    m = p.wait_log(r"reload failed: .*site\.crt", timeout=10)
    assert "keeping generation 1" in m.string
    with tls_files.connect(p.port, "app.example") as s:
        assert _leaf_names(s) == ["app.example"]
        assert _get(s, read_response).status == 200
