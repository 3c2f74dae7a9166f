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
