"""Run the proxy on 127.0.0.1 in a background thread, for tests and for the ``genguard proxy`` command."""

from __future__ import annotations

import threading
from types import TracebackType
from typing import Any, Self

import uvicorn

from ._app import create_app
from ._config import ProxyConfig


class Proxy:
    """genguard proxy in a thread of this process: ``start()``/``stop()`` or a context manager.

    Give a :class:`genguard.ProxyConfig`, or its fields as keywords (``upstream``, ``api_keys``,
    ``client_keys``, ``fallbacks``, ``strict``, ``validators``, ``retry``, ``recorder``, ``gate``...).
    It listens on ``host`` (127.0.0.1) and ``port`` (0: a free one); ``base_url`` ends in ``/v1``, to give
    an SDK. Stopping it closes its recorder.

    >>> import genguard, openai
    >>> with genguard.Proxy(upstream=sim.base_url, api_keys=("sk-test",), strict=True) as proxy:  # doctest: +SKIP
    ...     client = openai.OpenAI(base_url=proxy.base_url, api_key="unused")
    """

    def __init__(self, config: ProxyConfig | None = None, *, host: str = "127.0.0.1", port: int = 0,
                 **fields: Any) -> None:  # fmt: skip
        self.config = config or ProxyConfig(**fields)
        self.host = host
        self.port = port
        self.app = create_app(self.config)
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        """The OpenAI-style base URL to give an SDK, e.g. ``http://127.0.0.1:41234/v1``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/v1"

    def start(self) -> Self:
        """Serve in a daemon thread; returns once the port is bound (``RuntimeError`` when it cannot be)."""
        if self._thread is not None:
            return self
        # uvicorn binds through asyncio's create_server here, which sets TCP_NODELAY itself (a socket bound
        # beforehand with proto 0 would not get it, and Nagle would hold answers back ~40 ms).
        config = uvicorn.Config(
            self.app, host=self.host, port=self.port, log_level="warning", access_log=False, lifespan="on",
            timeout_graceful_shutdown=1, timeout_keep_alive=30,
            # No proxy stands in front of this one (it listens on loopback): X-Forwarded-* is not read. No Server
            # header: it would name uvicorn to clients that talk to a provider.
            proxy_headers=False, server_header=False,
        )  # fmt: skip
        server = uvicorn.Server(config)
        failed: list[BaseException] = []

        def run() -> None:
            try:
                server.run()
            except BaseException as exc:  # uvicorn exits the thread on a bind error: start() must say so
                failed.append(exc)

        thread = threading.Thread(target=run, name="genguard-proxy", daemon=True)
        thread.start()
        while not server.started:
            if failed or not thread.is_alive():
                raise RuntimeError(
                    f"the proxy could not listen on {self.host}:{self.port} (see the log above)"
                )
            thread.join(0.005)
        self._server, self._thread = server, thread
        self.port = server.servers[0].sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        """Stop serving and wait for the thread to end."""
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(5)
            if self._thread.is_alive():
                self._server.force_exit = True
                self._thread.join(5)
        self._thread = None
        self._server = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:  # fmt: skip
        self.stop()
