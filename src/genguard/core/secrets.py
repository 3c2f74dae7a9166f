"""Secrets kept out of everything genguard prints, logs or saves: the one home of every masking rule.

:func:`redact` masks keys in free text (messages, log lines, ``--json`` output); :func:`mask_url` masks the
credentials of a URL that is kept for reading (a capture's request URL, a base URL); :func:`redact_url` keeps
only scheme, host and path of a URL whose every parameter may be a credential (a signed media URL);
:func:`mask_userinfo` masks ``user:password@`` in text too broken to parse as a URL; :func:`key_label` names a
key without showing it; :data:`SECRET_HEADERS` are the request headers that carry a credential.

>>> redact("Incorrect API key provided: sk-proj-abcdEFGH1234")
'Incorrect API key provided: sk-proj-***'
>>> mask_url("https://user:pw@h/v1beta/models?key=AIzaSECRET&alt=sse")
'https://h/v1beta/models?key=%2A%2A%2A&alt=sse'
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

__all__ = ["MIN_SECRET", "SECRET_HEADERS", "key_label", "mask_url", "mask_userinfo", "redact", "redact_url"]

MASK = "***"
# Shorter "keys" ("EMPTY", "dummy", "1": what a local server is given) are placeholders, not secrets: masking
# them would mangle every text they occur in (a key "1" made --json's "exit_code":1 into "exit_code":***).
MIN_SECRET = 8

SECRET_HEADERS = frozenset(
    {"authorization", "api-key", "x-api-key", "proxy-authorization", "x-goog-api-key", "cookie", "set-cookie"}
)
"""Headers (lower case) whose value is a credential: a request's, or a response's cookies."""

# One pass over the text; each alternative keeps only a recognisable prefix, never a character of the key.
_SECRET_RE = re.compile(
    r"(?P<sk>\bsk-(?:proj-|ant-|or-|svcacct-|admin-)?)(?:[A-Za-z0-9_*\-]{6,})"
    r"|(?P<bearer>\bBearer\s+)[A-Za-z0-9._~+/=*\-]{4,}"
    r"|(?P<goog>\bAIza)[0-9A-Za-z_\-*]{10,}"
    r"|(?P<vendor>\b(?:gsk_|xai-|hf_|r8_|pplx-|nvapi-|fw_|tgp_v1_))[A-Za-z0-9_*\-]{10,}"
    r"|(?P<kv>\b(?:api[_-]?key|apikey|x-api-key|x-goog-api-key|access[_-]?token|secret|password|token)"
    r"[\"']?\s*[:=]\s*[\"']?|[?&;]key=)(?!\*\*\*)[^\s\"'&,;)}\]]{3,}",
    re.IGNORECASE,
)
_SECRET_QUERY = re.compile(
    r"^(?:key|api[-_]?key|apikey|token|access[-_]?token|auth|sig|signature|x-api-key)$", re.IGNORECASE
)
_USERINFO_RE = re.compile(r"^([a-zA-Z][\w+.-]*://)?[^?#]*@")


def _mask(m: re.Match[str]) -> str:
    for group in ("sk", "bearer", "goog", "vendor", "kv"):
        prefix = m.group(group)
        if prefix is not None:
            return prefix + MASK
    return MASK  # pragma: no cover - every alternative has a named prefix


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with API keys masked: ``sk-...``, ``Bearer ...``, ``AIza...``, ``key=...`` values, and every
    string in ``secrets``. Only a short prefix survives (``sk-proj-***``), never a character of the key.

    >>> redact("Incorrect API key provided: sk-proj-abcdEFGH1234. See https://x/?key=AIzaSyA1234567890")
    'Incorrect API key provided: sk-proj-***. See https://x/?key=***'
    >>> redact("bad key k-123456", ("k-123456",))
    'bad key ***'
    >>> redact('{"exit_code":1}', ("1",))  # shorter than MIN_SECRET: a placeholder, left alone
    '{"exit_code":1}'
    """
    if not text:
        return text
    for secret in sorted(
        {s for s in secrets if isinstance(s, str) and len(s) >= MIN_SECRET}, key=len, reverse=True
    ):
        if secret in text:
            text = text.replace(secret, MASK)
    return _SECRET_RE.sub(_mask, text)


def mask_url(url: str) -> str:
    """``url`` without ``user:password@`` and with the values of key-like query parameters (``key``,
    ``api_key``, ``token``...) masked; the other parameters stay readable.

    >>> mask_url("https://h/v1beta/models?key=AIzaSECRET&alt=sse")
    'https://h/v1beta/models?key=%2A%2A%2A&alt=sse'
    >>> mask_url("http://user:pw@h:8000/v1")
    'http://h:8000/v1'
    """
    try:
        parts = urlsplit(url)
        if not parts.query:
            return (
                urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
                if "@" in parts.netloc
                else url
            )
        pairs = parse_qsl(parts.query, keep_blank_values=True)
        masked = [(k, MASK if _SECRET_QUERY.match(k) else v) for k, v in pairs]
        return urlunsplit(parts._replace(query=urlencode(masked), netloc=parts.netloc.rpartition("@")[2]))
    except ValueError:
        return url.split("?", 1)[0]


def redact_url(url: str) -> str:
    """Scheme, host and path of ``url`` alone: a signed URL may carry a credential in any parameter.

    >>> redact_url("https://u:p@cdn.example/a.png?X-Amz-Signature=secret#f")
    'https://cdn.example/a.png'
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable url>"
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return f"{parts.scheme}://{host}{parts.path}"


def mask_userinfo(text: str) -> str:
    """``text`` (a URL, possibly too broken to parse) with everything up to its last ``@`` before any query
    shown as ``***@``: a ``user:password@`` part is a credential wherever it sits.

    >>> mask_userinfo("http:/admin:pw@gw.example/v1"), mask_userinfo("ftp://admin:pw@gw/v1")
    ('***@gw.example/v1', 'ftp://***@gw/v1')
    """
    return _USERINFO_RE.sub(r"\1" + MASK + "@", text)


def key_label(key: str | None) -> str:
    """A safe name for a key in logs: its last four characters (and only for a key long enough to spare
    them), never the key itself.

    >>> key_label("sk-abcdefghijklmnop"), key_label("short"), key_label(None)
    ('key …mnop', 'key …', 'no key')
    """
    if not key:
        return "no key"
    return f"key …{key[-4:]}" if len(key) >= 12 else "key …"
