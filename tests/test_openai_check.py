"""genguard.check on what an application on the official openai SDK already holds, made by the SDK itself over
real HTTP against the simulator: completions, streams and their chunks, images, videos, the SDK's exceptions,
raw responses and dicts; and a clear TypeError for anything else."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx2
import openai
import pytest

import genguard
from genguard.sim import Simulator

KEY = "sk-check-test-key-abcdef"


def ask(text: str) -> Any:
    return [{"role": "user", "content": text}]


def scenario(name: str) -> dict[str, str]:
    return {"x-genguard-scenario": name}


@pytest.fixture
def sdk(sim: Simulator) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=sim.base_url, api_key=KEY, max_retries=0, timeout=5.0) as c:
        yield c


@pytest.mark.timeout(30)
@pytest.mark.parametrize("name", ["ok", "content_filtered", "truncated", "empty_output"])
def test_a_chat_completion_the_sdk_returned_as_a_success(sdk: openai.OpenAI, name: str) -> None:
    completion = sdk.chat.completions.create(
        model="gpt-4o-mini", messages=ask(name), extra_headers=scenario(name)
    )
    outcome = genguard.check(completion)
    assert outcome.code == (None if name == "ok" else name)
    assert outcome.ok is (name == "ok")
    assert (outcome.text or "") == (completion.choices[0].message.content or "")
    assert outcome.usage is not None
    assert outcome.usage.total_tokens == completion.usage.total_tokens  # type: ignore[union-attr]
    # The same object through classify_http was "invalid_response": check reads it as the body it was.
    assert genguard.check(completion.model_dump()).code == outcome.code


@pytest.mark.timeout(30)
def test_tool_calls_are_an_ok_outcome(sdk: openai.OpenAI) -> None:
    tool: Any = {
        "type": "function",
        "function": {"name": "f", "parameters": {"type": "object", "properties": {}}},
    }
    completion = sdk.chat.completions.create(model="gpt-4o-mini", messages=ask("tools"), tools=[tool])
    outcome = genguard.check(completion)
    assert outcome.ok
    assert outcome.finish_reason == "tool_calls"
    assert [c.name for c in outcome.tool_calls or ()] == ["f"]


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    ("name", "code"),
    [("ok", None), ("incomplete_stream", "incomplete_stream"), ("truncated", "truncated"),
     ("content_filtered", "content_filtered")],
)  # fmt: skip
def test_the_chunks_a_stream_yielded(sdk: openai.OpenAI, name: str, code: str | None) -> None:
    stream = sdk.chat.completions.create(
        model="gpt-4o-mini", messages=ask(name), stream=True, extra_headers=scenario(name)
    )
    chunks = list(stream)  # the SDK ends every one of these quietly
    outcome = genguard.check(chunks)
    assert outcome.code == code
    assert outcome.text == "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert outcome.text
    # As dicts too (a log of the chunks, say).
    assert genguard.check([c.model_dump() for c in chunks]).code == code


@pytest.mark.timeout(30)
def test_an_unread_stream_is_read_and_a_finished_one_says_what_to_do(sdk: openai.OpenAI) -> None:
    unread = sdk.chat.completions.create(
        model="gpt-4o-mini", messages=ask("cut"), stream=True, extra_headers=scenario("incomplete_stream")
    )
    outcome = genguard.check(unread)
    assert outcome.code == "incomplete_stream"
    assert outcome.text
    finished = sdk.chat.completions.create(model="gpt-4o-mini", messages=ask("whole"), stream=True)
    list(finished)
    with pytest.raises(ValueError, match=r"already read.*genguard\.check\(chunks\)"):
        genguard.check(finished)


@pytest.mark.timeout(30)
def test_a_finished_stream_of_a_wrapped_client(sim: Simulator) -> None:
    with openai.OpenAI(base_url=sim.base_url, api_key=KEY) as sdk:
        client = genguard.wrap(sdk)
        stream = client.chat.completions.create(model="gpt-4o-mini", messages=ask("wrapped"), stream=True)
        text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        unread = client.chat.completions.create(
            model="gpt-4o-mini", messages=ask("unread"), stream=True, extra_headers=scenario("rate_limited:1")
        )
        read_here = genguard.check(unread)
    outcome = genguard.check(stream)
    assert outcome.ok
    assert outcome.text == text
    assert outcome.attempts == 1
    assert read_here.ok
    assert [a.code for a in read_here.history] == ["rate_limited", None]


@pytest.mark.timeout(30)
def test_an_error_event_the_sdk_raised_from_a_stream(sdk: openai.OpenAI) -> None:
    stream = sdk.chat.completions.create(
        model="gpt-4o-mini", messages=ask("err"), stream=True, extra_headers=scenario("stream_error")
    )
    chunks: list[Any] = []
    with pytest.raises(openai.APIError) as caught:
        chunks.extend(stream)
    assert genguard.check(caught.value).code == "stream_error"
    # Reading the stream through check keeps the text that came before the error.
    again = sdk.chat.completions.create(
        model="gpt-4o-mini", messages=ask("err"), stream=True, extra_headers=scenario("stream_error")
    )
    outcome = genguard.check(again)
    assert outcome.code == "stream_error"
    assert outcome.text


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    ("name", "error", "code"),
    [
        ("rate_limited", openai.RateLimitError, "rate_limited"),
        ("quota_exceeded", openai.RateLimitError, "quota_exceeded"),
        ("auth_failed", openai.AuthenticationError, "auth_failed"),
        ("context_length_exceeded", openai.BadRequestError, "context_length_exceeded"),
        ("server_error", openai.InternalServerError, "server_error"),
        ("bad_gateway", openai.InternalServerError, "bad_gateway"),
    ],
)
def test_the_sdks_status_errors_are_read_from_their_response(
    sdk: openai.OpenAI, name: str, error: type[Exception], code: str
) -> None:
    with pytest.raises(error) as caught:
        sdk.chat.completions.create(model="gpt-4o-mini", messages=ask(name), extra_headers=scenario(name))
    outcome = genguard.check(caught.value)
    assert outcome.code == code
    assert outcome.status == caught.value.status_code  # type: ignore[attr-defined]
    assert KEY not in str(outcome.to_dict())
    if name == "rate_limited":
        assert outcome.retry_after_s is not None
        assert outcome.retry_after_s > 0
    # The same answer through the one transport boundary (it raised TypeError on SDK exceptions).
    assert genguard.classify_exception(caught.value).code == code


@pytest.mark.timeout(30)
def test_connection_and_timeout_errors_are_transport_failures(sim: Simulator, sdk: openai.OpenAI) -> None:
    with pytest.raises(openai.APIConnectionError) as dropped:
        sdk.chat.completions.create(
            model="gpt-4o-mini", messages=ask("drop"), extra_headers=scenario("connection_error")
        )
    outcome = genguard.check(dropped.value)
    assert outcome.code == "connection_error"
    assert outcome.retryable
    assert "127.0.0.1" in (outcome.message or "")
    with pytest.raises(openai.APITimeoutError) as slow:
        sdk.with_options(timeout=0.3).chat.completions.create(
            model="gpt-4o-mini", messages=ask("stall"), extra_headers=scenario("timeout")
        )
    assert genguard.check(slow.value).code == "timeout"
    # Nothing listens there: refused.
    nowhere = openai.OpenAI(base_url="http://127.0.0.1:9/v1", api_key=KEY, max_retries=0)
    with nowhere, pytest.raises(openai.APIConnectionError) as refused:
        nowhere.models.list()
    assert genguard.check(refused.value).code == "connection_error"
    # An SDK exception made by hand, with no response behind it.
    request = httpx2.Request("POST", "http://127.0.0.1:9/v1/chat/completions")
    assert genguard.check(openai.APITimeoutError(request=request)).code == "timeout"


@pytest.mark.timeout(30)
def test_images_responses(sdk: openai.OpenAI) -> None:
    ok = sdk.images.generate(model="gpt-image-1", prompt="a cube")
    outcome = genguard.check(ok)
    assert outcome.ok
    assert outcome.endpoint == "image"
    filtered = sdk.images.generate(
        model="gpt-image-1", prompt="x", extra_headers=scenario("content_filtered")
    )
    assert filtered.data == [] or filtered.data is None
    assert genguard.check(filtered).code == "content_filtered"


@pytest.mark.timeout(30)
@pytest.mark.filterwarnings("ignore:The Sora API:DeprecationWarning")
def test_video_objects(clocked_sim: Simulator, fake_clock: Any) -> None:
    with openai.OpenAI(base_url=clocked_sim.base_url, api_key=KEY, max_retries=0) as sdk:
        queued = sdk.videos.create(model="sora-2", prompt="a cat")
        failing = sdk.videos.create(
            model="sora-2", prompt="a dog", extra_headers=scenario("content_filtered")
        )
        first = genguard.check(queued)
        assert first.ok
        assert first.extra["task_status"] in ("queued", "running")
        fake_clock.advance(60)
        done = sdk.videos.retrieve(queued.id)
        failed = sdk.videos.retrieve(failing.id)
    assert done.status == "completed"
    assert genguard.check(done).ok
    assert failed.status == "failed"
    outcome = genguard.check(failed)
    assert outcome.code == "content_filtered"
    assert outcome.endpoint == "video"


@pytest.mark.timeout(30)
def test_raw_responses_and_embeddings(sdk: openai.OpenAI) -> None:
    raw = sdk.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=ask("raw"), extra_headers=scenario("truncated")
    )
    outcome = genguard.check(raw)
    assert outcome.code == "truncated"
    assert outcome.request_id == raw.headers.get("x-request-id")
    assert genguard.check(raw.http_response).code == "truncated"
    embedding = sdk.embeddings.create(model="text-embedding-3-small", input="hi")
    assert genguard.check(embedding).ok


def test_dicts_and_outcomes() -> None:
    assert genguard.check(
        {"choices": [{"message": {"content": "x"}, "finish_reason": "content_filter"}]}
    ).code == ("content_filtered")
    assert genguard.check({"created": 1, "data": []}).code == "content_filtered"
    assert genguard.check({"id": "v", "object": "video", "status": "failed"}).code == "generation_failed"
    assert (
        genguard.check({"error": {"code": "rate_limit_exceeded", "message": "slow"}}).code == "rate_limited"
    )
    outcome = genguard.Outcome.failure("timeout")
    assert genguard.check(outcome) is outcome


@pytest.mark.parametrize(
    ("thing", "named"),
    [
        (42, "builtins.int"),
        (object(), "builtins.object"),
        (ValueError("x"), "ValueError"),
        ({1, 2}, "builtins.set"),
    ],
)
def test_something_it_cannot_read_is_a_type_error_naming_it(thing: object, named: str) -> None:
    with pytest.raises(TypeError, match=named):
        genguard.check(thing)


def test_text_is_pointed_to_the_readers_of_bodies() -> None:
    with pytest.raises(TypeError, match=r"classify_http.*read_chat_stream"):
        genguard.check('{"choices": []}')
    with pytest.raises(TypeError, match="bytes"):
        genguard.check(b"data: {}")
