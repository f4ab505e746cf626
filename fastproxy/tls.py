"""TLS: contexts for listeners (SNI, mTLS, reload) and for upstream connections.

Control plane only.  A TLS listener's server keeps one SSLContext for its
whole life; its ``sni_callback`` hands every handshake the context of the
certificate that matches the client's SNI name, read from a swappable
``CertSet``.  A reload builds a new CertSet first and swaps it only when
every file loaded, so a broken certificate leaves the old one serving and
connections already open are never touched.
"""

from __future__ import annotations

import datetime
import logging
import re
import ssl
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from fastproxy.config import Address, Config, HeaderRules, UpstreamConfig
from fastproxy.config_tls import CertSpec, ListenerTLS, ListenOptions, UpstreamTLS

__all__ = [
    "CertSet",
    "ListenerRuntime",
    "TLSError",
    "attach_upstream_tls",
    "check_certificates",
    "client_subject",
    "listener_runtimes",
    "server_context",
    "upstream_context",
    "validate",
]

log = logging.getLogger("fastproxy")

# Forward-secret AEAD suites for TLS 1.2 (TLS 1.3 suites are all AEAD + ECDHE/DHE).
DEFAULT_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"
ALPN = ["http/1.1"]


class TLSError(Exception):
    """A certificate, key or CA file that cannot be used; the message names it."""


def _versions(ctx: ssl.SSLContext, min_version: str) -> None:
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3 if min_version == "1.3" else ssl.TLSVersion.TLSv1_2
    ctx.maximum_version = ssl.TLSVersion.TLSv1_3


def _base_server_context(spec: ListenerTLS) -> ssl.SSLContext:
    """Protocol settings shared by every context of a listener."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    _versions(ctx, spec.min_version)
    ctx.set_ciphers(spec.ciphers or DEFAULT_CIPHERS)
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    ctx.options |= getattr(ssl, "OP_NO_RENEGOTIATION", 0)
    if not spec.session_tickets:
        ctx.options |= ssl.OP_NO_TICKET
        ctx.num_tickets = 0  # TLS 1.3 sends tickets unless told not to
    ctx.set_alpn_protocols(ALPN)
    if spec.client_ca is not None:
        try:
            ctx.load_verify_locations(cafile=spec.client_ca)
        except (OSError, ssl.SSLError) as exc:
            raise TLSError(f"cannot load client_ca {spec.client_ca}: {_why(exc)}") from None
        ctx.verify_mode = (
            ssl.CERT_REQUIRED if spec.verify_client == "required" else ssl.CERT_OPTIONAL
        )
    return ctx


def _why(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return str(exc.reason).lower().replace("_", " ")
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc)


def _load_chain(ctx: ssl.SSLContext, cert: CertSpec) -> None:
    try:
        with open(cert.cert, "rb"):
            pass
    except OSError as exc:
        raise TLSError(f"cannot read certificate {cert.cert}: {_why(exc)}") from None
    try:
        with open(cert.key, "rb"):
            pass
    except OSError as exc:
        raise TLSError(f"cannot read key {cert.key}: {_why(exc)}") from None
    try:
        ctx.load_cert_chain(cert.cert, cert.key)
    except (OSError, ssl.SSLError) as exc:
        raise TLSError(
            f"cannot use certificate {cert.cert} with key {cert.key}: {_why(exc)}"
        ) from None


@dataclass
class CertSet:
    """The contexts of one listener's certificates, looked up by SNI name."""

    default: ssl.SSLContext
    exact: dict[str, ssl.SSLContext] = field(default_factory=dict)
    wildcard: dict[str, ssl.SSLContext] = field(default_factory=dict)  # "b.example" for *.

    @classmethod
    def load(cls, spec: ListenerTLS) -> CertSet:
        """Load every certificate now; TLSError names the first file that fails."""
        contexts = []
        for cert in spec.certificates:
            ctx = _base_server_context(spec)
            _load_chain(ctx, cert)
            contexts.append(ctx)
        out = cls(contexts[0])
        for cert, ctx in zip(spec.certificates, contexts, strict=True):
            for name in cert.server_names:
                if name.startswith("*."):
                    out.wildcard.setdefault(name[2:], ctx)
                else:
                    out.exact.setdefault(name, ctx)
        return out

    def pick(self, name: str | None) -> ssl.SSLContext:
        if not name:
            return self.default
        name = name.lower().rstrip(".")
        found = self.exact.get(name)
        if found is None:
            _, _, parent = name.partition(".")  # "*." covers exactly one label
            found = self.wildcard.get(parent)
        if found is None:
            log.debug("TLS: no certificate for SNI name %r; using the default", name)
            return self.default
        return found


def server_context(spec: ListenerTLS) -> tuple[ssl.SSLContext, list[CertSet]]:
    """The listening context and the (one-element, swappable) CertSet holder its
    sni_callback reads.  Raises TLSError naming a file that cannot be used."""
    certs = [CertSet.load(spec)]
    ctx = _base_server_context(spec)
    _load_chain(ctx, spec.certificates[0])

    def on_sni(sslobj: ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> None:
        chosen = certs[0].pick(name)
        if sslobj.context is not chosen:
            sslobj.context = chosen
        return None

    ctx.sni_callback = on_sni
    return ctx, certs


# --------------------------------------------------------------------------- listeners

_RDN_NAMES = {
    "commonName": "CN",
    "countryName": "C",
    "localityName": "L",
    "stateOrProvinceName": "ST",
    "organizationName": "O",
    "organizationalUnitName": "OU",
    "domainComponent": "DC",
    "userId": "UID",
    "emailAddress": "emailAddress",
}


def _rdn_escape(value: str) -> str:
    out = []
    for i, ch in enumerate(value):
        if ch in ',+"\\<>;=' or (ch in " #" and i == 0) or (ch == " " and i == len(value) - 1):
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) >= 0x7F:  # a header value stays ASCII: UTF-8 hex pairs
            out.append("".join(f"\\{b:02x}" for b in ch.encode("utf-8")))
        else:
            out.append(ch)
    return "".join(out)


def client_subject(peercert: dict[str, Any] | None) -> str | None:
    """RFC 4514 string of a verified client certificate's subject (most
    significant RDN last, as nginx's $ssl_client_s_dn), None without one."""
    if not peercert or not peercert.get("subject"):
        return None
    rdns = []
    for rdn in reversed(peercert["subject"]):
        rdns.append("+".join(f"{_RDN_NAMES.get(k, k)}={_rdn_escape(v)}" for k, v in rdn))
    return ",".join(rdns)


_REDIRECT_HOST = re.compile(rb"[A-Za-z0-9_.-]+|\[[0-9A-Fa-f:.]+\]")


class ListenerRuntime:
    """What a client connection on one listener reads (see ClientProtocol):
    the scheme for X-Forwarded-Proto / Forwarded, header rules for every
    request and response, the redirect-to-https answer."""

    def __init__(self, opts: ListenOptions, https_port: int | None) -> None:
        from fastproxy._tables import HeaderRules as Rules

        tls = opts.tls
        self.proto = b"https" if tls is not None else b"http"
        self.redirect_https = opts.redirect_https
        self.https_port = opts.https_port or https_port or 443
        hsts = () if tls is None or tls.hsts is None else (("Strict-Transport-Security", tls.hsts),)
        self.resp_rules = Rules(HeaderRules(set=hsts)) if hsts else None
        self.per_connection = tls is not None and tls.verify_client != "off"
        self.cert_header = tls.client_cert_header if tls is not None else ""
        # Without a certificate the client's own copy of the header is still dropped.
        self._strip = (
            Rules(HeaderRules(remove=(self.cert_header,))) if self.per_connection else None
        )
        self.req_rules = self._strip
        self._rules = Rules

    def handshake_failed(self) -> None:
        """A client went away before its TLS handshake completed: not TLS (plain
        HTTP), refused (version, client certificate), or timed out."""
        if self.proto == b"https" and log.isEnabledFor(logging.DEBUG):
            log.debug("TLS handshake did not complete (not TLS, refused or timed out)")

    def client_rules(self, transport: Any) -> Any:
        subject = client_subject(transport.get_extra_info("peercert"))
        if subject is None:
            return self._strip
        return self._rules(HeaderRules(set=((self.cert_header, subject),)))

    def redirect(self, safe: bool, host: bytes, target: bytes) -> tuple[int, bytes]:
        """301 for GET/HEAD, 308 otherwise (the method and body must be kept);
        (400, b"") when the Host is not a host name or IP literal."""
        name = host
        if host.startswith(b"["):
            name = host[: host.find(b"]") + 1]
        elif b":" in host:
            name = host.rpartition(b":")[0]
        if not name:
            name = b"localhost"
        if not _REDIRECT_HOST.fullmatch(name):
            return 400, b""
        port = b"" if self.https_port == 443 else b":%d" % self.https_port
        return (301 if safe else 308), b"https://" + name + port + target


def listener_runtimes(
    config: Config,
) -> dict[Address, tuple[ListenerRuntime, ssl.SSLContext | None, list[CertSet] | None]]:
    """Per listen address with options: its ListenerRuntime, and for TLS the
    listening context and its CertSet holder.  Raises TLSError."""
    server = config.server
    https_port = next(
        (a.port for a, o in server.listen_options if o.tls is not None and a.port), None
    )
    out: dict[Address, tuple[ListenerRuntime, ssl.SSLContext | None, list[CertSet] | None]] = {}
    for addr, opts in server.listen_options:
        rt = ListenerRuntime(opts, https_port)
        if opts.tls is None:
            out[addr] = (rt, None, None)
        else:
            ctx, certs = server_context(opts.tls)
            out[addr] = (rt, ctx, certs)
    return out


# --------------------------------------------------------------------------- upstreams


def upstream_context(spec: UpstreamTLS) -> ssl.SSLContext:
    """Client context for TLS to an upstream; raises TLSError naming a bad file."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    _versions(ctx, "1.2")
    ctx.set_alpn_protocols(ALPN)
    if spec.verify:
        try:
            if spec.ca is not None:
                ctx.load_verify_locations(cafile=spec.ca)
            else:
                ctx.load_default_certs()
        except (OSError, ssl.SSLError) as exc:
            raise TLSError(f"cannot load ca {spec.ca}: {_why(exc)}") from None
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if spec.client_cert is not None and spec.client_key is not None:
        _load_chain(ctx, CertSpec(spec.client_cert, spec.client_key))
    return ctx


def _upstream_contexts(config: Config) -> dict[str, ssl.SSLContext]:
    out = {}
    for name, ups in config.upstreams.items():
        if ups.tls is not None or any(s.tls for s in ups.servers):
            out[name] = upstream_context(ups.tls or UpstreamTLS())
    return out


def attach_upstream_tls(router: Any, config: Config) -> None:
    """Give the router's servers that speak TLS their context and SNI name."""
    contexts = _upstream_contexts(config)
    for name, ups in config.upstreams.items():
        ctx = contexts.get(name)
        if ctx is None:
            continue
        compiled = router.upstreams[name]
        wanted = {str(s.address): s for s in ups.servers if ups.tls is not None or s.tls}
        for srv in compiled.servers:
            spec = wanted.get(srv.address)
            if spec is None:
                continue
            srv.ssl = ctx
            srv.server_hostname = _sni_name(ups, spec.address.host)


def _sni_name(ups: UpstreamConfig, host: str) -> str:
    """SNI sent and name verified; for an IP host Python sends no SNI and checks
    the certificate's IP SANs."""
    if ups.tls is not None and ups.tls.server_name:
        return ups.tls.server_name
    return host


# --------------------------------------------------------------------------- checks


def validate(config: Config) -> None:
    """Load every certificate, key and CA the config names (the master does
    this before forking workers); TLSError names the first unusable file."""
    listener_runtimes(config)
    _upstream_contexts(config)


def _cert_info(path: str) -> tuple[datetime.datetime, list[str]]:
    from cryptography import x509

    with open(path, "rb") as fh:
        cert = x509.load_pem_x509_certificate(fh.read())
    names: list[str] = []
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = [n.lower() for n in san.get_values_for_type(x509.DNSName)]
    except x509.ExtensionNotFound:
        pass
    return cert.not_valid_after_utc, names


def _covered(name: str, sans: Iterable[str]) -> bool:
    for san in sans:
        if san == name:
            return True
        if san.startswith("*.") and not name.startswith("*."):
            head, _, rest = name.partition(".")
            if head and rest == san[2:]:
                return True
    return False


def check_certificates(config: Config, warn_days: int = 14) -> tuple[list[str], list[str]]:
    """For `fastproxy check`: (errors, warnings) about every listener's
    certificates and every upstream's TLS files."""
    errors: list[str] = []
    warnings: list[str] = []
    now = datetime.datetime.now(datetime.UTC)
    for addr, opts in config.server.listen_options:
        if opts.tls is None:
            continue
        try:
            CertSet.load(opts.tls)
            _base_server_context(opts.tls)
        except TLSError as exc:
            errors.append(f"listener {addr}: {exc}")
            continue
        for cert in opts.tls.certificates:
            try:
                expires, sans = _cert_info(cert.cert)
            except (OSError, ValueError, ImportError) as exc:  # ImportError: no cryptography
                warnings.append(f"listener {addr}: cannot inspect {cert.cert}: {exc}")
                continue
            left = expires - now
            if left.total_seconds() <= 0:
                errors.append(
                    f"listener {addr}: certificate {cert.cert} expired on {expires:%Y-%m-%d}"
                )
            elif left < datetime.timedelta(days=warn_days):
                warnings.append(
                    f"listener {addr}: certificate {cert.cert} expires in {left.days} days "
                    f"({expires:%Y-%m-%d})"
                )
            for name in cert.server_names:
                if not _covered(name, sans):
                    warnings.append(
                        f"listener {addr}: server name {name!r} is not covered by "
                        f"{cert.cert} (SAN: {', '.join(sans) or 'none'})"
                    )
    try:
        _upstream_contexts(config)
    except TLSError as exc:
        errors.append(f"upstream TLS: {exc}")
    return errors, warnings
