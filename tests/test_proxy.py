"""genguard proxy over real HTTP: the official openai SDK (sync) -> the proxy -> the simulator."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import orjson
import pytest

from genguard import RetryPolicy
from genguard.core.outcome import Attempt, Outcome
from genguard.proxy import Proxy
from genguard.proxy._outcome_http import error_status, outcome_headers
from genguard.sim import Simulator

KEY = "sk-proxy-upstream-key-0123456789"
MSG: Any = [{"role": "user", "content": "Describe a pet"}]
MODEL = "gpt-4o-mini"
FAST = RetryPolicy(backoff_base=0.01, backoff_max=0.02)  # empty_output is retried: keep its backoff short


@pytest.fixture(scope="module")
def _proxies(genguard_sim: Simulator) -> Iterator[tuple[Proxy, Proxy]]:
    with (
        Proxy(upstream=genguard_sim.base_url, api_keys=(KEY,)) as plain,
        Proxy(upstream=genguard_sim.base_url, api_keys=(KEY,), strict=True, retry=FAST) as strict,
    ):
        yield plain, strict


@pytest.fixture
def proxy(sim: Simulator, _proxies: tuple[Proxy, Proxy]) -> Proxy:
    return _proxies[0]


@pytest.fixture
def strict(sim: Simulator, _proxies: tuple[Proxy, Proxy]) -> Proxy:
    return _proxies[1]


def sdk(proxy: Proxy, **kw: Any) -> openai.OpenAI:
    # The SDK's own retries stay on (2 by default): the tests show the proxy stops them where they multiply.
    return openai.OpenAI(base_url=proxy.base_url, api_key="sk-client-own-key", timeout=10.0, **kw)


def test_ok_call_carries_the_outcome_headers_and_uses_the_proxys_key(sim: Simulator, proxy: Proxy) -> None:
    sim.configure(api_keys=(KEY,))  # only the proxy's key is accepted upstream
    raw = sdk(proxy).chat.completions.with_raw_response.create(model=MODEL, messages=MSG)
    completion = raw.parse()
    assert completion.choices[0].message.content
    assert raw.headers["x-genguard-code"] == "ok"
    assert raw.headers["x-genguard-kind"] == "ok"
    assert raw.headers["x-genguard-attempts"] == "1"
    assert raw.headers["x-genguard-model"] == MODEL
    assert raw.headers["x-genguard-request-ids"].startswith("req_")
    assert "x-should-retry" not in raw.headers


def test_rate_limit_is_answered_after_the_servers_wait_in_one_sdk_call(sim: Simulator, proxy: Proxy) -> None:
    sim.configure(scenario="rate_limited:1", retry_after_s=0.3)
    started = time.monotonic()
    raw = sdk(proxy).chat.completions.with_raw_response.create(model=MODEL, messages=MSG)
    assert time.monotonic() - started >= 0.3
    assert raw.parse().choices[0].message.content
    assert raw.headers["x-genguard-attempts"] == "2"
    ids = raw.headers["x-genguard-request-ids"].split(",")
    assert len(ids) == 2
    assert all(i.startswith("req_") for i in ids)
    assert ids[0] != ids[1]
    stats = sim.stats()
    assert stats["by_status"] == {"429": 1, "200": 1}  # genguard's retry; the SDK sent one request
    assert stats["verdict"]["ignored_retry_after"] == 0


def test_quota_raises_in_the_sdk_and_is_not_retried(sim: Simulator, proxy: Proxy) -> None:
    sim.configure(scenario="quota_exceeded")
    with pytest.raises(openai.RateLimitError) as info:
        sdk(proxy).chat.completions.create(model=MODEL, messages=MSG)
    headers = info.value.response.headers
    assert headers["x-should-retry"] == "false"
    assert headers["x-genguard-code"] == "quota_exceeded"
    assert headers["x-genguard-kind"] == "hard"
    assert sim.stats()["requests"] == 1  # neither genguard nor the SDK (max_retries=2) sent it again


def test_a_request_that_is_an_sdk_retry_gets_one_attempt(sim: Simulator, proxy: Proxy) -> None:
    sim.configure(scenario="server_error:1")
    body = {"model": MODEL, "messages": MSG}
    reply = httpx.post(
        proxy.base_url + "/chat/completions", json=body, headers={"x-stainless-retry-count": "1"}
    )
    assert reply.status_code == 500
    assert reply.headers["x-genguard-code"] == "server_error"
    assert reply.headers["x-genguard-attempts"] == "1"
    assert reply.headers["x-should-retry"] == "false"
    assert sim.stats()["requests"] == 1


def test_truncated_passes_through_by_default_with_the_outcome_in_headers(
    sim: Simulator, proxy: Proxy
) -> None:
    sim.configure(scenario="truncated")
    raw = sdk(proxy).chat.completions.with_raw_response.create(model=MODEL, messages=MSG)
    assert raw.parse().choices[0].finish_reason == "length"
    assert raw.headers["x-genguard-code"] == "truncated"
    assert raw.headers["x-genguard-kind"] == "soft"
    assert raw.headers["x-should-retry"] == "false"


@pytest.mark.parametrize("scenario", ["truncated", "content_filtered", "empty_output"])
def test_strict_turns_a_soft_failure_into_an_error_the_sdk_raises(
    sim: Simulator, strict: Proxy, scenario: str
) -> None:
    sim.configure(scenario=scenario)
    with pytest.raises(openai.UnprocessableEntityError) as info:
        sdk(strict).chat.completions.create(model=MODEL, messages=MSG)
    assert info.value.code == scenario
    body: Any = info.value.body
    assert body["genguard"]["original"]["choices"]  # the provider's own answer, for debugging
    assert body["genguard"]["outcome"]["code"] == scenario
    assert info.value.response.headers["x-should-retry"] == "false"
    # genguard retried what may succeed (empty_output); the SDK did not retry the 422.
    assert sim.stats()["requests"] == int(info.value.response.headers["x-genguard-attempts"])


def test_models_and_other_paths_are_forwarded_with_the_proxys_key(sim: Simulator, proxy: Proxy) -> None:
    sim.configure(api_keys=(KEY,))
    assert [m.id for m in sdk(proxy).models.list()] == list(sim.config.models)
    assert httpx.get(proxy.base_url + "/no/such/path").status_code == 404


def test_the_upstream_key_never_reaches_the_client(sim: Simulator, proxy: Proxy) -> None:
    sim.configure(api_keys=("sk-another-key-entirely-9999",))
    reply = httpx.post(proxy.base_url + "/chat/completions", json={"model": MODEL, "messages": MSG})
    assert reply.headers["x-genguard-code"] == "auth_failed"
    assert reply.headers["x-should-retry"] == "false"
    everything = reply.content.decode() + repr(list(reply.headers.items()))
    assert KEY not in everything
    assert KEY[8:] not in everything


def test_a_body_that_is_not_a_chat_request_is_a_400_in_openais_shape(proxy: Proxy) -> None:
    reply = httpx.post(proxy.base_url + "/chat/completions", content=b"not json")
    assert reply.status_code == 400
    assert reply.json()["error"]["code"] == "bad_request"
    assert reply.headers["x-should-retry"] == "false"


def test_outcome_headers_keep_every_attempts_request_id_in_order() -> None:
    history = (Attempt(1, "rate_limited", 429, request_id="req_a"), Attempt(2, "server_error", 500),
               Attempt(3, "quota_exceeded", 429, request_id="req_c"))  # fmt: skip
    outcome = Outcome.failure("quota_exceeded", status=429, attempts=3, history=history, retry_after_s=2.5)
    headers = outcome_headers(outcome, "m")
    assert headers["x-genguard-request-ids"] == "req_a,-,req_c"
    assert headers["retry-after-ms"] == "2500"
    assert orjson.loads(orjson.dumps(headers))["x-genguard-model"] == "m"


def test_forward_client_key_sends_the_clients_key_and_refuses_a_request_without_one(sim: Simulator) -> None:
    sim.configure(api_keys=("sk-the-clients-own-key",))
    with Proxy(upstream=sim.base_url, api_keys=(KEY,), forward_client_key=True) as proxy:
        body = {"model": MODEL, "messages": MSG}
        ok = httpx.post(proxy.base_url + "/chat/completions", json=body,
                        headers={"authorization": "Bearer sk-the-clients-own-key"})  # fmt: skip
        models = httpx.get(
            proxy.base_url + "/models", headers={"authorization": "Bearer sk-the-clients-own-key"}
        )
        refused = httpx.post(proxy.base_url + "/chat/completions", json=body)
    assert ok.status_code == 200
    assert models.status_code == 200
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "auth_failed"
    assert sim.stats()["by_status"] == {"200": 2}  # the refused request never went upstream


def test_no_key_anywhere_and_an_upstream_that_wants_one_is_a_401_naming_the_fix(
    sim: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GENGUARD_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    sim.configure(api_keys=("sk-wanted",))
    with Proxy(upstream=sim.base_url) as proxy:
        for stream in (False, True):
            body = {"model": MODEL, "messages": MSG, "stream": stream}
            reply = httpx.post(proxy.base_url + "/chat/completions", json=body)
            assert reply.status_code == 401
            assert "API key" in reply.json()["error"]["message"]
            assert reply.headers["x-should-retry"] == "false"


def test_the_status_of_an_answer_the_proxy_writes_itself() -> None:
    # A broken 2xx is the upstream's failure (502); a well-formed unusable one, under strict, is 422.
    assert error_status(Outcome.failure("incomplete_stream", status=200)) == 502
    assert error_status(Outcome.failure("truncated", status=200)) == 422
    assert error_status(Outcome.failure("timeout")) == 504


def test_a_fallback_model_answers_and_the_headers_name_it(sim: Simulator) -> None:
    # The first model's window is too small for the prompt; the policy falls back on that code here.
    sim.configure(context_window_for={"small-model": 3})
    policy = RetryPolicy(fallback_on=frozenset({"context_length_exceeded"}))
    with Proxy(upstream=sim.base_url, api_keys=(KEY,), fallbacks=("gpt-4o",), retry=policy) as proxy:
        raw = sdk(proxy).chat.completions.with_raw_response.create(model="small-model", messages=MSG)
    assert raw.parse().model == "gpt-4o"
    assert raw.headers["x-genguard-model"] == "gpt-4o"
    assert raw.headers["x-genguard-attempts"] == "2"
    assert len(raw.headers["x-genguard-request-ids"].split(",")) == 2


def test_keys_rotate_on_auth_failure_and_never_show(sim: Simulator, caplog: pytest.LogCaptureFixture) -> None:
    first, second = "sk-proxy-first-key-aaaaaaaaaaaa", "sk-proxy-second-key-bbbbbbbbbbb"
    sim.configure(api_keys=(second,))
    caplog.set_level("DEBUG")
    with Proxy(upstream=sim.base_url, api_keys=(first, second)) as proxy:
        raw = sdk(proxy).chat.completions.with_raw_response.create(model=MODEL, messages=MSG)
        models = httpx.get(proxy.base_url + "/models")
    assert raw.headers["x-genguard-code"] == "ok"
    assert raw.headers["x-genguard-attempts"] == "2"  # auth_failed on the first key, then the second
    assert models.status_code == 200  # forwarded paths use the key chat calls found working
    seen = raw.http_response.text + repr(list(raw.headers.items())) + models.text + caplog.text
    for key in (first, second):
        assert key not in seen
        assert key[9:] not in seen


def test_a_200_that_is_no_completion_is_the_proxys_502_the_sdk_raises(sim: Simulator, proxy: Proxy) -> None:
    # An HTML page as a 200 (a login portal, a misrouted load balancer): passed on, no SDK could read it.
    sim.configure(scenario="invalid_response")
    with pytest.raises(openai.APIStatusError) as info:
        sdk(proxy, max_retries=0).chat.completions.create(model=MODEL, messages=MSG)
    assert info.value.status_code == 502
    assert info.value.code == "invalid_response"
    assert info.value.response.headers["x-should-retry"] == "false"
    body: Any = info.value.body
    assert "<html" in body["genguard"]["original"].lower()  # the page, for debugging


def test_a_key_the_provider_quotes_in_its_error_is_masked() -> None:
    from genguard.proxy._outcome_http import mask_keys

    body = b'{"error": {"message": "Incorrect API key provided: sk-proxy-upstream-key-0123456789."}}'
    assert (
        mask_keys(body, (KEY, "sk-other"), 401)
        == b'{"error": {"message": "Incorrect API key provided: ***."}}'
    )
    assert mask_keys(b"no key here", (KEY,), 401) == b"no key here"


@pytest.mark.parametrize("key", ["none", "content", "EMPTY"])
def test_a_dummy_upstream_key_leaves_answers_as_sent(sim: Simulator, key: str) -> None:
    # Local servers take any key; their guides use none or EMPTY. Masking those would rewrite the answers.
    reply = "I have none of them, and the content is fine"
    sim.configure(reply=reply)
    with Proxy(upstream=sim.base_url, api_keys=(key,)) as proxy:
        completion = sdk(proxy).chat.completions.create(model=MODEL, messages=MSG)
        chunks = list(sdk(proxy).chat.completions.create(model=MODEL, messages=MSG, stream=True))
    assert completion.choices[0].message.content == reply
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == reply
    # The error body of a refused key is masked only for keys long enough to be one.
    from genguard.proxy._outcome_http import mask_keys

    assert mask_keys(b'{"error": "none of it"}', (key,), 401) == b'{"error": "none of it"}'
