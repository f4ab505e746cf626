from fastproxy.config import Config as Config
from fastproxy.config import ConfigError as ConfigError
from fastproxy.policy import Policy as Policy
from fastproxy.policy import RequestInfo as RequestInfo
from fastproxy.proxy import Proxy as Proxy

__version__: str
__all__ = ["Config", "ConfigError", "Policy", "Proxy", "RequestInfo", "__version__"]
