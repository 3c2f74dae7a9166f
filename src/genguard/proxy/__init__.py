"""The local gateway: any SDK or language gets genguard's retries, named failures and outcome headers.

The public names are ``genguard.Proxy``, ``genguard.ProxyConfig``, ``genguard.ProxyExchange`` and
``genguard.ProxyRecorder``; ``create_app`` gives the ASGI app, for a server of your own.

>>> import genguard
>>> with genguard.Proxy(upstream="http://127.0.0.1:8000/v1", api_keys=("sk-...",)) as proxy:  # doctest: +SKIP
...     print(proxy.base_url)
"""

from __future__ import annotations

from ._app import create_app
from ._config import ConfigFileError, ProxyConfig, ProxyExchange, ProxyRecorder, read_config
from ._server import Proxy

__all__ = [
    "ConfigFileError",
    "Proxy",
    "ProxyConfig",
    "ProxyExchange",
    "ProxyRecorder",
    "create_app",
    "read_config",
]
