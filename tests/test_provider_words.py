"""What providers say in words rather than codes: the vocabulary table phrase by phrase, daily quotas told
from per-minute limits, waits given in the body, and policy or length refusals worded by a cloud or gateway."""

from __future__ import annotations

import re
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from genguard.core.chat_stream import read_chat_stream
from genguard.core.classify import classify_http
from genguard.core.error_body import is_error_body, read_error
from genguard.core.error_verdict import classify_error, code_for_error
from genguard.core.phrases import PHRASES, SIGNS, says
from genguard.core.taxonomy import CODES


def j(obj: Any) -> bytes:
    return orjson.dumps(obj)


def oa(message: str, code: str | None = None, type_: str | None = None) -> bytes:
    return j({"error": {"message": message, "type": type_, "param": None, "code": code}})


# -- the table, phrase by phrase ----------------------------------------------------------------------------

# The status each sign is sent with; the words that only count when no status does are read at None (an error
# inside a stream or a 2xx body).
SIGN_STATUS: dict[str, int | None] = {
    "model_not_found": 400,
    "context_length_exceeded": 400,
    "quota_exceeded": 400,
    "periodic_quota": 429,
    "short_window": 429,
    "request_too_large": 429,
    "prompt_blocked": 400,
    "auth_failed": 400,
    "unavailable": None,
    "rate_limited": None,
    "gateway_timeout": None,
}

EXAMPLES = [
    pytest.param(phrase, example, id=f"{phrase.sign}: {phrase.words} #{n}")
    for phrase in PHRASES
    for n, example in enumerate(phrase.examples)
]


@pytest.mark.parametrize(("phrase", "example"), EXAMPLES)
def test_every_example_of_the_table_reads_as_its_code(phrase: Any, example: str) -> None:
    assert re.search(phrase.regex, example, re.IGNORECASE), "the phrase does not match its own example"
    assert says(phrase.sign, example)
    status = SIGN_STATUS[phrase.sign]
    assert code_for_error(status, read_error(oa(example))) == SIGNS[phrase.sign]


def test_the_table_covers_every_sign_and_names_only_codes() -> None:
    assert set(SIGN_STATUS) == set(SIGNS)
    assert {p.sign for p in PHRASES} == set(SIGNS)
    assert set(SIGNS.values()) <= set(CODES)
    assert all(p.examples and p.source and p.words for p in PHRASES)


GENERIC_400 = [
    "'messages' must contain the word 'json' in some form, to use 'response_format' of type 'json_object'.",
    "Invalid value for 'temperature': expected a number between 0 and 2, got 3.",
    "Unrecognized request argument supplied: foo",
    'messages: roles must alternate between "user" and "assistant", but found multiple "user" roles in a row',
    'Invalid JSON payload received. Unknown name "foo": Cannot find field.',
    "Malformed input request: #: extraneous key [top_p] is not permitted, please reformat your input and try again.",
    "Invalid 'tools[0].function.name': string does not match pattern. Expected a string that matches the pattern "
    "'^[a-zA-Z0-9_-]+$'.",
    "Invalid 'tools[0].function.description': string too long. Expected a string with maximum length 1024, but "
    "got a string with length 1500 instead.",
    "invalid temperature: only 1 is allowed for this model",
    "Extra inputs are not permitted",
    "<400> InternalError.Algo.InvalidParameter: The image format is illegal and cannot be opened",
    "",
]


@pytest.mark.parametrize("message", GENERIC_400)
def test_a_generic_400_with_none_of_the_words_stays_bad_request(message: str) -> None:
    for body in (oa(message, None, "invalid_request_error"), j({"message": message})):
        assert classify_http(400, {}, body).code == "bad_request"


# -- item 1: a daily quota is not a per-minute rate limit ----------------------------------------------------

GEMINI_DAILY = j({"error": {
    "code": 429,
    "message": "You exceeded your current quota, please check your plan and billing details. For more "
               "information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits.\n* Quota "
               "exceeded for metric: generativelanguage.googleapis.com/generate_content_free_tier_requests, "
               "limit: 20, model: gemini-2.5-flash\nPlease retry in 36.429760048s.",
    "status": "RESOURCE_EXHAUSTED",
    "details": [
        {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [
            {"quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests",
             "quotaId": "GenerateRequestsPerDayPerProjectPerModel-FreeTier",
             "quotaDimensions": {"location": "global", "model": "gemini-2.5-flash"}, "quotaValue": "20"}]},
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "36s"},
    ],
}})  # fmt: skip


def _gemini(quota_ids: list[str], message: str = "You exceeded your current quota.") -> bytes:
    violations = [{"quotaMetric": "generativelanguage.googleapis.com/x", "quotaId": q} for q in quota_ids]
    return j([{"error": {"code": 429, "message": message, "status": "RESOURCE_EXHAUSTED", "details": [
        {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": violations},
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "30s"}]}}])  # fmt: skip


@pytest.mark.parametrize(
    ("name", "status", "headers", "body", "wait"),
    [
        ("gemini quotaId per day", 429, {}, GEMINI_DAILY, 36.429760048),
        ("gemini quotaId only, RetryInfo wait", 429, {},
         _gemini(["GenerateRequestsPerDayPerProjectPerModel-FreeTier"]), 30.0),
        ("gemini day and minute violations", 429, {},
         _gemini(["GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
                  "GenerateRequestsPerDayPerProjectPerModel-FreeTier"]), 30.0),
        ("gemini cli per day per user", 429, {}, j([{"error": {"code": 429, "status": "RESOURCE_EXHAUSTED",
         "message": "Quota exceeded for quota metric 'Gemini 2.5 Pro Requests' and limit 'Gemini 2.5 Pro Requests "
                    "per day per user per tier' of service 'cloudcode-pa.googleapis.com'."}}]), None),
        ("openai RPD", 429, {"x-request-id": "req_1"}, oa(
            "Rate limit reached for gpt-3.5-turbo in organization org-x on requests per day (RPD): Limit 10000, "
            "Used 10000, Requested 1. Please try again in 8.64s.", "rate_limit_exceeded", "requests"), 8.64),
        ("groq TPD", 429, {}, oa(
            "Rate limit reached for model `llama-3.1-8b-instant` in organization `org_1` service tier `on_demand` "
            "on tokens per day (TPD): Limit 500000, Used 499812, Requested 1530. Please try again in 3m51.552s.",
            "rate_limit_exceeded", "tokens"), 231.552),
        ("openrouter free per day", 429, {}, j({"error": {"code": 429, "message":
            "Rate limit exceeded: free-models-per-day. Add 10 credits to unlock 1000 free model requests per day"}}),
         None),
        ("azure daily limit, header wait", 429, {"retry-after": "3600"}, j({"error": {"code": "429", "message":
            "Rate limit of 150 per 86400s exceeded for UserByModelByDay. Please wait 3600 seconds before "
            "retrying."}}), 3600.0),
        ("google daily limit exceeded 403", 403, {}, j({"error": {"code": 403, "message": "Daily Limit Exceeded",
            "errors": [{"domain": "usageLimits", "reason": "dailyLimitExceeded", "message": "Daily Limit Exceeded"}]}}),
         None),
        ("baidu daily on 200", 200, {}, j({"error_code": 17, "error_msg": "Open api daily request limit reached"}),
         None),
        ("cohere trial monthly", 429, {}, j({"message": "You are using a Trial key, which is limited to 1000 API "
            "calls / month. You can continue to use the Trial key for free or upgrade to a Production key."}), None),
    ],
)  # fmt: skip
def test_a_daily_or_monthly_quota_is_quota_exceeded_with_its_reset(
    name: str, status: int, headers: dict[str, str], body: bytes, wait: float | None
) -> None:
    o = classify_http(status, headers, body)
    assert (o.code, o.kind, o.retryable) == ("quota_exceeded", "hard", False), name
    assert o.retry_after_s == (None if wait is None else pytest.approx(wait))
    assert classify_error(None, {}, body).code == "quota_exceeded"


@pytest.mark.parametrize(
    ("name", "body", "wait"),
    [
        ("gemini per minute", _gemini(["GenerateRequestsPerMinutePerProjectPerModel-FreeTier"]), 30.0),
        ("gemini input tokens per minute", _gemini(["GenerateContentInputTokensPerModelPerMinute-FreeTier"]), 30.0),
        ("openai TPM", oa("Rate limit reached for gpt-4o in organization org-x on tokens per min (TPM): Limit "
                          "30000, Used 29000, Requested 2000. Please try again in 2s.", "rate_limit_exceeded",
                          "tokens"), 2.0),
        ("groq RPM, today in the upsell", oa("Rate limit reached for model `llama3` on requests per minute (RPM): "
            "Limit 30, Used 30, Requested 1. Please try again in 2s. Need more tokens? Upgrade to Dev Tier today",
            "rate_limit_exceeded", "requests"), 2.0),
        ("baidu qps on 200", j({"error_code": 18, "error_msg": "Open api qps request limit reached"}), None),
    ],
)  # fmt: skip
def test_a_per_minute_limit_stays_rate_limited(name: str, body: bytes, wait: float | None) -> None:
    status = 200 if b"error_code" in body else 429
    o = classify_http(status, {}, body)
    assert (o.code, o.retryable) == ("rate_limited", True), name
    assert o.retry_after_s == (None if wait is None else pytest.approx(wait))


def test_quota_ids_are_read_from_every_google_place() -> None:
    info = read_error(GEMINI_DAILY)
    assert "GenerateRequestsPerDayPerProjectPerModel-FreeTier" in info.quota_ids
    info = read_error(j({"error": {"code": 429, "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo",
        "reason": "RATE_LIMIT_EXCEEDED", "metadata": {"quota_limit": "Gemini25ProRequestsPerDayPerUserPerTier"}}]}}))  # fmt: skip
    assert info.quota_ids == ("Gemini25ProRequestsPerDayPerUserPerTier",)


def test_baidu_envelopes_are_error_bodies_and_success_is_not() -> None:
    assert is_error_body({"error_code": 17, "error_msg": "Open api daily request limit reached"})
    assert not is_error_body({"error_code": 0, "error_msg": "", "result": "hi"})
    info = read_error(j({"error_code": 110, "error_msg": "Access token invalid or no longer valid"}))
    assert (info.code, info.message) == ("110", "Access token invalid or no longer valid")


# -- item 2: a wait in the body is a wait ----------------------------------------------------------------------

HF_LOADING = j({"error": "Model bigscience/bloom is currently loading", "estimated_time": 20.0})


@pytest.mark.parametrize(
    ("name", "status", "headers", "body", "wait"),
    [
        ("hugging face estimated_time", 503, {}, HF_LOADING, 20.0),
        ("header wins over the body", 503, {"retry-after": "5"}, HF_LOADING, 5.0),
        ("google RetryInfo only", 429, {}, j({"error": {"code": 429, "message": "Resource has been exhausted.",
            "status": "RESOURCE_EXHAUSTED", "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo",
            "retryDelay": "30s"}]}}), 30.0),
        ("retry_after number", 429, {}, j({"error": {"message": "slow down", "retry_after": 12}}), 12.0),
        ("retry_after_seconds", 429, {}, j({"error": "slow down", "retry_after_seconds": 7.5}), 7.5),
        ("retryAfter duration text", 429, {}, j({"error": {"message": "slow down", "retryAfter": "45s"}}), 45.0),
        ("retry_after_ms", 429, {}, j({"message": "slow down", "retry_after_ms": 1500}), 1.5),
        ("try again in N seconds", 429, {}, oa("Too many requests, try again in 20 seconds."), 20.0),
        ("please retry after 5s", 429, {}, oa("Rate limited: please retry after 5s"), 5.0),
        ("please retry in 17.5s", 429, {}, oa("Quota exceeded. Please retry in 17.5s."), 17.5),
        ("a negative field is no wait", 429, {}, j({"error": {"message": "slow", "retry_after": -3}}), None),
        ("a boolean field is no wait", 429, {}, j({"error": {"message": "slow", "retry_after": True}}), None),
    ],
)  # fmt: skip
def test_a_wait_in_the_body_is_retry_after_s(
    name: str, status: int, headers: dict[str, str], body: bytes, wait: float | None
) -> None:
    o = classify_http(status, headers, body)
    assert o.retry_after_s == (None if wait is None else pytest.approx(wait)), name
    assert o.retryable


def test_hugging_face_loading_is_unavailable_and_names_its_wait() -> None:
    o = classify_http(503, {}, HF_LOADING)
    assert (o.code, o.retry_after_s, o.message) == (
        "unavailable",
        20.0,
        "Model bigscience/bloom is currently loading",
    )


@pytest.mark.parametrize(
    ("event", "wait"),
    [
        (b'data: {"error": {"message": "Rate limit reached. Please try again in 20s.", "code": "rate_limit_exceeded"}}',
         20.0),
        (b'data: {"error": "Model x is currently loading", "estimated_time": 12.5}', 12.5),
        (b'data: {"error": {"message": "overloaded", "details": [{"retryDelay": "9s"}]}}', 9.0),
    ],
)  # fmt: skip
def test_an_error_inside_a_stream_carries_its_wait(event: bytes, wait: float) -> None:
    body = b'data: {"choices":[{"index":0,"delta":{"content":"Hel"}}]}\n\n' + event + b"\n\ndata: [DONE]\n\n"
    o = read_chat_stream(body)
    assert o.code == "stream_error"
    assert o.retry_after_s == pytest.approx(wait)
    assert o.text == "Hel"


# -- item 3: policy and length refusals worded by a cloud or gateway ---------------------------------------------


@pytest.mark.parametrize(
    ("name", "status", "body", "code"),
    [
        ("vertex imagen threshold", 400, j([{"error": {"code": 400, "status": "INVALID_ARGUMENT", "message":
            "Image generation failed with the following error: Your current safety filter threshold prohibited one "
            "or more words in this prompt. If you think this was an error, send feedback."}}]), "prompt_blocked"),
        ("azure content management policy", 400, j({"error": {"code": "content_filter", "status": 400, "message":
            "The response was filtered due to the prompt triggering Azure OpenAI's content management policy. "
            "Please modify your prompt and retry."}}), "prompt_blocked"),
        ("openai images safety system", 400, oa("Your request was rejected as a result of our safety system. Your "
            "prompt may contain text that is not allowed by our safety system.", None, "invalid_request_error"),
         "prompt_blocked"),
        ("xai content moderation", 400, j({"code": "Client specified an invalid argument", "error":
            "Generated image rejected by content moderation."}), "prompt_blocked"),
        ("dashscope code", 400, j({"code": "DataInspectionFailed", "message": "Input data may contain "
            "inappropriate content.", "request_id": "r-1"}), "prompt_blocked"),
        ("dashscope compatible words only", 400, oa("<400> InternalError.Algo.DataInspectionFailed: Input text data "
            "may contain inappropriate content.", "invalid_parameter_error", "invalid_request_error"),
         "prompt_blocked"),
        ("moonshot high risk", 400, oa("The request was rejected because it was considered high risk",
                                       None, "content_filter"), "prompt_blocked"),
        ("openai reasoning invalid_prompt", 400, oa("Invalid prompt: your prompt was flagged as potentially "
            "violating our usage policy. Please try again with a different prompt.", "invalid_prompt",
            "invalid_request_error"), "prompt_blocked"),
        ("bedrock input too long", 400, j({"message": "Input is too long for requested model."}),
         "context_length_exceeded"),
        ("anthropic prompt too long", 400, j({"type": "error", "error": {"type": "invalid_request_error",
            "message": "prompt is too long: 210000 tokens > 200000 maximum"}}), "context_length_exceeded"),
        ("openai maximum context length", 400, oa("This model's maximum context length is 128000 tokens. However, "
            "your messages resulted in 130000 tokens. Please reduce the length of the messages."),
         "context_length_exceeded"),
        ("gateway exceeds the context window", 400, oa("Your input exceeds the context window of this model."),
         "context_length_exceeded"),
        ("tgi inputs + max_new_tokens", 422, j({"error": "Input validation error: `inputs` tokens + `max_new_tokens` "
            "must be <= 4096. Given: 4000 `inputs` tokens and 200 `max_new_tokens`", "error_type": "validation"}),
         "context_length_exceeded"),
        ("tgi inputs less than", 422, j({"error": "Input validation error: `inputs` must have less than 1024 "
            "tokens. Given: 2000", "error_type": "validation"}), "context_length_exceeded"),
        ("openai messages string too long", 400, oa("Invalid 'messages[0].content': string too long. Expected a "
            "string with maximum length 10485760, but got a string with length 12000000 instead.", None,
            "invalid_request_error"), "context_length_exceeded"),
        ("baidu v2 tokens_too_long", 400, oa("Input exceeds token limit", "tokens_too_long", "invalid_request_error"),
         "context_length_exceeded"),
        ("xai maximum prompt length", 400, j({"code": "Client specified an invalid argument", "error": "This "
            "model's maximum prompt length is 131072 but the request contains 136973 tokens."}),
         "context_length_exceeded"),
    ],
)  # fmt: skip
def test_refusals_worded_by_a_cloud_or_gateway(name: str, status: int, body: bytes, code: str) -> None:
    assert classify_http(status, {}, body).code == code, name


@pytest.mark.parametrize("reason", ["SAFETY", "PROHIBITED_CONTENT", "BLOCKLIST", "OTHER", "IMAGE_SAFETY"])
def test_a_gemini_prompt_feedback_block_is_prompt_blocked(reason: str) -> None:
    body = j({"promptFeedback": {"blockReason": reason, "safetyRatings": [
        {"category": "HARM_CATEGORY_HARASSMENT", "probability": "HIGH", "blocked": True}]},
        "usageMetadata": {"promptTokenCount": 7, "totalTokenCount": 7}, "modelVersion": "gemini-2.0-flash"})  # fmt: skip
    o = classify_http(200, {"x-request-id": "r1"}, body)
    assert (o.code, o.kind, o.status, o.provider_code, o.request_id) == (
        "prompt_blocked",
        "hard",
        200,
        reason,
        "r1",
    )
    assert o.usage is not None
    assert o.usage.prompt_tokens == 7


@pytest.mark.parametrize(
    ("finish", "code", "text"),
    [
        ("STOP", None, "Hello there"),
        ("MAX_TOKENS", "truncated", "Hello there"),
        ("SAFETY", "content_filtered", None),
    ],
)
def test_a_native_gemini_answer_is_read_as_chat(finish: str, code: str | None, text: str | None) -> None:
    parts = [{"text": "Hello"}, {"text": " there"}] if text else []
    candidate: dict[str, Any] = {"finishReason": finish, "index": 0}
    if parts:
        candidate["content"] = {"parts": parts, "role": "model"}
    body = j({"candidates": [candidate], "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 2,
                                                           "totalTokenCount": 5}})  # fmt: skip
    o = classify_http(200, {}, body)
    assert (o.code, o.text) == (code, text)
    assert o.usage is not None
    assert (o.usage.prompt_tokens, o.usage.completion_tokens) == (3, 2)


def test_a_daily_quota_says_so_in_its_cause_and_fix() -> None:
    daily = classify_http(429, {}, GEMINI_DAILY)
    assert "per day" in (daily.cause or "")
    assert "reset" in (daily.fix or "")
    money = classify_http(429, {}, oa("You exceeded your current quota, please check your plan and billing details.",
                                      "insufficient_quota", "insufficient_quota"))  # fmt: skip
    assert money.cause == CODES["quota_exceeded"].cause


_keys = st.sampled_from([
    "error", "message", "code", "status", "details", "retryDelay", "violations", "quotaId", "quotaMetric",
    "metadata", "quota_limit", "errors", "reason", "estimated_time", "retry_after", "retry_after_seconds",
    "retryAfter", "retry_after_ms", "error_code", "error_msg", "promptFeedback", "blockReason", "candidates",
])  # fmt: skip
_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats() | st.text(max_size=12)
    | st.sampled_from(["30s", "1.5", "PerDay", "GenerateRequestsPerDayPerProjectPerModel-FreeTier", "daily"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_keys, inner, max_size=4),
    max_leaves=10,
)  # fmt: skip


@settings(deadline=None)
@given(st.dictionaries(_keys, _values, max_size=5))
def test_any_body_with_these_fields_reads_without_error(body: dict[str, Any]) -> None:
    info = read_error(body)
    assert info.retry_delay_s is None or 0 <= info.retry_delay_s < float("inf")
    assert all(isinstance(q, str) for q in info.quota_ids)
    try:
        encoded = orjson.dumps(body)
    except orjson.JSONEncodeError:
        return
    for status in (200, 429):
        o = classify_http(status, {}, encoded)
        assert o.code is None or o.code in CODES
        assert o.retry_after_s is None or o.retry_after_s >= 0
