"""genguard.wrap over the official openai SDK, over real HTTP against the simulator: the SDK's own types on
success, genguard's failures (with the right code) for what the SDK lets through, plain and streamed, sync and
async; genguard's retries in place of the SDK's (the simulator counts one request per attempt), key rotation,
fallbacks, validators, and everything else on the client passing through."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx2
import openai
import orjson
import pytest
from openai.types import CreateEmbeddingResponse, ImagesResponse
from openai.types.chat import ChatCompletion

import genguard
from genguard import Attempt, RetryPolicy
from genguard.sim import Simulator

FAST = RetryPolicy(max_attempts=3, backoff_base=0.01, jitter=0.0)
KEY = "sk-wrap-test-key-123456"


def ask(text: str) -> Any:
    return [{"role": "user", "content": text}]


def scenario(name: str, **more: str) -> dict[str, str]:
    return {"x-genguard-scenario": name, **more}


def requests(sim: Simulator) -> int:
    return int(sim.stats()["requests"])


def read(stream: Any, seen: list[str] | None = None) -> None:
    """Iterate an SDK stream to its end as an application does, keeping the text it shows."""
    for chunk in stream:
        if seen is not None and chunk.choices:
            seen.append(chunk.choices[0].delta.content or "")


async def aread(stream: Any, seen: list[str] | None = None) -> None:
    async for chunk in stream:
        if seen is not None and chunk.choices:
            seen.append(chunk.choices[0].delta.content or "")


@pytest.fixture
def sdk(sim: Simulator) -> Iterator[openai.OpenAI]:
    """The application's own client, as it was before genguard: the SDK's default retries left on."""
    with openai.OpenAI(base_url=sim.base_url, api_key=KEY, timeout=5.0) as c:
        yield c


@pytest.fixture
def client(sdk: openai.OpenAI) -> openai.OpenAI:
    return genguard.wrap(sdk, retry=FAST)


# -- success: the SDK's own types ---------------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_a_plain_call_returns_the_sdks_chat_completion_in_one_request(
    sim: Simulator, client: openai.OpenAI, sdk: openai.OpenAI
) -> None:
    r = client.chat.completions.create(model="gpt-4o-mini", messages=ask("Say hi"), temperature=0)
    assert type(r) is ChatCompletion
    assert r.choices[0].finish_reason == "stop"
    assert r.choices[0].message.content
    assert requests(sim) == 1
    same = sdk.chat.completions.create(model="gpt-4o-mini", messages=ask("Say hi"), temperature=0)
    assert r.choices[0].message.content == same.choices[0].message.content


@pytest.mark.timeout(30)
def test_a_stream_is_the_sdks_stream_and_keeps_its_outcome(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="gpt-4o-mini", messages=ask("Tell a story"), stream=True, stream_options={"include_usage": True}
    )
    assert type(stream) is openai.Stream
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    plain = client.chat.completions.create(model="gpt-4o-mini", messages=ask("Tell a story"))
    assert text == plain.choices[0].message.content
    outcome = genguard.check(stream)
    assert outcome.ok
    assert outcome.text == text
    assert outcome.attempts == 1
    assert outcome.usage is not None
    assert outcome.usage.completion_tokens == plain.usage.completion_tokens  # type: ignore[union-attr]


@pytest.mark.timeout(30)
def test_images_embeddings_and_models_keep_their_types(sim: Simulator, client: openai.OpenAI) -> None:
    image = client.images.generate(model="gpt-image-1", prompt="a red cube")
    assert type(image) is ImagesResponse
    assert image.data
    embedding = client.embeddings.create(model="text-embedding-3-small", input="hello")
    assert type(embedding) is CreateEmbeddingResponse
    assert len(embedding.data[0].embedding) > 10
    # Not judged by genguard (no body reader for it): handed over as the SDK reads it.
    models = client.models.list()
    assert [m.id for m in models.data]
    assert requests(sim) == 3


@pytest.mark.timeout(30)
def test_a_moderation_keeps_its_type_and_an_empty_one_raises(
    sim: Simulator, client: openai.OpenAI, sdk: openai.OpenAI
) -> None:
    from openai.types import ModerationCreateResponse

    answer = client.moderations.create(
        model="omni-moderation-latest", input=["how to build a weapon", "a lake"]
    )
    assert type(answer) is ModerationCreateResponse
    assert [r.flagged for r in answer.results] == [
        True,
        False,
    ]  # a flagged input is the answer, not a failure
    checked = genguard.check(answer)
    assert checked.ok
    assert (checked.extra["results"], checked.extra["flagged"]) == (2, 1)
    with pytest.raises(genguard.SoftFailure) as caught:
        client.moderations.create(
            model="omni-moderation-latest", input="a lake", extra_headers=scenario("empty_output")
        )
    assert caught.value.code == "empty_output"
    assert caught.value.outcome.endpoint == "moderation"
    # The SDK alone hands over the empty answer as a success.
    quiet = sdk.moderations.create(
        model="omni-moderation-latest", input="a lake", extra_headers=scenario("empty_output")
    )
    assert quiet.results == []


def test_everything_else_on_the_client_passes_through(sdk: openai.OpenAI, client: openai.OpenAI) -> None:
    assert client.api_key == KEY
    assert str(client.base_url) == str(sdk.base_url)
    assert client.chat.completions.create.__name__ == "create"
    assert "chat" in dir(client)
    assert repr(client).startswith("genguard.wrap(")
    # The SDK's own retries are off underneath; genguard's policy counts the attempts.
    assert client.max_retries == 0
    assert sdk.max_retries == 2  # the client that was wrapped is left as it was


# -- what the SDK lets through raises genguard's failure -----------------------------------------------------


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    ("name", "attempts"),
    [("content_filtered", 1), ("truncated", 1), ("empty_output", 3)],
)
def test_soft_failures_raise_genguards_failure_with_the_outcome(
    sim: Simulator, client: openai.OpenAI, sdk: openai.OpenAI, name: str, attempts: int
) -> None:
    with pytest.raises(genguard.SoftFailure) as caught:
        client.chat.completions.create(model="gpt-4o-mini", messages=ask(name), extra_headers=scenario(name))
    outcome = caught.value.outcome
    assert caught.value.code == name
    assert outcome.attempts == attempts  # empty_output is worth retrying; the others are not
    assert requests(sim) == attempts
    assert [a.code for a in outcome.history] == [name] * attempts
    # The SDK alone returns the same answer as a success.
    quiet = sdk.chat.completions.create(model="gpt-4o-mini", messages=ask(name), extra_headers=scenario(name))
    assert type(quiet) is ChatCompletion


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("incomplete_stream", "incomplete_stream"),
        ("content_filtered", "content_filtered"),
        ("truncated", "truncated"),
        ("empty_output", "empty_output"),
    ],
)
def test_a_stream_raises_where_it_ends_without_a_good_finish(
    sim: Simulator, client: openai.OpenAI, sdk: openai.OpenAI, name: str, code: str
) -> None:
    stream = client.chat.completions.create(
        model="gpt-4o-mini", messages=ask(name), stream=True, extra_headers=scenario(name)
    )
    assert type(stream) is openai.Stream
    seen: list[str] = []
    with pytest.raises(genguard.SoftFailure) as caught:
        read(stream, seen)
    assert caught.value.code == code
    if name != "empty_output":
        assert "".join(seen), "the chunks before the end reached the caller"
        assert caught.value.outcome.text == "".join(seen)
    # A stream's text reached the caller: the attempt is final, never sent again.
    assert caught.value.outcome.attempts == 1
    assert requests(sim) == 1
    assert genguard.check(stream).code == code
    # The SDK alone ends this stream quietly.
    quiet = sdk.chat.completions.create(
        model="gpt-4o-mini", messages=ask(name), stream=True, extra_headers=scenario(name)
    )
    assert list(quiet)


@pytest.mark.timeout(30)
def test_a_stream_cut_by_the_connection_stays_the_sdks_error_and_check_reads_it(
    sim: Simulator, client: openai.OpenAI
) -> None:
    stream = client.chat.completions.create(
        model="gpt-4o-mini", messages=ask("cut"), stream=True, extra_headers=scenario("connection_error")
    )
    seen: list[str] = []
    with pytest.raises(openai.APIConnectionError) as caught:
        read(stream, seen)
    outcome = genguard.check(caught.value)
    assert outcome.code == "incomplete_stream"
    assert outcome.text == "".join(seen) != ""
    assert "connection" in (outcome.message or "")
    assert outcome.attempts == 1 == requests(sim)


@pytest.mark.timeout(30)
def test_an_error_event_in_a_stream_stays_the_sdks_exception_and_check_reads_it(
    client: openai.OpenAI,
) -> None:
    stream = client.chat.completions.create(
        model="gpt-4o-mini", messages=ask("err"), stream=True, extra_headers=scenario("stream_error")
    )
    with pytest.raises(openai.APIError) as caught:
        read(stream)
    outcome = genguard.check(caught.value)
    assert outcome.code == "stream_error"
    assert outcome.attempts == 1


@pytest.mark.timeout(30)
def test_a_stream_left_early_is_not_raised(sim: Simulator, client: openai.OpenAI) -> None:
    # Paced, so that the end has not arrived yet when the caller leaves after the first chunk.
    sim.configure(tokens_per_s=50)
    stream = client.chat.completions.create(
        model="gpt-4o-mini", messages=ask("Tell a long story"), stream=True
    )
    with stream:
        first = next(iter(stream))
    assert first.choices
    outcome = genguard.check(stream)
    assert outcome.code == "incomplete_stream"
    assert "stopped reading" in (outcome.message or "")


@pytest.mark.timeout(30)
def test_a_200_that_is_not_a_response_raises_hard_failure(sim: Simulator, client: openai.OpenAI) -> None:
    with pytest.raises(genguard.HardFailure) as caught:
        client.chat.completions.create(
            model="gpt-4o-mini", messages=ask("html"), extra_headers=scenario("invalid_response")
        )
    assert caught.value.code == "invalid_response"
    assert caught.value.outcome.attempts == 3 == requests(sim)


# -- genguard's retries, not the SDK's -----------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_rate_limited_then_ok_is_one_request_per_attempt(sim: Simulator, sdk: openai.OpenAI) -> None:
    attempts: list[Attempt] = []
    client = genguard.wrap(sdk, retry=FAST, hooks=[attempts.append])
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=ask("rate limited twice"), extra_headers=scenario("rate_limited:2")
    )
    completion = raw.parse()
    assert type(completion) is ChatCompletion
    outcome = genguard.check(raw)
    assert outcome.ok
    assert outcome.attempts == 3 == requests(sim)
    assert [a.code for a in attempts] == ["rate_limited", "rate_limited", None]
    assert sim.stats()["verdict"]["ok"], sim.stats()["verdict"]["problems"]


@pytest.mark.timeout(30)
def test_the_sdks_retries_never_multiply_genguards(sim: Simulator, sim_key_free: None) -> None:
    # The application asked its SDK client for 5 retries; wrapped, the policy's 2 attempts are all there is.
    with openai.OpenAI(base_url=sim.base_url, api_key=KEY, max_retries=5) as sdk:
        client = genguard.wrap(sdk, retry=RetryPolicy(max_attempts=2, backoff_base=0.01, jitter=0.0))
        with pytest.raises(openai.InternalServerError) as caught:
            client.chat.completions.create(
                model="gpt-4o-mini", messages=ask("always 500"), extra_headers=scenario("server_error")
            )
    outcome = genguard.check(caught.value)
    assert outcome.code == "server_error"
    assert outcome.attempts == 2 == requests(sim)


@pytest.fixture
def sim_key_free(sim: Simulator) -> None:
    """The simulator takes any key (its default): named so a test says it relies on that."""
    assert not sim.config.api_keys


@pytest.mark.timeout(30)
def test_quota_is_not_retried_though_the_sdk_alone_retries_it(
    sim: Simulator, client: openai.OpenAI, sdk: openai.OpenAI
) -> None:
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(
            model="gpt-4o-mini", messages=ask("no quota"), extra_headers=scenario("quota_exceeded")
        )
    outcome = genguard.check(caught.value)
    assert outcome.code == "quota_exceeded"
    assert outcome.attempts == 1 == requests(sim)
    with pytest.raises(openai.RateLimitError):
        sdk.with_options(max_retries=1).chat.completions.create(
            model="gpt-4o-mini", messages=ask("no quota"), extra_headers=scenario("quota_exceeded")
        )
    assert requests(sim) == 1 + 2  # the SDK sent it twice


@pytest.mark.timeout(30)
def test_a_dropped_connection_is_the_sdks_connection_error_after_genguards_retries(
    sim: Simulator, client: openai.OpenAI
) -> None:
    with pytest.raises(openai.APIConnectionError) as caught:
        client.chat.completions.create(
            model="gpt-4o-mini", messages=ask("drop"), extra_headers=scenario("connection_error")
        )
    outcome = genguard.check(caught.value)
    assert outcome.code == "connection_error"
    assert outcome.attempts == 3 == requests(sim)


@pytest.mark.timeout(30)
def test_with_options_stays_wrapped_and_max_retries_sets_genguards_attempts(
    sim: Simulator, client: openai.OpenAI
) -> None:
    copy = client.with_options(timeout=4.0, max_retries=1)
    assert copy.timeout == 4.0
    with pytest.raises(genguard.HardFailure) as caught:
        copy.chat.completions.create(
            model="gpt-4o-mini", messages=ask("copy"), extra_headers=scenario("invalid_response")
        )
    assert caught.value.outcome.attempts == 2 == requests(sim)


# -- keys, fallbacks, validators ---------------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_a_refused_key_rotates_to_the_next_and_stays_retired(sim: Simulator) -> None:
    good = "sk-good-key-abcdef123456"
    bad = "sk-bad-key-zyxwvu987654"
    sim.configure(api_keys=(good,))
    with openai.OpenAI(base_url=sim.base_url, api_key=bad) as sdk:
        client = genguard.wrap(sdk, api_key=[bad, good], retry=FAST)
        raw = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=ask("keys"))
        outcome = genguard.check(raw)
        assert outcome.ok
        assert [a.code for a in outcome.history] == ["auth_failed", None]
        again = genguard.check(
            client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=ask("k2"))
        )
        assert again.attempts == 1  # the refused key is skipped from now on
        assert requests(sim) == 3
        # No good key left: the SDK's own AuthenticationError, and no key in what genguard says.
        only_bad = genguard.wrap(sdk, api_key=[bad], retry=FAST)
        with pytest.raises(openai.AuthenticationError) as caught:
            only_bad.chat.completions.create(model="gpt-4o-mini", messages=ask("k3"))
    text = str(genguard.check(caught.value).to_dict())
    assert bad not in text
    assert good not in text


@pytest.mark.timeout(30)
def test_a_fallback_model_answers_when_the_first_is_unavailable(sim: Simulator) -> None:
    def by_model(request: httpx2.Request) -> None:
        if orjson.loads(request.content).get("model") == "big-model":
            request.headers["x-genguard-scenario"] = "unavailable"

    with (
        httpx2.Client(event_hooks={"request": [by_model]}) as http,
        openai.OpenAI(base_url=sim.base_url, api_key=KEY, http_client=http) as sdk,
    ):
        client = genguard.wrap(sdk, retry=FAST, fallbacks=["gpt-4o-mini"])
        raw = client.chat.completions.with_raw_response.create(model="big-model", messages=ask("fall back"))
        completion = raw.parse()
        outcome = genguard.check(raw)
        # Per call, no fallback: the SDK's own error for the 503, after genguard's retries.
        with pytest.raises(openai.InternalServerError):
            client.chat.completions.create(model="big-model", messages=ask("no fall back"), fallbacks=[])
    assert completion.model == "gpt-4o-mini"
    assert [a.model for a in outcome.history] == ["big-model"] * 3 + ["gpt-4o-mini"]
    assert outcome.extra["model"] == "gpt-4o-mini"
    assert requests(sim) == 4 + 3


@pytest.mark.timeout(30)
def test_validators_per_wrap_and_per_call_raise_silent_failure(sim: Simulator, sdk: openai.OpenAI) -> None:
    client = genguard.wrap(sdk, retry=FAST, labels=["positive", "negative"])
    with pytest.raises(genguard.SilentFailure) as caught:
        client.chat.completions.create(model="gpt-4o-mini", messages=ask("Loved it."))
    assert caught.value.code == "unexpected_label"
    assert caught.value.outcome.attempts == 1  # a silent failure is not sent again unchanged
    ok = client.chat.completions.create(
        model="gpt-4o-mini", messages=ask("Loved it."), extra_headers={"x-genguard-reply": "positive"}
    )
    assert ok.choices[0].message.content == "positive"
    # Per call: another check replaces the wrap's.
    with pytest.raises(genguard.SilentFailure) as json_caught:
        client.chat.completions.create(
            model="gpt-4o-mini",
            messages=ask("json please"),
            validate="json",
            extra_headers={"x-genguard-reply": "positive"},
        )
    assert json_caught.value.code == "invalid_json"
    # A streamed answer is checked where it ends.
    stream = client.chat.completions.create(model="gpt-4o-mini", messages=ask("Loved it."), stream=True)
    with pytest.raises(genguard.SilentFailure):
        read(stream)


@pytest.mark.timeout(30)
def test_a_reask_recovers_and_returns_the_good_answer(sim: Simulator, sdk: openai.OpenAI) -> None:
    client = genguard.wrap(sdk, retry=RetryPolicy(reask_on_silent=1, jitter=0.0))
    r = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=ask("Is 'Loved it.' positive or negative?"),
        labels=["positive", "negative"],
        extra_headers=scenario("unexpected_label:1", **{"x-genguard-reply": "positive"}),
    )
    assert r.choices[0].message.content == "positive"
    assert requests(sim) == 2


@pytest.mark.timeout(30)
def test_a_responses_call_is_judged_retried_and_reasked(sim: Simulator, sdk: openai.OpenAI) -> None:
    client = genguard.wrap(
        sdk, retry=RetryPolicy(max_attempts=3, backoff_base=0.01, jitter=0.0, reask_on_silent=1)
    )
    ok = client.responses.create(
        model="gpt-4o-mini", input="Say hello.", extra_headers=scenario("server_error:1")
    )
    assert type(ok).__name__ == "Response"
    assert (ok.status, bool(ok.output_text), requests(sim)) == ("completed", True, 2)
    # Cut short: the SDK returns it as a Response; wrapped, it raises with the outcome.
    with pytest.raises(genguard.SoftFailure) as caught:
        client.responses.create(
            model="gpt-4o-mini", input="A long story.", extra_headers=scenario("truncated")
        )
    assert (caught.value.code, caught.value.outcome.attempts) == ("truncated", 1)
    assert sdk.responses.create(
        model="gpt-4o-mini", input="A long story.", extra_headers=scenario("truncated")
    )
    # A label outside the set is re-asked with the rejected answer appended to the input, as items.
    before = requests(sim)
    r = client.responses.create(
        model="gpt-4o-mini",
        input="Is 'Loved it.' positive or negative?",
        labels=["positive", "negative"],
        extra_headers=scenario("unexpected_label:1", **{"x-genguard-reply": "positive"}),
    )
    assert (r.output_text, requests(sim) - before) == ("positive", 2)
    # A streamed Responses call is sent as it came and its events handed over unread (the simulator does not
    # stream this endpoint: its 400 is the SDK's own error).
    with pytest.raises(openai.BadRequestError):
        client.responses.create(model="gpt-4o-mini", input="hi", stream=True)


@pytest.mark.timeout(30)
@pytest.mark.filterwarnings("ignore:The Sora API:DeprecationWarning")
def test_images_filtered_raise_and_video_failures_raise_on_retrieve(
    clocked_sim: Simulator, fake_clock: Any
) -> None:
    with openai.OpenAI(base_url=clocked_sim.base_url, api_key=KEY) as sdk:
        client = genguard.wrap(sdk, retry=FAST)
        with pytest.raises(genguard.SoftFailure) as caught:
            client.images.generate(
                model="gpt-image-1", prompt="x", extra_headers=scenario("content_filtered")
            )
        assert caught.value.code == "content_filtered"
        assert caught.value.outcome.endpoint == "image"
        video = client.videos.create(
            model="sora-2", prompt="a cat", extra_headers=scenario("generation_failed")
        )
        assert type(video).__name__ == "Video"
        assert video.status in ("queued", "in_progress")
        fake_clock.advance(60)
        with pytest.raises(genguard.SoftFailure) as failed:
            client.videos.retrieve(video.id)
        assert failed.value.code == "generation_failed"
        assert failed.value.outcome.endpoint == "video"


def test_bad_input_is_refused_before_anything_is_sent(sim: Simulator, client: openai.OpenAI) -> None:
    with pytest.raises(TypeError, match=r"openai\.OpenAI or openai\.AsyncOpenAI.*got str"):
        genguard.wrap("not a client")
    with pytest.raises(TypeError, match="already wrapped"):
        genguard.wrap(client)
    with pytest.raises(TypeError, match="fallbacks must be a list"):
        genguard.wrap(openai.OpenAI(base_url=sim.base_url, api_key=KEY), fallbacks="gpt-4o-mini")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"retry must be a genguard\.RetryPolicy"):
        client.chat.completions.create(model="m", messages=ask("x"), retry={"max_attempts": 2})  # type: ignore[call-overload]
    assert requests(sim) == 0


def test_the_wrapped_client_closes_as_the_sdks_does(sim: Simulator) -> None:
    with genguard.wrap(openai.OpenAI(base_url=sim.base_url, api_key=KEY)) as client:
        assert client.chat.completions.create(model="gpt-4o-mini", messages=ask("close")).choices
    assert client.is_closed()


# -- AsyncOpenAI -----------------------------------------------------------------------------------------


@pytest.fixture
async def aclient(sim: Simulator) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(base_url=sim.base_url, api_key=KEY, timeout=5.0) as sdk:
        yield genguard.wrap(sdk, retry=FAST)


@pytest.mark.anyio
@pytest.mark.timeout(30)
async def test_async_plain_and_stream_keep_the_sdks_types(
    sim: Simulator, aclient: openai.AsyncOpenAI
) -> None:
    r = await aclient.chat.completions.create(model="gpt-4o-mini", messages=ask("async hi"))
    assert type(r) is ChatCompletion
    stream = await aclient.chat.completions.create(model="gpt-4o-mini", messages=ask("async hi"), stream=True)
    assert type(stream) is openai.AsyncStream
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == r.choices[0].message.content
    assert genguard.check(stream).ok
    assert requests(sim) == 2


@pytest.mark.anyio
@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    ("name", "attempts"), [("content_filtered", 1), ("truncated", 1), ("empty_output", 3)]
)
async def test_async_soft_failures_raise(
    sim: Simulator, aclient: openai.AsyncOpenAI, name: str, attempts: int
) -> None:
    with pytest.raises(genguard.SoftFailure) as caught:
        await aclient.chat.completions.create(
            model="gpt-4o-mini", messages=ask(name), extra_headers=scenario(name)
        )
    assert caught.value.code == name
    assert caught.value.outcome.attempts == attempts == requests(sim)


@pytest.mark.anyio
@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    ("name", "code"),
    [("incomplete_stream", "incomplete_stream"), ("content_filtered", "content_filtered"),
     ("truncated", "truncated")],
)  # fmt: skip
async def test_async_stream_raises_where_it_ends_badly(
    sim: Simulator, aclient: openai.AsyncOpenAI, name: str, code: str
) -> None:
    stream = await aclient.chat.completions.create(
        model="gpt-4o-mini", messages=ask(name), stream=True, extra_headers=scenario(name)
    )
    seen: list[str] = []
    with pytest.raises(genguard.SoftFailure) as caught:
        await aread(stream, seen)
    assert seen
    assert caught.value.code == code
    assert caught.value.outcome.attempts == 1 == requests(sim)


@pytest.mark.anyio
@pytest.mark.timeout(30)
async def test_async_retries_quota_rotation_and_validators(sim: Simulator) -> None:
    good = "sk-good-async-key-abcdef"
    bad = "sk-bad-async-key-ghijkl"
    sim.configure(api_keys=(good,))
    async with openai.AsyncOpenAI(base_url=sim.base_url, api_key=bad) as sdk:
        client = genguard.wrap(sdk, api_key=[bad, good], retry=FAST)
        raw = await client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=ask("async rl"), extra_headers=scenario("rate_limited:1")
        )
        assert type(raw.parse()) is ChatCompletion
        outcome = genguard.check(raw)
        assert [a.code for a in outcome.history] == ["auth_failed", "rate_limited", None]
        assert requests(sim) == 3
        with pytest.raises(openai.RateLimitError) as quota:
            await client.chat.completions.create(
                model="gpt-4o-mini", messages=ask("async quota"), extra_headers=scenario("quota_exceeded")
            )
        assert genguard.check(quota.value).attempts == 1
        assert requests(sim) == 4
        with pytest.raises(genguard.SilentFailure) as silent:
            await client.chat.completions.create(
                model="gpt-4o-mini", messages=ask("async label"), labels=["a", "b"]
            )
        assert silent.value.code == "unexpected_label"


# -- the SDK's other ways of calling ----------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_isinstance_holds_for_libraries_that_check_the_client(client: openai.OpenAI) -> None:
    from openai.resources.chat import Completions

    assert isinstance(client, openai.OpenAI)
    assert isinstance(client.chat.completions, Completions)


@pytest.mark.timeout(30)
def test_parse_and_the_stream_helper_are_guarded_too(client: openai.OpenAI) -> None:
    import pydantic

    class Pet(pydantic.BaseModel):
        name: str

    parsed = client.chat.completions.parse(model="gpt-4o-mini", messages=ask("a pet"), response_format=Pet)
    assert isinstance(parsed.choices[0].message.parsed, Pet)
    # parse() raises the SDK's own error for a cut answer, as without genguard; check reads it.
    with pytest.raises(openai.LengthFinishReasonError) as caught:
        client.chat.completions.parse(
            model="gpt-4o-mini",
            messages=ask("a pet"),
            response_format=Pet,
            extra_headers=scenario("truncated"),
        )
    assert genguard.check(caught.value).code == "truncated"
    with client.chat.completions.stream(model="gpt-4o-mini", messages=ask("helper")) as ok:
        assert ok.get_final_completion().choices[0].finish_reason == "stop"
    helper = client.chat.completions.stream(
        model="gpt-4o-mini", messages=ask("helper cut"), extra_headers=scenario("incomplete_stream")
    )
    with pytest.raises(genguard.SoftFailure) as cut, helper as events:
        read_events(events)
    assert cut.value.code == "incomplete_stream"


def read_events(events: Any) -> None:
    for _ in events:
        pass


@pytest.mark.timeout(30)
def test_the_clients_own_raw_response_view_is_guarded(client: openai.OpenAI) -> None:
    with pytest.raises(genguard.SoftFailure) as caught:
        client.with_raw_response.chat.completions.create(
            model="gpt-4o-mini", messages=ask("view"), extra_headers=scenario("content_filtered")
        )
    assert caught.value.code == "content_filtered"
    with client.with_streaming_response.chat.completions.create(model="gpt-4o-mini", messages=ask("s")) as r:
        r.read()
        assert genguard.check(r).ok


@pytest.mark.timeout(30)
def test_a_copy_with_another_key_sends_that_key(sim: Simulator) -> None:
    good = "sk-good-copy-key-000111"
    sim.configure(api_keys=(good,))
    with openai.OpenAI(base_url=sim.base_url, api_key="sk-old-copy-key-999888") as sdk:
        client = genguard.wrap(sdk, retry=FAST)
        with pytest.raises(openai.AuthenticationError):
            client.chat.completions.create(model="gpt-4o-mini", messages=ask("old key"))
        copy = client.with_options(api_key=good)
        assert copy.chat.completions.create(model="gpt-4o-mini", messages=ask("new key")).choices
    assert requests(sim) == 2  # a refused key with nothing to rotate to is not sent again


@pytest.mark.timeout(30)
def test_a_stream_read_inside_an_except_block_still_raises(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="gpt-4o-mini", messages=ask("in except"), stream=True, extra_headers=scenario("truncated")
    )
    with pytest.raises(genguard.SoftFailure) as caught:
        read_while_handling(stream)
    assert caught.value.code == "truncated"


def read_while_handling(stream: Any) -> None:
    try:
        raise KeyError("the application's own, already handled")
    except KeyError:
        read(stream)  # a fallback path of the application's, say
