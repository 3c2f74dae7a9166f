"""Real rate limits, quotas and auth over HTTP, and the stats verdict on the client's behaviour."""

from __future__ import annotations

import httpx
import openai
import pytest

from genguard.sim import Simulator
from genguard.sim._clock import FakeClock
from genguard.sim._ratelimit import RateLimiter, rfc3339

BODY = {"model": "m", "messages": [{"role": "user", "content": "hello"}]}


@pytest.fixture
def sim(clocked_sim: Simulator) -> Simulator:
    # Buckets and retry-after verdicts run on a fake clock here: time moves only when a test says so.
    return clocked_sim


def _post(sim: Simulator, key: str = "sk-a", body: dict[str, object] = BODY) -> httpx.Response:
    return httpx.post(
        sim.base_url + "/chat/completions", json=body, headers={"authorization": f"Bearer {key}"}
    )


def test_every_response_has_request_id_and_ratelimit_headers(sim: Simulator) -> None:
    for r in (_post(sim), httpx.get(sim.base_url + "/models"), httpx.get(sim.url + "/v1/nope")):
        assert r.headers["x-request-id"]
    r = _post(sim)
    for name in ("limit", "remaining", "reset"):
        assert r.headers[f"x-ratelimit-{name}-requests"]
        assert r.headers[f"x-ratelimit-{name}-tokens"]


def test_rpm_bucket_limits_each_key(sim: Simulator) -> None:
    sim.configure(rpm=3)
    statuses = [_post(sim).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    limited = _post(sim)
    assert limited.json()["error"]["code"] == "rate_limit_exceeded"
    assert 0 < float(limited.headers["retry-after"]) <= 20
    assert limited.headers["x-ratelimit-remaining-requests"] == "0"
    assert limited.headers["x-ratelimit-limit-requests"] == "3"
    assert _post(sim, key="sk-b").status_code == 200


def test_rpm_bucket_refills(sim: Simulator, fake_clock: FakeClock) -> None:
    sim.configure(rpm=600)  # one request every 0.1 s
    for _ in range(600):
        sim._state.limiter.admit("sk-a", 1)
    r = _post(sim)
    assert r.status_code == 429
    fake_clock.advance(float(r.headers["retry-after"]) + 0.02)
    assert _post(sim).status_code == 200


def test_tpm_counts_tokens(sim: Simulator) -> None:
    sim.configure(tpm=200)
    statuses = [_post(sim).status_code for _ in range(10)]
    assert 200 in statuses
    assert statuses[-1] == 429
    assert int(_post(sim).headers["x-ratelimit-remaining-tokens"]) < 200


def test_quota_runs_out_with_insufficient_quota(sim: Simulator) -> None:
    sim.configure(quota_tokens=100)
    client = openai.OpenAI(base_url=sim.base_url, api_key="sk-q", max_retries=0)

    def spend() -> None:
        for _ in range(20):
            client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])

    with pytest.raises(openai.RateLimitError) as info:
        spend()
    assert info.value.code == "insufficient_quota"


def test_api_keys_are_checked_and_never_echoed(sim: Simulator) -> None:
    sim.configure(api_keys=("sk-good",))
    assert _post(sim, key="sk-good").status_code == 200
    bad = _post(sim, key="sk-secret-bad-key")
    assert bad.status_code == 401
    assert "sk-secret-bad-key" not in bad.text
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=sim.base_url, api_key="nope", max_retries=0).models.list()


def test_stats_verdict_flags_bad_retries(sim: Simulator) -> None:
    sim.configure(scenario="quota_exceeded")
    for _ in range(2):
        _post(sim)
    verdict = sim.stats()["verdict"]
    assert verdict["retried_non_retryable"] == 1
    assert not verdict["ok"]
    sim.reset()
    sim.configure(scenario="server_error")
    for _ in range(5):
        _post(sim)
    verdict = httpx.get(sim.url + "/_genguard/stats").json()["verdict"]
    assert verdict["storm"] is True
    assert verdict["max_attempts"] == 5


def test_stats_verdict_checks_retry_after(sim: Simulator, fake_clock: FakeClock) -> None:
    sim.configure(scenario="rate_limited:1", retry_after_s=0.2)
    assert _post(sim).status_code == 429
    assert _post(sim).status_code == 200
    assert sim.stats()["verdict"]["ignored_retry_after"] == 1
    sim.reset()
    assert _post(sim).status_code == 429
    fake_clock.advance(0.2)
    assert _post(sim).status_code == 200
    stats = sim.stats()
    assert stats["verdict"]["ok"] is True
    assert stats["by_scenario"] == {"rate_limited": {"429": 1}, "ok": {"200": 1}}


def test_reset_endpoint_clears_stats(sim: Simulator) -> None:
    _post(sim)
    assert httpx.post(sim.url + "/_genguard/reset").status_code == 200
    assert sim.stats()["requests"] == 0


def test_the_limiter_reads_time_from_its_clock() -> None:
    now = [0.0]
    limiter = RateLimiter(rpm=60, tpm=None, quota_tokens=None, window_s=1, clock=lambda: now[0])
    assert [limiter.admit("k", 1).verdict for _ in range(2)] == ["ok", "rate_limited"]
    now[0] += 1.0
    assert limiter.admit("k", 1).verdict == "ok"


def test_anthropic_reset_times_come_from_the_simulator_clock(sim: Simulator, fake_clock: FakeClock) -> None:
    sim.configure(dialect="anthropic", rpm=60)
    fake_clock.advance(400 * 86400)  # far from the wall clock: only the simulator's clock gives this time
    reset = _post(sim).headers["anthropic-ratelimit-requests-reset"]
    assert reset == rfc3339(fake_clock.time() + 1.0)
