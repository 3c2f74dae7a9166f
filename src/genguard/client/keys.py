"""API keys: where they come from, and rotating to the next one when a key is refused or out of quota.

>>> pool = KeyPool(("k-one", "k-two"))
>>> pool.current
'k-one'
>>> pool.advance()
True
>>> pool.current
'k-two'
>>> pool.advance()
False
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from urllib.parse import urlsplit

__all__ = ["ENV_BASE_URL", "ENV_KEYS", "KeyPool", "resolve_base_url", "resolve_keys"]

ENV_KEYS = ("GENGUARD_API_KEY", "OPENAI_API_KEY")
ENV_BASE_URL = ("GENGUARD_BASE_URL", "OPENAI_BASE_URL")
DEFAULT_BASE_URL = "https://api.openai.com/v1"


def resolve_keys(
    api_key: str | Sequence[str] | None, *, environ: Mapping[str, str] | None = None
) -> tuple[str, ...]:
    """The keys to use: the argument, else ``GENGUARD_API_KEY``, else ``OPENAI_API_KEY``.

    An environment value may hold several keys separated by commas. Blank entries are dropped.

    >>> resolve_keys(["a", " b "], environ={})
    ('a', 'b')
    >>> resolve_keys(None, environ={"OPENAI_API_KEY": "x,y"})
    ('x', 'y')
    """
    if api_key is not None:
        raw: Sequence[str] = [api_key] if isinstance(api_key, str) else list(api_key)
    else:
        env = os.environ if environ is None else environ
        raw = []
        for name in ENV_KEYS:
            value = env.get(name, "")
            if value.strip():
                raw = value.split(",")
                break
    keys: list[str] = []
    for key in raw:
        key = key.strip()
        if key and key not in keys:
            keys.append(key)
    return tuple(keys)


def resolve_base_url(base_url: str | None, *, environ: Mapping[str, str] | None = None) -> str:
    """The base URL: the argument, else ``GENGUARD_BASE_URL``, else ``OPENAI_BASE_URL``, else OpenAI's.

    A value that is not an ``http://`` or ``https://`` URL with a host raises :class:`ConfigError` naming
    where it came from.

    >>> resolve_base_url("http://127.0.0.1:8000/v1/", environ={})
    'http://127.0.0.1:8000/v1'
    """
    env = os.environ if environ is None else environ
    source = next((n for n in ENV_BASE_URL if env.get(n, "").strip()), None)
    url = base_url or (env[source] if source else DEFAULT_BASE_URL)
    url = url.strip().rstrip("/")
    try:
        parts = urlsplit(url)
        ok = parts.scheme in ("http", "https") and bool(parts.hostname)
    except ValueError:
        ok = False
    if not ok:
        # Sent as is, a URL without a scheme or host ends as a retried "connection_error" far from its cause.
        from ..core.exceptions import ConfigError
        from ..core.secrets import mask_userinfo, redact

        where = "the base_url argument (--base-url)" if base_url else source
        shown = mask_userinfo(url)
        raise ConfigError(
            redact(f"the base URL {shown!r} from {where} is not an http:// or https:// URL with a host; "
                   "give the API's full address, e.g. http://127.0.0.1:8000/v1")
        )  # fmt: skip
    return url


class KeyPool:
    """The client's keys in order; :meth:`advance` moves past a key that failed for good.

    The pool is per call: a fresh one starts at the client's first key still believed good, so a key that
    was refused is skipped by later calls too (``retire``).
    """

    __slots__ = ("_i", "keys")

    def __init__(self, keys: Sequence[str], start: int = 0) -> None:
        self.keys = tuple(keys)
        self._i = min(start, max(0, len(self.keys) - 1))

    @property
    def current(self) -> str | None:
        """The key to send now (``None`` when the client has no key)."""
        return self.keys[self._i] if self.keys else None

    @property
    def index(self) -> int:
        return self._i

    def has_next(self) -> bool:
        """Whether a key after the current one remains."""
        return self._i + 1 < len(self.keys)

    def advance(self) -> bool:
        """Move to the next key; ``False`` (and no move) when none is left."""
        if not self.has_next():
            return False
        self._i += 1
        return True
