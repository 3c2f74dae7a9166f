"""The simulator's image endpoint over real HTTP: model quirks, expiring links, real PNG bytes, scenarios."""

from __future__ import annotations

import base64
import struct
import zlib
from collections.abc import Iterator

import httpx
import openai
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from genguard.core.error_verdict import classify_error
from genguard.sim import Simulator
from genguard.sim._clock import FakeClock
from genguard.sim._core import ERROR_SCENARIOS
from genguard.sim._mediabytes import PNG_SIGNATURE, is_png, png_bytes

KEY = "sk-sim-images"


def png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """Walk a PNG's chunks, checking each CRC as a decoder would."""
    assert data[:8] == PNG_SIGNATURE
    pos, chunks = 8, []
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        payload = data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert zlib.crc32(kind + payload) & 0xFFFFFFFF == crc, f"bad CRC in {kind!r}"
        chunks.append((kind, payload))
        pos += 12 + length
    return chunks


def assert_real_png(data: bytes) -> None:
    chunks = png_chunks(data)
    kinds = [k for k, _ in chunks]
    assert kinds[0] == b"IHDR"
    assert kinds[-1] == b"IEND"
    width, height, depth, colour = struct.unpack(">IIBB", chunks[0][1][:10])
    pixels = zlib.decompress(b"".join(p for k, p in chunks if k == b"IDAT"))
    assert (depth, colour) == (8, 2)
    assert len(pixels) == height * (1 + 3 * width)


def http_client(sim: Simulator) -> httpx.Client:
    return httpx.Client(base_url=sim.url, headers={"authorization": f"Bearer {KEY}"}, timeout=10)


@pytest.fixture
def http(sim: Simulator) -> Iterator[httpx.Client]:
    with http_client(sim) as client:
        yield client


@pytest.fixture
def client(sim: Simulator) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=sim.base_url, api_key=KEY, max_retries=0, timeout=10) as c:
        yield c


def generate(http: httpx.Client, scenario: str | None = None, **body: object) -> httpx.Response:
    headers = {"x-genguard-scenario": scenario} if scenario else {}
    return http.post(
        "/v1/images/generations", json={"prompt": "a lighthouse at dusk", **body}, headers=headers
    )


# -- bytes -------------------------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(seed=st.text(max_size=40), width=st.integers(1, 24), height=st.integers(1, 24))
def test_png_bytes_are_a_valid_png_for_any_seed(seed: str, width: int, height: int) -> None:
    data = png_bytes(seed, width=width, height=height)
    assert_real_png(data)
    assert struct.unpack(">II", data[16:24]) == (width, height)


def test_png_colours_follow_the_prompt() -> None:
    assert png_bytes("a cat") == png_bytes("a cat")
    assert png_bytes("a cat") != png_bytes("a dog")


# -- model quirks ------------------------------------------------------------------------------------


def test_dalle2_defaults_to_urls_serving_real_png(http: httpx.Client) -> None:
    r = generate(http, model="dall-e-2", n=3)
    assert r.status_code == 200
    data = r.json()["data"]
    assert len(data) == 3
    assert all("b64_json" not in item and "revised_prompt" not in item for item in data)
    bodies = []
    for item in data:
        got = http.get(item["url"])
        assert got.status_code == 200
        assert got.headers["content-type"] == "image/png"
        assert_real_png(got.content)
        bodies.append(got.content)
    assert len(set(bodies)) == 3  # each image of a request is its own picture


def test_dalle_b64_json_is_a_real_png(http: httpx.Client) -> None:
    r = generate(http, model="dall-e-2", response_format="b64_json")
    item = r.json()["data"][0]
    assert "url" not in item
    assert_real_png(base64.b64decode(item["b64_json"]))


def test_dalle3_through_the_sdk_revises_the_prompt_and_refuses_n_above_1(client: openai.OpenAI) -> None:
    resp = client.images.generate(model="dall-e-3", prompt="a red fox in snow")
    assert resp.data is not None
    assert len(resp.data) == 1
    assert resp.data[0].url
    assert resp.data[0].revised_prompt
    assert resp.data[0].revised_prompt.startswith("a red fox in snow")
    with pytest.raises(openai.BadRequestError) as err:
        client.images.generate(model="dall-e-3", prompt="a red fox", n=2)
    assert "n=1" in err.value.message
    assert err.value.param == "n"


def test_qwen_image_refuses_n_above_1(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match="must be 1"):
        client.images.generate(model="qwen-image", prompt="a bridge", n=4)
    resp = client.images.generate(model="qwen-image", prompt="a bridge")
    assert resp.data is not None
    assert len(resp.data) == 1


def test_gpt_image_returns_b64_and_rejects_response_format(client: openai.OpenAI) -> None:
    resp = client.images.generate(model="gpt-image-1", prompt="a teapot", n=2)
    assert resp.data is not None
    assert len(resp.data) == 2
    for item in resp.data:
        assert item.url is None
        assert item.b64_json is not None
        assert_real_png(base64.b64decode(item.b64_json))
    assert resp.usage is not None
    assert resp.usage.total_tokens == resp.usage.input_tokens + resp.usage.output_tokens
    with pytest.raises(openai.BadRequestError) as err:
        client.images.generate(model="gpt-image-1", prompt="a teapot", response_format="url")
    assert err.value.code == "unknown_parameter"
    assert err.value.param == "response_format"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"prompt": ""}, "prompt"),
        ({"prompt": "x", "n": 0}, "n"),
        ({"prompt": "x", "response_format": "gif"}, "response_format"),
    ],
)
def test_bad_parameters_get_a_400_naming_them(
    http: httpx.Client, body: dict[str, object], param: str
) -> None:
    r = http.post("/v1/images/generations", json={"model": "dall-e-2", **body})
    assert r.status_code == 400
    assert r.json()["error"]["param"] == param


def test_a_body_that_is_not_json_gets_a_400(http: httpx.Client) -> None:
    r = http.post(
        "/v1/images/generations", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert r.status_code == 400
    assert r.json()["error"]["type"] == "invalid_request_error"


# -- links that expire -------------------------------------------------------------------------------


@pytest.fixture
def clocked_http(clocked_sim: Simulator) -> Iterator[httpx.Client]:
    with http_client(clocked_sim) as client:
        yield client


def test_urls_expire_after_the_configured_ttl_like_a_bucket(
    clocked_sim: Simulator, clocked_http: httpx.Client, fake_clock: FakeClock
) -> None:
    # On a fake clock: with real time, a machine busy for 0.3 s between the two GETs failed the first one.
    sim, http = clocked_sim, clocked_http
    sim.configure(image_url_ttl_s=0.3)
    url = generate(http, model="dall-e-2").json()["data"][0]["url"]
    assert http.get(url).status_code == 200
    fake_clock.advance(0.4)
    expired = http.get(url)
    assert expired.status_code == 403
    assert expired.headers["content-type"].startswith("application/xml")
    assert "<Code>AccessDenied</Code>" in expired.text
    assert "expired" in expired.text
    # The signature binds the expiry: stretching it by hand does not revive the link.
    stretched = url.replace("se=", "se=9")
    assert "SignatureDoesNotMatch" in http.get(stretched).text


def test_unknown_file_is_a_404_no_such_key(http: httpx.Client) -> None:
    r = http.get("/_genguard/files/0123456789abcdef01234567.png?se=1&sig=x")
    assert r.status_code == 404
    assert "NoSuchKey" in r.text


def test_reset_forgets_links(sim: Simulator, http: httpx.Client) -> None:
    url = generate(http, model="dall-e-2").json()["data"][0]["url"]
    sim.reset()
    assert http.get(url).status_code == 404


# -- scenarios ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["dall-e-3", "gpt-image-1"])
def test_content_filtered_is_an_empty_data_list(client: openai.OpenAI, model: str) -> None:
    resp = client.images.generate(
        model=model, prompt="x", extra_headers={"x-genguard-scenario": "content_filtered"}
    )
    assert resp.data == []


@pytest.mark.parametrize(
    ("model", "code"), [("dall-e-3", "content_policy_violation"), ("gpt-image-1", "moderation_blocked")]
)
def test_prompt_blocked_is_a_policy_400(client: openai.OpenAI, model: str, code: str) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        client.images.generate(
            model=model, prompt="x", extra_headers={"x-genguard-scenario": "prompt_blocked"}
        )
    assert err.value.code == code
    outcome = classify_error(
        err.value.status_code, err.value.response.headers, err.value.response.content, endpoint="image"
    )
    assert outcome.code == "prompt_blocked"


def test_download_failed_expired_link(http: httpx.Client) -> None:
    r = http.post(
        "/v1/images/generations", json={"model": "dall-e-3", "prompt": "x"},
        headers={"x-genguard-scenario": "download_failed", "x-genguard-variant": "expired"},
    )  # fmt: skip
    assert r.status_code == 200
    got = http.get(r.json()["data"][0]["url"])
    assert got.status_code == 403
    assert "Request has expired" in got.text


def test_download_failed_html_instead_of_an_image(http: httpx.Client) -> None:
    r = http.post(
        "/v1/images/generations", json={"model": "dall-e-2", "prompt": "x"},
        headers={"x-genguard-scenario": "download_failed", "x-genguard-variant": "html"},
    )  # fmt: skip
    got = http.get(r.json()["data"][0]["url"])
    assert got.status_code == 200
    assert not is_png(got.content)
    assert got.content.lstrip().lower().startswith(b"<!doctype html")


def test_download_failed_b64_is_not_an_image(http: httpx.Client) -> None:
    r = generate(http, "download_failed", model="gpt-image-1")
    raw = base64.b64decode(r.json()["data"][0]["b64_json"])
    assert not is_png(raw)


def test_download_failed_without_a_variant_plays_both_flavours(http: httpx.Client) -> None:
    statuses = set()
    for i in range(12):
        r = http.post("/v1/images/generations", json={"model": "dall-e-2", "prompt": f"p{i}"},
                      headers={"x-genguard-scenario": "download_failed"})  # fmt: skip
        got = http.get(r.json()["data"][0]["url"])
        assert got.status_code == 403 or not is_png(got.content)
        statuses.add(got.status_code)
    assert statuses == {200, 403}


HARD = sorted(ERROR_SCENARIOS - {"timeout", "connection_error", "invalid_response"})


@pytest.mark.parametrize("code", HARD)
def test_every_hard_scenario_classifies_as_itself(http: httpx.Client, code: str) -> None:
    r = generate(http, code, model="dall-e-2")
    assert r.status_code >= 400
    outcome = classify_error(r.status_code, r.headers, r.content, endpoint="image")
    assert outcome.code == code


def test_invalid_response_is_a_200_html_page(http: httpx.Client) -> None:
    r = generate(http, "invalid_response", model="dall-e-2")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")


@pytest.mark.parametrize(
    ("code", "exc"),
    [("rate_limited", openai.RateLimitError), ("server_error", openai.InternalServerError),
     ("auth_failed", openai.AuthenticationError), ("quota_exceeded", openai.RateLimitError)],
)  # fmt: skip
def test_sdk_raises_its_own_exception_for_hard_scenarios(
    client: openai.OpenAI, code: str, exc: type[openai.APIStatusError]
) -> None:
    with pytest.raises(exc):
        client.images.generate(model="dall-e-2", prompt="x", extra_headers={"x-genguard-scenario": code})


def test_connection_error_cuts_the_connection(client: openai.OpenAI) -> None:
    with pytest.raises(openai.APIConnectionError):
        client.images.generate(
            model="dall-e-2", prompt="x", extra_headers={"x-genguard-scenario": "connection_error"}
        )


def test_anthropic_dialect_shapes_image_errors(http: httpx.Client) -> None:
    r = http.post("/v1/images/generations", json={"model": "dall-e-2", "prompt": "x"},
                  headers={"x-genguard-scenario": "prompt_blocked", "x-genguard-dialect": "anthropic"})  # fmt: skip
    assert r.status_code == 400
    assert r.json()["type"] == "error"
