"""Status, headers and bodies of every provider style into outcomes: TAXONOMY.md's hard table row by row,
the soft chat codes, the 2xx dispatch, and transport exceptions."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from genguard.client.transport import classify_exception
from genguard.core.chat_body import classify_chat_body, finish_outcome
from genguard.core.classify import classify_http
from genguard.core.error_body import read_error
from genguard.core.error_verdict import classify_error, code_for_error
from genguard.core.outcome import Outcome, ToolCall, Usage
from genguard.core.taxonomy import CODES


def j(obj: Any) -> bytes:
    return orjson.dumps(obj)


def oa(message: str, code: str | None = None, type_: str | None = None, param: str | None = None) -> bytes:
    return j({"error": {"message": message, "type": type_, "param": param, "code": code}})


def anth(type_: str, message: str) -> bytes:
    return j({"type": "error", "error": {"type": type_, "message": message}, "request_id": "req_01A"})


def google(code: int, status: str, message: str) -> bytes:
    return j([{"error": {"code": code, "message": message, "status": status}}])


def kling(code: int, message: str) -> bytes:
    return j({"code": code, "message": message, "request_id": "kl-req-123456"})


CF_524 = (
    b"<!DOCTYPE html><html><head><title>api.example.com | 524: A timeout occurred</title></head><body>"
    b"<h1>A timeout occurred</h1></body></html>"
)
NGINX_502 = b"<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center></body></html>"

# (id, status, body, expected code)
HARD: list[tuple[str, int | None, bytes, str]] = [
    ("401 openai", 401, oa("Incorrect API key provided: sk-abc***xyz.", "invalid_api_key", "invalid_request_error"), "auth_failed"),
    ("401 anthropic", 401, anth("authentication_error", "invalid x-api-key"), "auth_failed"),
    ("400 google key", 400, google(400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key."), "auth_failed"),
    ("403 permission", 403, oa("You are not allowed to sample from this model", None, "invalid_request_error"), "permission_denied"),
    ("403 anthropic permission", 403, anth("permission_error", "Your API key does not have permission"), "permission_denied"),
    ("403 moderation", 403, j({"error": {"message": "Input was flagged by moderation", "code": 403}}), "prompt_blocked"),
    ("403 guardrail", 403, j({"error": "Request blocked by guardrail policy"}), "prompt_blocked"),
    ("404 model openai", 404, oa("The model `gpt-5-turbo` does not exist or you do not have access to it.", "model_not_found", "invalid_request_error", "model"), "model_not_found"),
    ("403 project no access", 403, oa("Project `proj_1` does not have access to model `gpt-4o`", "model_not_found"), "model_not_found"),
    ("404 ollama", 404, j({"error": "model 'llama9' not found, try pulling it first"}), "model_not_found"),
    ("400 model not available", 400, oa("The model gpt-x is not available", "model_not_available"), "model_not_found"),
    ("404 anthropic model", 404, anth("not_found_error", "model: claude-9-opus"), "model_not_found"),
    ("404 vllm", 404, j({"object": "error", "message": "The model `foo` does not exist.", "type": "NotFoundError", "code": 404}), "model_not_found"),
    ("404 plain", 404, j({"detail": "Not Found"}), "not_found"),
    ("404 empty", 404, b"", "not_found"),
    ("400 bad request", 400, oa("'messages' must contain the word 'json'", None, "invalid_request_error", "messages"), "bad_request"),
    ("400 empty", 400, b"", "bad_request"),
    ("405", 405, b"Method Not Allowed", "bad_request"),
    ("400 context openai", 400, oa("This model's maximum context length is 8192 tokens. However, your messages resulted in 9000 tokens.", "context_length_exceeded", "invalid_request_error", "messages"), "context_length_exceeded"),
    ("400 context no code", 400, oa("This model's maximum context length is 8192 tokens."), "context_length_exceeded"),
    ("400 context anthropic", 400, anth("invalid_request_error", "prompt is too long: 208423 tokens > 200000 maximum"), "context_length_exceeded"),
    ("400 context google", 400, google(400, "INVALID_ARGUMENT", "The input token count (1200000) exceeds the maximum number of tokens allowed (1048576)."), "context_length_exceeded"),
    ("413", 413, b"<html><title>413 Request Entity Too Large</title></html>", "request_too_large"),
    ("429 too large", 429, oa("Request too large for gpt-4 in organization org-x on tokens per min (TPM): Limit 10000, Requested 31538. The input or output tokens must be reduced in order to run successfully.", "rate_limit_exceeded", "tokens"), "request_too_large"),
    ("400 content filter azure", 400, j({"error": {"message": "The response was filtered due to the prompt triggering Azure OpenAI's content management policy.", "param": "prompt", "code": "content_filter", "status": 400, "innererror": {"code": "ResponsibleAIPolicyViolation", "content_filter_result": {"hate": {"filtered": True, "severity": "high"}}}}}), "prompt_blocked"),
    ("400 azure inner only", 400, j({"error": {"message": "blocked", "code": "BadRequest", "inner_error": {"code": "ResponsibleAIPolicyViolation"}}}), "prompt_blocked"),
    ("400 image policy", 400, oa("Your request was rejected as a result of our safety system.", "content_policy_violation", "invalid_request_error"), "prompt_blocked"),
    ("400 moderation_blocked", 400, oa("Your request was rejected by the safety system.", "moderation_blocked", "image_generation_user_error"), "prompt_blocked"),
    ("402", 402, j({"error": {"message": "Insufficient credits", "code": 402}}), "quota_exceeded"),
    ("429 insufficient_quota", 429, oa("You exceeded your current quota, please check your plan and billing details.", "insufficient_quota", "insufficient_quota"), "quota_exceeded"),
    ("400 balance", 400, j({"error": {"message": "Insufficient balance, please top up", "code": "invalid_request"}}), "quota_exceeded"),
    ("400 anthropic credit", 400, anth("invalid_request_error", "Your credit balance is too low to access the Anthropic API."), "quota_exceeded"),
    ("429 rate", 429, oa("Rate limit reached for gpt-4o. Please try again in 20s.", "rate_limit_exceeded", "requests"), "rate_limited"),
    ("429 anthropic", 429, anth("rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit"), "rate_limited"),
    ("429 google per-minute quota", 429, j([{"error": {"code": 429, "message": "You exceeded your current quota, please check your plan and billing details. Please retry in 38.47s.", "status": "RESOURCE_EXHAUSTED", "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "38s"}]}}]), "rate_limited"),
    ("429 empty", 429, b"", "rate_limited"),
    ("408", 408, b"", "request_timeout"),
    ("409", 409, oa("conflict"), "conflict"),
    ("422", 422, j({"detail": [{"loc": ["body", "n"], "msg": "value is not a valid integer"}]}), "unprocessable"),
    ("500", 500, oa("The server had an error while processing your request.", None, "server_error"), "server_error"),
    ("500 anthropic api_error", 500, anth("api_error", "Internal server error"), "server_error"),
    ("500 overloaded", 500, j({"error": "Server overloaded, please retry shortly"}), "unavailable"),
    ("500 overloaded type", 500, anth("overloaded_error", "Overloaded"), "unavailable"),
    ("503 model not available", 503, oa("The model is currently not available due to high demand"), "unavailable"),
    ("502 nginx", 502, NGINX_502, "bad_gateway"),
    ("503", 503, google(503, "UNAVAILABLE", "The model is overloaded. Please try again later."), "unavailable"),
    ("529", 529, anth("overloaded_error", "Overloaded"), "unavailable"),
    ("504", 504, b"<html><title>504 Gateway Time-out</title></html>", "gateway_timeout"),
    ("520", 520, b"<html><title>520: Web server is returning an unknown error</title></html>", "server_error"),
    ("524", 524, CF_524, "gateway_timeout"),
    ("599 other", 599, b"", "server_error"),
    ("418 other 4xx", 418, b"teapot", "bad_request"),
    ("kling 1000", 401, kling(1000, "Authentication failed"), "auth_failed"),
    ("kling 1004", 401, kling(1004, "Authorization expired"), "auth_failed"),
    ("kling 1101", 429, kling(1101, "Account in arrears"), "quota_exceeded"),
    ("kling 1102", 429, kling(1102, "Resource pack exhausted"), "quota_exceeded"),
    ("kling 1103", 403, kling(1103, "No permission for this resource"), "permission_denied"),
    ("kling 1201", 400, kling(1201, "Invalid parameters"), "bad_request"),
    ("kling 1301", 400, kling(1301, "Content security policy triggered"), "prompt_blocked"),
    ("kling 1302", 429, kling(1302, "Too fast"), "rate_limited"),
    ("kling 1303", 429, kling(1303, "Concurrency limit"), "rate_limited"),
    ("kling 5001", 500, kling(5001, "Server unavailable"), "server_error"),
    ("stream error none", None, j({"error": {"message": "Internal error", "code": "server_error"}}), "server_error"),
    ("stream anthropic overloaded", None, anth("overloaded_error", "Overloaded"), "unavailable"),
    ("stream rate limit", None, j({"error": {"message": "Rate limit exceeded", "code": "rate_limit_exceeded"}}), "rate_limited"),
    ("stream status hint", None, google(503, "UNAVAILABLE", "busy"), "unavailable"),
    ("stream google words", None, j({"error": {"message": "quota", "status": "RESOURCE_EXHAUSTED"}}), "rate_limited"),
    ("stream openrouter 502", None, j({"error": {"message": "Provider returned error", "code": 502}}), "bad_gateway"),
    ("stream context", None, j({"error": {"message": "This model's maximum context length is 4096 tokens."}}), "context_length_exceeded"),
    ("stream unknown", None, j({"error": {"message": "something odd"}}), "server_error"),
    ("stream kling on 200", None, kling(1301, "risk"), "prompt_blocked"),
    ("gateway raw inner wins", 429, j({"error": {"message": "Provider returned error", "code": 429, "metadata": {"raw": j({"error": {"message": "You exceeded your current quota", "type": "insufficient_quota", "code": "insufficient_quota"}}).decode(), "provider_name": "OpenAI"}}}), "quota_exceeded"),
    ("302 redirect", 302, b"", "invalid_response"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "status", "body", "code"), HARD, ids=[h[0] for h in HARD])
def test_hard_table(name: str, status: int | None, body: bytes, code: str) -> None:
    assert code_for_error(status, read_error(body)) == code
    outcome = classify_error(status, {}, body)
    assert outcome.code == code
    assert outcome.kind == "hard"
    assert outcome.retryable is CODES[code].retryable
    assert outcome.status == status
    if status is not None and status >= 400:
        assert classify_http(status, {}, body).code == code


def test_every_server_hard_code_is_reachable() -> None:
    reached = {h[3] for h in HARD}
    client_side = {"timeout", "connection_error", "download_failed", "invalid_input"}
    hard = {name for name, info in CODES.items() if info.kind == "hard"}
    assert hard - client_side <= reached


def test_error_fields_are_carried() -> None:
    body = oa("Rate limit reached. Please try again in 1.574s.", "rate_limit_exceeded", "tokens", "messages")
    o = classify_error(429, {"X-Request-Id": "req_9"}, body)
    assert (o.provider_code, o.provider_type, o.param, o.request_id) == (
        "rate_limit_exceeded",
        "tokens",
        "messages",
        "req_9",
    )
    assert o.retry_after_s == pytest.approx(1.574)
    assert o.message == "Rate limit reached. Please try again in 1.574s."
    assert o.cause == CODES["rate_limited"].cause
    assert o.to_dict()["retry_after_s"] == pytest.approx(1.574)


@pytest.mark.parametrize(
    ("headers", "body", "expected"),
    [
        ({"retry-after-ms": "250", "retry-after": "9"}, oa("slow. Please try again in 20s"), 0.25),
        ({"retry-after": "9"}, oa("slow. Please try again in 20s"), 9.0),
        ({}, oa("slow. Please try again in 20s"), 20.0),
        ({"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "6m0s"}, oa("slow"), 360.0),
        ({}, j({"error": {"code": 429, "status": "RESOURCE_EXHAUSTED", "message": "quota",
                          "details": [{"retryDelay": "7s"}]}}), 7.0),
        ({}, oa("slow"), None),
    ],
)  # fmt: skip
def test_wait_sources(headers: dict[str, str], body: bytes, expected: float | None) -> None:
    o = classify_error(429, headers, body)
    assert o.retry_after_s == (None if expected is None else pytest.approx(expected))


@pytest.mark.parametrize(
    ("status", "body", "header", "retryable"),
    [
        (429, oa("x", "insufficient_quota"), "true", True),
        (500, oa("x"), "false", False),
        (500, oa("x"), "maybe", True),
        (400, oa("x"), None, False),
    ],
)
def test_x_should_retry_overrides(status: int, body: bytes, header: str | None, retryable: bool) -> None:
    headers = {} if header is None else {"X-Should-Retry": header}
    assert classify_error(status, headers, body).retryable is retryable


def test_messages_are_redacted() -> None:
    key = "sk-proj-SECRETSECRETSECRET1234"
    body = oa(f"Incorrect API key provided: {key}. See the docs.", "invalid_api_key")
    o = classify_error(401, {}, body, secrets=["custom-secret-99"])
    assert o.message is not None
    assert "SECRET" not in o.message
    assert "sk-proj-***" in o.message
    o2 = classify_http(500, {}, oa("echo custom-secret-99 back"), secrets=["custom-secret-99"])
    assert "custom-secret-99" not in (o2.message or "")
    assert "custom-secret-99" not in o2.to_json()


def test_gateway_provider_is_an_extra_field() -> None:
    body = j({"error": {"message": "Provider returned error", "code": 502,
                        "metadata": {"raw": "upstream died", "provider_name": "Fireworks"}}})  # fmt: skip
    o = classify_error(502, {}, body)
    assert o.message == "upstream died"
    assert o.to_dict()["provider"] == "Fireworks"


def test_endpoint_shapes_cause_and_fix() -> None:
    body = oa("Your request was rejected as a result of our safety system.", "content_policy_violation")
    o = classify_error(400, {}, body, endpoint="image")
    assert o.endpoint == "image"
    assert o.cause == CODES["prompt_blocked"].cause_for("image")


# -- soft chat codes -----------------------------------------------------------------------------------

CALL = ToolCall("call_1", "get_weather", '{"city": "Paris"}')
USAGE = Usage(10, 5, 15)


@pytest.mark.parametrize(
    ("finish", "text", "calls", "refusal", "code"),
    [
        ("stop", "Hello", None, None, None),
        ("end_turn", "Hello", None, None, None),
        ("STOP", "Hello", None, None, None),
        ("stop", "", None, None, "empty_output"),
        ("stop", "  \n\t", None, None, "empty_output"),
        ("stop", None, None, None, "empty_output"),
        (None, None, None, None, "empty_output"),
        ("content_filter", "partial", None, None, "content_filtered"),
        ("SAFETY", None, None, None, "content_filtered"),
        ("length", "Once upon a", None, None, "truncated"),
        ("MAX_TOKENS", "Once upon a", None, None, "truncated"),
        ("error", "half", None, None, "stream_error"),
        ("abort", None, None, None, "stream_error"),
        ("tool_calls", None, (CALL,), None, None),
        ("stop", None, (CALL,), None, None),
        ("stop", None, None, "I can't help with that.", "content_filtered"),
        ("something_new", "text", None, None, None),
        ("length", None, (CALL,), None, "truncated"),
    ],
)
def test_finish_outcome(
    finish: str | None,
    text: str | None,
    calls: tuple[ToolCall, ...] | None,
    refusal: str | None,
    code: str | None,
) -> None:
    o = finish_outcome(finish_reason=finish, text=text, tool_calls=calls, usage=USAGE, refusal=refusal)
    assert o.code == code
    assert o.ok is (code is None)
    # partial output and usage are always kept
    assert o.text == text
    assert o.tool_calls == calls
    assert o.usage == USAGE
    if refusal:
        assert o.message == refusal


def test_finish_reason_is_normalised() -> None:
    o = finish_outcome(finish_reason="MAX_TOKENS", text="x", tool_calls=None, usage=None, request_id="r")
    assert o.finish_reason == "length"
    assert o.request_id == "r"
    assert o.kind == "soft"


def completion(message: dict[str, Any], finish: str | None = "stop", **extra: Any) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", **message}, "finish_reason": finish}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
        **extra,
    }


TOOL_MSG = {"content": None, "tool_calls": [{"id": "call_1", "type": "function",
                                            "function": {"name": "f", "arguments": "{\"a\": 1}"}}]}  # fmt: skip
AZURE_FILTER = {
    "hate": {"filtered": True, "severity": "high"},
    "sexual": {"filtered": False, "severity": "safe"},
}

CHAT: list[tuple[str, Any, str | None]] = [
    ("ok", completion({"content": "Hello!"}), None),
    ("tool calls", completion(TOOL_MSG, "tool_calls"), None),
    ("legacy function_call", completion({"content": None, "function_call": {"name": "f", "arguments": "{}"}}, "function_call"), None),
    ("content parts", completion({"content": [{"type": "text", "text": "Hi "}, {"type": "text", "text": "there"}]}), None),
    ("empty content", completion({"content": ""}), "empty_output"),
    ("null content", completion({"content": None}), "empty_output"),
    ("length", completion({"content": "cut"}, "length"), "truncated"),
    ("filter", completion({"content": None}, "content_filter"), "content_filtered"),
    ("refusal", completion({"content": None, "refusal": "I'm sorry, I can't help with that."}), "content_filtered"),
    ("no choices", {"object": "chat.completion", "choices": []}, "empty_output"),
    ("missing choices", {"object": "chat.completion", "id": "x"}, "empty_output"),
    ("choices not list", {"choices": {"0": 1}}, "invalid_response"),
    ("choice not object", {"choices": ["x"]}, "invalid_response"),
    ("message missing", {"choices": [{"index": 0, "finish_reason": "stop"}]}, "invalid_response"),
    ("content is a number", completion({"content": 5}), "invalid_response"),
    ("tool call without name", completion({"content": None, "tool_calls": [{"id": "c", "function": {}}]}), "invalid_response"),
    ("not an object", ["a"], "invalid_response"),
    ("error in 2xx", {"error": {"message": "Upstream overloaded", "code": 503}}, "unavailable"),
    ("azure output filtered", {"object": "chat.completion", "choices": [{"index": 0, "finish_reason": "content_filter", "message": {"role": "assistant"}, "content_filter_results": AZURE_FILTER}]}, "content_filtered"),
    ("azure filtered no reason", {"object": "chat.completion", "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": ""}, "content_filter_results": AZURE_FILTER}]}, "content_filtered"),
    ("azure prompt filtered", {"object": "chat.completion", "choices": [], "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": AZURE_FILTER}]}, "content_filtered"),
    ("azure clean", completion({"content": "fine"}, prompt_filter_results=[{"prompt_index": 0, "content_filter_results": {"hate": {"filtered": False, "severity": "safe"}}}]), None),
]  # fmt: skip


@pytest.mark.parametrize(("name", "data", "code"), CHAT, ids=[c[0] for c in CHAT])
def test_chat_body(name: str, data: Any, code: str | None) -> None:
    o = classify_chat_body(data, headers={"x-request-id": "req_c"})
    assert o.code == code
    assert o.request_id == "req_c"
    via_http = classify_http(200, {"x-request-id": "req_c"}, j(data), endpoint="chat")
    assert via_http.code == code


def test_chat_body_values() -> None:
    o = classify_chat_body(completion(TOOL_MSG, "tool_calls"))
    assert o.ok
    assert o.text is None
    assert o.tool_calls == (ToolCall("call_1", "f", '{"a": 1}'),)
    assert o.usage == Usage(3, 2, 5)
    assert o.finish_reason == "tool_calls"
    parts = classify_chat_body(CHAT[3][1])
    assert parts.text == "Hi there"
    filtered = classify_chat_body(CHAT[18][1])
    assert filtered.message is not None
    assert "hate (high)" in filtered.message
    dict_args = completion(
        {"content": None, "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": {"a": 1}}}]}
    )
    assert classify_chat_body(dict_args).tool_calls == (ToolCall("c", "f", '{"a":1}'),)


def test_truncated_keeps_partial_text_and_usage() -> None:
    o = classify_http(200, {}, j(completion({"content": "Once upon a"}, "length")))
    assert (o.kind, o.code, o.text, o.finish_reason) == ("soft", "truncated", "Once upon a", "length")
    assert o.usage == Usage(3, 2, 5)


# -- classify_http: the 2xx dispatch ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "code", "endpoint"),
    [
        (j(completion({"content": "hi"})), None, "chat"),
        (b"<html><head><title>Sign in</title></head></html>", "invalid_response", "chat"),
        (b"", "invalid_response", "chat"),
        (b"not json at all", "invalid_response", "chat"),
        (j({"hello": "world"}), "invalid_response", "chat"),
        (j([1, 2, 3]), "invalid_response", "chat"),
        (kling(1301, "Content security"), "prompt_blocked", "chat"),
        (kling(1302, "Rate limit"), "rate_limited", "chat"),
        (
            j({"code": "InvalidParameter", "message": "size is invalid", "request_id": "d-1"}),
            "bad_request",
            "chat",
        ),
        (
            j({"object": "error", "message": "The model `x` does not exist.", "code": 404}),
            "model_not_found",
            "chat",
        ),
        (j({"created": 1, "data": []}), "content_filtered", "image"),
        (j({"created": 1, "data": [{"url": "http://127.0.0.1/x.png"}]}), None, "image"),
        (
            j({"id": "video_1", "object": "video", "status": "failed", "error": None}),
            "generation_failed",
            "video",
        ),
        (j({"id": "video_1", "object": "video", "status": "completed", "progress": 100}), None, "video"),
    ],
)
def test_http_2xx_dispatch(body: bytes, code: str | None, endpoint: str) -> None:
    o = classify_http(200, {}, body)
    assert o.code == code
    assert o.endpoint == endpoint
    assert o.status == 200


def test_http_2xx_not_json_names_the_page() -> None:
    o = classify_http(200, {"x-request-id": "r1"}, b"<html><title>Cloudflare Access</title></html>")
    assert o.message is not None
    assert "Cloudflare Access" in o.message
    assert o.request_id == "r1"


def test_http_error_status_ignores_json_parse() -> None:
    o = classify_http(503, {"retry-after": "3"}, b"<html><title>Service Unavailable</title></html>")
    assert (o.code, o.retry_after_s, o.message) == ("unavailable", 3.0, "Service Unavailable")


@given(st.integers(min_value=100, max_value=599), st.binary(max_size=600))
@settings(max_examples=300)
def test_classify_http_never_raises(status: int, body: bytes) -> None:
    o = classify_http(status, {"retry-after": "-3"}, body)
    assert isinstance(o, Outcome)
    assert o.retry_after_s is None or o.retry_after_s >= 0
    if not 200 <= status < 300:
        assert o.kind == "hard"


json_bodies = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**63 - 1) | st.text(max_size=10),
    lambda c: st.lists(c, max_size=4)
    | st.dictionaries(
        st.sampled_from(["choices", "message", "content", "finish_reason", "tool_calls", "function", "name",
                         "arguments", "error", "code", "usage", "data", "status", "object", "refusal"]),
        c,
        max_size=5,
    ),
    max_leaves=25,
)  # fmt: skip


@given(st.sampled_from([200, 201, 400, 429, 500]), json_bodies)
@settings(max_examples=300)
def test_classify_http_never_raises_on_json_shapes(status: int, data: Any) -> None:
    o = classify_http(status, None, j(data))
    assert isinstance(o, Outcome)
    assert o.ok or o.code in CODES


# -- transport exceptions over real loopback sockets ------------------------------------------------------


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A TCP server on 127.0.0.1 that accepts and then says nothing (or hangs up, per path)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    stop = threading.Event()
    conns: list[socket.socket] = []

    def run() -> None:
        srv.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                continue
            data = conn.recv(4096)
            if b"/hangup" in data:
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
                conn.close()
            else:
                conns.append(conn)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.getsockname()[1]}"
    stop.set()
    t.join()
    for c in conns:
        c.close()
    srv.close()


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port: int = s.getsockname()[1]
    s.close()
    return port


def test_exception_connect_refused() -> None:
    with pytest.raises(httpx.ConnectError) as info:
        httpx.get(f"http://127.0.0.1:{_closed_port()}/v1/models", timeout=2)
    o = classify_exception(info.value)
    assert (o.code, o.kind, o.retryable) == ("connection_error", "hard", True)
    assert o.message is not None
    assert o.message.startswith("ConnectError")


def test_exception_connect_refused_names_the_url_without_its_query() -> None:
    # A user with the default base URL, or a mistyped port, must see where genguard tried to connect.
    port = _closed_port()
    with pytest.raises(httpx.ConnectError) as info:
        httpx.get(f"http://127.0.0.1:{port}/v1/models?key=AIzaSyA0123456789abcdefghijk", timeout=2)
    message = classify_exception(info.value).message or ""
    assert f"could not connect to http://127.0.0.1:{port}/v1/models:" in message
    assert "AIzaSy" not in message
    assert "?" not in message


def test_exception_read_timeout(silent_server: str) -> None:
    with pytest.raises(httpx.ReadTimeout) as info:
        httpx.get(silent_server + "/v1/models", timeout=httpx.Timeout(2, read=0.2))
    o = classify_exception(info.value, endpoint="video")
    assert (o.code, o.endpoint, o.retryable) == ("timeout", "video", True)


def test_exception_closed_mid_body(silent_server: str) -> None:
    with pytest.raises(httpx.RemoteProtocolError) as info:
        httpx.get(silent_server + "/hangup", timeout=2)
    assert classify_exception(info.value).code == "connection_error"


def test_exception_message_is_redacted() -> None:
    exc = httpx.ConnectError("failed for https://h/v1?key=AIzaSyA0123456789abcdefghijk and token-77")
    o = classify_exception(exc, secrets=["token-77"])
    assert "AIzaSy" not in (o.message or "")
    assert "token-77" not in (o.message or "")


@pytest.mark.parametrize("exc", [ValueError("bug"), KeyError("x"), httpx.StreamConsumed(), RuntimeError()])
def test_exception_not_transport_raises(exc: BaseException) -> None:
    with pytest.raises(TypeError):
        classify_exception(exc)


@pytest.mark.parametrize(
    ("status_code", "code"),
    [(1002, "rate_limited"), (1004, "auth_failed"), (1008, "quota_exceeded"), (1026, "prompt_blocked")],
)
def test_minimax_codes_are_not_read_as_kling_codes(status_code: int, code: str) -> None:
    # Kling's 1000-1004 are auth failures; MiniMax's 1002 is a rate limit: the vendor decides.
    body = orjson.dumps({"task_id": "", "base_resp": {"status_code": status_code, "status_msg": "x"}})
    assert classify_http(200, {}, body).code == code


def test_a_failed_task_with_its_own_error_is_read_as_a_task() -> None:
    body = (
        b'{"id": "video_1", "object": "video", "status": "failed", "error": {"code": "moderation_blocked"}}'
    )
    outcome = classify_http(200, {}, body)
    assert (outcome.kind, outcome.code) == ("soft", "content_filtered")


def test_a_native_anthropic_message_is_a_chat_answer() -> None:
    body = orjson.dumps({
        "type": "message", "role": "assistant", "stop_reason": "tool_use",
        "content": [{"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {"q": "x"}}],
    })  # fmt: skip
    outcome = classify_http(200, {}, body)
    assert outcome.ok
    assert [(c.name, c.arguments) for c in outcome.tool_calls or ()] == [("lookup", '{"q":"x"}')]


def _response(**fields: Any) -> bytes:
    """An OpenAI Responses API body as ``POST /v1/responses`` returns it (a reasoning model's, with a reasoning
    item before its message), with ``fields`` replaced."""
    body: dict[str, Any] = {
        "id": "resp_67ccd2bed1ec8190", "object": "response", "created_at": 1741476542, "status": "completed",
        "error": None, "incomplete_details": None, "instructions": None, "max_output_tokens": None,
        "model": "o4-mini-2025-04-16",
        "output": [
            {"type": "reasoning", "id": "rs_1", "summary": []},
            {"type": "message", "id": "msg_1", "status": "completed", "role": "assistant",
             "content": [{"type": "output_text", "text": "In a peaceful grove beneath a silver moon, ",
                          "annotations": []},
                         {"type": "output_text", "text": "a unicorn named Lumina slept.", "annotations": []}]},
        ],
        "parallel_tool_calls": True, "tool_choice": "auto", "tools": [], "text": {"format": {"type": "text"}},
        "usage": {"input_tokens": 36, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 87,
                  "output_tokens_details": {"reasoning_tokens": 64}, "total_tokens": 123},
    }  # fmt: skip
    body.update(fields)
    return orjson.dumps(body)


def test_a_responses_api_answer_is_a_chat_answer() -> None:
    outcome = classify_http(200, {"x-request-id": "req_r1"}, _response())
    assert outcome.ok
    assert outcome.text == "In a peaceful grove beneath a silver moon, a unicorn named Lumina slept."
    assert (
        outcome.usage and outcome.usage.prompt_tokens,
        outcome.usage and outcome.usage.completion_tokens,
    ) == (
        36,
        87,
    )
    assert (outcome.request_id, outcome.finish_reason) == ("req_r1", "stop")


@pytest.mark.parametrize(
    ("reason", "code"),
    [
        ("max_output_tokens", "truncated"),
        ("content_filter", "content_filtered"),
        ("something_new", "truncated"),
    ],
)
def test_an_incomplete_response_is_a_soft_failure_with_its_reason(reason: str, code: str) -> None:
    # A reasoning model that spent its max_output_tokens thinking returns no message at all.
    for output in ([], [{"type": "reasoning", "id": "rs_1", "summary": []}]):
        outcome = classify_http(
            200, {}, _response(status="incomplete", incomplete_details={"reason": reason}, output=output)
        )
        assert (outcome.kind, outcome.code) == ("soft", code)
        assert reason in (outcome.message or "")


def test_a_failed_response_is_judged_by_its_error() -> None:
    failed = _response(
        status="failed", output=[], error={"code": "server_error", "message": "The model failed."}
    )
    outcome = classify_http(200, {}, failed)
    assert (outcome.kind, outcome.code, outcome.retryable) == ("hard", "server_error", True)
    assert outcome.message == "The model failed."
    blocked = _response(
        status="failed",
        output=[],
        error={"code": "invalid_prompt",
               "message": "Invalid prompt: your prompt was flagged as potentially violating our usage policy."},
    )  # fmt: skip
    assert classify_http(200, {}, blocked).code == "prompt_blocked"


def test_a_refusal_a_tool_call_and_nothing_at_all() -> None:
    refused = _response(
        output=[{"type": "message", "role": "assistant",
                 "content": [{"type": "refusal", "refusal": "I can't help with that."}]}]
    )  # fmt: skip
    outcome = classify_http(200, {}, refused)
    assert (outcome.code, outcome.message) == ("content_filtered", "I can't help with that.")
    called = _response(
        output=[{"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "get_weather",
                 "arguments": '{"city": "Paris"}', "status": "completed"}]
    )  # fmt: skip
    outcome = classify_http(200, {}, called)
    assert outcome.ok
    assert [(c.id, c.name, c.arguments) for c in outcome.tool_calls or ()] == [
        ("call_1", "get_weather", '{"city": "Paris"}')
    ]
    assert classify_http(200, {}, _response(output=[])).code == "empty_output"
    blank = [{"type": "message", "content": [{"type": "output_text", "text": "  "}]}]
    assert classify_http(200, {}, _response(output=blank)).code == "empty_output"


@pytest.mark.parametrize("state", ["queued", "in_progress", "cancelled"])
def test_a_response_that_is_not_finished_is_no_answer(state: str) -> None:
    outcome = classify_http(200, {}, _response(status=state, output=[]))
    assert outcome.code == "invalid_response"
    assert state in (outcome.message or "")


def test_a_legacy_completion_is_a_chat_answer() -> None:
    body = {"id": "cmpl-1", "object": "text_completion", "model": "gpt-3.5-turbo-instruct",
            "choices": [{"text": "\n\nThis is a test", "index": 0, "logprobs": None, "finish_reason": "length"}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12}}  # fmt: skip
    assert classify_http(200, {}, orjson.dumps(body)).code == "truncated"
    body["choices"][0]["finish_reason"] = "stop"  # type: ignore[index]
    assert classify_http(200, {}, orjson.dumps(body)).text == "\n\nThis is a test"
