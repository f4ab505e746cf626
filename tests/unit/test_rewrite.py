"""Head re-serialisation for the next hop: fastproxy._rewrite.rewrite_request /
rewrite_response (csrc/fp_rewrite.c), the code the data plane runs per request.

rewrite_request(raw, client_ip=, trusted=, xff_replace=, forwarded=, via=,
host=, target=, proto=, set=, add=, remove=, upgrade=) parses `raw` as a
request head and returns the head sent upstream; rewrite_response(raw,
request_method=, client_minor=, close=, via=, set=, add=, remove=) does the
same for a response head sent to the client.

References: RFC 9110 7.6.1 (Connection and hop-by-hop fields), 7.6.3 (Via),
7.8 (Upgrade), 8.6 (Content-Length), RFC 9112 2.2 (line terminators), 3.2
(Host), 4 (status line), 6.1-6.3 (framing), 9.3 (persistence), RFC 7239
(Forwarded).
"""

from __future__ import annotations

import pytest

from fastproxy import _rewrite

rewrite_request = _rewrite.rewrite_request
rewrite_response = _rewrite.rewrite_response

Fields = list[tuple[bytes, bytes]]


def split(out: bytes) -> tuple[bytes, Fields]:
    """Start line and fields of a serialised head; checks it is CRLF-only."""
    assert out.endswith(b"\r\n\r\n"), out
    body = out[:-4]
    assert b"\n" not in body.replace(b"\r\n", b""), f"bare LF in {out!r}"
    assert b"\r" not in body.replace(b"\r\n", b""), f"bare CR in {out!r}"
    lines = body.split(b"\r\n")
    fields = []
    for line in lines[1:]:
        name, sep, value = line.partition(b": ")
        assert sep, f"malformed field line {line!r}"
        fields.append((name, value))
    return lines[0], fields


def values(fields: Fields, name: bytes) -> list[bytes]:
    return [v for n, v in fields if n.lower() == name.lower()]


def names(fields: Fields) -> set[bytes]:
    return {n.lower() for n, _ in fields}


def req(head: bytes, **kw: object) -> tuple[bytes, Fields]:
    return split(rewrite_request(head, **kw))  # type: ignore[arg-type]


def resp(head: bytes, **kw: object) -> tuple[bytes, Fields]:
    return split(rewrite_response(head, **kw))  # type: ignore[arg-type]


HOP_BY_HOP = [b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer",
              b"transfer-encoding", b"upgrade"]  # fmt: skip


# =================================================================== request


def test_request_line_is_http11_with_the_original_target_and_method() -> None:
    start, fields = req(b"PATCH /a/../b?x=%41 HTTP/1.0\r\nHost: h\r\n\r\n")
    assert start == b"PATCH /a/../b?x=%41 HTTP/1.1"
    assert values(fields, b"host") == [b"h"]


def test_request_target_and_host_override() -> None:
    start, fields = req(
        b"GET /x HTTP/1.1\r\nHost: public.example\r\n\r\n", target=b"/y?z", host=b"10.0.0.5:81"
    )
    assert start == b"GET /y?z HTTP/1.1"
    assert values(fields, b"host") == [b"10.0.0.5:81"]
    # the client's Host travels as X-Forwarded-Host
    assert values(fields, b"x-forwarded-host") == [b"public.example"]


def test_host_is_the_first_field_and_sent_once() -> None:
    _, fields = req(b"GET / HTTP/1.1\r\nX-A: 1\r\nhOsT: h:8080\r\n\r\n")
    assert fields[0] == (b"Host", b"h:8080")
    assert len(values(fields, b"host")) == 1


def test_http10_request_without_host_still_sends_host() -> None:
    # The request goes upstream as HTTP/1.1, and "A client MUST send a Host
    # header field in all HTTP/1.1 request messages"; with no authority to
    # send it is sent empty (RFC 9112 3.2).
    start, fields = req(b"GET / HTTP/1.0\r\n\r\n")
    assert start.endswith(b" HTTP/1.1")
    assert len(values(fields, b"host")) == 1


@pytest.mark.parametrize(
    "field",
    [
        b"Connection: keep-alive",
        b"connection: close",
        b"Keep-Alive: timeout=5, max=100",
        b"Proxy-Connection: keep-alive",
        b"TE: trailers",
        b"te: gzip",
        b"Trailer: X-Checksum",
        b"Upgrade: websocket",
        b"UPGRADE: h2c",
    ],
)
def test_request_hop_by_hop_field_removed(field: bytes) -> None:
    _, fields = req(b"GET / HTTP/1.1\r\nHost: h\r\n" + field + b"\r\nX-Keep: 1\r\n\r\n")
    name = field.split(b":")[0].lower()
    assert name not in names(fields)
    assert values(fields, b"x-keep") == [b"1"]


def test_request_all_hop_by_hop_fields_removed_together() -> None:
    head = (
        b"GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, Upgrade\r\n"
        b"Keep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nTE: trailers\r\n"
        b"Trailer: X-T\r\nUpgrade: websocket\r\nX-End: 1\r\n\r\n"
    )
    _, fields = req(head)
    assert not names(fields) & set(HOP_BY_HOP)
    assert values(fields, b"x-end") == [b"1"]


def test_request_fields_named_by_connection_are_removed() -> None:
    head = (
        b"GET / HTTP/1.1\r\nHost: h\r\nConnection: X-Secret,  x-other ,keep-alive\r\n"
        b"Connection: X-Third\r\nX-SECRET: s\r\nX-Other: o\r\nx-third: t\r\n"
        b"X-Kept: k\r\nX-Secret-Not: n\r\n\r\n"
    )
    _, fields = req(head)
    assert b"x-secret" not in names(fields)
    assert b"x-other" not in names(fields)
    assert b"x-third" not in names(fields)
    assert values(fields, b"x-kept") == [b"k"]
    assert values(fields, b"x-secret-not") == [b"n"]


def test_connection_named_forwarding_field_is_not_forwarded() -> None:
    # RFC 9110 7.6.1: a proxy MUST remove every field named in Connection
    # before forwarding.  A trusted peer's X-Forwarded-For that it declared
    # hop-by-hop must not be appended to.
    head = (
        b"GET / HTTP/1.1\r\nHost: h\r\nConnection: X-Forwarded-For\r\n"
        b"X-Forwarded-For: 203.0.113.9\r\n\r\n"
    )
    _, fields = req(head, trusted=True, client_ip=b"10.0.0.1")
    assert values(fields, b"x-forwarded-for") == [b"10.0.0.1"]


def test_upgrade_kept_when_upgrading() -> None:
    # RFC 9110 7.8: Upgrade is always listed in Connection; when the proxy
    # forwards the upgrade it must keep the Upgrade field itself.
    head = (
        b"GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade, X-A\r\nUpgrade: websocket\r\n"
        b"X-A: 1\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        b"Sec-WebSocket-Version: 13\r\n\r\n"
    )
    _, fields = req(head, upgrade=True)
    assert values(fields, b"upgrade") == [b"websocket"]
    assert values(fields, b"connection") == [b"upgrade"]
    assert b"x-a" not in names(fields)
    assert values(fields, b"sec-websocket-key") == [b"dGhlIHNhbXBsZSBub25jZQ=="]


def test_upgrade_dropped_when_not_upgrading() -> None:
    head = b"GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
    _, fields = req(head, upgrade=False)
    assert b"upgrade" not in names(fields)
    assert b"connection" not in names(fields)


# ------------------------------------------------------------------ framing


@pytest.mark.parametrize(
    ("cl", "want"),
    [(b"5", b"5"), (b"005", b"5"), (b"5, 5", b"5"), (b"0", b"0"), (b"12345678901", b"12345678901")],
)
def test_content_length_reemitted_once(cl: bytes, want: bytes) -> None:
    head = b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: " + cl + b"\r\n\r\n"
    _, fields = req(head)
    assert values(fields, b"content-length") == [want]
    assert b"transfer-encoding" not in names(fields)


def test_duplicate_identical_content_length_fields_become_one() -> None:
    head = b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 7\r\ncontent-length: 7\r\n\r\n"
    _, fields = req(head)
    assert values(fields, b"content-length") == [b"7"]


@pytest.mark.parametrize("te", [b"chunked", b"Chunked", b"CHUNKED"])
def test_chunked_request_keeps_transfer_encoding_chunked(te: bytes) -> None:
    head = b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: " + te + b"\r\n\r\n"
    _, fields = req(head)
    assert values(fields, b"transfer-encoding") == [b"chunked"]
    assert b"content-length" not in names(fields)


def test_request_without_body_gets_no_framing_fields() -> None:
    _, fields = req(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
    assert b"content-length" not in names(fields)
    assert b"transfer-encoding" not in names(fields)


@pytest.mark.parametrize(
    "framing",
    [
        b"Content-Length: 5\r\nTransfer-Encoding: chunked",  # CL + TE
        b"Content-Length: 5\r\nContent-Length: 6",  # differing CLs
        b"Content-Length: 5, 6",
        b"Transfer-Encoding: chunked, gzip",  # chunked not final
        b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked",  # chunked twice
        b"Content-Length: -1",
        b"Content-Length: 0x10",
    ],
)
def test_ambiguous_request_framing_is_refused(framing: bytes) -> None:
    # Never re-serialised: the smuggling vectors of RFC 9112 6.1 / 6.3.
    with pytest.raises(ValueError):
        rewrite_request(b"POST / HTTP/1.1\r\nHost: h\r\n" + framing + b"\r\n\r\n")


# ------------------------------------------------------------------ forwarding


def test_xff_untrusted_incoming_dropped_and_replaced() -> None:
    head = (
        b"GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 1.2.3.4\r\n"
        b"x-forwarded-for: 5.6.7.8, 9.9.9.9\r\n\r\n"
    )
    _, fields = req(head, client_ip=b"192.0.2.7", trusted=False)
    assert values(fields, b"x-forwarded-for") == [b"192.0.2.7"]


def test_xff_set_when_absent() -> None:
    _, fields = req(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n", client_ip=b"192.0.2.7")
    assert values(fields, b"x-forwarded-for") == [b"192.0.2.7"]


def test_xff_trusted_is_appended() -> None:
    head = b"GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: a, b\r\n\r\n"
    _, fields = req(head, client_ip=b"10.0.0.1", trusted=True)
    assert values(fields, b"x-forwarded-for") == [b"a, b, 10.0.0.1"]


def test_xff_trusted_several_fields_joined_in_order() -> None:
    head = (
        b"GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: a\r\nX-Other: 1\r\n"
        b"X-FORWARDED-FOR: b\r\nX-Forwarded-For:\r\n\r\n"
    )
    _, fields = req(head, client_ip=b"10.0.0.1", trusted=True)
    assert values(fields, b"x-forwarded-for") == [b"a, b, 10.0.0.1"]


def test_xff_trusted_replace() -> None:
    head = b"GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: a, b\r\n\r\n"
    _, fields = req(head, client_ip=b"10.0.0.1", trusted=True, xff_replace=True)
    assert values(fields, b"x-forwarded-for") == [b"10.0.0.1"]


def test_x_forwarded_kept_from_trusted_peer() -> None:
    head = (
        b"GET / HTTP/1.1\r\nHost: internal:8080\r\nX-Real-IP: 203.0.113.5\r\n"
        b"X-Forwarded-Proto: https\r\nX-Forwarded-Host: www.example.com\r\n\r\n"
    )
    _, fields = req(head, client_ip=b"10.0.0.1", trusted=True, proto=b"http")
    assert values(fields, b"x-real-ip") == [b"203.0.113.5"]
    assert values(fields, b"x-forwarded-proto") == [b"https"]
    assert values(fields, b"x-forwarded-host") == [b"www.example.com"]


def test_x_forwarded_set_for_untrusted_peer() -> None:
    head = (
        b"GET / HTTP/1.1\r\nHost: www.example.com\r\nX-Real-IP: 6.6.6.6\r\n"
        b"x-forwarded-proto: https\r\nX-Forwarded-Host: evil.example\r\n"
        b"X-Forwarded-Host: evil2.example\r\n\r\n"
    )
    _, fields = req(head, client_ip=b"192.0.2.7", trusted=False, proto=b"http")
    assert values(fields, b"x-real-ip") == [b"192.0.2.7"]
    assert values(fields, b"x-forwarded-proto") == [b"http"]
    assert values(fields, b"x-forwarded-host") == [b"www.example.com"]


def test_x_forwarded_set_for_trusted_peer_that_sent_none() -> None:
    _, fields = req(
        b"GET / HTTP/1.1\r\nHost: h\r\n\r\n", client_ip=b"10.0.0.1", trusted=True, proto=b"https"
    )
    assert values(fields, b"x-real-ip") == [b"10.0.0.1"]
    assert values(fields, b"x-forwarded-proto") == [b"https"]
    assert values(fields, b"x-forwarded-host") == [b"h"]


@pytest.mark.parametrize(
    ("ip", "node"),
    [
        (b"192.0.2.60", b"for=192.0.2.60"),
        (b"::1", b'for="[::1]"'),
        (b"2001:db8:cafe::17", b'for="[2001:db8:cafe::17]"'),
    ],
)
def test_forwarded_format(ip: bytes, node: bytes) -> None:
    # RFC 7239 4, 6: IPv6 nodes are bracketed, and then must be quoted.
    _, fields = req(
        b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n", client_ip=ip, forwarded=True, proto=b"https"
    )
    assert values(fields, b"forwarded") == [node + b';host="example.com";proto=https']


def test_forwarded_untrusted_incoming_dropped() -> None:
    head = b"GET / HTTP/1.1\r\nHost: h\r\nForwarded: for=6.6.6.6;proto=https\r\n\r\n"
    _, fields = req(head, client_ip=b"192.0.2.7", forwarded=True)
    assert values(fields, b"forwarded") == [b'for=192.0.2.7;host="h";proto=http']


def test_forwarded_trusted_appended() -> None:
    head = (
        b"GET / HTTP/1.1\r\nHost: h\r\nForwarded: for=203.0.113.1\r\n"
        b'forwarded: for="[2001:db8::1]"\r\n\r\n'
    )
    _, fields = req(head, client_ip=b"10.0.0.1", forwarded=True, trusted=True)
    assert values(fields, b"forwarded") == [
        b'for=203.0.113.1, for="[2001:db8::1]", for=10.0.0.1;host="h";proto=http'
    ]


def test_forwarded_from_untrusted_peer_dropped_even_when_not_generating() -> None:
    # docs/config.md, trusted_proxies: "Peers whose incoming X-Forwarded-* and
    # Forwarded headers are kept.  The proxy drops these headers when they come
    # from any other peer."  `forwarded = false` is the default, so this is the
    # common case: an untrusted client must not be able to hand the origin a
    # spoofed RFC 7239 for=/proto=.
    head = b"GET / HTTP/1.1\r\nHost: h\r\nForwarded: for=6.6.6.6;proto=https\r\n\r\n"
    _, fields = req(head, client_ip=b"192.0.2.7", trusted=False, forwarded=False)
    assert b"forwarded" not in names(fields)


def test_forwarded_from_trusted_peer_passes_when_not_generating() -> None:
    head = b"GET / HTTP/1.1\r\nHost: h\r\nForwarded: for=203.0.113.1\r\n\r\n"
    _, fields = req(head, trusted=True, forwarded=False)
    assert values(fields, b"forwarded") == [b"for=203.0.113.1"]


def test_via_appended_to_existing_via() -> None:
    head = b"GET / HTTP/1.1\r\nHost: h\r\nVia: 1.0 fred, 1.1 p.example.net\r\nvia: 2 x\r\n\r\n"
    _, fields = req(head, via=True, via_name=b"edge")
    assert values(fields, b"via") == [b"1.0 fred, 1.1 p.example.net, 2 x, 1.1 edge"]


def test_via_added_when_absent_and_untouched_when_off() -> None:
    _, fields = req(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n", via=True)
    assert values(fields, b"via") == [b"1.1 fastproxy"]
    _, fields = req(b"GET / HTTP/1.1\r\nHost: h\r\nVia: 1.0 a\r\n\r\n", via=False)
    assert values(fields, b"via") == [b"1.0 a"]


# ------------------------------------------------------------------ rules


def test_set_replaces_every_case_variant() -> None:
    head = b"GET / HTTP/1.1\r\nHost: h\r\nX-Env: a\r\nx-env: b\r\nX-ENV: c\r\nX-Other: o\r\n\r\n"
    _, fields = req(head, set=[("X-Env", "prod")])
    assert values(fields, b"x-env") == [b"prod"]
    assert (b"X-Env", b"prod") in fields
    assert values(fields, b"x-other") == [b"o"]


def test_set_adds_when_absent() -> None:
    _, fields = req(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n", set=[("X-Env", "prod")])
    assert values(fields, b"x-env") == [b"prod"]


def test_add_appends() -> None:
    head = b"GET / HTTP/1.1\r\nHost: h\r\nX-Tag: a\r\n\r\n"
    _, fields = req(head, add=[("X-Tag", "b"), ("x-tag", "c")])
    assert values(fields, b"x-tag") == [b"a", b"b", b"c"]


def test_remove_drops_every_case_variant() -> None:
    head = b"GET / HTTP/1.1\r\nHost: h\r\nX-Debug: 1\r\nx-debug: 2\r\nX-Keep: k\r\n\r\n"
    _, fields = req(head, remove=["X-DEBUG"])
    assert b"x-debug" not in names(fields)
    assert values(fields, b"x-keep") == [b"k"]


def test_rules_combined() -> None:
    head = b"GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n"
    _, fields = req(head, set=[("a", "x")], add=[("B", "y")], remove=["c"])
    assert values(fields, b"a") == [b"x"]
    assert values(fields, b"b") == [b"2", b"y"]
    assert b"c" not in names(fields)


def test_set_forwarding_field_replaces_the_generated_one() -> None:
    # docs/config.md: `set` means "Replace the header, or add it if absent",
    # and X-Forwarded-For / X-Real-IP / Via are not in the managed list, so a
    # rule for them is accepted.  The result must still be a single field.
    _, fields = req(
        b"GET / HTTP/1.1\r\nHost: h\r\n\r\n",
        via=True,
        set=[("X-Forwarded-For", "198.51.100.1"), ("Via", "1.1 hidden")],
    )
    assert values(fields, b"x-forwarded-for") == [b"198.51.100.1"]
    assert values(fields, b"via") == [b"1.1 hidden"]


def test_remove_forwarding_field_removes_the_generated_one() -> None:
    # docs/config.md: `remove` means "Delete every field with this name".
    _, fields = req(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n", remove=["X-Real-IP"])
    assert b"x-real-ip" not in names(fields)


# ------------------------------------------------------------------ line endings


def test_bare_lf_request_becomes_crlf() -> None:
    head = b"POST /x HTTP/1.1\nHost: h\nX-A: 1\r\nContent-Length: 3\n\n"
    out = rewrite_request(head)
    start, fields = split(out)  # split() asserts there is no bare LF
    assert start == b"POST /x HTTP/1.1"
    assert values(fields, b"x-a") == [b"1"]
    assert values(fields, b"content-length") == [b"3"]


def test_field_values_are_trimmed_and_kept_byte_exact() -> None:
    head = b"GET / HTTP/1.1\r\nHost: h\r\nX-A: \t v  a\tl \t\r\nX-Opaque: \xe9\xff\r\n\r\n"
    _, fields = req(head)
    assert values(fields, b"x-a") == [b"v  a\tl"]
    assert values(fields, b"x-opaque") == [b"\xe9\xff"]


# =================================================================== response


def test_status_line_always_http11_with_reason() -> None:
    start, _ = resp(b"HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n")
    assert start == b"HTTP/1.1 404 Not Found"
    start, _ = resp(b"HTTP/1.1 299 Custom Reason Words\r\nContent-Length: 0\r\n\r\n")
    assert start == b"HTTP/1.1 299 Custom Reason Words"


def test_status_line_with_empty_reason_is_still_valid() -> None:
    # status-line = HTTP-version SP status-code SP [ reason-phrase ] (RFC 9112 4)
    start, _ = resp(b"HTTP/1.1 200 \r\nContent-Length: 0\r\n\r\n")
    assert start in (b"HTTP/1.1 200 ", b"HTTP/1.1 200 OK")


@pytest.mark.parametrize(
    "field",
    [
        b"Connection: keep-alive",
        b"Connection: close",
        b"Keep-Alive: timeout=5",
        b"Proxy-Connection: keep-alive",
        b"TE: trailers",
        b"Trailer: X-Checksum",
        b"Upgrade: h2c",
    ],
)
def test_response_hop_by_hop_field_removed(field: bytes) -> None:
    _, fields = resp(b"HTTP/1.1 200 OK\r\n" + field + b"\r\nContent-Length: 2\r\n\r\n")
    assert field.split(b":")[0].lower() not in names(fields)
    assert values(fields, b"content-length") == [b"2"]


def test_response_fields_named_by_connection_removed() -> None:
    head = (
        b"HTTP/1.1 200 OK\r\nConnection: X-Internal, close\r\nX-Internal: 1\r\n"
        b"Server: origin\r\nContent-Length: 0\r\n\r\n"
    )
    _, fields = resp(head)
    assert b"x-internal" not in names(fields)
    assert values(fields, b"server") == [b"origin"]


def test_response_content_length_reemitted() -> None:
    _, fields = resp(b"HTTP/1.1 200 OK\r\nContent-Length: 007\r\ncontent-length: 7\r\n\r\n")
    assert values(fields, b"content-length") == [b"7"]
    assert b"transfer-encoding" not in names(fields)


@pytest.mark.parametrize(
    "framing",
    [b"Transfer-Encoding: chunked\r\n", b""],  # chunked, or delimited by close
    ids=["chunked", "until-close"],
)
def test_response_body_to_http11_client_is_chunked(framing: bytes) -> None:
    _, fields = resp(b"HTTP/1.1 200 OK\r\n" + framing + b"\r\n", client_minor=1)
    assert values(fields, b"transfer-encoding") == [b"chunked"]
    assert b"content-length" not in names(fields)
    assert b"connection" not in names(fields)


@pytest.mark.parametrize(
    "framing",
    [b"Transfer-Encoding: chunked\r\n", b""],
    ids=["chunked", "until-close"],
)
def test_response_body_to_http10_client_is_close_delimited(framing: bytes) -> None:
    # An HTTP/1.0 client cannot read chunked (RFC 9112 7.1): the proxy sends
    # the body raw and closes, which the data plane requests with close=True.
    _, fields = resp(b"HTTP/1.1 200 OK\r\n" + framing + b"\r\n", client_minor=0, close=True)
    assert b"transfer-encoding" not in names(fields)
    assert b"content-length" not in names(fields)
    assert values(fields, b"connection") == [b"close"]


def test_close_flag_sends_connection_close_to_http11_client() -> None:
    _, fields = resp(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n", close=True)
    assert values(fields, b"connection") == [b"close"]


def test_http10_client_kept_alive_gets_connection_keep_alive() -> None:
    _, fields = resp(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n", client_minor=0)
    assert values(fields, b"connection") == [b"keep-alive"]
    assert values(fields, b"content-length") == [b"1"]


def test_http11_client_kept_alive_gets_no_connection_field() -> None:
    _, fields = resp(b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\n")
    assert b"connection" not in names(fields)


@pytest.mark.parametrize(
    ("method", "head"),
    [
        (b"HEAD", b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n"),
        (b"GET", b'HTTP/1.1 304 Not Modified\r\nContent-Length: 1234\r\nETag: "x"\r\n\r\n'),
        (b"HEAD", b"HTTP/1.0 200 OK\r\nContent-Length: 1234\r\n\r\n"),
    ],
)
def test_bodiless_response_keeps_its_content_length(method: bytes, head: bytes) -> None:
    # RFC 9110 8.6: in a HEAD / 304 response, Content-Length describes the
    # representation, not this message; it is passed through unchanged.
    _, fields = resp(head, request_method=method)
    assert values(fields, b"content-length") == [b"1234"]
    assert b"transfer-encoding" not in names(fields)


def test_head_response_with_chunked_gets_no_framing() -> None:
    _, fields = resp(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", request_method=b"HEAD"
    )
    assert b"transfer-encoding" not in names(fields)
    assert b"content-length" not in names(fields)


def test_response_via_appended() -> None:
    head = b"HTTP/1.1 200 OK\r\nVia: 1.0 origin-cache\r\nContent-Length: 0\r\n\r\n"
    _, fields = resp(head, via=True, via_name=b"edge")
    assert values(fields, b"via") == [b"1.0 origin-cache, 1.1 edge"]


def test_response_rules() -> None:
    head = (
        b"HTTP/1.1 200 OK\r\nx-frame-options: SAMEORIGIN\r\nServer: origin/1.0\r\n"
        b"X-Powered-By: php\r\nSet-Cookie: a=1\r\nContent-Length: 0\r\n\r\n"
    )
    _, fields = resp(
        head,
        set=[("X-Frame-Options", "DENY")],
        add=[("Set-Cookie", "b=2")],
        remove=["x-powered-by", "SERVER"],
    )
    assert values(fields, b"x-frame-options") == [b"DENY"]
    assert values(fields, b"set-cookie") == [b"a=1", b"b=2"]
    assert b"x-powered-by" not in names(fields)
    assert b"server" not in names(fields)


def test_bare_lf_response_becomes_crlf() -> None:
    head = b"HTTP/1.0 200 OK\nContent-Length: 3\nX-A: 1\n\n"
    start, fields = split(rewrite_response(head, client_minor=1))
    assert start == b"HTTP/1.1 200 OK"
    assert values(fields, b"x-a") == [b"1"]
    assert values(fields, b"content-length") == [b"3"]


def test_response_end_to_end_exact_bytes() -> None:
    head = (
        b"HTTP/1.0 200 OK\nDate: Mon, 01 Jan 2024 00:00:00 GMT\nConnection: keep-alive\n"
        b"Keep-Alive: timeout=5\nContent-Type: text/plain\nContent-Length: 5\n\n"
    )
    assert rewrite_response(head, client_minor=1) == (
        b"HTTP/1.1 200 OK\r\nDate: Mon, 01 Jan 2024 00:00:00 GMT\r\n"
        b"Content-Type: text/plain\r\nContent-Length: 5\r\n\r\n"
    )
