from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from genguard.sim._config import SCENARIOS, ScenarioError, SimConfig, parse_chaos, parse_scenario
from genguard.sim._dialects import format_wait
from genguard.sim._ratelimit import RateLimiter


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("ok", ("ok", None)),
        ("server_error:2", ("server_error", 2)),
        (" rate_limited : 0 ", ("rate_limited", 0)),
    ],
)
def test_parse_scenario(spec: str, expected: tuple[str, int | None]) -> None:
    assert parse_scenario(spec) == expected


@pytest.mark.parametrize("spec", ["nope", "server_error:x", "server_error:-1", ""])
def test_bad_scenarios_name_the_valid_ones(spec: str) -> None:
    with pytest.raises(ScenarioError, match=r"rate_limited|whole number|negative"):
        parse_scenario(spec)


def test_chaos_parses_and_checks_rates() -> None:
    assert parse_chaos("rate_limited=0.05,server_error=0.02") == {"rate_limited": 0.05, "server_error": 0.02}
    for bad in ("rate_limited", "rate_limited=2", "ok=0.1", "nope=0.1", "rate_limited=0.7,server_error=0.7"):
        with pytest.raises(ScenarioError):
            parse_chaos(bad)


@given(st.text(max_size=60))
def test_parsers_never_crash_on_any_text(text: str) -> None:
    for parser in (parse_scenario, parse_chaos):
        try:
            parser(text)
        except ScenarioError:
            pass


@given(st.sampled_from(sorted(SCENARIOS)), st.integers(0, 50))
def test_every_scenario_takes_a_flaky_count(name: str, n: int) -> None:
    assert parse_scenario(f"{name}:{n}") == (name, n)


def test_config_validates_and_replaces() -> None:
    cfg = SimConfig(chaos="unavailable=0.5")
    assert cfg.chaos == {"unavailable": 0.5}
    assert cfg.replace(rpm=5).rpm == 5
    with pytest.raises(ScenarioError):
        SimConfig(dialect="nope")
    with pytest.raises(ScenarioError):
        SimConfig(rpm=0)
    with pytest.raises(TypeError, match="bogus"):
        cfg.replace(bogus=1)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(20, "20s"), (1.574, "1.574s"), (360, "6m0s"), (0.012, "12ms"), (578.016, "9m38.016s")],
)
def test_waits_are_written_like_providers_write_them(seconds: float, text: str) -> None:
    assert format_wait(seconds) == text


def test_token_bucket_refills_over_the_minute() -> None:
    limiter = RateLimiter(rpm=60, tpm=None, quota_tokens=None)
    for _ in range(60):
        assert limiter.admit("k", 1, now=0.0).verdict == "ok"
    refused = limiter.admit("k", 1, now=0.0)
    assert refused.verdict == "rate_limited"
    assert refused.retry_after_s == pytest.approx(1.0)
    assert limiter.admit("other", 1, now=0.0).verdict == "ok"
    assert limiter.admit("k", 1, now=1.01).verdict == "ok"
