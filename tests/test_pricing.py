"""Cost from the genai-prices table, and None when the model or the table is unknown."""

from __future__ import annotations

import pytest

from genguard import Usage
from genguard.core.pricing import _calc, cost_usd, prices_available, stated_cost


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
        # A cost the provider states needs no table.
        assert cost_usd("gpt-4o-mini", Usage(1000, 5, 1005, {"cost": 0.000153})) == 0.000153
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


@pytest.mark.parametrize(
    ("details", "cost"),
    [
        # OpenRouter: the cost in credits (a dollar each), on every answer.
        ({"cost": 0.0000295, "is_byok": False, "cost_details": {"upstream_inference_cost": None}}, 0.0000295),
        # A free model costs nothing: a stated zero is a cost, not an unknown one.
        ({"cost": 0, "is_byok": False}, 0.0),
        # With the caller's own provider key, OpenRouter's fee, then what that provider charged.
        ({"cost": 0.000005, "is_byok": True, "cost_details": {"upstream_inference_cost": 0.0001}}, 0.000105),
        # An upstream cost on a request that was not the caller's key is OpenRouter's own bill: not added.
        ({"cost": 0.00002, "is_byok": False, "cost_details": {"upstream_inference_cost": 0.00002}}, 0.00002),
    ],
)
def test_a_cost_the_provider_states_is_the_cost(details: dict[str, object], cost: float) -> None:
    usage = Usage(194, 2, 196, details)
    assert stated_cost(usage) == pytest.approx(cost)
    # Whatever the model: one the table knows (the stated cost is what was billed), one it does not, or none.
    for model in ("gpt-4o-mini", "meta-llama/llama-3.1-8b-instruct", None):
        assert cost_usd(model, usage) == pytest.approx(cost)


@pytest.mark.parametrize("value", [True, "0.01", -0.5, float("nan"), float("inf"), None, {"total": 1}])
def test_a_stated_cost_that_is_not_an_amount_is_not_taken(value: object) -> None:
    usage = Usage(1000, 500, 1500, {"cost": value})
    assert stated_cost(usage) is None
    assert cost_usd("meta-llama/llama-3.1-8b-instruct", usage) is None  # no table price either
    if prices_available():
        assert cost_usd("gpt-4o-mini", usage) == cost_usd("gpt-4o-mini", Usage(1000, 500, 1500))


def test_the_clients_take_the_cost_an_openrouter_answer_states() -> None:
    # Over real HTTP: a plain answer and a stream (OpenRouter puts the usage in its last chunk unasked).
    from genguard import AsyncClient, Client
    from genguard.sim import Simulator
    from genguard.sim._chat import openrouter_cost

    def stated(usage: Usage | None) -> float:
        assert usage is not None
        assert usage.details is not None
        cached = usage.details["prompt_tokens_details"]["cached_tokens"]
        return openrouter_cost(usage.prompt_tokens or 0, cached, usage.completion_tokens or 0)

    model = "meta-llama/llama-3.1-8b-instruct"
    messages = [{"role": "user", "content": "Name a river."}]
    with (
        Simulator(dialect="openrouter") as sim,
        Client(sim.base_url, api_key="sk-or-pricing-0123456789") as c,
    ):
        plain = c.chat(model=model, messages=messages)
        assert plain.ok
        assert plain.extra["cost_usd"] == pytest.approx(stated(plain.usage))
        stream = c.stream(model=model, messages=messages)
        for _ in stream:
            pass
        assert stream.outcome.ok
        assert stream.outcome.extra["cost_usd"] == pytest.approx(stated(stream.outcome.usage))

        async def both() -> None:
            async with AsyncClient(sim.base_url, api_key="sk-or-pricing-0123456789") as ac:
                answer = await ac.chat(model=model, messages=messages)
                assert answer.extra["cost_usd"] == pytest.approx(stated(answer.usage))

        import asyncio

        asyncio.run(both())
