"""TLS configuration: listen tables, certificates, upstream tls, their errors (key path and
line), and the control-plane helpers of fastproxy/tls.py (SNI choice, subject format,
redirect target, `fastproxy check` inspection)."""

from __future__ import annotations

import datetime
import ssl
import subprocess
import sys
from pathlib import Path

import pytest
import trustme

from fastproxy.config import Address, Config, ConfigError, ListenOptions, UpstreamTLS
from fastproxy.config_tls import CertSpec, ListenerTLS
from fastproxy.tls import (
    CertSet,
    ListenerRuntime,
    TLSError,
    check_certificates,
    client_subject,
    server_context,
    upstream_context,
    validate,
)

ROOT = Path(__file__).resolve().parents[2]
UPSTREAM = '[upstreams.app]\nservers = ["127.0.0.1:9000"]\n'


def _errors(text: str) -> list[tuple[str, int | None, str]]:
    with pytest.raises(ConfigError) as info:
        Config.from_toml(text, source="t.toml")
    return [(i.path, i.line, i.message) for i in info.value.issues]


@pytest.fixture
def certs(tmp_path: Path):
    ca = trustme.CA()
    out = {}
    for stem, names, days in [
        ("a", ("a.example",), 365),
        ("b", ("*.b.example",), 365),
        ("soon", ("soon.example",), 5),
    ]:
        not_after = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=days)
        leaf = ca.issue_cert(*names, not_after=not_after)
        cert, key = tmp_path / f"{stem}.crt", tmp_path / f"{stem}.key"
        leaf.cert_chain_pems[0].write_to_path(str(cert))
        leaf.private_key_pem.write_to_path(str(key))
        out[stem] = (str(cert), str(key))
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    out["ca"] = (str(tmp_path / "ca.pem"), "")
    return out


# --------------------------------------------------------------------------- parsing


def test_plain_strings_and_tables_mix(tmp_path: Path) -> None:
    cfg_path = tmp_path / "conf" / "f.toml"
    cfg_path.parent.mkdir()
    cfg_path.write_text(
        "[server]\n"
        'listen = ["127.0.0.1:8080",\n'
        '  { address = "127.0.0.1:8443", tls = { cert = "a.crt", key = "/abs/a.key",'
        ' hsts = "max-age=31536000", certificates = ['
        '{ cert = "b.crt", key = "b.key", server_names = ["*.B.example", "c.example"] }] } },\n'
        '  { address = "127.0.0.1:8081", redirect_https = true }]\n'
        'tls_handshake_timeout = "3s"\n' + UPSTREAM
    )
    cfg = Config.load(cfg_path)
    s = cfg.server
    assert s.listen == (
        Address("127.0.0.1", 8080),
        Address("127.0.0.1", 8443),
        Address("127.0.0.1", 8081),
    )
    assert s.tls_handshake_timeout == 3.0
    assert s.options(Address("127.0.0.1", 8080)) == ListenOptions()
    tls = s.options(Address("127.0.0.1", 8443)).tls
    assert tls is not None
    base = str(cfg_path.parent)
    assert tls.certificates == (
        CertSpec(f"{base}/a.crt", "/abs/a.key"),  # relative to the config file
        CertSpec(f"{base}/b.crt", f"{base}/b.key", ("*.b.example", "c.example")),
    )
    assert (tls.min_version, tls.session_tickets, tls.verify_client) == ("1.2", False, "off")
    assert tls.hsts == "max-age=31536000"
    assert s.options(Address("127.0.0.1", 8081)).redirect_https


def test_array_of_tables_form_and_error_line() -> None:
    text = (
        "[[server.listen]]\n"
        'address = "127.0.0.1:8443"\n'
        "[server.listen.tls]\n"
        'cert = "/a.crt"\n'
        'key = "/a.key"\n'
        "[[server.listen.tls.certificates]]\n"
        'cert = "/b.crt"\n'
        'key = "/b.key"\n'
        'server_names = ["b.example"]\n' + UPSTREAM
    )
    tls = Config.from_toml(text).server.options(Address("127.0.0.1", 8443)).tls
    assert tls is not None and [c.cert for c in tls.certificates] == ["/a.crt", "/b.crt"]
    bad = text.replace('server_names = ["b.example"]', 'server_names = ["b..example"]')
    errors = _errors(bad)
    assert errors[0][:2] == ("server.listen[0].tls.certificates[0].server_names[0]", 9), errors


def test_client_ca_defaults_to_required() -> None:
    cfg = Config.from_toml(
        '[server]\nlisten = [{ address = "127.0.0.1:1", tls = { cert = "/c", key = "/k",'
        ' client_ca = "/ca" } }]\n' + UPSTREAM
    )
    tls = cfg.server.options(Address("127.0.0.1", 1)).tls
    assert tls is not None
    assert (tls.verify_client, tls.client_cert_header) == ("required", "X-Client-Cert-Subject")


def test_upstream_servers_https_and_tls_table() -> None:
    cfg = Config.from_toml(
        "[upstreams.app]\n"
        'servers = ["https://backend.example", "http://10.0.0.1", {address = "https://[::1]"},'
        ' "10.0.0.2:81"]\n'
        'tls = { ca = "/ca.pem", server_name = "api.internal" }\n'
    )
    up = cfg.upstreams["app"]
    assert [(str(s.address), s.tls) for s in up.servers] == [
        ("backend.example:443", True),
        ("10.0.0.1:80", False),
        ("[::1]:443", True),
        ("10.0.0.2:81", False),
    ]
    assert up.tls == UpstreamTLS(ca="/ca.pem", server_name="api.internal")


@pytest.mark.parametrize(
    ("text", "path", "line", "fragment"),
    [
        (
            '[server]\nlisten = [{ address = "127.0.0.1:1", tls = { cert = "/c" } }]\n',
            "server.listen[0].tls.key",
            2,
            "'cert' and 'key' go together",
        ),
        (
            '[server]\nlisten = [{ address = "127.0.0.1:1", tls = {} }]\n',
            "server.listen[0].tls",
            2,
            "needs 'cert' and 'key' or 'certificates'",
        ),
        (
            '[server]\nlisten = [\n  "127.0.0.1:2",\n'
            '  { address = "127.0.0.1:1", tls = { cert = "/c", key = "/k",'
            ' min_version = "1.1" } },\n]\n',
            "server.listen[1].tls.min_version",
            4,
            "must be one of '1.2', '1.3'",
        ),
        (
            '[server]\nlisten = [{ address = "127.0.0.1:1", tls = { cert = "/c", key = "/k",'
            ' verify_client = "required" } }]\n',
            "server.listen[0].tls.verify_client",
            2,
            "needs 'client_ca'",
        ),
        (
            '[server]\nlisten = [{ address = "127.0.0.1:1", tls = { cert = "/c", key = "/k",'
            ' ciphers = "NOPE-NOTHING" } }]\n',
            "server.listen[0].tls.ciphers",
            2,
            "no cipher",
        ),
        (
            '[server]\nlisten = [{ address = "127.0.0.1:1", tls = { cert = "/c", key = "/k",'
            ' hsts = "includeSubDomains" } }]\n',
            "server.listen[0].tls.hsts",
            2,
            "max-age",
        ),
        (
            '[server]\nlisten = [{ address = "127.0.0.1:1", tls = { cert = "/c", key = "/k",'
            ' certificates = [{ cert = "/d", server_names = ["a*.x"] }] } }]\n',
            "server.listen[0].tls.certificates[0]",
            2,
            "missing required key 'key'",
        ),
        (
            '[server]\nlisten = [{ address = "127.0.0.1:1", redirect_https = true }]\n',
            "server.listen[0].redirect_https",
            2,
            "needs 'https_port'",
        ),
        (
            '[server]\nlisten = [{ address = "127.0.0.1:1", tls = { cert = "/c", key = "/k" },'
            " redirect_https = true }]\n",
            "server.listen[0].redirect_https",
            2,
            "cannot redirect",
        ),
        (
            '[server]\nlisten = [{ adress = "127.0.0.1:1" }]\n',
            "server.listen[0].adress",
            2,
            "did you mean 'address'",
        ),
        (
            '[server]\nlisten = ["127.0.0.1:0", { address = "127.0.0.1:0", redirect_https = true,'
            " https_port = 443 }]\n",
            "server.listen[1]",
            2,
            "duplicate address",
        ),
    ],
)
def test_listen_errors_name_key_and_line(text: str, path: str, line: int, fragment: str) -> None:
    errors = _errors(text + UPSTREAM)
    assert any(p == path and ln == line and fragment in m for p, ln, m in errors), errors


@pytest.mark.parametrize(
    ("servers", "tls", "path", "fragment"),
    [
        ('["ftp://x:1"]', "", "upstreams.app.servers[0]", "scheme must be"),
        ('["https://x/api"]', "", "upstreams.app.servers[0]", "no path"),
        ('["x:1"]', 'tls = { client_cert = "/c" }', "upstreams.app.tls.client_key", "together"),
        ('["x:1"]', "tls = { verify = 1 }", "upstreams.app.tls.verify", "expected boolean"),
    ],
)
def test_upstream_tls_errors(servers: str, tls: str, path: str, fragment: str) -> None:
    errors = _errors(f"[upstreams.app]\nservers = {servers}\n{tls}\n")
    assert any(p == path and fragment in m for p, _, m in errors), errors


# --------------------------------------------------------------------------- tls.py


def _spec(certs, **kw) -> ListenerTLS:
    a, b = certs["a"], certs["b"]
    return ListenerTLS(
        certificates=(CertSpec(*a), CertSpec(b[0], b[1], ("*.b.example", "exact.example"))),
        **kw,
    )


def test_certset_pick(certs) -> None:
    cs = CertSet.load(_spec(certs))
    assert cs.pick(None) is cs.default
    assert cs.pick("x.b.example") is cs.wildcard["b.example"]
    assert cs.pick("X.B.Example.") is cs.wildcard["b.example"]
    assert cs.pick("exact.example") is cs.exact["exact.example"]
    assert cs.pick("b.example") is cs.default  # "*." needs one more label
    assert cs.pick("y.x.b.example") is cs.default
    assert cs.pick("nobody.example") is cs.default


def test_server_context_defaults(certs) -> None:
    ctx, holder = server_context(_spec(certs))
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
    assert ctx.maximum_version == ssl.TLSVersion.TLSv1_3
    assert ctx.options & ssl.OP_NO_COMPRESSION
    assert ctx.options & ssl.OP_NO_TICKET
    assert ctx.options & ssl.OP_NO_RENEGOTIATION
    names = {c["name"] for c in ctx.get_ciphers() if c["protocol"] == "TLSv1.2"}
    assert names and all(n.startswith("ECDHE-") for n in names)
    assert all(c["aead"] for c in ctx.get_ciphers())
    assert ctx.sni_callback is not None and len(holder) == 1
    ctx13, _ = server_context(_spec(certs, min_version="1.3", session_tickets=True))
    assert ctx13.minimum_version == ssl.TLSVersion.TLSv1_3
    assert not ctx13.options & ssl.OP_NO_TICKET


def test_broken_files_are_named(certs, tmp_path: Path) -> None:
    bad = tmp_path / "bad.crt"
    bad.write_text("-----BEGIN CERTIFICATE-----\nxx\n-----END CERTIFICATE-----\n")
    with pytest.raises(TLSError, match="bad.crt"):
        CertSet.load(ListenerTLS(certificates=(CertSpec(str(bad), certs["a"][1]),)))
    with pytest.raises(TLSError, match="cannot read key .*missing.key"):
        CertSet.load(ListenerTLS(certificates=(CertSpec(certs["a"][0], "/nope/missing.key"),)))
    mismatch = ListenerTLS(certificates=(CertSpec(certs["a"][0], certs["b"][1]),))
    with pytest.raises(TLSError, match="a.crt with key .*b.key"):
        CertSet.load(mismatch)
    with pytest.raises(TLSError, match="ca /nope.pem"):
        upstream_context(UpstreamTLS(ca="/nope.pem"))


def test_validate_covers_upstream_files(certs) -> None:
    cfg = Config.from_toml('[upstreams.app]\nservers = ["https://x"]\ntls = { ca = "/nope.pem" }\n')
    with pytest.raises(TLSError, match="/nope.pem"):
        validate(cfg)


def test_client_subject_rfc4514() -> None:
    assert client_subject(None) is None
    assert client_subject({}) is None
    cert = {
        "subject": (
            (("countryName", "DE"),),
            (("organizationName", "A, B"),),
            (("commonName", "alice"),),
        )
    }
    assert client_subject(cert) == "CN=alice,O=A\\, B,C=DE"
    assert client_subject({"subject": ((("commonName", "x\r\ny"),),)}) == "CN=x\\0d\\0ay"
    assert client_subject({"subject": ((("commonName", "Jürgen"),),)}) == "CN=J\\c3\\bcrgen"


@pytest.mark.parametrize(
    ("safe", "host", "target", "port", "want"),
    [
        (True, b"a.example", b"/p?q=1", 443, (301, b"https://a.example/p?q=1")),
        (True, b"a.example:8080", b"/", 8443, (301, b"https://a.example:8443/")),
        (False, b"[::1]:8080", b"/x", 443, (308, b"https://[::1]/x")),
        (True, b"", b"/", 443, (301, b"https://localhost/")),
        (True, b"evil.example/x", b"/", 443, (400, b"")),
        (True, b"a b", b"/", 443, (400, b"")),
    ],
)
def test_redirect_target(safe, host, target, port, want) -> None:
    rt = ListenerRuntime(ListenOptions(redirect_https=True), port)
    assert rt.redirect(safe, host, target) == want


def test_check_warns_expiry_and_sni_coverage(certs) -> None:
    a, b, soon = certs["a"], certs["b"], certs["soon"]
    text = (
        '[server]\nlisten = [{ address = "127.0.0.1:1", tls = { certificates = [\n'
        f'  {{ cert = "{a[0]}", key = "{a[1]}", server_names = ["a.example", "z.example"] }},\n'
        f'  {{ cert = "{b[0]}", key = "{b[1]}", server_names = ["q.b.example"] }},\n'
        f'  {{ cert = "{soon[0]}", key = "{soon[1]}" }} ] }} }}]\n' + UPSTREAM
    )
    errors, warnings = check_certificates(Config.from_toml(text))
    assert errors == []
    assert any("soon.crt expires in" in w for w in warnings), warnings
    assert any("'z.example' is not covered" in w for w in warnings), warnings
    assert not any("a.example'" in w or "q.b.example" in w for w in warnings), warnings


def test_cli_check_reports_broken_pair(certs, tmp_path: Path) -> None:
    a, b = certs["a"], certs["b"]
    cfg = tmp_path / "f.toml"
    cfg.write_text(
        f'[server]\nlisten = [{{ address = "127.0.0.1:1", tls = {{ cert = "{a[0]}",'
        f' key = "{b[1]}" }} }}]\n' + UPSTREAM
    )
    r = subprocess.run(
        [sys.executable, "-m", "fastproxy", "check", "-c", str(cfg)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert r.returncode == 1
    assert "a.crt" in r.stderr and "b.key" in r.stderr
