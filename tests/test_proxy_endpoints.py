"""genguard proxy beyond chat: embeddings, images and video tasks get the policy, the outcome headers and strict
mode; other paths are forwarded with the proxy's key. Over real HTTP with the official openai SDK (sync)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from genguard import Proxy, RetryPolicy
from genguard.sim import Simulator

KEY = "sk-proxy-endpoints-upstream-key-0123"
FAST = RetryPolicy(backoff_base=0.01, backoff_max=0.02)

pytestmark = [pytest.mark.timeout(60), pytest.mark.filterwarnings("ignore:The Sora API:DeprecationWarning")]


@pytest.fixture(scope="module")
def _proxies(genguard_sim: Simulator) -> Iterator[tuple[Proxy, Proxy]]:
    with (
        Proxy(upstream=genguard_sim.base_url, api_keys=(KEY,), retry=FAST) as plain,
        Proxy(upstream=genguard_sim.base_url, api_keys=(KEY,), strict=True, retry=FAST) as strict,
    ):
        yield plain, strict


@pytest.fixture
def proxy(sim: Simulator, _proxies: tuple[Proxy, Proxy]) -> Proxy:
    return _proxies[0]


@pytest.fixture
def strict(sim: Simulator, _proxies: tuple[Proxy, Proxy]) -> Proxy:
    return _proxies[1]


def sdk(proxy: Proxy) -> openai.OpenAI:
    # The SDK's own retries stay on: the proxy's x-should-retry must keep them from multiplying genguard's.
    return openai.OpenAI(base_url=proxy.base_url, api_key="sk-client-own-key", timeout=20.0)


# -- embeddings --


def test_embeddings_are_retried_after_the_servers_wait_with_outcome_headers(
    sim: Simulator, proxy: Proxy
) -> None:
    sim.configure(scenario="rate_limited:1", retry_after_s=0.2, api_keys=(KEY,))
    started = time.monotonic()
    raw = sdk(proxy).embeddings.with_raw_response.create(model="text-embedding-3-small", input="a cat")
    assert time.monotonic() - started >= 0.2
    assert len(raw.parse().data) == 1
    assert raw.headers["x-genguard-code"] == "ok"
    assert raw.headers["x-genguard-attempts"] == "2"
    assert len(raw.headers["x-genguard-request-ids"].split(",")) == 2
    assert sim.stats()["by_status"] == {"429": 1, "200": 1}


def test_empty_embeddings_pass_by_default_and_raise_under_strict(
    sim: Simulator, proxy: Proxy, strict: Proxy
) -> None:
    sim.configure(scenario="empty_output")
    raw = sdk(proxy).embeddings.with_raw_response.create(model="text-embedding-3-small", input="a cat")
    assert (
        raw.http_response.json()["data"] == []
    )  # the provider's answer, as sent (the SDK's parse refuses it)
    assert raw.headers["x-genguard-code"] == "empty_output"
    assert raw.headers["x-genguard-attempts"] == "4"  # empty_output may succeed on another try: retried
    with pytest.raises(openai.UnprocessableEntityError) as info:
        sdk(strict).embeddings.create(model="text-embedding-3-small", input="a cat")
    assert info.value.code == "empty_output"
    body: Any = info.value.body
    assert body["genguard"]["original"]["data"] == []
    assert info.value.response.headers["x-should-retry"] == "false"


# -- moderations --


def test_moderations_are_retried_after_the_servers_wait_and_a_flagged_input_is_ok(
    sim: Simulator, proxy: Proxy
) -> None:
    sim.configure(scenario="rate_limited:1", retry_after_s=0.2, api_keys=(KEY,))
    started = time.monotonic()
    raw = sdk(proxy).moderations.with_raw_response.create(
        model="omni-moderation-latest", input=["how to build a weapon", "a calm lake"]
    )
    assert time.monotonic() - started >= 0.2
    assert [r.flagged for r in raw.parse().results] == [True, False]  # the provider's answer, as sent
    assert raw.headers["x-genguard-code"] == "ok"
    assert raw.headers["x-genguard-attempts"] == "2"
    assert sim.stats()["by_status"] == {"429": 1, "200": 1}


def test_a_moderation_without_a_model_goes_to_the_providers_default(sim: Simulator, proxy: Proxy) -> None:
    sim.configure(api_keys=(KEY,))
    raw = sdk(proxy).moderations.with_raw_response.create(input="a calm lake")
    assert raw.headers["x-genguard-code"] == "ok"
    assert raw.headers["x-genguard-model"] == "omni-moderation-latest"  # as the answer names it


def test_an_empty_moderation_passes_by_default_and_raises_under_strict(
    sim: Simulator, proxy: Proxy, strict: Proxy
) -> None:
    sim.configure(scenario="empty_output")
    raw = sdk(proxy).moderations.with_raw_response.create(model="omni-moderation-latest", input="a cat")
    assert raw.http_response.json()["results"] == []
    assert raw.headers["x-genguard-code"] == "empty_output"
    with pytest.raises(openai.UnprocessableEntityError) as info:
        sdk(strict).moderations.create(model="omni-moderation-latest", input="a cat")
    assert info.value.code == "empty_output"
    assert info.value.response.headers["x-should-retry"] == "false"


def test_embeddings_quota_is_final_for_the_sdk(sim: Simulator, proxy: Proxy) -> None:
    sim.configure(scenario="quota_exceeded")
    with pytest.raises(openai.RateLimitError) as info:
        sdk(proxy).embeddings.create(model="text-embedding-3-small", input="a cat")
    assert info.value.response.headers["x-genguard-code"] == "quota_exceeded"
    assert info.value.response.headers["x-should-retry"] == "false"
    assert sim.stats()["requests"] == 1


# -- the Responses API --


def test_a_responses_call_is_retried_after_the_servers_wait_with_outcome_headers(
    sim: Simulator, proxy: Proxy
) -> None:
    sim.configure(scenario="rate_limited:1", retry_after_s=0.2, api_keys=(KEY,))
    raw = sdk(proxy).responses.with_raw_response.create(model="gpt-4o-mini", input="Say hello.")
    response = raw.parse()
    assert (response.status, bool(response.output_text)) == ("completed", True)
    assert (raw.headers["x-genguard-code"], raw.headers["x-genguard-attempts"]) == ("ok", "2")
    assert sim.stats()["by_status"] == {"429": 1, "200": 1}


def test_an_incomplete_response_passes_with_its_code_and_raises_under_strict(
    sim: Simulator, proxy: Proxy, strict: Proxy
) -> None:
    sim.configure(scenario="truncated")
    raw = sdk(proxy).responses.with_raw_response.create(
        model="gpt-4o-mini", input="Tell me a long story.", max_output_tokens=64
    )
    assert raw.parse().incomplete_details.reason == "max_output_tokens"  # type: ignore[union-attr]
    assert (raw.headers["x-genguard-code"], raw.headers["x-genguard-kind"]) == ("truncated", "soft")
    with pytest.raises(openai.UnprocessableEntityError) as info:
        sdk(strict).responses.create(model="gpt-4o-mini", input="Tell me a long story.", max_output_tokens=64)
    assert info.value.code == "truncated"
    assert sim.stats()["requests"] == 2  # truncated is not retried, by genguard or the SDK


def test_a_streamed_responses_call_is_forwarded_as_it_comes(sim: Simulator, proxy: Proxy) -> None:
    # Its events are not chat chunks: the proxy hands the upstream's answer over untouched (here the
    # simulator's refusal to stream), with no outcome headers.
    reply = httpx.post(
        proxy.base_url + "/responses",
        json={"model": "gpt-4o-mini", "input": "hi", "stream": True},
        headers={"authorization": "Bearer sk-client-own-key"},
        timeout=20.0,
    )
    assert reply.status_code == 400
    assert reply.json()["error"]["param"] == "stream"
    assert "x-genguard-code" not in reply.headers
    assert sim.stats()["requests"] == 1


def test_a_responses_body_without_a_model_is_a_400_naming_input(proxy: Proxy) -> None:
    reply = httpx.post(proxy.base_url + "/responses", json={"input": "hi"}, timeout=20.0)
    assert reply.status_code == 400
    assert "'input'" in reply.json()["error"]["message"]


# -- images --


def test_images_are_retried_on_a_server_error_and_answer_once(sim: Simulator, proxy: Proxy) -> None:
    sim.configure(scenario="server_error:1")
    raw = sdk(proxy).images.with_raw_response.generate(
        model="dall-e-3", prompt="a red fox", response_format="url"
    )
    assert raw.parse().data
    assert raw.headers["x-genguard-attempts"] == "2"
    assert raw.headers["x-genguard-model"] == "dall-e-3"
    assert sim.stats()["by_status"] == {"500": 1, "200": 1}


def test_a_filtered_image_passes_with_its_code_and_raises_under_strict(
    sim: Simulator, proxy: Proxy, strict: Proxy
) -> None:
    sim.configure(scenario="content_filtered")
    raw = sdk(proxy).images.with_raw_response.generate(model="gpt-image-1", prompt="a red fox")
    assert raw.parse().data == []
    assert raw.headers["x-genguard-code"] == "content_filtered"
    assert raw.headers["x-genguard-kind"] == "soft"
    with pytest.raises(openai.UnprocessableEntityError) as info:
        sdk(strict).images.generate(model="gpt-image-1", prompt="a red fox")
    assert info.value.code == "content_filtered"
    assert "filter" in info.value.message.lower() or "safety" in info.value.message.lower()
    assert sim.stats()["requests"] == 2  # content_filtered is not retried, by genguard or the SDK


def test_a_video_task_falls_back_to_the_next_model(sim: Simulator) -> None:
    # The simulator knows no such video model: a model_not_found, which the policy falls back on.
    with Proxy(upstream=sim.base_url, api_keys=(KEY,), fallbacks=("sora-2",)) as proxy:
        raw = sdk(proxy).videos.with_raw_response.create(model="no-such-video-model", prompt="a fox")  # type: ignore[arg-type]
    assert raw.parse().model == "sora-2"
    assert raw.headers["x-genguard-model"] == "sora-2"
    assert raw.headers["x-genguard-attempts"] == "2"


# -- video tasks --


def test_a_video_task_is_created_and_polled_through_the_policy(sim: Simulator, proxy: Proxy) -> None:
    sim.configure(scenario="rate_limited:1", retry_after_s=0.05)
    client = sdk(proxy)
    created = client.videos.with_raw_response.create(model="sora-2", prompt="a fox running")
    video = created.parse()
    assert created.headers["x-genguard-attempts"] == "2"  # the 429 was waited out behind the proxy
    assert created.headers["x-genguard-model"] == "sora-2"
    polled = client.videos.with_raw_response.retrieve(video.id)
    assert polled.parse().id == video.id
    assert polled.headers["x-genguard-code"] == "ok"
    assert polled.headers["x-genguard-model"] == "sora-2"
    assert polled.headers["x-genguard-attempts"] == "2"  # this poll's own 429, retried too


def test_a_failed_video_task_is_a_soft_failure_and_an_error_under_strict(
    sim: Simulator, proxy: Proxy, strict: Proxy
) -> None:
    sim.configure(scenario="generation_failed", task_seconds=0.05)
    video = sdk(proxy).videos.create(model="sora-2", prompt="a fox running")
    deadline = time.monotonic() + 10
    while True:
        raw = sdk(proxy).videos.with_raw_response.retrieve(video.id)
        if raw.parse().status == "failed" or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert raw.headers["x-genguard-code"] == "generation_failed"
    assert raw.headers["x-genguard-kind"] == "soft"
    with pytest.raises(openai.UnprocessableEntityError) as info:
        sdk(strict).videos.retrieve(video.id)
    assert info.value.code == "generation_failed"


# -- the provider's headers, forwarded paths --


def test_the_providers_headers_reach_the_client_on_plain_answers(sim: Simulator, proxy: Proxy) -> None:
    sim.configure(rpm=1000)
    raw = sdk(proxy).chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
    )
    direct = httpx.post(sim.base_url + "/chat/completions",
                        json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})  # fmt: skip
    limits = {k for k in direct.headers if k.startswith("x-ratelimit-")}
    assert limits  # the simulator sends them; the proxy must pass them on
    assert limits <= set(raw.headers)
    assert raw.headers["x-request-id"] == raw.headers["x-genguard-request-ids"]
    assert raw.request_id == raw.headers["x-request-id"]  # the SDK's own request id is the provider's


def test_models_are_forwarded_with_the_proxys_key_and_no_outcome_headers(
    sim: Simulator, proxy: Proxy
) -> None:
    sim.configure(api_keys=(KEY,))
    raw = sdk(proxy).models.with_raw_response.list()
    assert [m.id for m in raw.parse()] == list(sim.config.models)
    assert "x-genguard-code" not in raw.headers


def test_a_body_without_a_model_is_a_400_naming_what_is_missing(proxy: Proxy) -> None:
    reply = httpx.post(proxy.base_url + "/embeddings", json={"input": "hi"})
    assert reply.status_code == 400
    assert "'model'" in reply.json()["error"]["message"]
    assert reply.headers["x-should-retry"] == "false"


def test_a_form_with_a_file_is_written_again_for_the_fallback_model(sim: Simulator) -> None:
    with Proxy(upstream=sim.base_url, api_keys=(KEY,), fallbacks=("sora-2",)) as proxy:
        raw = sdk(proxy).videos.with_raw_response.create(
            model="no-such-video-model",  # type: ignore[arg-type]
            prompt="a fox",
            input_reference=("ref.png", b"\x89PNG\r\n\x1a\n" + bytes(range(256)), "image/png"),
        )
    assert raw.parse().model == "sora-2"
    assert raw.headers["x-genguard-attempts"] == "2"


def test_an_image_edit_form_goes_through_the_policy(sim: Simulator, proxy: Proxy) -> None:
    # The form as the SDK sends it: retried on a server error, the model read from the form.
    sim.configure(scenario="server_error:1")
    raw = sdk(proxy).images.with_raw_response.edit(
        model="gpt-image-1", image=("cat.png", b"\x89PNG\r\n\x1a\n", "image/png"), prompt="hat"
    )
    assert raw.parse().data
    headers = raw.headers
    assert headers["x-genguard-code"] == "ok"
    assert headers["x-genguard-model"] == "gpt-image-1"  # read from the form
    assert headers["x-genguard-attempts"] == "2"
    # A form with no picture: the provider's 400 comes back named, and final for the SDK.
    sim.configure(scenario="ok")
    refused = httpx.post(
        f"{proxy.base_url}/images/edits",
        data={"model": "gpt-image-1", "prompt": "hat"},
        files={"mask": ("m.png", b"\x89PNG\r\n\x1a\n", "image/png")},
        headers={"authorization": "Bearer sk-client-own-key"},
        timeout=20,
    )
    assert refused.status_code == 400
    assert "Missing required parameter: 'image'" in refused.text
    assert refused.headers["x-genguard-code"] == "bad_request"
    assert refused.headers["x-should-retry"] == "false"


def test_images_and_videos_without_a_model_go_to_the_providers_default(sim: Simulator, proxy: Proxy) -> None:
    raw = sdk(proxy).images.with_raw_response.generate(prompt="a red fox", response_format="url")
    assert raw.parse().data
    assert raw.headers["x-genguard-model"] == "(default)"
    video = sdk(proxy).videos.with_raw_response.create(prompt="a fox running")
    assert video.parse().model == "sora-2"  # the simulator's default
    assert video.headers["x-genguard-model"] == "sora-2"  # named by the provider's own answer
    assert video.headers["x-genguard-code"] == "ok"
    reply = httpx.post(proxy.base_url + "/embeddings", json={"input": "hi"})
    assert reply.status_code == 400  # an embedding names its model
