"""Run the simulator on 127.0.0.1 in a background thread, for tests and embedded demos.

>>> with Simulator(scenario="server_error:2") as sim:  # doctest: +SKIP
...     client = openai.OpenAI(base_url=sim.base_url, api_key="sk-test")
"""

from __future__ import annotations

import socket
import threading
from types import TracebackType
from typing import Any, Self

import uvicorn

from ._app import create_app
from ._clock import SYSTEM_CLOCK, Clock
from ._config import SimConfig
from ._core import SimState


class Simulator:
    """A running simulator: ``start()``/``stop()`` or a context manager; ``base_url`` ends in ``/v1``.

    ``reset()`` forgets stats, flaky counters, rate buckets and media state; ``configure(**changes)``
    changes server-wide settings while it runs (``scenario``, ``chaos``, ``rpm``, ...).

    ``clock`` is where the rate buckets, the retry-after verdicts, video task progress and link expiry read
    the time: by default the system's; a test passes a ``genguard.sim._clock.FakeClock`` and moves it with
    ``advance(seconds)`` instead of sleeping.

    >>> sim = Simulator(rpm=60).start()  # doctest: +SKIP
    >>> sim.configure(scenario="rate_limited"); sim.stats()["by_status"]  # doctest: +SKIP
    >>> sim.stop()  # doctest: +SKIP
    """

    def __init__(self, config: SimConfig | None = None, *, host: str = "127.0.0.1", port: int = 0,
                 clock: Clock = SYSTEM_CLOCK, **overrides: Any) -> None:  # fmt: skip
        base = config or SimConfig()
        self._initial = base.replace(**overrides) if overrides else base
        self.host = host
        self.port = port
        self.app = create_app(self._initial, clock=clock)
        self._state: SimState = self.app.state.sim
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def config(self) -> SimConfig:
        """The settings in force now."""
        return self._state.config

    @property
    def url(self) -> str:
        """The root URL, e.g. ``http://127.0.0.1:41234``."""
        host = f"[{self.host}]" if ":" in self.host else self.host  # an IPv6 address needs brackets in a URL
        return f"http://{host}:{self.port}"

    @property
    def base_url(self) -> str:
        """The OpenAI-style base URL, e.g. ``http://127.0.0.1:41234/v1``."""
        return self.url + "/v1"

    def start(self) -> Self:
        """Serve in a daemon thread; returns once the port is bound. Raises ``RuntimeError`` saying why when
        it cannot listen (``address already in use``)."""
        if self._thread is not None:
            return self
        config = uvicorn.Config(
            self.app, host=self.host, port=self.port, log_level="warning", access_log=False, lifespan="off",
            timeout_graceful_shutdown=1, timeout_keep_alive=30,
        )  # fmt: skip
        # Bound here, not by uvicorn in its thread: a port in use or a wrong host then fails with the
        # system's own reason, instead of a log line and a bare SystemExit(3) from the thread.
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        try:
            bound = socket.create_server((self.host, self.port), family=family)
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise RuntimeError(f"cannot listen on {self.host}:{self.port}: {reason}") from exc
        # create_server leaves proto 0, and asyncio sets TCP_NODELAY only on sockets that say IPPROTO_TCP:
        # without it Nagle and delayed ACKs hold every answer on a reused connection back ~40 ms.
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP, fileno=bound.detach())
        server = uvicorn.Server(config)
        self._server = server
        failed: list[BaseException] = []

        def run() -> None:
            try:
                server.run(sockets=[sock])
            except BaseException as exc:  # a bind error must reach start(), not die in the thread
                failed.append(exc)

        self._thread = threading.Thread(target=run, name="genguard-sim", daemon=True)
        self._thread.start()
        while not server.started:
            if failed or not self._thread.is_alive():
                self._thread = None
                sock.close()
                raise RuntimeError(
                    f"the simulator could not start on {self.host}:{self.port}: {failed or 'exited'}"
                )
            self._thread.join(0.005)
        sockets = server.servers[0].sockets
        self.port = sockets[0].getsockname()[1]
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

    def reset(self) -> None:
        """Forget stats, flaky counters, rate buckets, chaos dice, cached prompts and media state."""
        self._state.reset()

    def configure(self, **changes: Any) -> SimConfig:
        """Change server-wide settings now (validated); returns the new settings."""
        new = self._state.config.replace(**changes)
        self._state.set_config(new)
        return new

    def restore(self, config: SimConfig | None = None) -> None:
        """Put back ``config`` (by default the settings the simulator started with)."""
        self._state.set_config(config or self._initial)

    def stats(self) -> dict[str, Any]:
        """Requests by scenario and status, and the verdict on the client (as ``GET /_genguard/stats``)."""
        return self._state.stats.snapshot()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:  # fmt: skip
        self.stop()
