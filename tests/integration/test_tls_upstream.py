"""TLS from the proxy to upstreams: verification against a CA, SNI / name checks,
client certificates, keep-alive pooling over TLS, and the 502 for a server whose
certificate does not verify."""

from __future__ import annotations

import ssl

import trustme


def _tls_origin(origin, tls_files, *names: str, ca=None, client_ca: str | None = None):
    cert, key = tls_files.issue(*names, ca=ca)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    if client_ca is not None:
        ctx.load_verify_locations(cafile=client_ca)
        ctx.verify_mode = ssl.CERT_REQUIRED
    origin.tls_context = ctx


def test_https_server_verified_and_pooled(origin, make_proxy, tls_files, http_conn):
    _tls_origin(origin, tls_files, "127.0.0.1")
    p = make_proxy(
        {
            "upstreams": {
                "app": {
                    "servers": [f"https://{origin.address}"],
                    "tls": {"ca": tls_files.ca_path},
                }
            }
        }
    )
    c = http_conn(p.port)
    for i in range(3):
        r = c.roundtrip("GET", f"/n{i}")
        assert (r.status, r.body) == (200, f"GET /n{i}".encode())
    assert len(origin.wait_requests(3)) == 3
    assert origin.connections == 1  # keep-alive pooling works over TLS
    assert origin.errors == []


def test_server_name_sets_sni_and_checked_name(origin, make_proxy, tls_files, http_conn):
    _tls_origin(origin, tls_files, "backend.internal")
    p = make_proxy(
        {
            "upstreams": {
                "app": {
                    "servers": [origin.address],
                    "tls": {"ca": tls_files.ca_path, "server_name": "backend.internal"},
                }
            }
        }
    )
    r = http_conn(p.port).roundtrip("GET", "/sni")
    assert (r.status, r.body) == (200, b"GET /sni")


def test_wrong_ca_is_502_with_log_line(origin, make_proxy, tls_files, http_conn):
    other = trustme.CA()
    _tls_origin(origin, tls_files, "127.0.0.1", ca=other)
    p = make_proxy(
        {"upstreams": {"app": {"servers": [origin.address], "tls": {"ca": tls_files.ca_path}}}}
    )
    r = http_conn(p.port).roundtrip("GET", "/x")
    assert r.status == 502
    p.wait_log(r"502: connect failed: .*certificate verify failed")
    assert origin.requests == []


def test_verify_false_accepts_any_certificate(origin, make_proxy, tls_files, http_conn):
    _tls_origin(origin, tls_files, "127.0.0.1", ca=trustme.CA())
    p = make_proxy({"upstreams": {"app": {"servers": [origin.address], "tls": {"verify": False}}}})
    assert http_conn(p.port).roundtrip("GET", "/any").status == 200


def test_client_certificate_to_upstream(origin, make_proxy, tls_files, http_conn):
    _tls_origin(origin, tls_files, "127.0.0.1", client_ca=tls_files.ca_path)
    cc, ck = tls_files.issue("proxy.example", stem="proxy-client")
    tls = {"ca": tls_files.ca_path, "client_cert": cc, "client_key": ck}
    p = make_proxy({"upstreams": {"app": {"servers": [origin.address], "tls": tls}}})
    assert http_conn(p.port).roundtrip("GET", "/mtls").status == 200
    # without the client certificate the origin refuses the handshake: 502
    p2 = make_proxy(
        {"upstreams": {"app": {"servers": [origin.address], "tls": {"ca": tls_files.ca_path}}}}
    )
    assert http_conn(p2.port).roundtrip("GET", "/nocert").status == 502
