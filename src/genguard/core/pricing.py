"""Cost of a call in US dollars: what the provider states it billed, when its answer says (OpenRouter's
``usage.cost``), or else from the maintained price table of ``genai-prices`` when it is installed.

``genai-prices`` is optional (``pip install genguard[prices]``): without it, or for a model it does not know
(and no stated cost), the cost is ``None``, never a guess.

>>> from genguard import Usage
>>> cost_usd("no-such-model-xyz", Usage(prompt_tokens=10, completion_tokens=5)) is None
True
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from typing import Any

from .json_values import as_float
from .outcome import Usage

__all__ = ["cache_tokens", "cost_usd", "prices_available", "stated_cost"]

logger = logging.getLogger("genguard")


@functools.cache
def _calc() -> Any:
    try:
        from genai_prices import Usage as PriceUsage
        from genai_prices import calc_price
    except ImportError:
        return None
    return calc_price, PriceUsage


def prices_available() -> bool:
    """Whether the ``genai-prices`` table is installed."""
    return _calc() is not None


# A call's cost depends only on these; caching keeps the table lookup (tens of microseconds) off the
# per-request path for the common case of repeated models and sizes, and misses are cheap to remember.
@functools.lru_cache(maxsize=4096)
def _cost(model: str, prompt: int, completion: int, cached: int = 0, written: int = 0) -> float | None:
    calc = _calc()
    if calc is None:
        return None
    calc_price, price_usage = calc
    counts = {"input_tokens": prompt, "output_tokens": completion}
    if cached:
        counts["cache_read_tokens"] = cached
    if written:
        counts["cache_write_tokens"] = written
    usage = price_usage(**counts)
    try:
        result = calc_price(usage, model_ref=model)
    except (LookupError, ValueError):
        return None
    except Exception as exc:  # a third-party table must never break a call
        logger.debug("genai-prices could not price %s: %s", model, exc)
        return None
    return float(result.total_price)


def _count(value: Any) -> int:
    return value if type(value) is int and value > 0 else 0


def cache_tokens(usage: Usage) -> tuple[int, int, int]:
    """``(prompt tokens in all, read from the provider's prompt cache, written to it)`` as ``usage`` reports
    them, in any of the shapes providers use: OpenAI's ``prompt_tokens_details.cached_tokens`` (chat) and
    ``input_tokens_details.cached_tokens`` (Responses API), OpenRouter's ``cache_write_tokens`` beside it,
    DeepSeek's ``prompt_cache_hit_tokens``, all counted within the prompt tokens; Anthropic's
    ``cache_read_input_tokens`` and ``cache_creation_input_tokens``, counted beside its ``input_tokens``.

    >>> cache_tokens(Usage(2000, 10, 2010, {"prompt_tokens_details": {"cached_tokens": 1792}}))
    (2000, 1792, 0)
    >>> cache_tokens(Usage(16, 10, 26, {"cache_read_input_tokens": 1800, "cache_creation_input_tokens": 200}))
    (2016, 1800, 200)
    """
    prompt = usage.prompt_tokens or 0
    details = usage.details
    if not details:
        return prompt, 0, 0
    for name in ("prompt_tokens_details", "input_tokens_details"):
        part = details.get(name)
        if isinstance(part, Mapping):
            read, written = _count(part.get("cached_tokens")), _count(part.get("cache_write_tokens"))
            if read or written:
                return prompt, min(read, prompt), min(written, prompt - min(read, prompt))
    hit = _count(details.get("prompt_cache_hit_tokens"))
    if hit:
        return prompt, min(hit, prompt), 0
    read = _count(details.get("cache_read_input_tokens"))
    written = _count(details.get("cache_creation_input_tokens"))
    return prompt + read + written, read, written


def _money(value: Any) -> float | None:
    amount = as_float(value)
    return amount if amount is not None and amount >= 0.0 else None


def stated_cost(usage: Usage) -> float | None:
    """What the provider says this answer cost, in US dollars, when its ``usage`` says: OpenRouter's ``cost``
    (in credits, a dollar each), to which a request made with the caller's own provider key (``is_byok``)
    adds what that provider charged (``cost_details.upstream_inference_cost``). ``None`` when it says nothing
    readable.

    >>> stated_cost(Usage(194, 2, 196, {"cost": 0.0000295, "is_byok": False}))
    2.95e-05
    >>> stated_cost(Usage(194, 2, 196, {"cost": 0.000005, "is_byok": True,
    ...                                  "cost_details": {"upstream_inference_cost": 0.0001}}))
    0.000105
    """
    details = usage.details
    if not details:
        return None
    cost = _money(details.get("cost"))
    if cost is None:
        return None
    more = details.get("cost_details")
    if details.get("is_byok") is True and isinstance(more, Mapping):
        upstream = _money(more.get("upstream_inference_cost"))
        if upstream is not None:
            cost = round(cost + upstream, 12)
    return cost


def cost_usd(model: str | None, usage: Usage | None) -> float | None:
    """The price of ``usage`` tokens on ``model`` in US dollars, or ``None`` when unknown. A cost the provider
    states in ``usage`` (:func:`stated_cost`: OpenRouter's) is what was billed, and is taken as it is, for any
    model; else the table prices the tokens. Prompt tokens read from the provider's prompt cache (or written to
    it) are priced as the table prices them (OpenAI bills a cached token at a half or a quarter of an input
    token), read from ``usage`` by :func:`cache_tokens`.

    >>> round(cost_usd("gpt-4o-mini", Usage(prompt_tokens=1000, completion_tokens=500)) or 0, 6)  # doctest: +SKIP
    0.00045
    >>> cost_usd("meta-llama/llama-3.1-8b-instruct", Usage(1000, 500, 1500, {"cost": 0.0000375}))
    3.75e-05
    """
    if usage is None:
        return None
    if usage.details:
        stated = stated_cost(usage)
        if stated is not None:
            return stated
    if not model:
        return None
    completion = usage.completion_tokens or 0
    if usage.details:
        prompt, cached, written = cache_tokens(usage)
        if prompt == 0 and completion == 0:
            return None
        return _cost(model, prompt, completion, cached, written)
    prompt = usage.prompt_tokens or 0
    if prompt == 0 and completion == 0:
        return None
    return _cost(model, prompt, completion)
