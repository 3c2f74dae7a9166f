"""Error bodies of every provider style (REFERENCE.md §1) read into ErrorInfo, and secrets masked."""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from genguard.core.error_body import MESSAGE_CAP, ErrorInfo, read_error
from genguard.core.secrets import redact


def j(obj: Any) -> bytes:
    return orjson.dumps(obj)


OPENROUTER_RAW = j(
    {
        "error": {
            "message": "Provider returned error",
            "code": 429,
            "metadata": {
                "raw": j(
                    {"error": {"message": "anthropic/claude is temporarily rate-limited upstream",
                               "type": "rate_limit_error", "code": "rate_limit_exceeded"}}
                ).decode(),
                "provider_name": "Anthropic",
            },
        },
        "user_id": "user_1",
    }
)  # fmt: skip

# (body, headers, expected fields)
CASES: list[tuple[str, bytes | str | object, dict[str, str] | None, dict[str, Any]]] = [
    (
        "openai common",
        j({"error": {"message": "Rate limit reached for gpt-4o in organization org-x on tokens per min (TPM)",
                     "type": "tokens", "param": None, "code": "rate_limit_exceeded"}}),
        {"x-request-id": "req_abc"},
        {"type": "tokens", "code": "rate_limit_exceeded", "param": None, "request_id": "req_abc", "is_json": True},
    ),
    (
        "numeric code",
        j({"error": {"message": "bad", "type": "invalid_request_error", "code": 400, "param": "messages"}}),
        None,
        {"code": "400", "status_hint": 400, "param": "messages"},
    ),
    (
        "plain string error",
        j({"error": "Server overloaded, please retry shortly"}),
        None,
        {"message": "Server overloaded, please retry shortly", "code": None},
    ),
    (
        "vllm object error",
        j({"object": "error", "message": "The model `llama-9` does not exist.", "type": "NotFoundError",
           "param": None, "code": 404}),
        None,
        {"message": "The model `llama-9` does not exist.", "type": "NotFoundError", "code": "404", "status_hint": 404},
    ),
    (
        "mistral object error",
        j({"object": "error", "message": "Invalid model: mistral-huge", "type": "invalid_model", "param": None,
           "code": "1500"}),
        None,
        {"message": "Invalid model: mistral-huge", "type": "invalid_model", "code": "1500"},
    ),
    (
        "google list-wrapped",
        j([{"error": {"code": 503, "message": "The model is overloaded. Please try again later.",
                      "status": "UNAVAILABLE"}}]),
        None,
        {"message": "The model is overloaded. Please try again later.", "type": "UNAVAILABLE", "code": "503",
         "status_hint": 503},
    ),
    (
        "google retry info",
        j({"error": {"code": 429, "message": "You exceeded your current quota. Please retry in 38.47s.",
                     "status": "RESOURCE_EXHAUSTED",
                     "details": [{"@type": "type.googleapis.com/google.rpc.QuotaFailure"},
                                 {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "38s"}]}}),
        None,
        {"type": "RESOURCE_EXHAUSTED", "status_hint": 429, "retry_delay_s": 38.0},
    ),
    (
        "anthropic",
        j({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"},
           "request_id": "req_011CSHoEeqs5C35K2UUqR7Fy"}),
        None,
        {"message": "Overloaded", "type": "overloaded_error", "request_id": "req_011CSHoEeqs5C35K2UUqR7Fy"},
    ),
    (
        "anthropic header id wins",
        j({"type": "error", "error": {"type": "rate_limit_error", "message": "slow"}, "request_id": "req_body"}),
        {"Request-Id": "req_header"},
        {"request_id": "req_header", "type": "rate_limit_error"},
    ),
    (
        "azure innererror",
        j({"error": {"message": "The response was filtered due to the prompt triggering Azure OpenAI's content "
                                "management policy.", "type": None, "param": "prompt", "code": "content_filter",
                     "status": 400,
                     "innererror": {"code": "ResponsibleAIPolicyViolation",
                                    "content_filter_result": {"hate": {"filtered": True, "severity": "high"},
                                                              "jailbreak": {"filtered": False, "detected": False}}}}}),
        None,
        {"code": "content_filter", "inner_code": "ResponsibleAIPolicyViolation", "param": "prompt",
         "status_hint": 400},
    ),
    (
        "azure image inner_error",
        j({"error": {"code": "contentFilter", "message": "Your task failed as a result of our safety system.",
                     "inner_error": {"code": "ResponsibleAIPolicyViolation",
                                     "content_filter_results": {"sexual": {"filtered": True, "severity": "medium"}}}}}),
        None,
        {"code": "contentFilter", "inner_code": "ResponsibleAIPolicyViolation"},
    ),
    (
        "gateway metadata.raw json",
        OPENROUTER_RAW,
        None,
        {"message": "anthropic/claude is temporarily rate-limited upstream", "code": "rate_limit_exceeded",
         "type": "rate_limit_error", "provider": "Anthropic", "status_hint": 429},
    ),
    (
        "gateway metadata.raw text",
        j({"error": {"message": "Provider returned error", "code": 502,
                     "metadata": {"raw": "upstream connect error or disconnect/reset before headers",
                                  "provider_name": "Together"}}}),
        None,
        {"message": "upstream connect error or disconnect/reset before headers", "code": "502",
         "provider": "Together", "status_hint": 502},
    ),
    (
        "message is an object",
        j({"error": {"message": {"reason": "bad things"}, "code": "x"}}),
        None,
        {"message": "bad things", "code": "x"},
    ),
    (
        "fastapi validation detail list",
        j({"detail": [{"loc": ["body", "messages", 0, "content"], "msg": "field required",
                       "type": "value_error.missing"},
                      {"loc": ["body", "temperature"], "msg": "ensure this value is less than or equal to 2"}]}),
        None,
        {"message": "body.messages.0.content: field required; body.temperature: ensure this value is less than or "
                    "equal to 2"},
    ),
    ("fastapi detail string", j({"detail": "Not Found"}), None, {"message": "Not Found"}),
    (
        "kling envelope",
        j({"code": 1301, "message": "Content security check failed", "request_id": "kl-123456"}),
        None,
        {"message": "Content security check failed", "code": "1301", "request_id": "kl-123456",
         "status_hint": None},
    ),
    (
        "kling success envelope",
        j({"code": 0, "message": "SUCCEED", "request_id": "kl-1", "data": {"task_id": "t"}}),
        None,
        {"code": None},
    ),
    (
        "ollama",
        j({"error": "model 'llama9' not found, try pulling it first"}),
        None,
        {"message": "model 'llama9' not found, try pulling it first"},
    ),
    (
        "cloudflare html",
        b"<!DOCTYPE html>\n<html><head><title>api.example.com | 524: A timeout occurred</title></head>"
        b"<body><h1>A timeout occurred</h1></body></html>",
        {"CF-RAY": "8a1b2c3d4e5f-AMS"},
        {"message": "api.example.com | 524: A timeout occurred", "is_json": False, "request_id": "8a1b2c3d4e5f-AMS"},
    ),
    (
        "nginx html heading",
        b"<html>\r\n<head></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx"
        b"</center>\r\n</body>\r\n</html>",
        None,
        {"message": "502 Bad Gateway", "is_json": False},
    ),
    ("plain text", b"upstream request timeout\n", None, {"message": "upstream request timeout", "is_json": False}),
    ("empty", b"", None, {"message": None, "is_json": False, "raw": ""}),
    ("whitespace", b"  \n", None, {"message": None, "is_json": False}),
    (
        "request id in message",
        j({"error": {"message": "The server had an error while processing your request. Sorry about that! You can "
                                "retry your request, or contact us through our help center at help.openai.com if the "
                                "error persists. (Please include the request ID req_7f3a9b2c1d in your message.)",
                     "type": "server_error", "param": None, "code": None}}),
        None,
        {"request_id": "req_7f3a9b2c1d", "type": "server_error"},
    ),
    (
        "already parsed stream chunk",
        {"error": {"message": "Internal error", "code": "server_error"}},
        None,
        {"message": "Internal error", "code": "server_error", "is_json": True},
    ),
    (
        "spring style",
        j({"timestamp": "2024-01-01", "status": 400, "error": "Bad Request", "message": "prompt must not be blank"}),
        None,
        {"message": "Bad Request: prompt must not be blank", "status_hint": 400},
    ),
    (
        "problem json",
        j({"type": "about:blank", "title": "Too Many Requests", "status": 429}),
        None,
        {"message": "Too Many Requests", "status_hint": 429},
    ),
]  # fmt: skip


@pytest.mark.parametrize(("name", "body", "headers", "expected"), CASES, ids=[c[0] for c in CASES])
def test_read_error_shapes(
    name: str, body: Any, headers: dict[str, str] | None, expected: dict[str, Any]
) -> None:
    info = read_error(body, headers)
    assert isinstance(info, ErrorInfo)
    for field, value in expected.items():
        assert getattr(info, field) == value, f"{name}: {field}"


def test_raw_keeps_the_parsed_body_and_the_text() -> None:
    body = {"error": {"message": "x"}}
    assert read_error(j(body)).raw == body
    assert read_error(b"<html>oops</html>").raw == "<html>oops</html>"


def test_filter_results_kept() -> None:
    info = read_error(CASES[9][1])
    assert info.filter_results is not None
    assert info.filter_results["hate"] == {"filtered": True, "severity": "high"}


def test_httpx_headers_accepted() -> None:
    info = read_error(b"{}", httpx.Headers({"X-Request-Id": "req_h"}))
    assert info.request_id == "req_h"


def test_header_order_prefers_x_request_id() -> None:
    headers = {"cf-ray": "ray", "request-id": "rid", "x-request-id": "xrid"}
    assert read_error(b"", headers).request_id == "xrid"
    del headers["x-request-id"]
    assert read_error(b"", headers).request_id == "rid"


def test_message_is_capped() -> None:
    info = read_error(j({"error": {"message": "x" * 50_000}}))
    assert info.message is not None
    assert len(info.message) <= MESSAGE_CAP
    assert info.message.endswith("...")


def test_huge_html_is_read_fast_and_capped() -> None:
    body = b"<html><body>" + b"<p>filler</p>" * 200_000 + b"</body></html>"
    info = read_error(body)
    assert info.message is not None
    assert len(info.message) <= MESSAGE_CAP


def test_invalid_utf8_is_replaced_not_raised() -> None:
    info = read_error(b"\xff\xfe bad \xc3(")
    assert info.message is not None
    assert "bad" in info.message
    assert not info.is_json


def test_deep_nesting_does_not_raise() -> None:
    deep: Any = "bottom"
    for _ in range(5000):
        deep = {"error": {"message": deep}}
    assert isinstance(read_error(deep), ErrorInfo)
    text = "[" * 100_000 + "]" * 100_000
    assert isinstance(read_error(text.encode()), ErrorInfo)


def test_html_entities_unescaped() -> None:
    info = read_error(b"<html><head><title>Error &amp; Sons &#8211; 503</title></head></html>")
    assert info.message == "Error & Sons \u2013 503"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**63 - 1) | st.floats() | st.text(max_size=30),
    lambda children: st.lists(children, max_size=5)
    | st.dictionaries(
        st.sampled_from(["error", "message", "code", "type", "detail", "metadata", "raw", "innererror",
                         "inner_error", "status", "param", "request_id", "loc", "msg", "object", "details",
                         "retryDelay", "content_filter_result", "provider_name"]) | st.text(max_size=8),
        children,
        max_size=6,
    ),
    max_leaves=30,
)  # fmt: skip


@given(st.binary(max_size=2000))
def test_read_error_any_bytes(body: bytes) -> None:
    info = read_error(body, {"x-request-id": "r"})
    assert isinstance(info, ErrorInfo)
    assert info.request_id == "r"


@given(json_values)
@settings(max_examples=300)
def test_read_error_any_json_value(value: Any) -> None:
    info = read_error(value)
    assert info.message is None or len(info.message) <= MESSAGE_CAP
    assert info.code is None or isinstance(info.code, str)
    try:
        encoded = orjson.dumps(value)
    except orjson.JSONEncodeError:
        return
    again = read_error(encoded)
    assert again.is_json


@given(st.text(max_size=500))
def test_read_error_any_text(text: str) -> None:
    info = read_error(text)
    assert info.message is None or len(info.message) <= MESSAGE_CAP


# -- redact ------------------------------------------------------------------------------------------

KEY_CASES = [
    ("Incorrect API key provided: sk-abcdefghijklmnop1234.", "sk-***", "abcdefghijklmnop1234"),
    ("key sk-proj-AbC123xyz789_-QQQ", "sk-proj-***", "AbC123xyz789"),
    ("Incorrect API key provided: sk-proj-***************************wxyz.", "sk-proj-***", "wxyz"),
    ("sk-ant-api03-Zz9Yy8Xx7Ww6Vv5 is invalid", "sk-ant-***", "api03-Zz9Yy8Xx7Ww6Vv5"),
    ("Authorization: Bearer eyJhbGciOi.JIUzI1NiJ9.abc", "Bearer ***", "eyJhbGciOi"),
    ("GET https://g.example/v1?key=AIzaSyDdK3-abcdefghijkLMNOPq_12345 failed", "key=***", "SyDdK3"),
    ("API key AIzaSyDdK3-abcdefghijkLMNOPq_12345 not valid", "AIza***", "SyDdK3"),
    ('{"api_key": "abcd-1234-efgh-5678"}', '"api_key": "***', "abcd-1234"),
    ("api-key: 0123456789abcdef0123", "api-key: ***", "0123456789abcdef"),
    ("groq key gsk_abcdefghijklmnopqrstuv bad", "gsk_***", "abcdefghijklmnop"),
]


@pytest.mark.parametrize(("text", "kept", "gone"), KEY_CASES)
def test_redact_masks_keys(text: str, kept: str, gone: str) -> None:
    out = redact(text)
    assert kept in out
    assert gone not in out


def test_redact_given_secrets_and_leaves_prose() -> None:
    secret = "my-private-token-42"
    out = redact(f"the key {secret} was echoed; max_tokens: 100; model: gpt-4o", [secret, ""])
    assert secret not in out
    assert "max_tokens: 100" in out
    assert "model: gpt-4o" in out


def test_redact_no_key_characters_beyond_prefix() -> None:
    key = "sk-proj-" + "A1b2C3d4" * 6
    out = redact(f"Incorrect API key provided: {key}. You can find your API key at https://x.")
    assert out == "Incorrect API key provided: sk-proj-***. You can find your API key at https://x."


@given(st.text(max_size=40), st.text(alphabet="abcdefXYZ0123456789", min_size=20, max_size=40))
def test_redact_removes_any_given_secret(prefix: str, secret: str) -> None:
    out = redact(prefix + secret + prefix, [secret])
    assert secret not in out


@pytest.mark.parametrize(
    "body",
    [
        b"<html>" + b"<h1>" * 16_000,
        b"<html><title>" + b"<" * 60_000,
        b"<html>" + b"<script>" * 8_000,
        b"<!doctype html>" + b"<a" * 30_000,
    ],
)
def test_hostile_html_is_read_in_bounded_work(body: bytes) -> None:
    # These pages make naive tag regexes quadratic; the reader must still answer (pytest-timeout guards).
    info = read_error(body)
    assert info.message is None or len(info.message) <= MESSAGE_CAP


# -- errors quoted inside a message, and MiniMax's base_resp ------------------------------------------------


@pytest.mark.parametrize(
    ("outer", "message", "type_"),
    [
        # Google's OpenAI-compatible endpoint nests its own error body as a string.
        (
            {"error": {"message": '{\n "error": {"code": 429, "message": "Resource has been exhausted.", '
                       '"status": "RESOURCE_EXHAUSTED"}}\n', "code": 429}},
            "Resource has been exhausted.",
            "RESOURCE_EXHAUSTED",
        ),
        # LiteLLM quotes the provider's bytes between its own words.
        (
            {"error": {"message": "litellm.BadRequestError: AnthropicException - b'{\"type\":\"error\",\"error\":"
                       "{\"type\":\"invalid_request_error\",\"message\":\"prompt is too long\"}}'. Received Model "
                       "Group=claude", "code": "400"}},
            "prompt is too long",
            "invalid_request_error",
        ),
    ],
)  # fmt: skip
def test_an_error_quoted_inside_a_message_is_the_one_read(
    outer: dict[str, Any], message: str, type_: str
) -> None:
    info = read_error(orjson.dumps(outer))
    assert (info.message, info.type) == (message, type_)


def test_braces_that_are_not_an_error_leave_the_message_alone() -> None:
    body = {"error": {"message": "Invalid schema for function 'f': {'type': 'object'} is not valid"}}
    assert read_error(orjson.dumps(body)).message == body["error"]["message"]


def test_minimax_base_resp_gives_code_message_and_a_known_word() -> None:
    info = read_error(
        b'{"task_id": "", "base_resp": {"status_code": 1008, "status_msg": "insufficient balance"}}'
    )
    assert (info.code, info.message, info.type, info.provider) == (
        "1008",
        "insufficient balance",
        "insufficient_balance",
        "MiniMax",
    )
    ok = read_error(b'{"task_id": "1", "base_resp": {"status_code": 0, "status_msg": "success"}}')
    assert ok.code is None
