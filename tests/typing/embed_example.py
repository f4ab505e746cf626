"""Uses the public embedding API the way the README shows; mypy --strict must
accept it, which checks that the .pyi stubs say what the code does."""

from __future__ import annotations

import asyncio

import fastproxy
from fastproxy import _http1


async def main() -> list[tuple[str, int]]:
    cfg = fastproxy.Config.from_dict(
        {
            "server": {"listen": ["127.0.0.1:0"], "pid_file": False},
            "upstreams": {"app": {"servers": ["127.0.0.1:9"]}},
        }
    )
    assert not cfg.compression.active and cfg.routes[0].compression.min_length == 1024
    async with fastproxy.Proxy(cfg) as proxy:
        addresses = proxy.addresses
        await proxy.reload(cfg)
        counts: dict[str, object] = proxy.stats()
        assert isinstance(counts, dict)
    return addresses


def parse(data: bytes) -> int:
    head = _http1.parse_request(data)
    if head is None:
        return 0
    names = [name for name, _value, _id in head.headers]
    return head.head_len + len(names)


def check_config(path: str) -> str:
    try:
        fastproxy.Config.load(path)
    except fastproxy.ConfigError as e:
        return "\n".join(str(issue) for issue in e.issues)
    return "ok"


if __name__ == "__main__":
    print(asyncio.run(main()))
