"""Active health checks (fastproxy/health.py): the rise/fall state machine, one probe
against a real local origin, and the balancer skipping servers flagged down."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator

import pytest
from fastproxy._stats import StatsIndex, StatsRegion
from fastproxy._tables import Router

from fastproxy.config import Config, HealthCheck
from fastproxy.health import HealthChecker, HealthState, build_request, probe


def test_state_machine_fall_and_rise() -> None:
    st = HealthState(rise=2, fall=3)
    assert not st.down
    assert [st.record(False), st.record(False)] == [False, False]
    assert not st.down
    st.record(True)  # a pass resets the failure count
    assert [st.record(False), st.record(False), st.record(False)] == [False, False, True]
    assert st.down
    assert not st.record(False)  # already down: no flip
    assert st.record(True) is False
    st.record(False)  # a failure resets the pass count
    assert st.down
    assert [st.record(True), st.record(True)] == [False, True]
    assert not st.down
    assert st.record(True) is False


def test_state_machine_rise_fall_one() -> None:
    st = HealthState(rise=1, fall=1)
    assert st.record(False) and st.down
    assert st.record(True) and not st.down


def test_build_request() -> None:
    check = HealthCheck(path="/h?x=1")
    assert build_request(check, "127.0.0.1:9") == (
        b"GET /h?x=1 HTTP/1.1\r\nHost: 127.0.0.1:9\r\nConnection: close\r\n"
        b"User-Agent: fastproxy-health\r\n\r\n"
    )
    assert b"Host: app.internal\r\n" in build_request(HealthCheck(host="app.internal"), "a:1")


class TinyOrigin:
    """Answers every connection with one canned response, then closes."""

    def __init__(self, response: bytes, delay: float = 0.0) -> None:
        self.response = response
        self.delay = delay
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.heads: list[bytes] = []
        self._stop = False
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        self.sock.settimeout(0.1)
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            with conn:
                data = b""
                conn.settimeout(2)
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                self.heads.append(data)
                if self.delay:
                    threading.Event().wait(self.delay)
                try:
                    conn.sendall(self.response)
                except OSError:
                    pass

    def close(self) -> None:
        self._stop = True
        self.thread.join(2)
        self.sock.close()


@pytest.fixture
def tiny() -> Iterator[list[TinyOrigin]]:
    made: list[TinyOrigin] = []
    yield made
    for o in made:
        o.close()


def run_probe(port: int, check: HealthCheck) -> str | None:
    return asyncio.run(probe("127.0.0.1", port, check, f"127.0.0.1:{port}"))


def response(status: int, body: bytes, chunked: bool = False) -> bytes:
    if chunked:
        framed = f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n"
        return f"HTTP/1.1 {status} X\r\nTransfer-Encoding: chunked\r\n\r\n".encode() + framed
    return f"HTTP/1.1 {status} X\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body


def test_probe_passes_on_200(tiny: list[TinyOrigin]) -> None:
    o = TinyOrigin(response(200, b"ok"))
    tiny.append(o)
    assert run_probe(o.port, HealthCheck(path="/healthz")) is None
    assert o.heads[0].startswith(b"GET /healthz HTTP/1.1\r\n")
    assert b"User-Agent: fastproxy-health\r\n" in o.heads[0]


def test_probe_fails_on_500(tiny: list[TinyOrigin]) -> None:
    o = TinyOrigin(response(500, b"broken"))
    tiny.append(o)
    assert run_probe(o.port, HealthCheck()) == "status 500"
    assert run_probe(o.port, HealthCheck(expect_status=((500, 500),))) is None


def test_probe_expect_body(tiny: list[TinyOrigin]) -> None:
    o = TinyOrigin(response(200, b"status: degraded"))
    tiny.append(o)
    reason = run_probe(o.port, HealthCheck(expect_body="healthy"))
    assert reason is not None and "healthy" in reason
    assert run_probe(o.port, HealthCheck(expect_body="degraded")) is None
    c = TinyOrigin(response(200, b"all healthy", chunked=True))
    tiny.append(c)
    assert run_probe(c.port, HealthCheck(expect_body="healthy")) is None


def test_probe_connection_refused() -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    assert run_probe(port, HealthCheck()) == "connection refused"


def test_probe_timeout(tiny: list[TinyOrigin]) -> None:
    o = TinyOrigin(response(200, b"late"), delay=1.0)
    tiny.append(o)
    assert run_probe(o.port, HealthCheck(timeout=0.2)) == "timed out after 0.2s"


def test_probe_garbage(tiny: list[TinyOrigin]) -> None:
    o = TinyOrigin(b"this is not http\r\n\r\n")
    tiny.append(o)
    reason = run_probe(o.port, HealthCheck())
    assert reason is not None and reason.startswith("invalid response")


def test_checker_marks_down_and_up(tiny: list[TinyOrigin]) -> None:
    bad = TinyOrigin(response(503, b"no"))
    tiny.append(bad)
    good = TinyOrigin(response(200, b"ok"))
    tiny.append(good)
    text = (
        f'[upstreams.app]\nservers = ["127.0.0.1:{bad.port}", "127.0.0.1:{good.port}"]\n'
        'health_check = { interval = "0.05s", timeout = "0.5s", rise = 1, fall = 2 }\n'
    )
    config = Config.from_toml(text)
    region, index = StatsRegion(), StatsIndex()
    Router(config, index)
    bad_i = index.server("app", f"127.0.0.1:{bad.port}")
    good_i = index.server("app", f"127.0.0.1:{good.port}")

    async def main() -> None:
        checker = HealthChecker(region, index, config)
        checker.start()
        for _ in range(100):
            if region.is_down(bad_i):
                break
            await asyncio.sleep(0.02)
        assert region.is_down(bad_i) and not region.is_down(good_i)
        # a reload keeping the server keeps its state (and takes the new settings)
        target = checker.targets[("app", f"127.0.0.1:{bad.port}")]
        checker.update(Config.from_toml(text.replace("rise = 1", "rise = 2")))
        assert checker.targets[("app", f"127.0.0.1:{bad.port}")] is target
        assert target.state.down and target.state.rise == 2 and region.is_down(bad_i)
        bad.response = response(200, b"fixed")
        for _ in range(100):
            if not region.is_down(bad_i):
                break
            await asyncio.sleep(0.02)
        assert not region.is_down(bad_i)
        # a reload dropping the checks clears the flags
        region.set_down(bad_i, True)
        checker.update(Config.from_toml(text.split("health_check")[0]))
        assert not region.is_down(bad_i) and not checker.targets
        checker.close()

    asyncio.run(main())


def lb_upstream(extra: str = "", balance: str = "round_robin") -> object:
    text = (
        '[upstreams.app]\nservers = ["10.0.0.1:80", "10.0.0.2:80", '
        '{ address = "10.0.0.9:80", backup = true }]\n'
        f'balance = "{balance}"\n' + extra
    )
    if balance == "hash":
        text += 'hash_key = "path"\n'
    return Router(Config.from_toml(text)).upstreams["app"]


GET = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


@pytest.mark.parametrize("balance", ["round_robin", "least_conn", "ip_hash", "hash", "random"])
def test_balancer_skips_down_servers(balance: str) -> None:
    u = lb_upstream(balance=balance)
    idx = {s.address: s.stats_index for s in u.unique_servers()}  # type: ignore[attr-defined]
    flags = bytearray(256)
    u.down_for_test(flags)  # type: ignore[attr-defined]

    def picks() -> set[str | None]:
        return {u.pick_for_test(b"10.1.1.%d" % i, GET) for i in range(40)}  # type: ignore[attr-defined]

    assert picks() <= {"10.0.0.1:80", "10.0.0.2:80"}
    flags[idx["10.0.0.1:80"]] = 1
    assert picks() == {"10.0.0.2:80"}
    flags[idx["10.0.0.2:80"]] = 1
    assert picks() == {"10.0.0.9:80"}  # every primary down: the backup
    flags[idx["10.0.0.9:80"]] = 1
    assert picks() == {None}  # nothing up: the caller answers 503
    flags[idx["10.0.0.1:80"]] = 0
    assert picks() == {"10.0.0.1:80"}
    u.down_for_test(None)  # type: ignore[attr-defined]
    assert picks() <= {"10.0.0.1:80", "10.0.0.2:80"}
