"""What the proxy does, as a value (:class:`ProxyConfig`), and the TOML file it can be read from.

The file names keys only by reference (``"env:NAME"``): a key written in a file ends up in backups and version
control, so a literal one is refused. Every problem is reported with the file, the line when it can be found,
and the key path, before anything binds a port.

>>> cfg = ProxyConfig(upstream="http://127.0.0.1:8000/v1", api_keys=("sk-a",), strict=True)
>>> cfg.strict, cfg.recorder
(True, None)
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Protocol, runtime_checkable

from ..client.gate import Gate
from ..client.loop import Hook
from ..client.retry import RetryPolicy
from ..core.outcome import Outcome

__all__ = ["ConfigFileError", "ProxyConfig", "ProxyExchange", "ProxyRecorder", "read_config"]

_EMPTY: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class ProxyExchange:
    """One exchange through the proxy, as its recorder receives it when the answer (or the stream) ended.

    ``exchange_id`` is the ``x-genguard-exchange-id`` the client saw; ``status`` the status the client got;
    ``timings`` each upstream attempt's (wall-clock end, latency in seconds), in order.
    """

    exchange_id: str
    path: str
    model: str
    stream: bool
    outcome: Outcome
    status: int
    latency_s: float
    timings: Sequence[tuple[float, float]] = ()


@runtime_checkable
class ProxyRecorder(Protocol):
    """Where the proxy records its exchanges (:class:`genguard.ProxyJournal` writes a batch journal).

    ``add`` is called on the request path, so it must not block (queue, then write elsewhere); ``close`` when
    the proxy stops.
    """

    def add(self, exchange: ProxyExchange) -> None: ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class ProxyConfig:
    """What the proxy does: where it sends, with which keys, how strictly it answers, what it records.

    - ``upstream``: the provider's OpenAI-style base URL (``https://api.openai.com/v1``).
    - ``api_keys``: the proxy's own upstream keys, rotated on auth and quota failures (empty: the environment's
      ``GENGUARD_API_KEY`` / ``OPENAI_API_KEY``).
    - ``client_keys``: when set, a client must send ``Authorization: Bearer`` one of these, else it gets a 401.
    - ``forward_client_key``: send each client's own ``Authorization`` key upstream instead of ``api_keys``
      (never together with ``client_keys``).
    - ``fallbacks``: models tried in turn once the asked model's retries are spent.
    - ``strict``: a filtered, truncated or empty 200, or one a validator rejects, becomes an error every SDK
      raises (422).
    - ``validators``: per model name (``"*"``: every model without its own), what ``validate=`` takes (a
      spec string such as ``"json"`` or ``"labels:yes,no"``, a JSON Schema, a list of those).
    - ``retry``: the policy (default ``RetryPolicy()``); ``timeout`` per attempt, ``stall_timeout`` for a
      stream that goes quiet.
    - ``recorder``: told every exchange (:class:`genguard.ProxyJournal` records them in a folder that
      ``genguard report`` reads); ``None``: no record.
    - ``gate``: a rate limiter every attempt upstream asks first (:class:`genguard.Gate`); or ``open_gate``,
      which makes one in the server's event loop (a limiter holding connections bound to a loop):
      ``lambda: genguard.open_gate("redis://127.0.0.1:6379/0?name=team")`` shares one budget with every
      other proxy and worker given the same limiter.
    - ``hooks``: told of every attempt and every call upstream (tracing: ``genguard.integrations.otel``).

    >>> ProxyConfig(upstream="http://127.0.0.1:8000/v1", validators={"gpt-4o-mini": "json"}).validators
    {'gpt-4o-mini': 'json'}
    """

    upstream: str
    api_keys: tuple[str, ...] = ()
    fallbacks: tuple[str, ...] = ()
    strict: bool = False
    forward_client_key: bool = False
    client_keys: tuple[str, ...] = ()
    validators: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    retry: RetryPolicy | None = None
    timeout: float = 600.0
    stall_timeout: float = 60.0
    recorder: ProxyRecorder | None = None
    gate: Gate | None = None
    open_gate: Callable[[], Awaitable[Gate]] | None = None
    max_concurrency: int = 512
    hooks: tuple[Hook, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.upstream, str) or not self.upstream.startswith(("http://", "https://")):
            raise ValueError(f"upstream must be an http:// or https:// URL, got {self.upstream!r}")
        if self.client_keys and self.forward_client_key:
            raise ValueError(
                "client_keys and forward_client_key exclude each other: with client keys, the Authorization a "
                "client sends is the proxy's own password, not a provider key to forward"
            )
        for name in ("api_keys", "fallbacks", "client_keys"):
            value = getattr(self, name)
            if isinstance(value, str) or not all(isinstance(v, str) and v for v in value):
                raise ValueError(f"{name} must be a tuple of non-empty strings, got {value!r}")


class ConfigFileError(ValueError):
    """A proxy configuration file that cannot be used; ``str()`` names the file, the line and the key."""


# The file's keys, their types, and where each goes; anything else is refused by name (a typo is not ignored).
_TOP: Mapping[str, type | tuple[type, ...]] = {
    "upstream": str,
    "api_keys": list,
    "client_keys": list,
    "forward_client_key": bool,
    "fallbacks": list,
    "strict": bool,
    "host": str,
    "port": int,
    "journal": str,
    "limiter": str,
    "timeout": (int, float),
    "stall_timeout": (int, float),
    "retry": dict,
    "validators": dict,
}
_RETRY: Mapping[str, type | tuple[type, ...]] = {
    "max_attempts": int,
    "max_wait": (int, float),
    "deadline": (int, float),
    "backoff_base": (int, float),
    "backoff_max": (int, float),
}
_ENV_REF = re.compile(r"env:([A-Za-z_][A-Za-z0-9_]*)")


@dataclass(frozen=True, slots=True)
class _Reader:
    path: Path
    text: str

    def fail(self, key_path: str, what: str) -> ConfigFileError:
        line = self.line_of(key_path)
        where = f"{self.path}:{line}" if line else str(self.path)
        return ConfigFileError(f"{where}: {key_path}: {what}")

    def line_of(self, key_path: str) -> int | None:
        # tomllib keeps no positions: the line where the last part of the key path is assigned (or its table
        # opens), which is where a reader looks first.
        parts = key_path.split(".")
        last = parts[-1].strip('"')
        table = re.compile(r"^\s*\[+\s*" + re.escape(".".join(parts)) + r"\s*\]+")
        assign = re.compile(r"^\s*\"?" + re.escape(last) + r"\"?\s*=")
        for number, line in enumerate(self.text.splitlines(), 1):
            if table.match(line) or assign.match(line):
                return number
        return None


def read_config(path: str | os.PathLike[str], environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Read a proxy TOML file into keyword arguments: ``ProxyConfig`` fields plus ``host`` and ``port``.

    Keys are given as ``"env:NAME"`` and read from ``environ`` (default ``os.environ``); a literal key, an
    unset variable, an unknown setting or a wrong type raises :class:`ConfigFileError` naming the file, line
    and key.

    >>> import tempfile, pathlib
    >>> with tempfile.TemporaryDirectory() as d:
    ...     p = pathlib.Path(d) / "proxy.toml"
    ...     _ = p.write_text('upstream = "http://127.0.0.1:8000/v1"\\napi_keys = ["env:K"]\\nstrict = true\\n')
    ...     read_config(p, {"K": "sk-from-env"})["api_keys"]
    ('sk-from-env',)
    """
    file = Path(path)
    environ = os.environ if environ is None else environ
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigFileError(
            f"{file}: cannot be read ({exc.strerror or exc}); give the path of a TOML file"
        ) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # tomllib's message ends with "(at line L, column C)": the position is in it.
        raise ConfigFileError(f"{file}: not valid TOML: {exc}") from None
    reader = _Reader(file, text)
    out: dict[str, Any] = {}
    for name, value in data.items():
        want = _TOP.get(name)
        if want is None:
            known = ", ".join(sorted(_TOP))
            raise reader.fail(name, f"unknown setting; the settings are {known}")
        if not _is_a(value, want):
            raise reader.fail(name, f"must be {_type_name(want)}, got {value!r}")
        if name in ("api_keys", "client_keys"):
            out[name] = tuple(
                _key(reader, f"{name}[{i}]", name, item, environ) for i, item in enumerate(value)
            )
        elif name == "fallbacks":
            if not all(isinstance(m, str) and m for m in value):
                raise reader.fail(name, f"must be a list of model names, got {value!r}")
            out[name] = tuple(value)
        elif name == "retry":
            out[name] = _retry(reader, value)
        elif name == "validators":
            out[name] = _validators(reader, value)
        elif name == "upstream" and not value.startswith(("http://", "https://")):
            raise reader.fail(name, f"must be an http:// or https:// URL, got {value!r}")
        elif name == "port" and not 0 <= value <= 65535:
            raise reader.fail(name, f"must be a port number from 0 to 65535, got {value!r}")
        elif name in ("timeout", "stall_timeout") and value <= 0:
            raise reader.fail(name, f"must be a number of seconds above 0, got {value!r}")
        else:
            out[name] = value
    if out.get("client_keys") and out.get("forward_client_key"):
        raise reader.fail(
            "forward_client_key", "cannot be true together with client_keys (see docs/proxy.md)"
        )
    return out


def _is_a(value: Any, want: type | tuple[type, ...]) -> bool:
    if isinstance(value, bool) and want is not bool:
        return False  # TOML's true is no number of seconds
    return isinstance(value, want)


def _type_name(want: type | tuple[type, ...]) -> str:
    names = {str: "a string", bool: "true or false", int: "a whole number", float: "a number",
             list: "a list", dict: "a table"}  # fmt: skip
    if isinstance(want, tuple):
        return "a number"
    return names.get(want, want.__name__)


def _key(reader: _Reader, where: str, name: str, item: Any, environ: Mapping[str, str]) -> str:
    if not isinstance(item, str):
        raise reader.fail(name, f'{where} must be a string "env:NAME", got a {type(item).__name__}')
    match = _ENV_REF.fullmatch(item)
    if match is None:
        # Never quote the value: it may be the key itself.
        raise reader.fail(
            name,
            f'{where} is not an "env:NAME" reference; keys are not written in a file (it ends up in backups '
            'and version control): put the key in an environment variable and write "env:NAME"',
        )
    value = environ.get(match.group(1), "").strip()
    if not value:
        raise reader.fail(name, f"{where} names the environment variable {match.group(1)}, which is not set")
    return value


def _retry(reader: _Reader, table: Mapping[str, Any]) -> RetryPolicy:
    fields: dict[str, Any] = {}
    for name, value in table.items():
        want = _RETRY.get(name)
        if want is None:
            raise reader.fail(
                f"retry.{name}", f"unknown setting; the settings are {', '.join(sorted(_RETRY))}"
            )
        if not _is_a(value, want) or value < 0 or (name == "max_attempts" and value < 1):
            raise reader.fail(
                f"retry.{name}",
                f"must be {_type_name(want)} of at least {int(name == 'max_attempts')}, got {value!r}",
            )
        fields[name] = value
    try:
        return RetryPolicy(**fields)
    except (TypeError, ValueError) as exc:
        raise reader.fail("retry", str(exc)) from None


def _validators(reader: _Reader, table: Mapping[str, Any]) -> Mapping[str, Any]:
    from ..core.exceptions import ConfigError
    from ..core.validate import build_validators

    out: dict[str, Any] = {}
    for model, spec in table.items():
        where = f'validators."{model}"'
        specs = spec if isinstance(spec, list) else [spec]
        if not specs or not all(isinstance(s, str) and s for s in specs):
            raise reader.fail(
                where,
                f'must be a validator spec or a list of them ("json", "labels:yes,no", ...), got {spec!r}',
            )
        try:
            build_validators(list(specs))
        except (ConfigError, ValueError, TypeError, OSError) as exc:
            raise reader.fail(where, str(exc)) from None
        out[model] = list(specs)
    return MappingProxyType(out)
