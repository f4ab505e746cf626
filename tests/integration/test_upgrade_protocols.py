"""A route's `upgrade_protocols`: which protocols an `Upgrade` request may switch to
through the proxy.  By default only WebSocket: an `h2c` upgrade (or any other) loses
its Upgrade and Connection-named fields and goes on as a plain request, so no HTTP/2
tunnel can carry requests past the routes and filters.  ["*"] allows any protocol;
a name covers its versions; every protocol a request offers must be allowed."""

from __future__ import annotations

import pytest


def _ask(http_conn, port: int, offer: str):
    c = http_conn(port)
    c.send(
        b"GET /up HTTP/1.1\r\nHost: h\r\nConnection: Upgrade, HTTP2-Settings\r\n"
        b"Upgrade: " + offer.encode() + b"\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n"
    )
    return c.read_response()


def _proxy(make_proxy, **route):
    return make_proxy({"routes": [{"path_prefix": "/", "upstream": "app", **route}]})


@pytest.mark.parametrize("offer", ["h2c", "foo", "websocket, h2c", "spdy/3.1"])
def test_by_default_only_websocket_upgrades_are_forwarded(offer, make_proxy, origin, http_conn):
    proxy = _proxy(make_proxy)
    r = _ask(http_conn, proxy.port, offer)
    assert r.status == 200 and r.body == b"GET /up"
    [req] = origin.wait_requests(1)
    names = {k.lower() for k, _ in req.headers}
    assert "upgrade" not in names and "http2-settings" not in names, req.raw_head
    assert all("upgrade" not in v.lower() for v in req.header_all("connection")), req.raw_head


@pytest.mark.parametrize(
    ("allowed", "offer", "forwarded"),
    [
        (["*"], "h2c", "h2c"),
        (["*"], "Foo/2, bar", "Foo/2, bar"),
        (["foo"], "FOO/2", "FOO/2"),  # names compare case-insensitively, any version
        (["foo", "h2c"], "foo, h2c", "foo, h2c"),
        (["foo"], "foo, h2c", None),  # h2c not allowed: the whole upgrade is dropped
        (["websocket"], "websocket", "websocket"),
        ([], "websocket", None),  # an empty list allows none
    ],
)
def test_upgrade_protocols_choose_what_is_forwarded(
    allowed, offer, forwarded, make_proxy, origin, http_conn
):
    proxy = _proxy(make_proxy, upgrade_protocols=allowed)
    r = _ask(http_conn, proxy.port, offer)
    assert r.status == 200
    [req] = origin.wait_requests(1)
    assert req.header_all("upgrade") == ([forwarded] if forwarded else []), req.raw_head


def test_websocket_false_still_refuses_every_upgrade(make_proxy, origin, http_conn):
    proxy = _proxy(make_proxy, websocket=False, upgrade_protocols=["*"])
    assert _ask(http_conn, proxy.port, "websocket").status == 200
    [req] = origin.wait_requests(1)
    assert req.header_all("upgrade") == [], req.raw_head
