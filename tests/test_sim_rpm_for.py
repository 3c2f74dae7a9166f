"""Rate limits per model over HTTP: a model named in ``rpm_for``/``tpm_for`` has buckets of its own per key,
and its answers' headers and 429s state its own limits; the others share the key's buckets as before."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from _sim_cli import configs_of
from genguard.cli import cli
from genguard.sim import Simulator
from genguard.sim._config import ScenarioError, SimConfig


@pytest.fixture
def sim(clocked_sim: Simulator) -> Simulator:
    # Buckets run on a fake clock: none refills between the requests of a test.
    return clocked_sim


def _post(sim: Simulator, model: str | None, *, key: str = "sk-a", content: str = "hello") -> httpx.Response:
    body: dict[str, Any] = {"messages": [{"role": "user", "content": content}]}
    if model is not None:
        body["model"] = model
    return httpx.post(
        sim.base_url + "/chat/completions", json=body, headers={"authorization": f"Bearer {key}"}, timeout=30
    )


def test_a_model_named_in_rpm_for_has_its_own_request_bucket(sim: Simulator) -> None:
    sim.configure(rpm=600, rpm_for={"gpt-4o": 2})
    passed = [_post(sim, "gpt-4o") for _ in range(2)]
    assert [r.status_code for r in passed] == [200, 200]
    assert passed[0].headers["x-ratelimit-limit-requests"] == "2"
    assert passed[1].headers["x-ratelimit-remaining-requests"] == "0"
    limited = _post(sim, "gpt-4o")
    assert limited.status_code == 429
    assert limited.headers["x-ratelimit-limit-requests"] == "2"
    assert limited.headers["x-ratelimit-remaining-requests"] == "0"
    assert float(limited.headers["retry-after"]) > 0
    error = limited.json()["error"]
    assert error["code"] == "rate_limit_exceeded"
    assert error["message"].startswith("Rate limit reached for gpt-4o on requests per min (RPM): Limit 2,")
    # The other models' budget is untouched by gpt-4o's, and states the shared limit.
    for _ in range(3):
        other = _post(sim, "gpt-4o-mini")
        assert other.status_code == 200
        assert other.headers["x-ratelimit-limit-requests"] == "600"
    assert int(other.headers["x-ratelimit-remaining-requests"]) == 597
    # Each key has its own gpt-4o budget.
    assert _post(sim, "gpt-4o", key="sk-b").status_code == 200
    assert _post(sim, "gpt-4o").status_code == 429


def test_models_not_named_share_the_keys_buckets(sim: Simulator) -> None:
    sim.configure(rpm=600, rpm_for={"gpt-4o": 2})
    _post(sim, "gpt-4o-mini")
    shared = _post(sim, "o3-mini")
    assert shared.headers["x-ratelimit-limit-requests"] == "600"
    assert shared.headers["x-ratelimit-remaining-requests"] == "598"
    # A body without a model is charged to the shared buckets too.
    assert _post(sim, None).headers["x-ratelimit-remaining-requests"] == "597"


def test_a_named_model_takes_the_shared_limit_it_is_not_given(sim: Simulator) -> None:
    sim.configure(rpm=3, tpm_for={"gpt-4o": 100_000})
    statuses = [_post(sim, "gpt-4o").status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    # gpt-4o's 3 a minute are its own: the shared bucket still holds 3 for the others.
    assert [_post(sim, "gpt-4o-mini").status_code for _ in range(4)] == [200, 200, 200, 429]


def test_a_model_named_in_tpm_for_has_its_own_token_bucket(sim: Simulator) -> None:
    sim.configure(tpm=100_000, tpm_for={"gpt-4o": 200})
    statuses = []
    for _ in range(10):
        r = _post(sim, "gpt-4o")
        statuses.append(r.status_code)
        assert r.headers["x-ratelimit-limit-tokens"] == "200"
    assert statuses[0] == 200
    assert statuses[-1] == 429
    other = _post(sim, "gpt-4o-mini")
    assert other.status_code == 200
    assert other.headers["x-ratelimit-limit-tokens"] == "100000"
    assert _post(sim, "gpt-4o", key="sk-b").status_code == 200


def test_too_large_for_a_models_own_tokens_names_its_limit(sim: Simulator) -> None:
    sim.configure(tpm_for={"gpt-4o": 50})
    r = _post(sim, "gpt-4o", content="word " * 200)
    assert r.status_code == 429
    assert "retry-after" not in r.headers
    message = r.json()["error"]["message"]
    assert message.startswith("Request too large for gpt-4o ")
    assert "Limit 50," in message
    assert _post(sim, "gpt-4o-mini", content="word " * 200).status_code == 200


def test_the_quota_stays_the_keys_across_models(sim: Simulator) -> None:
    sim.configure(quota_tokens=40, rpm_for={"gpt-4o": 100})
    codes = [_post(sim, model).status_code for model in ("gpt-4o", "gpt-4o-mini") * 10]
    assert codes[-1] == 429
    assert _post(sim, "gpt-4o").json()["error"]["code"] == "insufficient_quota"
    assert _post(sim, "gpt-4o-mini").json()["error"]["code"] == "insufficient_quota"


def test_without_the_settings_models_share_one_bucket_per_key(sim: Simulator) -> None:
    sim.configure(rpm=3)
    statuses = [_post(sim, model).status_code for model in ("gpt-4o", "gpt-4o-mini", "o3-mini", "gpt-4o")]
    assert statuses == [200, 200, 200, 429]
    assert _post(sim, "gpt-4o-mini").headers["x-ratelimit-limit-requests"] == "3"
    assert _post(sim, "gpt-4o", key="sk-b").status_code == 200


def test_changing_the_settings_starts_the_buckets_afresh(sim: Simulator) -> None:
    sim.configure(rpm=600, rpm_for={"gpt-4o": 1})
    assert _post(sim, "gpt-4o").status_code == 200
    assert _post(sim, "gpt-4o").status_code == 429
    sim.configure(rpm_for={"gpt-4o": 2})
    assert _post(sim, "gpt-4o").headers["x-ratelimit-limit-requests"] == "2"
    sim.reset()
    assert _post(sim, "gpt-4o").headers["x-ratelimit-remaining-requests"] == "1"
    sim.configure(rpm_for={})
    assert _post(sim, "gpt-4o").headers["x-ratelimit-limit-requests"] == "600"


def test_settings_parse_like_context_window_for() -> None:
    cfg = SimConfig(rpm_for="gpt-4o=60,gpt-4o-mini=600", tpm_for=["gpt-4o=30000"])
    assert cfg.rpm_for == {"gpt-4o": 60, "gpt-4o-mini": 600}
    assert cfg.tpm_for == {"gpt-4o": 30000}
    assert SimConfig(rpm_for={"gpt-4o": "60"}).rpm_for == {"gpt-4o": 60}
    assert (cfg.rpm_of("gpt-4o"), cfg.rpm_of("o3-mini"), cfg.tpm_of("gpt-4o-mini")) == (60, None, None)


@pytest.mark.parametrize(
    ("settings", "needles"),
    [
        ({"rpm_for": "gpt-4o=abc"}, ("rpm_for", "gpt-4o", "whole number")),
        ({"rpm_for": {"gpt-4o": 0}}, ("rpm_for", "gpt-4o", "positive")),
        ({"tpm_for": {"gpt-4o-mini": -5}}, ("tpm_for", "gpt-4o-mini", "positive")),
        ({"tpm_for": ["gpt-4o=1.5"]}, ("tpm_for", "gpt-4o", "whole number")),
        ({"rpm_for": "gpt-4o"}, ("rpm_for", "MODEL=VALUE")),
    ],
)
def test_bad_values_name_the_setting_and_the_model(
    settings: dict[str, Any], needles: tuple[str, ...]
) -> None:
    with pytest.raises(ScenarioError) as info:
        SimConfig(**settings)
    for needle in needles:
        assert needle in str(info.value)


def test_the_cli_options_reach_the_config(monkeypatch: pytest.MonkeyPatch) -> None:
    args = ["--rpm", "600", "--rpm-for", "gpt-4o=60", "--rpm-for", "o3-mini=5", "--tpm-for", "gpt-4o=30000"]
    (config,) = configs_of(monkeypatch, args)
    assert config.rpm == 600
    assert config.rpm_for == {"gpt-4o": 60, "o3-mini": 5}
    assert config.tpm_for == {"gpt-4o": 30000}


def test_the_cli_refuses_a_bad_value_by_name() -> None:
    result = CliRunner().invoke(cli, ["simulate", "--rpm-for", "gpt-4o=lots"])
    assert result.exit_code == 2
    assert "rpm_for gpt-4o" in result.output
    help_text = CliRunner().invoke(cli, ["simulate", "--help"]).output
    assert "--rpm-for" in help_text
    assert "--tpm-for" in help_text


@pytest.mark.parametrize(
    ("value", "needle"),
    [(5, "rpm_for takes MODEL=VALUE entries"), ([5], "rpm_for entry 5"), ({"": 3}, "rpm_for: an entry names no model"),
     ("gpt-4o", "rpm_for entry 'gpt-4o' must look like MODEL=VALUE, e.g. gpt-4o=60")],
)  # fmt: skip
def test_a_limit_setting_of_the_wrong_shape_is_named(value: Any, needle: str) -> None:
    with pytest.raises(ScenarioError) as info:
        SimConfig(rpm_for=value)
    assert needle in str(info.value)
