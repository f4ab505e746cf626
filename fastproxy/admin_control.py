"""Runtime control of upstream servers through the admin API.

    POST /upstreams/{name}/servers/{address}/drain     no new requests; in-flight ones finish
    POST /upstreams/{name}/servers/{address}/disable   no new requests
    POST /upstreams/{name}/servers/{address}/enable    back in rotation

The state is a bit in the shared stats region's per-server flag byte (the
byte the balancers already read for health verdicts), so every worker obeys
it on its next pick.  It lives as long as the server's stats index, which
is stable across reloads; `forget_removed` clears it for servers a reload
dropped, so a server added back later starts enabled.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote

from fastproxy.config import Config

ACTIONS = {"drain": "drain", "disable": "disabled", "enable": "enabled"}
_PATH_RE = re.compile(r"/upstreams/([^/]+)/servers/([^/]+)/([a-z]+)")


def match(path: str) -> tuple[str, str, str] | None:
    """(upstream, address, action) when `path` is a control endpoint."""
    m = _PATH_RE.fullmatch(path)
    if m is None:
        return None
    return unquote(m.group(1)), unquote(m.group(2)), m.group(3)


def apply(
    region: Any, index: Any, config: Config, upstream: str, address: str, action: str
) -> tuple[int, dict[str, Any]]:
    """Carry out one control request: (HTTP status, JSON document)."""
    if action not in ACTIONS:
        return 404, {"error": f"unknown action {action!r}; use drain, disable or enable"}
    up = config.upstreams.get(upstream)
    if up is None:
        return 404, {"error": f"no upstream {upstream!r}"}
    if not any(str(s.address) == address for s in up.servers):
        return 404, {"error": f"upstream {upstream!r} has no server {address!r}"}
    i = index.servers.get((upstream, address))
    if i is None:  # not numbered yet: no worker has built its tables
        i = index.server(upstream, address)
    region.set_admin(i, ACTIONS[action])
    return 200, {"upstream": upstream, "server": address, "admin": ACTIONS[action]}


def forget_removed(region: Any, servers: Mapping[tuple[str, str], int], config: Config) -> None:
    """After a reload: servers no longer configured lose their admin state."""
    kept = {(name, str(s.address)) for name, up in config.upstreams.items() for s in up.servers}
    for key, i in servers.items():
        if key not in kept:
            region.set_admin(i, "enabled")
