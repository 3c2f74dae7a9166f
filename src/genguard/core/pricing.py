"""Cost of a call in US dollars, from the maintained price table of ``genai-prices`` when it is installed.

``genai-prices`` is optional (``pip install genguard[prices]``): without it, or for a model it does not know,
the cost is ``None``, never a guess.

>>> from genguard import Usage
>>> cost_usd("no-such-model-xyz", Usage(prompt_tokens=10, completion_tokens=5)) is None
True
"""

from __future__ import annotations

import functools
import logging
from typing import Any

from .outcome import Usage

__all__ = ["cost_usd", "prices_available"]

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
def _cost(model: str, prompt: int, completion: int) -> float | None:
    calc = _calc()
    if calc is None:
        return None
    calc_price, price_usage = calc
    usage = price_usage(input_tokens=prompt, output_tokens=completion)
    try:
        result = calc_price(usage, model_ref=model)
    except (LookupError, ValueError):
        return None
    except Exception as exc:  # a third-party table must never break a call
        logger.debug("genai-prices could not price %s: %s", model, exc)
        return None
    return float(result.total_price)


def cost_usd(model: str | None, usage: Usage | None) -> float | None:
    """The price of ``usage`` tokens on ``model`` in US dollars, or ``None`` when unknown.

    >>> round(cost_usd("gpt-4o-mini", Usage(prompt_tokens=1000, completion_tokens=500)) or 0, 6)  # doctest: +SKIP
    0.00045
    """
    if not model or usage is None:
        return None
    prompt = usage.prompt_tokens or 0
    completion = usage.completion_tokens or 0
    if prompt == 0 and completion == 0:
        return None
    return _cost(model, prompt, completion)
