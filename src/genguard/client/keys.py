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
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ..core.arguments import shown
from ..core.exceptions import ConfigError

__all__ = [
    "ENV_BASE_URL",
    "ENV_KEYS",
    "KeyPool",
    "resolve_base",
    "resolve_base_url",
    "resolve_keys",
    "with_query",
]

ENV_KEYS = ("GENGUARD_API_KEY", "OPENAI_API_KEY")
ENV_BASE_URL = ("GENGUARD_BASE_URL", "OPENAI_BASE_URL")
DEFAULT_BASE_URL = "https://api.openai.com/v1"
_ARGUMENT = "the base_url argument (--base-url)"
_EXAMPLE = "e.g. http://127.0.0.1:8000/v1"


def resolve_keys(
    api_key: str | Sequence[str] | None, *, environ: Mapping[str, str] | None = None
) -> tuple[str, ...]:
    """The keys to use: the argument, else ``GENGUARD_API_KEY``, else ``OPENAI_API_KEY``.

    An environment value may hold several keys separated by commas. Blank entries are dropped. A key that is
    not a str, or holds a character an HTTP header cannot carry (a curly quote, a line break, bytes that were
    not UTF-8), raises here, naming where it came from and never showing it.

    >>> resolve_keys(["a", " b "], environ={})
    ('a', 'b')
    >>> resolve_keys(None, environ={"OPENAI_API_KEY": "x,y"})
    ('x', 'y')
    """
    source = "the api_key argument (--api-key)"
    if api_key is not None:
        raw: Sequence[object] = [api_key] if isinstance(api_key, str) else _key_list(api_key)
    else:
        env = os.environ if environ is None else environ
        raw = []
        for name in ENV_KEYS:
            value = env.get(name, "")
            if value.strip():
                raw, source = value.split(","), name
                break
    keys: list[str] = []
    for i, key in enumerate(raw):
        if not isinstance(key, str):
            raise TypeError(f"api_key[{i}] must be a str, got {shown(key, secret=True)}")
        key = key.strip()
        if key and key not in keys:
            _check_header_safe(key, len(keys) + 1, source)
            keys.append(key)
    return tuple(keys)


def _key_list(api_key: object) -> list[object]:
    if isinstance(api_key, list | tuple):
        return list(api_key)
    if isinstance(api_key, bytes | bytearray | Mapping) or not hasattr(api_key, "__iter__"):
        # Never the value itself: it may be the key.
        raise TypeError(f"api_key must be a str or a list of str, got {shown(api_key, secret=True)}")
    return list(api_key)


def _check_header_safe(key: str, number: int, source: str) -> None:
    # A character outside printable ASCII cannot go into an Authorization header: sent, it failed deep inside
    # the HTTP library with an encoding error (a key pasted with a curly quote, a non-UTF-8 environment).
    if key.isascii() and key.isprintable():
        return
    at, char = next((i, c) for i, c in enumerate(key) if not (c.isascii() and c.isprintable()))
    raise ConfigError(
        f"API key {number} from {source} has a character an HTTP header cannot carry (U+{ord(char):04X} at "
        f"position {at}); copy the key again, as plain ASCII"
    )


def resolve_base_url(base_url: str | None, *, environ: Mapping[str, str] | None = None) -> str:
    """The base URL: the argument, else ``GENGUARD_BASE_URL``, else ``OPENAI_BASE_URL``, else OpenAI's.

    A value that is empty, or not an ``http://`` or ``https://`` URL with a host, raises :class:`ConfigError`
    naming where it came from: an empty one never falls back to OpenAI's address (with the key). A query
    (Azure's ``?api-version=...``) is kept; :func:`resolve_base` moves it into the default query.

    >>> resolve_base_url("http://127.0.0.1:8000/v1/", environ={})
    'http://127.0.0.1:8000/v1'
    >>> resolve_base_url("https://x.openai.azure.com/openai/v1/?api-version=preview", environ={})
    'https://x.openai.azure.com/openai/v1?api-version=preview'
    """
    if base_url is not None:
        if not isinstance(base_url, str):
            raise TypeError(f"base_url must be a str ({_EXAMPLE}) or None, got {shown(base_url)}")
        url, where = base_url, _ARGUMENT
        if not url.strip():
            raise ConfigError(
                f"{where} is empty; give the API's full address, {_EXAMPLE}, or leave it out to use "
                f"{' or '.join(ENV_BASE_URL)} (else {DEFAULT_BASE_URL})"
            )
    else:
        env = os.environ if environ is None else environ
        source = next((n for n in ENV_BASE_URL if n in env), None)
        if source is None:
            return DEFAULT_BASE_URL
        url, where = env[source], source
        if not url.strip():
            # Set but empty is a mistake, not a wish for OpenAI's address: the key would go there.
            raise ConfigError(
                f"{source} is set but empty; set it to the API's full address, {_EXAMPLE}, or unset it"
            )
    url = url.strip()
    try:
        parts = urlsplit(url)
        ok = parts.scheme in ("http", "https") and bool(parts.hostname)
    except ValueError:
        ok = False
    if not ok:
        # Sent as is, a URL without a scheme or host ends as a retried "connection_error" far from its cause.
        from ..core.secrets import mask_userinfo, redact

        shown_url = mask_userinfo(url.rstrip("/"))
        raise ConfigError(
            redact(f"the base URL {shown_url!r} from {where} is not an http:// or https:// URL with a host; "
                   f"give the API's full address, {_EXAMPLE}")
        )  # fmt: skip
    if parts.fragment:
        from ..core.secrets import mask_url

        raise ConfigError(
            f"the base URL {mask_url(url)!r} from {where} has a fragment ('#...'), which is never sent and would "
            "end up in the middle of every request's path; remove it"
        )
    return urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), parts.query, ""))


def resolve_base(
    base_url: str | None,
    default_query: Mapping[str, str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
) -> tuple[str, dict[str, str]]:
    """The base URL without its query, and the query parameters every request to it carries.

    A query in the base URL (Azure's ``?api-version=2024-10-21``) moves into the default query instead of
    being glued in front of each path; ``default_query`` adds to it, and wins where both name a parameter.

    >>> resolve_base("https://x.openai.azure.com/openai/v1?api-version=2024-10-21", {"a": "b"}, environ={})
    ('https://x.openai.azure.com/openai/v1', {'api-version': '2024-10-21', 'a': 'b'})
    """
    url = resolve_base_url(base_url, environ=environ)
    base, _, query = url.partition("?")
    params: dict[str, str] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name in params:
            raise ConfigError(
                f"the base URL names the query parameter {name!r} twice; keep one (or pass default_query)"
            )
        params[name] = value
    if default_query:
        params.update(default_query)
    return base, params


def with_query(url: str, query: Mapping[str, str]) -> str:
    """``url`` with each parameter of ``query`` it does not already name (a URL's own value wins).

    >>> with_query("http://h/v1/chat/completions", {"api-version": "1"})
    'http://h/v1/chat/completions?api-version=1'
    >>> with_query("http://h/v1/videos/x/content?variant=video", {"api-version": "1", "variant": "x"})
    'http://h/v1/videos/x/content?variant=video&api-version=1'
    """
    if not query:
        return url
    url, hash_, fragment = url.partition("#")
    head, mark, own = url.partition("?")
    if mark:
        have = {name for name, _ in parse_qsl(own, keep_blank_values=True)}
        extra = {name: value for name, value in query.items() if name not in have}
        if extra:
            url = f"{url}{'&' if own and not own.endswith('&') else ''}{urlencode(extra)}"
    else:
        url = f"{head}?{urlencode(query)}"
    return url + hash_ + fragment


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
