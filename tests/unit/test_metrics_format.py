"""The Prometheus text exposition (format 0.0.4) rendered by fastproxy.admin from a
hand-built snapshot: escaping, histogram buckets, HELP/TYPE once per family, and a round
trip through prometheus_client's parser."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from fastproxy.admin import (
    BUCKET_BOUNDS,
    CODES,
    AdminServer,
    escape_help,
    escape_label_value,
    format_le,
    render_metrics,
    render_status,
)
from fastproxy.config import Config

NASTY = 'we\\ird"host\nname/'  # a backslash, a double quote and a newline

FAMILIES = {
    "fastproxy_requests_total": ("counter", {"route", "code"}),
    "fastproxy_responses_total": ("counter", {"code"}),
    "fastproxy_bytes_received_total": ("counter", set()),
    "fastproxy_bytes_sent_total": ("counter", set()),
    "fastproxy_connections_active": ("gauge", set()),
    "fastproxy_connections_total": ("counter", set()),
    "fastproxy_upstream_connections_active": ("gauge", set()),
    "fastproxy_upstream_server_up": ("gauge", {"upstream", "server"}),
    "fastproxy_upstream_retries_total": ("counter", set()),
    "fastproxy_upstream_server_inflight": ("gauge", {"upstream", "server"}),
    "fastproxy_upstream_server_passive_out": ("gauge", {"upstream", "server"}),
    "fastproxy_upstream_server_breaker_open": ("gauge", {"upstream", "server"}),
    "fastproxy_upstream_server_trips_total": ("counter", {"upstream", "server"}),
    "fastproxy_upstream_server_admin_enabled": ("gauge", {"upstream", "server"}),
    "fastproxy_upstream_requests_total": ("counter", {"upstream", "server"}),
    "fastproxy_upstream_failures_total": ("counter", {"upstream", "server"}),
    "fastproxy_upstream_response_seconds": ("histogram", {"upstream", "server"}),
    "fastproxy_errors_total": ("counter", set()),
    "fastproxy_compressed_responses_total": ("counter", {"algorithm"}),
    "fastproxy_compression_bytes_in_total": ("counter", {"algorithm"}),
    "fastproxy_compression_bytes_out_total": ("counter", {"algorithm"}),
    "fastproxy_decompressed_responses_total": ("counter", {"result"}),
    "fastproxy_workers": ("gauge", set()),
    "fastproxy_config_generation": ("gauge", set()),
    "fastproxy_start_time_seconds": ("gauge", set()),
    "fastproxy_build_info": ("gauge", {"version"}),
}


def snapshot() -> dict[str, Any]:
    buckets = [0] * len(BUCKET_BOUNDS)
    buckets[0], buckets[3], buckets[11] = 2, 5, 1  # 1 more above the last bound: count 9
    return {
        "generation": 3,
        "started": 1_700_000_000.25,
        "totals": {
            "requests": [1, 0, 40, 2, 7, 3],
            "bytes_in": 1234,
            "bytes_out": 56789,
            "connections_total": 50,
            "connections_active": 4,
            "upstream_active": 2,
            "upstream_requests": 9,
            "errors": 3,
            "cache": [0] * 6,
            # gzip: 5 responses 5000 -> 1000 bytes; zstd: 2, 800 -> 300; 4 decoded, 1 failed
            "compression": [0, 0, 0, 5, 5000, 1000, 0, 0, 0, 2, 800, 300, 4, 1, 0, 0],
        },
        "routes": {0: [1, 0, 30, 2, 5, 3], 1: [0, 0, 10, 0, 0, 0]},
        "servers": {
            1: {
                "requests": 9,
                "failures": 1,
                "active": 2,
                "buckets": buckets,
                "count": 9,
                "sum_seconds": 6.5,
            }
        },
        "workers": [
            {"slot": 1, "pid": 101, "generation": 3, "requests": 30, "connections_active": 1,
             "connections_total": 20},
            {"slot": 2, "pid": 102, "generation": 3, "requests": 23, "connections_active": 3,
             "connections_total": 30},
        ],
    }  # fmt: skip


ROUTES = {"*/": 0, NASTY: 1, "api.example/v1": 2}
SERVERS = {("app", "127.0.0.1:9001"): 0, ("app", 'x"y\\z\n:1'): 1}


@pytest.fixture
def text() -> str:
    return render_metrics(snapshot(), ROUTES, SERVERS, version="1.2.3")


def families(text: str) -> dict[str, Any]:
    return {f.name: f for f in text_string_to_metric_families(text)}


def value(fams: dict[str, Any], family: str, sample: str | None = None, **labels: str) -> float:
    found = [
        s.value
        for s in fams[family].samples
        if s.name == (sample or family) and all(s.labels.get(k) == v for k, v in labels.items())
    ]
    assert len(found) == 1, (family, labels, found)
    return found[0]


def test_escaping_helpers() -> None:
    assert escape_label_value(NASTY) == 'we\\\\ird\\"host\\nname/'
    assert escape_help('a\\b\n"c"') == 'a\\\\b\\n"c"'
    assert format_le(0.005) == "0.005" and format_le(1.0) == "1.0"
    assert format_le(float("inf")) == "+Inf"


def test_label_values_are_escaped_in_the_text(text: str) -> None:
    assert 'route="we\\\\ird\\"host\\nname/"' in text
    assert 'server="x\\"y\\\\z\\n:1"' in text
    # every sample line follows the 0.0.4 grammar: only \\, \" and \n escapes in values,
    # so a raw newline or quote never reaches the output inside a label value
    value_re = r'"(?:[^"\\\n]|\\[\\"n])*"'
    pair = rf"[a-zA-Z_][a-zA-Z0-9_]*={value_re}"
    sample = re.compile(rf"[a-zA-Z_:][a-zA-Z0-9_:]*(?:\{{{pair}(?:,{pair})*\}})? \S+")
    for line in text.splitlines():
        assert line.startswith("# ") or sample.fullmatch(line), line


def test_round_trip_restores_label_values(text: str) -> None:
    fams = families(text)
    routes = {s.labels["route"] for s in fams["fastproxy_requests"].samples}
    assert routes == set(ROUTES)
    servers = {s.labels["server"] for s in fams["fastproxy_upstream_requests"].samples}
    assert servers == {"127.0.0.1:9001", 'x"y\\z\n:1'}


def test_help_and_type_once_per_family_in_order(text: str) -> None:
    lines = text.splitlines()
    helps = [ln.split()[2] for ln in lines if ln.startswith("# HELP ")]
    types = {ln.split()[2]: ln.split()[3] for ln in lines if ln.startswith("# TYPE ")}
    assert len(helps) == len(set(helps)) == len(FAMILIES)
    assert sum(1 for ln in lines if ln.startswith("# TYPE ")) == len(FAMILIES)
    assert types == {name: kind for name, (kind, _) in FAMILIES.items()}
    # every sample line follows its own family's HELP/TYPE block
    current = None
    for ln in lines:
        if ln.startswith("# TYPE "):
            current = ln.split()[2]
        elif not ln.startswith("#"):
            name = re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", ln).group(0)
            assert current is not None and name.startswith(current), (current, ln)
    assert text.endswith("\n") and not text.endswith("\n\n")


def test_families_types_and_labels(text: str) -> None:
    fams = families(text)
    for name, (kind, labels) in FAMILIES.items():
        key = name.removesuffix("_total") if kind == "counter" else name
        assert key in fams, name
        assert fams[key].type == kind
        for s in fams[key].samples:
            assert set(s.labels) - {"le"} == labels, (name, s)


def test_requests_per_route_and_code(text: str) -> None:
    fams = families(text)
    fam = "fastproxy_requests"
    assert value(fams, fam, "fastproxy_requests_total", route="*/", code="2xx") == 30
    assert value(fams, fam, "fastproxy_requests_total", route="*/", code="aborted") == 1
    assert value(fams, fam, "fastproxy_requests_total", route=NASTY, code="2xx") == 10
    # a route in the index with no counts yet is exported with zeros, all six codes
    zeros = [s for s in fams[fam].samples if s.labels["route"] == "api.example/v1"]
    assert sorted(s.labels["code"] for s in zeros) == sorted(CODES)
    assert all(s.value == 0 for s in zeros)
    total = sum(s.value for s in fams[fam].samples)
    assert total == 51
    resp = {s.labels["code"]: s.value for s in fams["fastproxy_responses"].samples}
    assert resp == dict(zip(CODES, [1, 0, 40, 2, 7, 3], strict=True))


def test_histogram_is_cumulative_with_inf_sum_and_count(text: str) -> None:
    fams = families(text)
    fam = fams["fastproxy_upstream_response_seconds"]
    labels = {"upstream": "app", "server": 'x"y\\z\n:1'}
    buckets = [
        (s.labels["le"], s.value)
        for s in fam.samples
        if s.name.endswith("_bucket") and all(s.labels[k] == v for k, v in labels.items())
    ]
    assert [le for le, _ in buckets] == [format_le(b) for b in BUCKET_BOUNDS] + ["+Inf"]
    counts = [v for _, v in buckets]
    assert counts == sorted(counts), "buckets must be cumulative"
    assert counts[0] == 2 and counts[3] == 7 and counts[-2] == 8 and counts[-1] == 9
    assert value(fams, fam.name, fam.name + "_count", **labels) == 9
    assert value(fams, fam.name, fam.name + "_sum", **labels) == 6.5
    # a server without samples still has a complete, all-zero histogram
    idle = [
        s
        for s in fam.samples
        if s.labels["server"] == "127.0.0.1:9001" and s.name.endswith("_bucket")
    ]
    assert len(idle) == len(BUCKET_BOUNDS) + 1 and all(s.value == 0 for s in idle)


def test_scalar_metrics(text: str) -> None:
    fams = families(text)
    assert value(fams, "fastproxy_bytes_received", "fastproxy_bytes_received_total") == 1234
    assert value(fams, "fastproxy_bytes_sent", "fastproxy_bytes_sent_total") == 56789
    assert value(fams, "fastproxy_connections_active") == 4
    assert value(fams, "fastproxy_connections", "fastproxy_connections_total") == 50
    assert value(fams, "fastproxy_upstream_connections_active") == 2
    assert value(fams, "fastproxy_errors", "fastproxy_errors_total") == 3
    assert value(fams, "fastproxy_workers") == 2
    assert value(fams, "fastproxy_config_generation") == 3
    assert value(fams, "fastproxy_start_time_seconds") == 1_700_000_000.25
    assert value(fams, "fastproxy_build_info", version="1.2.3") == 1
    up = "fastproxy_upstream_failures"
    assert value(fams, up, up + "_total", server='x"y\\z\n:1') == 1
    assert value(fams, up, up + "_total", server="127.0.0.1:9001") == 0


def test_overflowed_index_is_reported_as_other() -> None:
    # past the region's capacity several names share the last index
    text = render_metrics(snapshot(), {"*/a": 0, "*/b": 1, "*/c": 1}, SERVERS)
    fams = families(text)
    routes = {s.labels["route"] for s in fams["fastproxy_requests"].samples}
    assert routes == {"*/a", "other"}


def test_empty_snapshot_renders() -> None:
    snap = snapshot()
    snap.update(routes={}, servers={}, workers=[])
    fams = families(render_metrics(snap, {}, {}))
    assert fams["fastproxy_requests"].samples == []
    assert value(fams, "fastproxy_workers") == 0


def test_status_document() -> None:
    cfg = Config.from_dict(
        {
            "upstreams": {
                "app": {
                    "servers": [
                        "127.0.0.1:9001",
                        {"address": "127.0.0.1:9002", "weight": 3},
                        {"address": "127.0.0.1:9003", "backup": True},
                    ]
                }
            },
            "routes": [{"path_prefix": "/", "upstream": "app"}],
        }
    )
    servers = {("app", "127.0.0.1:9001"): 0, ("app", "127.0.0.1:9002"): 1}
    doc = render_status(snapshot(), cfg, servers, {101: 0, 102: 1}, now=1_700_000_010.25)
    json.dumps(doc)  # serialisable
    assert doc["generation"] == 3 and doc["uptime_seconds"] == 10.0
    assert [(w["pid"], w["slot"]) for w in doc["workers"]] == [(101, 0), (102, 1)]
    assert set(doc["workers"][0]) == {"pid", "slot", "generation", "requests", "connections_active"}
    assert doc["totals"]["requests"]["2xx"] == 40
    (entries,) = [u["servers"] for u in doc["upstreams"].values()]
    assert [e["address"] for e in entries] == ["127.0.0.1:9001", "127.0.0.1:9002", "127.0.0.1:9003"]
    assert [e["weight"] for e in entries] == [1, 3, 1]
    assert {e["state"] for e in entries} == {"up"}
    assert entries[1]["requests"] == 9 and entries[1]["failures"] == 1 and entries[1]["active"] == 2
    assert entries[0]["requests"] == 0 and entries[2]["requests"] == 0


class _Region:
    def snapshot(self) -> dict[str, Any]:
        return snapshot()


class _Index:
    routes = ROUTES
    servers = SERVERS


def _admin(token: str = "") -> AdminServer:
    cfg = Config.from_dict(
        {
            "admin": {"listen": "127.0.0.1:0", "token": token} if token else {},
            "upstreams": {"app": {"servers": ["127.0.0.1:9001"]}},
            "routes": [{"path_prefix": "/", "upstream": "app"}],
        }
    )
    return AdminServer(_Region(), _Index(), cfg)


def _split(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    return int(lines[0].split()[1]), headers, body


def test_responses_of_the_admin_server() -> None:
    admin = _admin()
    status, headers, body = _split(admin.respond(b"GET", b"/metrics?x=1", []))
    assert status == 200
    assert headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert int(headers["content-length"]) == len(body)
    assert headers["connection"] == "close"
    assert "fastproxy_build_info" in body.decode()
    status, headers, body = _split(admin.respond(b"GET", b"/status", []))
    assert status == 200 and headers["content-type"] == "application/json"
    assert json.loads(body)["generation"] == 3
    status, headers, body = _split(admin.respond(b"HEAD", b"/status", []))
    assert status == 200 and body == b"" and int(headers["content-length"]) > 0
    assert _split(admin.respond(b"GET", b"/nope", []))[0] == 404
    assert _split(admin.respond(b"GET", b"/metrics/", []))[0] == 404
    status, headers, _ = _split(admin.respond(b"POST", b"/metrics", []))
    assert status == 405 and headers["allow"] == "GET, HEAD"
    assert _split(admin.respond(b"DELETE", b"/status", []))[0] == 405


def test_bearer_token() -> None:
    admin = _admin("s3cret")
    status, headers, _ = _split(admin.respond(b"GET", b"/metrics", []))
    assert status == 401 and headers["www-authenticate"].startswith("Bearer")
    for bad in (b"Bearer nope", b"Basic czNjcmV0", b"Bearer", b"s3cret", b"Bearer s3cret2"):
        hdrs = [(b"Authorization", bad, 0)]
        assert _split(admin.respond(b"GET", b"/metrics", hdrs))[0] == 401, bad
    # unknown paths are not revealed without the token
    assert _split(admin.respond(b"GET", b"/nope", []))[0] == 401
    for good in (b"Bearer s3cret", b"bearer s3cret", b"BEARER  s3cret "):
        hdrs = [(b"authorization", good, 0)]
        assert _split(admin.respond(b"GET", b"/metrics", hdrs))[0] == 200, good


def test_compression_counters(text: str) -> None:
    fams = families(text)
    assert (
        value(
            fams,
            "fastproxy_compressed_responses",
            "fastproxy_compressed_responses_total",
            algorithm="gzip",
        )
        == 5
    )
    assert (
        value(
            fams,
            "fastproxy_compressed_responses",
            "fastproxy_compressed_responses_total",
            algorithm="br",
        )
        == 0
    )
    assert (
        value(
            fams,
            "fastproxy_compression_bytes_in",
            "fastproxy_compression_bytes_in_total",
            algorithm="zstd",
        )
        == 800
    )
    assert (
        value(
            fams,
            "fastproxy_compression_bytes_out",
            "fastproxy_compression_bytes_out_total",
            algorithm="gzip",
        )
        == 1000
    )
    assert (
        value(
            fams,
            "fastproxy_decompressed_responses",
            "fastproxy_decompressed_responses_total",
            result="ok",
        )
        == 4
    )
    assert (
        value(
            fams,
            "fastproxy_decompressed_responses",
            "fastproxy_decompressed_responses_total",
            result="failed",
        )
        == 1
    )
