"""fastproxy: a reverse proxy, load balancer and HTTP cache.

The public embedding API lives here and nowhere else (see README.md).
"""

from fastproxy._version import __version__

__all__ = ["__version__"]
