"""Runtime control through the admin API with a real master and 2 workers:
POST /upstreams/{name}/servers/{address}/drain|disable|enable, what /status and /metrics
show, the errors (404, 405, 401), and the state across `fastproxy reload` (SIGHUP).
Origins answer with X-Origin: their index; every wait polls with a deadline.
"""

from __future__ import annotations

import json
import signal
import time
from collections import Counter
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import pytest
from support import call as http_call
from support import free_port, two_origins, wait_for


def call(
    port: int, method: str, path: str, token: str | None = None, host: str = "admin"
) -> tuple[int, dict[str, str], bytes]:
    """One request on a new connection, with a bearer token when given."""
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    return http_call(port, method, path, host, auth)


def control(admin: int, address: str, action: str, token: str | None = None) -> dict[str, Any]:
    status, fields, body = call(admin, "POST", f"/upstreams/app/servers/{address}/{action}", token)
    assert status == 200, body
    assert fields["content-type"] == "application/json"
    return json.loads(body)


def entries(admin: int, token: str | None = None) -> dict[str, dict[str, Any]]:
    status, _, body = call(admin, "GET", "/status", token)
    assert status == 200, body
    return {s["address"]: s for s in json.loads(body)["upstreams"]["app"]["servers"]}


def origins_of(port: int, n: int) -> Counter[str | None]:
    """X-Origin of n GETs on new connections (so both workers serve them)."""
    seen: Counter[str | None] = Counter()
    for _ in range(n):
        status, fields, body = call(port, "GET", "/x", host="app.test")
        assert status == 200, body
        seen[fields.get("x-origin")] += 1
    return seen


def admin_enabled_metric(admin: int, address: str) -> float:
    _, _, body = call(admin, "GET", "/metrics")
    for line in body.decode().splitlines():
        if line.startswith("fastproxy_upstream_server_admin_enabled{") and address in line:
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError("no fastproxy_upstream_server_admin_enabled")


def config(servers: list[str], admin: int, token: str | None = None, **extra: Any) -> dict:
    adm: dict[str, Any] = {"listen": f"127.0.0.1:{admin}"}
    if token:
        adm["token"] = token
    return {
        "server": {"listen": ["127.0.0.1:0"], "workers": 2, "pid_file": False},
        "log": {"access": "off"},
        "admin": adm,
        "upstreams": {"app": {"servers": servers, **extra}},
        "routes": [{"path_prefix": "/", "upstream": "app"}],
    }


@pytest.fixture
def start(make_proxy: Callable[..., Any]) -> Callable[..., Any]:
    def run(doc: dict[str, Any]) -> Any:
        p = make_proxy(doc, merge=False)
        p.wait_log(r"\] ready$", 15)
        p.wait_log(r"admin endpoint on http://127\.0\.0\.1:\d+", 5)
        return p

    return run


# ---------------------------------------------------------------------------------------------


def test_drain_lets_the_slow_request_finish_while_new_ones_go_elsewhere(origin, start, http_conn):
    with two_origins(origin, ("0", "1")) as origins:
        admin = free_port()
        p = start(config([o.address for o in origins], admin))
        holder = http_conn(p.port, timeout=10)
        holder.request("GET", "/slow?delay=1.5")
        slow = wait_for(
            lambda: next((o for o in origins if o.requests), None), 5, "the slow request"
        )
        other = origins[1 - origins.index(slow)]
        assert control(admin, slow.address, "drain") == {
            "upstream": "app",
            "server": slow.address,
            "admin": "drain",
        }
        p.wait_log(rf"admin: app {slow.address} drain")
        st = entries(admin)[slow.address]
        assert (st["admin"], st["drained"], st["inflight"]) == ("drain", False, 1)
        assert admin_enabled_metric(admin, slow.address) == 0

        # new requests, on both workers, all go to the other server
        assert origins_of(p.port, 20) == {other.extra_headers[0][1]: 20}
        assert [r.path for r in slow.requests] == ["/slow"]
        r = holder.read_response()
        assert (r.status, r.body, r.header("X-Origin")) == (200, b"slow", slow.extra_headers[0][1])
        st = wait_for(
            lambda: (e := entries(admin)[slow.address])["drained"] and e, 5, "drained: true"
        )
        assert (st["admin"], st["inflight"]) == ("drain", 0)
        assert entries(admin)[other.address]["drained"] is False

        assert control(admin, slow.address, "enable")["admin"] == "enabled"
        st = entries(admin)[slow.address]
        assert (st["admin"], st["drained"]) == ("enabled", False)
        assert admin_enabled_metric(admin, slow.address) == 1
        assert set(origins_of(p.port, 20)) == {"0", "1"}


def test_disable_and_enable(origin, start):
    with two_origins(origin, ("0", "1")) as (a, b):
        admin = free_port()
        p = start(config([a.address, b.address], admin))
        assert control(admin, a.address, "disable")["admin"] == "disabled"
        assert entries(admin)[a.address]["admin"] == "disabled"
        assert entries(admin)[b.address]["admin"] == "enabled"
        assert origins_of(p.port, 16) == {"1": 16}
        assert a.requests == []
        # the address may be percent-encoded in the path
        assert control(admin, quote(b.address, safe=""), "disable")["server"] == b.address
        for _ in range(4):  # no usable server at all
            status, _, body = call(p.port, "GET", "/x", host="app.test")
            assert status == 503, body
        control(admin, a.address, "enable")
        assert origins_of(p.port, 8) == {"0": 8}
        control(admin, b.address, "enable")
        assert set(origins_of(p.port, 16)) == {"0", "1"}
        assert {e["admin"] for e in entries(admin).values()} == {"enabled"}


def test_control_errors_and_token(origin, start):
    admin = free_port()
    token = "tok-123"
    start(config([origin.address], admin, token=token))
    path = f"/upstreams/app/servers/{origin.address}/disable"
    status, fields, _ = call(admin, "POST", path)
    assert status == 401 and fields["www-authenticate"].startswith("Bearer")
    assert call(admin, "POST", path, "wrong")[0] == 401
    assert entries(admin, token)[origin.address]["admin"] == "enabled"  # nothing happened

    for bad, what in (
        ("/upstreams/nope/servers/{a}/disable", "no upstream"),
        ("/upstreams/app/servers/127.0.0.1:1/disable", "has no server"),
        ("/upstreams/app/servers/{a}/pause", "unknown action"),
    ):
        status, fields, body = call(admin, "POST", bad.format(a=origin.address), token)
        assert status == 404, body
        assert what in json.loads(body)["error"]
    status, fields, _ = call(admin, "GET", path, token)
    assert status == 405 and fields["allow"] == "POST"
    assert entries(admin, token)[origin.address]["admin"] == "enabled"

    assert control(admin, origin.address, "disable", token)["admin"] == "disabled"
    assert entries(admin, token)[origin.address]["admin"] == "disabled"


def reload(p: Any, doc: dict[str, Any], toml_dumps: Any, generation: int, admin: int) -> None:
    p.config_path.write_text(toml_dumps(doc))
    p.signal(signal.SIGHUP)
    p.wait_log(rf"reloaded: generation {generation}, 2 workers", 15)

    def only_new() -> bool:
        _, _, body = call(admin, "GET", "/status")
        workers = json.loads(body)["workers"]
        return len(workers) == 2 and {w["generation"] for w in workers} == {generation}

    wait_for(only_new, 15, f"only generation {generation} workers")


def test_admin_state_across_reloads(origin, start, toml_dumps):
    with two_origins(origin, ("0", "1")) as (a, b):
        admin = free_port()
        both = config([a.address, b.address], admin)
        p = start(both)
        control(admin, a.address, "disable")
        control(admin, b.address, "drain")
        control(admin, b.address, "enable")

        # still configured: the state survives (a route added to make it a real change)
        changed = config([a.address, b.address], admin)
        changed["routes"].insert(0, {"path_prefix": "/gone", "return": 410})
        reload(p, changed, toml_dumps, 2, admin)
        st = entries(admin)
        assert (st[a.address]["admin"], st[b.address]["admin"]) == ("disabled", "enabled")
        assert origins_of(p.port, 12) == {"1": 12}

        # removed: forgotten; added back: enabled again
        reload(p, config([b.address], admin), toml_dumps, 3, admin)
        assert list(entries(admin)) == [b.address]
        reload(p, both, toml_dumps, 4, admin)
        assert entries(admin)[a.address]["admin"] == "enabled"
        assert set(origins_of(p.port, 16)) == {"0", "1"}


def test_enable_ramps_the_server_up_with_slow_start(origin, start):
    with two_origins(origin, ("0", "1")) as (a, b):
        admin = free_port()
        servers = [{"address": o.address, "weight": 10} for o in (a, b)]
        p = start(config(servers, admin, slow_start="4s"))
        assert origins_of(p.port, 20)["0"] >= 8  # never recovered: its full share
        control(admin, a.address, "disable")
        assert origins_of(p.port, 4) == {"1": 4}
        control(admin, a.address, "enable")
        enabled = time.monotonic()
        early = origins_of(p.port, 20)
        # weight 1 of 10 right after, 3.25 a second later: well under half
        if time.monotonic() - enabled < 1.0:
            assert early["0"] <= 6, early
        wait_for(lambda: origins_of(p.port, 5)["0"], 3, "A in rotation again")
        wait_for(lambda: time.monotonic() - enabled > 4.1, 6, "slow_start to pass")
        assert 8 <= origins_of(p.port, 20)["0"] <= 12
