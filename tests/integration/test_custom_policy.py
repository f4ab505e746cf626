"""Custom Python balancing policies (fastproxy.Policy) through an embedded fastproxy.Proxy:
the proxy runs in this process on a uvloop loop in a thread, the origins are real, the
policy routes by a request header.  It sees only the usable servers (not the one at
max_conns, not the one that just failed, not the backups); None answers 503; a foreign
object or an exception answers 500; a retry calls it again with `retry=True`.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import pytest

import fastproxy
from fastproxy.policy import RequestInfo

uvloop = pytest.importorskip("uvloop")


class ByHeader(fastproxy.Policy):
    """X-Pick: PORT -> that server (else the first one); "none" -> None; "foreign" -> an
    object that is not a server; "raise" -> an exception.  Records every call."""

    def __init__(self) -> None:
        self.calls: list[tuple[RequestInfo, list[str]]] = []

    def pick(self, request: RequestInfo, servers: Sequence[Any]) -> Any:
        self.calls.append((request, [s.address for s in servers]))
        want = request.headers.get("x-pick", "")
        if want == "none":
            return None
        if want == "foreign":
            return object()
        if want == "raise":
            raise RuntimeError("policy exploded")
        return next((s for s in servers if s.address.endswith(":" + want)), servers[0])


@contextmanager
def embedded(upstream: dict[str, Any], policy: fastproxy.Policy) -> Iterator[int]:
    """An embedded Proxy with `policies={"app": policy}` on its own thread: yields its port."""
    cfg = fastproxy.Config.from_dict(
        {
            "server": {"listen": ["127.0.0.1:0"], "pid_file": False},
            "log": {"access": "off"},
            "upstreams": {"app": upstream},
            "routes": [{"path_prefix": "/", "upstream": "app"}],
        }
    )
    loop = uvloop.new_event_loop()
    ready = threading.Event()
    box: dict[str, Any] = {}

    async def main() -> None:
        proxy = fastproxy.Proxy(cfg, policies={"app": policy})
        await proxy.start()
        box["port"] = proxy.addresses[0][1]
        box["stop"] = stop = asyncio.Event()
        ready.set()
        await stop.wait()
        await proxy.stop(timeout=1)

    def run() -> None:
        try:
            loop.run_until_complete(main())
        except BaseException as e:  # noqa: BLE001 - reported by the test thread
            box["error"] = e
            ready.set()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    assert ready.wait(10), "the embedded proxy did not start"
    if "error" in box:
        raise box["error"]
    try:
        yield box["port"]
    finally:
        loop.call_soon_threadsafe(box["stop"].set)
        t.join(10)
        loop.close()


def get(port: int, target: str = "/x", pick: str | None = None) -> tuple[int, bytes, str]:
    """One GET on a new connection: (status, body, X-Origin or "")."""
    extra = f"X-Pick: {pick}\r\n" if pick is not None else ""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(
            f"GET {target} HTTP/1.1\r\nHost: app.test\r\n{extra}Connection: close\r\n\r\n".encode()
        )
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    xo = next(
        (ln.split(":", 1)[1].strip() for ln in lines if ln.lower().startswith("x-origin:")), ""
    )
    return int(lines[0].split()[1]), body, xo


@contextmanager
def three_origins(origin: Any) -> Iterator[list[Any]]:
    extra = [type(origin)() for _ in range(2)]
    for o in extra:
        o.start()
    try:
        for i, o in enumerate([origin, *extra]):
            o.extra_headers = [("X-Origin", str(i))]
        yield [origin, *extra]
    finally:
        for o in extra:
            o.stop()


def port_of(o: Any) -> str:
    return str(o.port)


def test_policy_routes_by_header_and_sees_only_usable_servers(origin):
    with three_origins(origin) as (a, b, c):
        policy = ByHeader()
        servers = [
            {"address": a.address, "max_conns": 1},
            b.address,
            {"address": c.address, "backup": True},
        ]
        with embedded({"servers": servers}, policy) as port:
            for _ in range(3):
                assert get(port, pick=port_of(a))[0::2] == (200, "0")
                assert get(port, pick=port_of(b))[0::2] == (200, "1")
            request, seen = policy.calls[0]
            assert seen == [a.address, b.address]  # primaries only, in config order
            assert (request.method, request.target, request.client_ip) == ("GET", "/x", "127.0.0.1")
            assert request.headers["x-pick"] == port_of(a) and request.retry is False
            assert request.headers["host"] == "app.test"

            # A at max_conns: the policy is not offered it
            result: list[Any] = []
            holder = threading.Thread(
                target=lambda: result.append(get(port, "/slow?delay=1", pick=port_of(a)))
            )
            holder.start()
            try:
                a.wait_requests(4)
                assert a.requests[-1].path == "/slow"
                n = len(policy.calls)
                assert get(port, pick=port_of(a))[0::2] == (200, "1")
                assert policy.calls[n][1] == [b.address]
            finally:
                holder.join(10)
            assert result and result[0][:2] == (200, b"slow")
            get(port, pick=port_of(a))
            assert policy.calls[-1][1] == [a.address, b.address]


def test_backups_are_offered_only_when_no_primary_is_usable(origin):
    with three_origins(origin) as (a, _b, c):
        policy = ByHeader()
        servers = [{"address": a.address, "max_conns": 1}, {"address": c.address, "backup": True}]
        with embedded({"servers": servers}, policy) as port:
            holder = threading.Thread(target=get, args=(port, "/slow?delay=1"))
            holder.start()
            try:
                a.wait_requests(1)
                assert get(port)[0::2] == (200, "2")
                assert policy.calls[-1][1] == [c.address]
            finally:
                holder.join(10)


def test_policy_answers_none_foreign_object_and_exception(origin, caplog):
    caplog.set_level(logging.WARNING, logger="fastproxy")
    policy = ByHeader()
    with embedded({"servers": [origin.address]}, policy) as port:
        status, body, _ = get(port, pick="none")
        assert status == 503, body
        # not one of the servers given: the request fails with 500, the proxy lives on
        status, body, _ = get(port, pick="foreign")
        assert status == 500, body
        status, body, _ = get(port, pick="raise")
        assert status == 500, body
        assert get(port)[0] == 200
    assert origin.requests and all(r.path == "/x" for r in origin.requests)
    assert len(origin.requests) == 1
    text = caplog.text
    assert "503: no server available" in text
    assert "balancing policy failed" in text and "not one of the servers" in text
    assert "policy exploded" in text


def test_retry_calls_the_policy_again_without_the_failed_server(origin, caplog):
    caplog.set_level(logging.WARNING, logger="fastproxy")
    policy = ByHeader()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))  # bound, not listening: connections are refused
        dead = f"127.0.0.1:{s.getsockname()[1]}"
        with embedded({"servers": [dead, origin.address], "max_fails": 0}, policy) as port:
            status, body, _ = get(port, pick=dead.rsplit(":", 1)[1])
            assert (status, body) == (200, b"GET /x")
            (first, seen1), (retry, seen2) = policy.calls
            assert seen1 == [dead, origin.address] and first.retry is False
            assert seen2 == [origin.address]
            assert retry.retry is True and retry.method == "" and dict(retry.headers) == {}
            assert retry.client_ip == "127.0.0.1"
    assert f"retrying on {origin.address}" in caplog.text


def test_policies_for_unknown_upstreams_are_refused(origin):
    cfg = fastproxy.Config.from_dict(
        {"server": {"listen": ["127.0.0.1:0"]}, "upstreams": {"app": {"servers": [origin.address]}}}
    )
    with pytest.raises(ValueError, match="unknown upstreams: nope"):
        fastproxy.Proxy(cfg, policies={"nope": ByHeader()})
