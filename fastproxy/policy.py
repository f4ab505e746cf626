"""Custom load-balancing policies written in Python (opt-in, slower).

The built-in policies (`balance = ...`) run in C with no Python call per
request.  When none of them fits, subclass `Policy` and hand an instance to
the embedding API::

    class Canary(fastproxy.Policy):
        def pick(self, request, servers):
            if request.headers.get("x-canary") == "1":
                return next((s for s in servers if s.address.endswith(":9002")), None)
            return min(servers, key=lambda s: s.inflight)

    fastproxy.Proxy(cfg, policies={"app": Canary()}).run()

`pick` is called once per request (and again for each retry) with the
servers that may take it right now: primaries that are not down, drained,
disabled, passively out, behind an open breaker or at max_conns -- or the
backups when no primary is usable.  It returns one of them, or None for a
503.  It runs on the worker's event loop: it must not block.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol


class ServerView(Protocol):
    """What a policy sees of a server (the data plane's Server object)."""

    @property
    def address(self) -> str: ...
    @property
    def weight(self) -> int: ...
    @property
    def backup(self) -> bool: ...
    @property
    def inflight(self) -> int: ...


@dataclass(frozen=True, slots=True)
class RequestInfo:
    """The request being balanced.  For a retry the head is gone: `method`,
    `target` and `headers` are empty then (`retry` is True)."""

    method: str = ""
    target: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)  # lower-case names, first value
    client_ip: str = ""
    retry: bool = False


class Policy:
    """Base class of a custom policy: override `pick`."""

    def pick(self, request: RequestInfo, servers: Sequence[Any]) -> Any:
        """Return one of `servers` (never empty), or None to answer 503."""
        raise NotImplementedError
