from fastproxy.config import Config as Config
from fastproxy.config import ConfigError as ConfigError
from fastproxy.proxy import Proxy as Proxy

__version__: str
__all__ = ["Config", "ConfigError", "Proxy", "__version__"]
