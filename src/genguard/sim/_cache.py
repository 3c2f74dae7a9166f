"""OpenAI's automatic prompt caching: how much of a prompt the same key already sent to the same model.

OpenAI caches the prefixes of prompts of 1024 tokens or more, per organisation and model, and reports the
longest one it saw recently, counted in steps of 128 tokens from 1024 (1024, 1152, 1280, ...), as
``usage.prompt_tokens_details.cached_tokens`` (``input_tokens_details`` on the Responses API), billed at a
discount. A client that prices those tokens needs a server that reports them, so the simulator plays it with
its own token estimate (``_chatreq.prompt_tokens``): the prompt is laid out token by token (the tool
definitions, then each message's three tokens of framing and its content, then the three that prime the
answer), the prefix ending at each boundary is hashed, and only the digests are kept (never the text nor the
key), each until ``prompt_cache_ttl_s`` passes without it being used again.

>>> from genguard.sim._chatreq import prompt_tokens
>>> cache = PromptCache()
>>> system = {"role": "system", "content": "x" * 6000}  # 1,500 tokens
>>> def ask(text, key="sk-a"):
...     messages = [system, {"role": "user", "content": text}]
...     return cache.use(key, "gpt-4o", messages, [], tokens=prompt_tokens(messages), now=0.0, ttl_s=600)
>>> ask("first"), ask("second"), ask("second", key="sk-b")
(0, 1408, 0)
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

import orjson

from ._chatreq import IMAGE_TOKENS, estimate_tokens

__all__ = ["FIRST", "STEP", "PromptCache", "prefix_digests"]

FIRST = 1024
"""The shortest prompt, and prefix, OpenAI caches."""
STEP = 128
"""The steps cached prefixes grow by from ``FIRST``."""
MAX_ENTRIES = 100_000
"""How many prefix digests a cache keeps at most (about 15 MB); the least recently used go first."""

# A segment's marker: 0xFF and 0xFE never occur in UTF-8, so no text can pass for one.
_OPEN, _CLOSE = b"\xff", b"\xfe"
_TEXT = _OPEN + b"text" + _CLOSE

Segment = tuple[int, bytes, str | None]
"""``(tokens, marker, text)``: a text's tokens are four of its characters each; a segment without text is a
whole (a message's framing, an image), and a prefix ending inside it holds its marker."""


def _text(text: str, kind: bytes = _TEXT) -> Segment:
    return estimate_tokens(text), kind, text


def _layout(messages: list[Any], tools: list[Any]) -> Iterator[Segment]:
    # Token for token what prompt_tokens and tool_tokens count, in the order a prompt is read.
    if tools:
        yield _text(orjson.dumps(tools).decode(), _OPEN + b"tools" + _CLOSE)
    for m in messages:
        yield 3, _OPEN + b"role:" + str(m.get("role")).encode() + _CLOSE, None
        content = m.get("content")
        if isinstance(content, str):
            yield _text(content)
        elif isinstance(content, list):
            for part in content:
                kind = part.get("type")
                if kind == "text":
                    yield _text(part.get("text") or "")
                elif kind == "image_url":
                    digest = hashlib.blake2b(orjson.dumps(part), digest_size=16).hexdigest().encode()
                    yield IMAGE_TOKENS, _OPEN + b"image:" + digest + _CLOSE, None
                else:
                    yield _text(orjson.dumps(part).decode(), _OPEN + b"part" + _CLOSE)
        if m.get("tool_calls"):
            yield _text(orjson.dumps(m["tool_calls"]).decode(), _OPEN + b"calls" + _CLOSE)
    yield 3, _OPEN + b"answer" + _CLOSE, None


def _seal(h: Any, boundary: int) -> bytes:
    sealed = h.copy()
    sealed.update(boundary.to_bytes(4, "little"))
    digest: bytes = sealed.digest()
    return digest


def prefix_digests(
    api_key: str, model: str, messages: list[Any], tools: list[Any], tokens: int
) -> list[bytes]:
    """The digest of the prompt's prefix at each boundary from ``FIRST`` up to ``tokens``, keyed by the API
    key and the model: equal digests are the same first tokens sent by the same key to the same model.

    >>> a = prefix_digests("k", "m", [{"role": "user", "content": "a" * 6000}], [], 1506)
    >>> b = prefix_digests("k", "m", [{"role": "user", "content": "a" * 5000 + "b" * 1000}], [], 1506)
    >>> len(a), a[:2] == b[:2], a[2] == b[2]  # they differ from token 1253 on: 1152 is the last shared
    (4, True, False)
    >>> set(a) & set(prefix_digests("k", "m", [{"role": "user", "content": "b" + "a" * 5999}], [], 1506))
    set()
    """
    h = hashlib.blake2b(orjson.dumps([api_key, model]), digest_size=16)
    digests: list[bytes] = []
    boundary, start = FIRST, 0
    for count, marker, text in _layout(messages, tools):
        if boundary > tokens:
            break
        end = start + count
        h.update(marker)
        done = 0
        while boundary <= end and boundary <= tokens:
            if text is not None:
                cut = 4 * (boundary - start)
                h.update(text[done:cut].encode("utf-8", "surrogatepass"))
                done = cut
            digests.append(_seal(h, boundary))
            boundary += STEP
        if text is not None and done < len(text):
            h.update(text[done:].encode("utf-8", "surrogatepass"))
        start = end
    return digests


class PromptCache:
    """The prefixes a simulator has seen, by digest, with when each was last used; the least recently used go
    once there are more than ``max_entries``, and any once ``ttl_s`` passed since its last use."""

    __slots__ = ("_seen", "max_entries")

    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        self.max_entries = max_entries
        # Oldest use first: every use moves a digest to the end, and the clock only goes forward.
        self._seen: OrderedDict[bytes, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._seen)

    def use(self, api_key: str, model: str, messages: list[Any], tools: list[Any], *, tokens: int,
            now: float, ttl_s: float) -> int:  # fmt: skip
        """The cached tokens of a prompt of ``tokens`` tokens sent by ``api_key`` to ``model`` at ``now``: the
        longest boundary of it seen within ``ttl_s`` (0 under ``FIRST`` tokens, never more than ``tokens``);
        then every boundary of it counts as seen at ``now``."""
        if tokens < FIRST:
            return 0
        digests = prefix_digests(api_key, model, messages, tools, tokens)
        seen = self._seen
        while seen:
            oldest, at = next(iter(seen.items()))
            if now - at < ttl_s:
                break
            del seen[oldest]
        cached = 0
        for i in range(len(digests) - 1, -1, -1):
            if digests[i] in seen:
                cached = FIRST + i * STEP
                break
        for digest in digests:
            seen[digest] = now
            seen.move_to_end(digest)
        while len(seen) > self.max_entries:
            seen.popitem(last=False)
        return cached
