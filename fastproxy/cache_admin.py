"""The cache's control-plane face: cache keys for URLs, the admin purge request,
and the cache counters for /metrics and /status.

Cache key format (the contract between the request path and purging, see
docs/cache.md):

    "GET " + scheme + "://" + host + path [ "?" + query ] [ "\\n" + extra ... ]

scheme and host lowercased, the host with its port when the request named one,
path and query exactly as requested.  GET and HEAD share the "GET" method
class.  Configured key extras (request header values, say) follow the URL
after a newline, which a URL cannot contain, so purging a URL removes every
entry built on it and a prefix purge works on URLs.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Protocol

METHOD_CLASS = "GET "
EXTRA_SEP = b"\n"
MAX_PURGE_BODY = 65536


class _Store(Protocol):
    def delete(self, key: bytes) -> int: ...
    def purge_prefix(self, prefix: bytes) -> int: ...


def normalise_url(url: str, prefix: bool = False) -> str:
    """Lowercase the scheme and host of an absolute http(s) URL (or, with prefix,
    the start of one: "http://" and "http://ho" are fine); ValueError otherwise."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in ("http", "https"):
        raise ValueError("must be an absolute http:// or https:// URL")
    host, slash, path = rest.partition("/")
    if not host and not prefix:
        raise ValueError("has no host")
    if any(ch in url for ch in "\r\n\0 "):
        raise ValueError("contains a space or a control character")
    return f"{scheme.lower()}://{host.lower()}{slash}{path}"


def cache_key(url: str, prefix: bool = False) -> bytes:
    """The key an absolute URL's GET/HEAD response is stored under (no extras)."""
    return (METHOD_CLASS + normalise_url(url, prefix)).encode("latin-1")


def purge(cache: _Store, body: bytes) -> tuple[int, dict[str, Any]]:
    """Handle a `POST /cache/purge` body: (status, JSON document).

    {"url": U} removes the entries of exactly that URL (every Vary variant and
    key extra); {"prefix": P} removes every entry whose URL starts with P."""
    try:
        doc = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return 400, {"error": "body must be a JSON object"}
    if not isinstance(doc, dict):
        return 400, {"error": "body must be a JSON object"}
    fields = [k for k in ("url", "prefix") if k in doc]
    unknown = sorted(set(doc) - {"url", "prefix"})
    if unknown:
        return 400, {"error": f"unknown field {unknown[0]!r} (use 'url' or 'prefix')"}
    if len(fields) != 1:
        return 400, {"error": "give exactly one of 'url' or 'prefix'"}
    name = fields[0]
    value = doc[name]
    if not isinstance(value, str):
        return 400, {"error": f"'{name}' must be a string"}
    try:
        key = cache_key(value, prefix=name == "prefix")
    except (ValueError, UnicodeEncodeError) as exc:
        return 400, {"error": f"'{name}' {exc}"}
    if name == "url":
        removed = cache.delete(key) + cache.purge_prefix(key + EXTRA_SEP)
    else:
        removed = cache.purge_prefix(key)
    return 200, {"removed": removed}


# (metric name, kind, help, stats key)
METRICS = (
    (
        "fastproxy_cache_hits_total",
        "counter",
        "Requests answered from the cache (HIT, STALE, 304 from a stored response).",
        "hits",
    ),
    (
        "fastproxy_cache_misses_total",
        "counter",
        "Cacheable requests that went to the origin (MISS, including revalidations).",
        "misses",
    ),
    ("fastproxy_cache_stores_total", "counter", "Responses stored in the cache.", "stores"),
    (
        "fastproxy_cache_evictions_total",
        "counter",
        "Cached responses evicted to make room (least recently used first).",
        "evictions",
    ),
    ("fastproxy_cache_bytes", "gauge", "Bytes of shared memory held by cached responses.", "bytes"),
    ("fastproxy_cache_entries", "gauge", "Responses in the cache.", "entries"),
)


def status_doc(stats: Mapping[str, int]) -> dict[str, int]:
    """The "cache" object of /status."""
    keys = ("hits", "misses", "stores", "evictions", "bytes", "entries", "capacity")
    return {k: int(stats.get(k, 0)) for k in keys}
