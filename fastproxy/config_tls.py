"""TLS parts of the configuration: listen entries, certificates, upstream TLS.

The model (frozen dataclasses) and the converters that build it.  Converters
follow config.py's protocol: ``conv(chk, path, value)`` records issues with
``chk.err(path, message)`` and returns the value or ``BAD``.  Certificate
files are only named here; tls.py loads them (and names a file it cannot use).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from fastproxy.config_values import (
    BAD,
    KeyPath,
    check_header_name,
    check_header_value,
    expect_bool,
    expect_choice,
    expect_int,
    expect_str,
    format_path,
    parse_host_pattern,
    parse_host_port,
    type_name,
)

__all__ = [
    "CertSpec",
    "ListenOptions",
    "ListenerTLS",
    "UpstreamTLS",
    "listen_entries",
    "parse_server_url",
    "upstream_tls",
]

DEFAULT_CLIENT_CERT_HEADER = "X-Client-Cert-Subject"


@dataclass(frozen=True, slots=True)
class CertSpec:
    """A certificate chain and its key; server_names empty = the default only."""

    cert: str
    key: str
    server_names: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ListenerTLS:
    certificates: tuple[CertSpec, ...]  # the first is the default (no or unknown SNI)
    min_version: Literal["1.2", "1.3"] = "1.2"
    ciphers: str | None = None  # OpenSSL cipher list for TLS 1.2; None = ECDHE+AEAD
    session_tickets: bool = False
    client_ca: str | None = None
    verify_client: Literal["off", "optional", "required"] = "off"
    client_cert_header: str = DEFAULT_CLIENT_CERT_HEADER
    hsts: str | None = None  # Strict-Transport-Security value added to responses


@dataclass(frozen=True, slots=True)
class ListenOptions:
    """What a listen entry asks beyond its address (plain strings have none)."""

    tls: ListenerTLS | None = None
    redirect_https: bool = False
    https_port: int | None = None  # redirect target port; None = the first TLS listener's


@dataclass(frozen=True, slots=True)
class UpstreamTLS:
    verify: bool = True
    ca: str | None = None  # None: the system's trust store
    server_name: str | None = None  # SNI and the name checked; None = the server's host
    client_cert: str | None = None
    client_key: str | None = None


Conv = Callable[[Any, KeyPath, Any], Any]


def _simple(fn: Callable[[Any], Any]) -> Conv:
    def conv(chk: Any, path: KeyPath, value: Any) -> Any:
        try:
            return fn(value)
        except ValueError as exc:
            chk.err(path, str(exc))
            return BAD

    return conv


def _file(chk: Any, path: KeyPath, value: Any) -> Any:
    """A file path; relative ones are relative to the config file's directory."""
    try:
        text = expect_str(value, nonempty=True)
    except ValueError as exc:
        chk.err(path, str(exc))
        return BAD
    source = str(chk.source)
    if not os.path.isabs(text) and not source.startswith("<"):
        text = os.path.join(os.path.dirname(os.path.abspath(source)), text)
    return text


def _server_names(chk: Any, path: KeyPath, value: Any) -> Any:
    out, ok = [], True
    for item_path, item in chk.items(path, value, "host names", scalar_ok=True):
        try:
            out.append(parse_host_pattern(item))
        except ValueError as exc:
            chk.err(item_path, str(exc))
            ok = False
    return tuple(out) if ok else BAD


_CERT_CONVS: dict[str, Conv] = {"cert": _file, "key": _file, "server_names": _server_names}


def _cert_list(chk: Any, path: KeyPath, value: Any) -> Any:
    out, ok = [], True
    for item_path, item in chk.items(path, value, "tables {cert, key, server_names}", False):
        missing = [k for k in ("cert", "key") if isinstance(item, Mapping) and k not in item]
        for k in missing:
            chk.err(item_path, f"missing required key {k!r}")
        kw = chk.fields(item_path, item, _CERT_CONVS)
        if kw is None or missing:
            ok = False
        else:
            out.append(CertSpec(**kw))
    return tuple(out) if ok else BAD


def _hsts(value: object) -> str:
    text = check_header_value(expect_str(value, nonempty=True))
    if "max-age=" not in text.lower():
        raise ValueError(f"HSTS needs a max-age directive, e.g. 'max-age=31536000' (got {text!r})")
    return text


def _ciphers(value: object) -> str:
    import ssl

    text = expect_str(value, nonempty=True)
    try:
        ssl.create_default_context().set_ciphers(text)
    except ssl.SSLError:
        raise ValueError(f"OpenSSL accepts no cipher from {text!r}") from None
    return text


_LISTENER_TLS_CONVS: dict[str, Conv] = {
    "cert": _file,
    "key": _file,
    "certificates": _cert_list,
    "min_version": _simple(lambda v: expect_choice(v, ("1.2", "1.3"))),
    "ciphers": _simple(_ciphers),
    "session_tickets": _simple(expect_bool),
    "client_ca": _file,
    "verify_client": _simple(lambda v: expect_choice(v, ("required", "optional", "off"))),
    "client_cert_header": _simple(check_header_name),
    "hsts": _simple(_hsts),
}


def _listener_tls(chk: Any, path: KeyPath, value: Any) -> Any:
    kw = chk.fields(path, value, _LISTENER_TLS_CONVS)
    if kw is None:
        return BAD
    cert, key = kw.pop("cert", None), kw.pop("key", None)
    certs = list(kw.pop("certificates", ()))
    ok = True
    if (cert is None) != (key is None):
        chk.err((*path, "key" if key is None else "cert"), "'cert' and 'key' go together")
        ok = False
    elif cert is not None:
        certs.insert(0, CertSpec(cert, key))
    if not certs and ok:
        chk.err(path, "a TLS listener needs 'cert' and 'key' or 'certificates'")
        ok = False
    if "verify_client" in kw and kw["verify_client"] != "off" and "client_ca" not in kw:
        chk.err((*path, "verify_client"), "needs 'client_ca' (the CA that signs client certs)")
        ok = False
    if "client_ca" in kw and "verify_client" not in kw:
        kw["verify_client"] = "required"
    return ListenerTLS(certificates=tuple(certs), **kw) if ok else BAD


_LISTEN_CONVS: dict[str, Conv] = {
    "address": _simple(lambda v: parse_host_port(v, listen=True)),
    "tls": _listener_tls,
    "redirect_https": _simple(expect_bool),
    "https_port": _simple(lambda v: expect_int(v, 1, 65535)),
}


def listen_entries(chk: Any, path: KeyPath, value: Any, address: type) -> Any:
    """server.listen: "host:port" strings and/or tables {address, tls, redirect_https,
    https_port}.  Returns (addresses, {address: ListenOptions}) or BAD."""
    items = chk.items(path, value, "'host:port' strings or tables", scalar_ok=True)
    if not items:
        if isinstance(value, list | tuple):
            chk.err(path, "must not be empty")
        return BAD
    addrs: list[Any] = []
    options: dict[Any, ListenOptions] = {}
    seen: dict[Any, KeyPath] = {}
    ok = True
    for item_path, item in items:
        opts = None
        if isinstance(item, Mapping):
            if "address" not in item:
                chk.err(item_path, "missing required key 'address'")
            kw = chk.fields(item_path, item, _LISTEN_CONVS)
            if kw is None or "address" not in kw:
                ok = False
                continue
            addr = address(*kw.pop("address"))
            opts = ListenOptions(**kw)
            if opts.tls is not None and opts.redirect_https:
                chk.err((*item_path, "redirect_https"), "a TLS listener cannot redirect to https")
                ok = False
            if opts.https_port is not None and not opts.redirect_https:
                chk.err((*item_path, "https_port"), "only used with redirect_https = true")
                ok = False
        elif isinstance(item, str):
            try:
                addr = address(*parse_host_port(item, listen=True))
            except ValueError as exc:
                chk.err(item_path, str(exc))
                ok = False
                continue
        else:
            chk.err(item_path, f"expected 'host:port' string or table, got {type_name(item)}")
            ok = False
            continue
        if addr in seen and (addr.port != 0 or opts is not None or addr in options):
            # port 0 twice is one listener: it cannot have two sets of options
            chk.err(item_path, f"duplicate address '{addr}' (also {format_path(seen[addr])})")
            ok = False
        seen.setdefault(addr, item_path)
        addrs.append(addr)
        if opts is not None and opts != ListenOptions():
            options[addr] = opts
    has_tls = any(o.tls is not None for o in options.values())
    for (item_path, _), addr in zip(items, addrs, strict=False):
        o = options.get(addr)
        if o is not None and o.redirect_https and o.https_port is None and not has_tls:
            chk.err((*item_path, "redirect_https"), "needs 'https_port' (no TLS listener here)")
            ok = False
    return (tuple(addrs), options) if ok else BAD


def parse_server_url(value: object) -> tuple[str, int, bool]:
    """An upstream server: "host:port", "http://host[:port]" or "https://host[:port]".
    Returns (host, port, tls)."""
    text = expect_str(value).strip()
    scheme, sep, rest = text.partition("://")
    if not sep:
        return (*parse_host_port(text, listen=False), False)
    scheme = scheme.lower()
    if scheme not in ("http", "https"):
        raise ValueError(f"invalid server {text!r}: scheme must be http:// or https://")
    rest = rest.rstrip("/")
    if "/" in rest:
        raise ValueError(f"invalid server {text!r}: a server has no path")
    default = 443 if scheme == "https" else 80
    has_port = rest.rpartition("]")[2].count(":") == 1 if rest.startswith("[") else ":" in rest
    host, port = parse_host_port(rest if has_port else f"{rest}:{default}", listen=False)
    return host, port, scheme == "https"


_UPSTREAM_TLS_CONVS: dict[str, Conv] = {
    "verify": _simple(expect_bool),
    "ca": _file,
    "server_name": _simple(lambda v: expect_str(v, nonempty=True)),
    "client_cert": _file,
    "client_key": _file,
}


def upstream_tls(chk: Any, path: KeyPath, value: Any) -> Any:
    kw = chk.fields(path, value, _UPSTREAM_TLS_CONVS)
    if kw is None:
        return BAD
    if ("client_cert" in kw) != ("client_key" in kw):
        missing = "client_key" if "client_cert" in kw else "client_cert"
        chk.err((*path, missing), "'client_cert' and 'client_key' go together")
        return BAD
    return UpstreamTLS(**kw)
