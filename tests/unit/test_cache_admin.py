"""The cache's admin face (fastproxy/cache_admin.py, AdminServer): key format,
POST /cache/purge against a real CacheRegion, and the cache metrics and status."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastproxy._stats import StatsIndex, StatsRegion
from prometheus_client.parser import text_string_to_metric_families

from fastproxy._cache import CacheRegion
from fastproxy.admin import AdminServer
from fastproxy.cache_admin import cache_key
from fastproxy.config import Config


def test_key_format() -> None:
    assert cache_key("HTTP://Example.COM:8080/A/b?Q=1") == b"GET http://example.com:8080/A/b?Q=1"
    assert cache_key("https://h/", prefix=True) == b"GET https://h/"
    assert cache_key("http://", prefix=True) == b"GET http://"
    for bad in ("/path", "ftp://h/", "http:///x", "http://h/a b", "http://h/\n"):
        with pytest.raises(ValueError):
            cache_key(bad)


@pytest.fixture
def admin() -> AdminServer:
    cfg = Config.from_dict(
        {"admin": {}, "cache": {}, "upstreams": {"app": {"servers": ["127.0.0.1:9001"]}}}
    )
    cache = CacheRegion(2 << 20, 256 << 10)
    for key, vary in [
        (b"GET http://h/a?x=1", 0),
        (b"GET http://h/a?x=1", 5),  # a Vary variant
        (b"GET http://h/a?x=1\nX-Tenant: 7", 0),  # a key extra
        (b"GET http://h/a?x=12", 0),  # not the same URL
        (b"GET http://h/b", 0),
        (b"GET http://other/a", 0),
    ]:
        assert cache.put(key, b"HTTP/1.1 200 OK\r\n\r\n", b"body", vary=vary)
    return AdminServer(StatsRegion(), StatsIndex(), cfg, cache=cache)


def call(admin: AdminServer, method: bytes, body: Any = b"") -> tuple[int, Any]:
    raw = admin.respond(method, b"/cache/purge", [], body)
    head, _, payload = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, json.loads(payload) if status in (200, 400) else payload


def test_purge_url_takes_variants_and_extras_only(admin: AdminServer) -> None:
    assert call(admin, b"POST", b'{"url": "http://H/a?x=1"}') == (200, {"removed": 3})
    assert admin.cache.get(b"GET http://h/a?x=12") is not None
    assert call(admin, b"POST", b'{"url": "http://h/a?x=1"}') == (200, {"removed": 0})


def test_purge_prefix(admin: AdminServer) -> None:
    assert call(admin, b"POST", b'{"prefix": "http://h/"}') == (200, {"removed": 5})
    assert admin.cache.lru_keys() == [b"GET http://other/a"]
    admin.cache.check()


def test_purge_errors(admin: AdminServer) -> None:
    assert call(admin, b"GET")[0] == 405
    assert call(admin, b"POST", b'{"url": "http://h/", "prefix": "http://h/"}')[0] == 400
    assert call(admin, b"POST", b'{"url": ["http://h/"]}')[0] == 400
    assert call(admin, b"POST", b'{"uri": "http://h/"}')[1]["error"].startswith("unknown field")
    assert admin.cache.stats()["entries"] == 6


def test_no_purge_endpoint_without_cache() -> None:
    cfg = Config.from_dict({"admin": {}, "upstreams": {"app": {"servers": ["127.0.0.1:9001"]}}})
    admin = AdminServer(StatsRegion(), StatsIndex(), cfg)
    assert admin.respond(b"POST", b"/cache/purge", [], b"{}").startswith(b"HTTP/1.1 404")
    metrics = admin.respond(b"GET", b"/metrics", []).decode()
    assert "fastproxy_cache" not in metrics
    assert b'"cache"' not in admin.respond(b"GET", b"/status", [])


def test_cache_metrics_and_status(admin: AdminServer) -> None:
    admin.cache.get(b"GET http://h/b")
    admin.cache.get(b"GET http://h/nope")
    raw = admin.respond(b"GET", b"/metrics", []).decode()
    text = raw.partition("\r\n\r\n")[2]
    values = {
        s.name: s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
        if s.name.startswith("fastproxy_cache")
    }
    assert values["fastproxy_cache_hits_total"] == 1
    assert values["fastproxy_cache_misses_total"] == 1
    assert values["fastproxy_cache_stores_total"] == 6
    assert values["fastproxy_cache_evictions_total"] == 0
    assert values["fastproxy_cache_entries"] == 6
    assert values["fastproxy_cache_bytes"] > 0
    status = json.loads(admin.respond(b"GET", b"/status", []).partition(b"\r\n\r\n")[2])
    assert status["cache"]["entries"] == 6 and status["cache"]["hits"] == 1
