"""The simulator's embeddings endpoint over real HTTP: OpenAI's shape and refusals, deterministic unit vectors,
``dimensions`` and base64, the scenarios that apply; read by genguard's classifier and by the official SDK."""

from __future__ import annotations

import array
import base64
import math
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from genguard.client.clients import AsyncClient
from genguard.core.classify import classify_http
from genguard.core.outcome import Outcome
from genguard.sim import Simulator

KEY = "sk-sim-embeddings"
MODEL = "text-embedding-3-small"


@pytest.fixture
def http(sim: Simulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sim.url, headers={"authorization": f"Bearer {KEY}"}, timeout=10) as client:
        yield client


@pytest.fixture
def client(sim: Simulator) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=sim.base_url, api_key=KEY, max_retries=0, timeout=10) as c:
        yield c


def embed(http: httpx.Client, scenario: str | None = None, **body: Any) -> httpx.Response:
    headers = {"x-genguard-scenario": scenario} if scenario else {}
    return http.post("/v1/embeddings", json={"model": MODEL, **body}, headers=headers)


def outcome_of(r: httpx.Response) -> Outcome:
    return classify_http(r.status_code, r.headers, r.content, endpoint="embedding")


def norm(v: list[float]) -> float:
    return math.sqrt(math.fsum(x * x for x in v))


# -- the answer -----------------------------------------------------------------------------------------


def test_a_list_of_texts_gets_one_unit_vector_each_in_openai_shape(http: httpx.Client) -> None:
    r = embed(http, input=["the quick brown fox", "jumps"])
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert body["object"] == "list"
    assert body["model"] == MODEL
    assert [item["object"] for item in body["data"]] == ["embedding", "embedding"]
    assert [item["index"] for item in body["data"]] == [0, 1]
    for item in body["data"]:
        assert len(item["embedding"]) == 1536
        assert all(isinstance(x, float) for x in item["embedding"])
        assert norm(item["embedding"]) == pytest.approx(1.0, abs=1e-5)
    # Four characters a token, as the simulator estimates prompts: 19 and 5 characters.
    assert body["usage"] == {"prompt_tokens": 5 + 2, "total_tokens": 5 + 2}
    outcome = outcome_of(r)
    assert outcome.ok
    assert outcome.extra["vectors"] == 2
    assert outcome.usage is not None
    assert outcome.usage.prompt_tokens == 7


def test_vectors_are_deterministic_per_model_and_input(http: httpx.Client) -> None:
    first = embed(http, input="hello").json()["data"][0]["embedding"]
    again = embed(http, input=["other", "hello"]).json()["data"][1]["embedding"]
    assert first == again  # the same text embeds the same way, wherever it stands in the list
    assert embed(http, input="hello!").json()["data"][0]["embedding"] != first
    other_model = http.post("/v1/embeddings", json={"model": "text-embedding-3-large", "input": "hello"})
    vector = other_model.json()["data"][0]["embedding"]
    assert len(vector) == 3072
    assert vector[:8] != first[:8]


def test_the_seed_setting_changes_the_vectors(sim: Simulator, http: httpx.Client) -> None:
    before = embed(http, input="hello").json()["data"][0]["embedding"]
    sim.configure(seed=12345)
    assert embed(http, input="hello").json()["data"][0]["embedding"] != before


def test_token_arrays_are_inputs_too(http: httpx.Client) -> None:
    one = embed(http, input=[1, 2, 3]).json()
    assert len(one["data"]) == 1
    assert one["usage"]["prompt_tokens"] == 3
    many = embed(http, input=[[1, 2, 3], [4, 5]]).json()
    assert [item["index"] for item in many["data"]] == [0, 1]
    assert many["usage"]["prompt_tokens"] == 5
    assert many["data"][0]["embedding"] == one["data"][0]["embedding"]


def test_dimensions_shorten_a_vector_as_text_embedding_3_does(http: httpx.Client) -> None:
    full = embed(http, input="a lighthouse").json()["data"][0]["embedding"]
    short = embed(http, input="a lighthouse", dimensions=256).json()["data"][0]["embedding"]
    assert len(short) == 256
    assert norm(short) == pytest.approx(1.0, abs=1e-5)
    # The start of the full vector, normalised again (float32 rounding aside).
    head = full[:256]
    scale = norm(head)
    assert all(abs(s - h / scale) < 1e-6 for s, h in zip(short, head, strict=True))


def test_base64_is_the_float32_vector(http: httpx.Client) -> None:
    floats = embed(http, input="a lighthouse", dimensions=64).json()["data"][0]["embedding"]
    b64 = embed(http, input="a lighthouse", dimensions=64, encoding_format="base64").json()
    encoded = b64["data"][0]["embedding"]
    assert isinstance(encoded, str)
    decoded = array.array("f", base64.b64decode(encoded))  # little-endian float32, as the SDK reads it
    assert decoded.tolist() == floats
    assert outcome_of(embed(http, input="x", encoding_format="base64")).ok


def test_stats_count_requests_by_endpoint(sim: Simulator, http: httpx.Client) -> None:
    embed(http, input="a")
    embed(http, "rate_limited", input="b")
    stats = sim.stats()
    assert stats["by_endpoint"] == {"embedding": 2}
    assert stats["by_scenario"]["ok"] == {"200": 1}
    assert stats["by_scenario"]["rate_limited"] == {"429": 1}


# -- refusals -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "param", "words"),
    [
        ({"input": "x", "model": None}, None, "you must provide a model parameter"),
        ({}, "input", "Missing required parameter: 'input'."),
        ({"input": ""}, None, "'$.input' is invalid"),
        ({"input": []}, None, "'$.input' is invalid"),
        ({"input": ["ok", ""]}, None, "'$.input' is invalid"),
        ({"input": ["ok", 3]}, None, "'$.input' is invalid"),
        ({"input": {"text": "x"}}, "input", "expected a string or an array, but got an object"),
        ({"input": "x", "encoding_format": "int8"}, "encoding_format", "Supported values are: 'float' and"),
        ({"input": "x", "dimensions": 0}, "dimensions", "Expected a value >= 1"),
        ({"input": "x", "dimensions": 4096}, "dimensions", "Expected a value <= 1536"),
        ({"input": "x", "dimensions": "8"}, "dimensions", "expected an integer"),
        (
            {"input": "x", "model": "text-embedding-ada-002", "dimensions": 8},
            "dimensions",
            "does not support specifying dimensions",
        ),
    ],
)
def test_a_body_openai_refuses_is_a_400_in_its_words(
    http: httpx.Client, client: openai.OpenAI, body: dict[str, Any], param: str | None, words: str
) -> None:
    r = embed(http, **body)
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert words in error["message"]
    outcome = outcome_of(r)
    assert outcome.code == "bad_request"
    assert outcome.endpoint == "embedding"
    assert not outcome.retryable
    if "input" in body:  # the SDK cannot leave it out
        sent = {"model": MODEL, **body}
        sent["model"] = sent["model"] or ""
        with pytest.raises(openai.BadRequestError) as err:
            client.embeddings.create(**sent)
        assert words in err.value.message


def test_a_body_that_is_not_json_is_refused(http: httpx.Client) -> None:
    r = http.post("/v1/embeddings", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400
    assert "could not parse the JSON body" in r.json()["error"]["message"]
    assert outcome_of(r).code == "bad_request"


def test_an_input_past_the_window_is_context_length_exceeded(http: httpx.Client) -> None:
    r = embed(http, input=["short", "word " * 9000])
    assert r.status_code == 400
    assert "maximum context length is 8192 tokens" in r.json()["error"]["message"]
    assert outcome_of(r).code == "context_length_exceeded"
    played = embed(http, "context_length_exceeded", input="short")
    assert outcome_of(played).code == "context_length_exceeded"


# -- scenarios ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scenario", "status"),
    [
        ("rate_limited", 429),
        ("server_error", 500),
        ("unavailable", 503),
        ("bad_gateway", 502),
        ("quota_exceeded", 429),
        ("bad_request", 400),
        ("model_not_found", 404),
        ("invalid_response", 200),
    ],
)
def test_hard_scenarios_are_played_and_read_back(http: httpx.Client, scenario: str, status: int) -> None:
    r = embed(http, scenario, input="x")
    assert r.status_code == status
    outcome = outcome_of(r)
    assert outcome.code == scenario
    assert outcome.endpoint == "embedding"


def test_a_rate_limit_says_how_long_to_wait(sim: Simulator, http: httpx.Client) -> None:
    sim.configure(retry_after_s=0.25)
    r = embed(http, "rate_limited", input="x")
    assert r.headers["retry-after"] == "0.25"
    outcome = outcome_of(r)
    assert outcome.retryable
    assert outcome.retry_after_s == pytest.approx(0.25)


def test_a_refused_key_is_auth_failed(sim: Simulator, http: httpx.Client) -> None:
    sim.configure(api_keys=("sk-the-right-one",))
    r = embed(http, input="x")
    assert r.status_code == 401
    assert outcome_of(r).code == "auth_failed"


def test_an_rpm_limit_applies(sim: Simulator, http: httpx.Client) -> None:
    sim.configure(rpm=2)
    codes = [embed(http, input=str(i)).status_code for i in range(3)]
    assert codes == [200, 200, 429]


def test_empty_output_is_an_empty_data_list(
    sim: Simulator, http: httpx.Client, client: openai.OpenAI
) -> None:
    r = embed(http, "empty_output", input="x")
    assert r.status_code == 200
    assert r.json()["data"] == []
    assert outcome_of(r).code == "empty_output"
    sim.configure(scenario="empty_output")
    with pytest.raises(ValueError, match="No embedding data"):
        client.embeddings.create(model=MODEL, input="x")  # the SDK's own check, on its default base64 path


@pytest.mark.parametrize("scenario", ["truncated", "content_filtered", "invalid_json", "download_failed"])
def test_scenarios_only_a_generation_can_play_are_answered_normally(
    sim: Simulator, http: httpx.Client, scenario: str
) -> None:
    r = embed(http, scenario, input="x")
    assert r.status_code == 200
    assert outcome_of(r).ok
    assert sim.stats()["by_scenario"] == {"ok": {"200": 1}}


def test_errors_take_the_dialect_s_shape(sim: Simulator, http: httpx.Client) -> None:
    sim.configure(dialect="vllm")
    r = embed(http, input="")
    assert r.status_code == 400
    assert r.json()["object"] == "error"
    assert outcome_of(r).code == "bad_request"


# -- clients --------------------------------------------------------------------------------------------


def test_the_official_sdk_parses_floats_and_its_default_base64(
    client: openai.OpenAI, http: httpx.Client
) -> None:
    expected = embed(http, input=["alpha", "beta"], dimensions=32).json()["data"]
    by_default = client.embeddings.create(model=MODEL, input=["alpha", "beta"], dimensions=32)
    as_floats = client.embeddings.create(
        model=MODEL, input=["alpha", "beta"], dimensions=32, encoding_format="float"
    )
    for resp in (by_default, as_floats):
        assert resp.object == "list"
        assert resp.model == MODEL
        assert [d.index for d in resp.data] == [0, 1]
        assert [d.embedding for d in resp.data] == [item["embedding"] for item in expected]
        assert resp.usage.prompt_tokens == resp.usage.total_tokens == 2 + 1


def test_the_official_sdk_raises_its_own_errors(sim: Simulator, client: openai.OpenAI) -> None:
    sim.configure(scenario="rate_limited")
    with pytest.raises(openai.RateLimitError):
        client.embeddings.create(model=MODEL, input="x")
    sim.configure(scenario="auth_failed")
    with pytest.raises(openai.AuthenticationError):
        client.embeddings.create(model=MODEL, input="x")


@pytest.mark.anyio
async def test_genguard_s_async_client_retries_to_an_embedding(sim: Simulator) -> None:
    sim.configure(scenario="server_error:2")
    async with AsyncClient(sim.base_url, api_key=KEY) as gg:
        outcome, raw = await gg.send_json(
            "/embeddings", {"model": MODEL, "input": ["a", "b"]}, endpoint="embedding"
        )
    assert outcome.ok, outcome.summary()
    assert outcome.attempts == 3
    assert outcome.extra["vectors"] == 2
    assert raw is not None
    assert b'"object":"embedding"' in raw
    assert sim.stats()["verdict"]["ok"]
