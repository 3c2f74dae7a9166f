"""Cost from the genai-prices table, and None when the model or the table is unknown."""

from __future__ import annotations

import pytest

from genguard import Usage
from genguard.core.pricing import _calc, cost_usd, prices_available


def test_known_model_is_priced_from_the_table() -> None:
    if not prices_available():
        pytest.skip("genai-prices is not installed")
    from genai_prices import Usage as PriceUsage
    from genai_prices import calc_price

    expected = float(
        calc_price(PriceUsage(input_tokens=1000, output_tokens=500), model_ref="gpt-4o-mini").total_price
    )
    got = cost_usd("gpt-4o-mini", Usage(prompt_tokens=1000, completion_tokens=500))
    assert got == pytest.approx(expected)
    assert got is not None
    assert got > 0
    bigger = cost_usd("gpt-4o-mini", Usage(prompt_tokens=2000, completion_tokens=1000))
    assert bigger == pytest.approx(2 * got)


def test_unknown_model_or_no_usage_gives_none() -> None:
    assert cost_usd("sim-unknown-model-zz", Usage(prompt_tokens=10, completion_tokens=10)) is None
    assert cost_usd("gpt-4o-mini", None) is None
    assert cost_usd(None, Usage(prompt_tokens=10)) is None
    assert cost_usd("gpt-4o-mini", Usage()) is None


def test_works_without_the_optional_table(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    real_import = builtins.__import__

    def no_prices(name: str, *args: object, **kwargs: object) -> object:
        if name.startswith("genai_prices"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)  # type: ignore[arg-type]

    _calc.cache_clear()
    from genguard.core import pricing as _pricing

    _pricing._cost.cache_clear()
    monkeypatch.setattr(builtins, "__import__", no_prices)
    try:
        assert not prices_available()
        assert cost_usd("gpt-4o-mini", Usage(prompt_tokens=1000, completion_tokens=5)) is None
    finally:
        monkeypatch.undo()
        _calc.cache_clear()
        _pricing._cost.cache_clear()
    assert prices_available()


def _table(model: str, **counts: int) -> float:
    from genai_prices import Usage as PriceUsage
    from genai_prices import calc_price

    return float(calc_price(PriceUsage(**counts), model_ref=model).total_price)


@pytest.mark.parametrize(
    ("model", "usage", "counts"),
    [
        # OpenAI chat: cached_tokens is part of prompt_tokens (billed at a discount).
        ("gpt-4o-mini", {"prompt_tokens": 10_000, "completion_tokens": 100, "total_tokens": 10_100,
                         "prompt_tokens_details": {"cached_tokens": 8_064, "audio_tokens": 0}},
         {"input_tokens": 10_000, "cache_read_tokens": 8_064, "output_tokens": 100}),
        # The Responses API names them input/output.
        ("gpt-4o", {"input_tokens": 3_000, "output_tokens": 50, "total_tokens": 3_050,
                    "input_tokens_details": {"cached_tokens": 2_048},
                    "output_tokens_details": {"reasoning_tokens": 0}},
         {"input_tokens": 3_000, "cache_read_tokens": 2_048, "output_tokens": 50}),
        # OpenRouter adds the tokens written to the cache beside them.
        ("claude-3-5-sonnet-latest", {"prompt_tokens": 2_100, "completion_tokens": 10, "total_tokens": 2_110,
                                      "prompt_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 2_000}},
         {"input_tokens": 2_100, "cache_write_tokens": 2_000, "output_tokens": 10}),
        # DeepSeek: hit + miss = prompt_tokens.
        ("deepseek-chat", {"prompt_tokens": 1_000, "completion_tokens": 10, "total_tokens": 1_010,
                           "prompt_cache_hit_tokens": 900, "prompt_cache_miss_tokens": 100},
         {"input_tokens": 1_000, "cache_read_tokens": 900, "output_tokens": 10}),
        # Anthropic's own usage counts the cache beside input_tokens, not within it.
        ("claude-3-5-sonnet-latest", {"input_tokens": 16, "output_tokens": 10, "cache_read_input_tokens": 1_800,
                                      "cache_creation_input_tokens": 200},
         {"input_tokens": 2_016, "cache_read_tokens": 1_800, "cache_write_tokens": 200, "output_tokens": 10}),
    ],
)  # fmt: skip
def test_prompt_tokens_read_from_the_cache_are_priced_at_the_cache_price(
    model: str, usage: dict[str, object], counts: dict[str, int]
) -> None:
    # A batch whose lines share a long system prompt has most of its prompt tokens cached after the first line:
    # priced as plain input, its cost (and --max-cost) was overstated up to twice or more.
    if not prices_available():
        pytest.skip("genai-prices is not installed")
    parsed = Usage.from_dict(usage)
    got = cost_usd(model, parsed)
    assert got == pytest.approx(_table(model, **counts))
    plain = {k: v for k, v in counts.items() if not k.startswith("cache_")}
    assert got is not None
    assert got < _table(model, **plain) or counts.get("cache_write_tokens")  # a write costs more than a read


def test_cache_counts_that_make_no_sense_are_not_priced_below_the_prompt() -> None:
    from genguard.core.pricing import cache_tokens

    odd = Usage(100, 5, 105, {"prompt_tokens_details": {"cached_tokens": 5_000, "cache_write_tokens": -3}})
    assert cache_tokens(odd) == (100, 100, 0)
    assert cache_tokens(Usage(100, 5, 105, {"prompt_tokens_details": {"cached_tokens": True}})) == (100, 0, 0)
    assert cache_tokens(Usage(100, 5, 105, {"prompt_tokens_details": None})) == (100, 0, 0)
