"""fastproxy: a reverse proxy, load balancer and HTTP cache.

The public embedding API is what this module exports, and nothing else:

    cfg = fastproxy.Config.load("fastproxy.toml")   # or Config.from_dict({...})
    fastproxy.Proxy(cfg).run()                       # blocking
    async with fastproxy.Proxy(cfg) as proxy: ...    # on a running loop
    fastproxy.Proxy(cfg, policies={"app": MyPolicy()})  # a custom fastproxy.Policy
"""

from fastproxy._version import __version__
from fastproxy.config import Config, ConfigError
from fastproxy.policy import Policy, RequestInfo
from fastproxy.proxy import Proxy

__all__ = ["Config", "ConfigError", "Policy", "Proxy", "RequestInfo", "__version__"]
