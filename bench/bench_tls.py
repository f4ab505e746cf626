"""TLS pieces of bench/vs_nginx.py: a throw-away certificate (made with the
cryptography package at bench start) and the listener settings that give nginx
and fastproxy the same certificate, protocol versions and ciphers."""

from __future__ import annotations

import datetime as dt
import ipaddress
from pathlib import Path
from typing import Any

# fastproxy's default (fastproxy/tls.py DEFAULT_CIPHERS), given to both explicitly so a
# change of the default can't make the comparison unequal.
CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"


def write_cert(into: Path) -> tuple[Path, Path]:
    """A self-signed P-256 certificate for localhost / 127.0.0.1, valid for a day."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = into / "bench-cert.pem", into / "bench-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def nginx_server_directives(cert: Path, key: Path) -> str:
    """Inside nginx's server {}: what fastproxy's TLS listener does by default."""
    return (
        f"        ssl_certificate {cert};\n"
        f"        ssl_certificate_key {key};\n"
        "        ssl_protocols TLSv1.2 TLSv1.3;       # fastproxy min_version = '1.2'\n"
        f"        ssl_ciphers {CIPHERS};\n"
        "        ssl_prefer_server_ciphers on;\n"
        "        ssl_session_tickets off;             # fastproxy session_tickets = false\n"
        "        ssl_session_cache off;               # fastproxy keeps no session cache\n"
    )


def fastproxy_listen(port: int, cert: Path, key: Path) -> dict[str, Any]:
    return {
        "address": f"127.0.0.1:{port}",
        "tls": {"cert": str(cert), "key": str(key), "ciphers": CIPHERS},
    }
