"""The local gateway: any SDK or language gets genguard's retries, named failures and outcome headers.

>>> from genguard.proxy import Proxy
>>> with Proxy(upstream="http://127.0.0.1:8000/v1", api_keys=("sk-...",)) as proxy:  # doctest: +SKIP
...     print(proxy.base_url)
"""

from __future__ import annotations

from ._app import ProxyConfig, create_app
from ._server import Proxy

__all__ = ["Proxy", "ProxyConfig", "create_app"]
