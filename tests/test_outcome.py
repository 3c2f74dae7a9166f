"""The Outcome contract: to_dict() is exactly TAXONOMY.md's JSON object, and failures carry their diagnosis."""

from __future__ import annotations

import dataclasses
import inspect
import math
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import genguard
from genguard import Attempt, Outcome, ToolCall, Usage

# The field list of TAXONOMY.md's outcome object, in its order.
CONTRACT_FIELDS = [
    "ok",
    "kind",
    "code",
    "retryable",
    "retry_after_s",
    "status",
    "message",
    "param",
    "provider_code",
    "provider_type",
    "request_id",
    "finish_reason",
    "text",
    "tool_calls",
    "usage",
    "attempts",
    "cause",
    "fix",
]


def test_to_dict_has_exactly_the_contract_fields_in_order() -> None:
    assert list(Outcome.success(text="hi").to_dict()) == CONTRACT_FIELDS
    assert list(Outcome.failure("rate_limited").to_dict()) == CONTRACT_FIELDS


def test_extra_fields_follow_the_contract_and_never_remove_it() -> None:
    o = Outcome.failure("download_failed", endpoint="image").with_extra(files=["a.png"], model="dall-e-3")
    d = o.to_dict()
    assert list(d)[: len(CONTRACT_FIELDS)] == CONTRACT_FIELDS
    assert d["files"] == ["a.png"]
    assert d["model"] == "dall-e-3"


def test_ok_outcome_has_no_code_and_is_not_retryable() -> None:
    d = Outcome.success(text="hello", finish_reason="stop", usage=Usage(3, 2, 5)).to_dict()
    assert d["ok"] is True
    assert d["kind"] is None
    assert d["code"] is None
    assert d["retryable"] is False
    assert d["usage"] == {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}


@pytest.mark.parametrize(
    ("code", "kind", "retryable"),
    [
        ("rate_limited", "hard", True),
        ("quota_exceeded", "hard", False),
        ("truncated", "soft", False),
        ("incomplete_stream", "soft", True),
        ("invalid_json", "silent", False),
    ],
)
def test_failure_takes_kind_and_verdict_from_the_taxonomy(code: str, kind: str, retryable: bool) -> None:
    o = Outcome.failure(code)
    assert (o.ok, o.kind, o.code, o.retryable) == (False, kind, code, retryable)
    assert o.cause
    assert o.fix
    assert o.cause == genguard.code_info(code).cause_for("chat")


def test_retryable_override_applies_x_should_retry() -> None:
    assert Outcome.failure("server_error", retryable=False).retryable is False
    assert Outcome.failure("bad_request", retryable=True).retryable is True


def test_endpoint_specific_cause_and_fix() -> None:
    chat = Outcome.failure("content_filtered")
    image = Outcome.failure("content_filtered", endpoint="image")
    assert chat.cause != image.cause
    assert "image" in (image.cause or "").lower()


def test_negative_wait_is_clamped() -> None:
    assert Outcome.failure("rate_limited", retry_after_s=-3).retry_after_s == 0.0


def test_unknown_code_is_a_clear_error() -> None:
    with pytest.raises(KeyError, match="unknown failure code 'nope'"):
        Outcome.failure("nope")


def test_partial_output_is_kept_on_failures() -> None:
    call = ToolCall(id="call_1", name="f", arguments='{"a": 1}')
    o = Outcome.failure("incomplete_stream", text="partial", tool_calls=(call,), usage=Usage(1, 1, 2))
    d = o.to_dict()
    assert d["text"] == "partial"
    assert d["tool_calls"] == [
        {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}}
    ]
    assert d["usage"]["total_tokens"] == 2


def test_to_json_round_trips() -> None:
    o = Outcome.failure("rate_limited", status=429, retry_after_s=20.0, message="slow down")
    assert orjson.loads(o.to_json()) == o.to_dict()


@pytest.mark.parametrize(
    ("kind", "exc"),
    [
        ("rate_limited", genguard.HardFailure),
        ("truncated", genguard.SoftFailure),
        ("schema_mismatch", genguard.SilentFailure),
    ],
)
def test_raise_for_failure_raises_the_kind_and_carries_the_outcome(kind: str, exc: type[Exception]) -> None:
    o = Outcome.failure(kind, message="provider words")
    with pytest.raises(exc) as info:
        o.raise_for_failure()
    assert isinstance(info.value, genguard.FailureError)
    assert info.value.outcome is o
    assert "provider words" in str(info.value)


def test_raise_for_failure_returns_ok_outcome() -> None:
    o = Outcome.success(text="x")
    assert o.raise_for_failure() is o


def test_outcome_is_frozen() -> None:
    o = Outcome.success(text="x")
    with pytest.raises(AttributeError):
        o.text = "y"  # type: ignore[misc]


def test_usage_reads_both_spellings_and_sums() -> None:
    assert Usage.from_dict({"input_tokens": 4, "output_tokens": 6}) == Usage(4, 6, 10)
    assert Usage.from_dict(None) is None
    assert Usage.from_dict({}) is None
    u = Usage.from_dict(
        {
            "prompt_tokens": 1,
            "completion_tokens": 2,
            "total_tokens": 3,
            "completion_tokens_details": {"reasoning_tokens": 0},
        }
    )
    assert u is not None
    assert u.to_dict()["completion_tokens_details"] == {"reasoning_tokens": 0}
    assert (u + Usage(1, None, 1)).completion_tokens == 2


def test_tool_call_arguments_parse_or_say_why() -> None:
    assert ToolCall("c", "f", '{"x": 2}').parsed_arguments() == {"x": 2}
    with pytest.raises(ValueError, match="not JSON"):
        ToolCall("c", "f", '{"x": ').parsed_arguments()


def test_attempt_to_dict() -> None:
    a = Attempt(number=1, code="rate_limited", status=429, wait_s=2.5)
    assert a.to_dict()["wait_s"] == 2.5


# -- the hand-written initialisers and the lean usage reader ---------------------------------------------


def _declared_default(f: dataclasses.Field[Any]) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    assert f.default_factory is not dataclasses.MISSING, f.name
    return f.default_factory()


@pytest.mark.parametrize("cls", [Outcome, Usage])
def test_init_takes_exactly_the_declared_fields_in_order_with_their_defaults(cls: type) -> None:
    params = list(inspect.signature(cls).parameters.values())
    declared = dataclasses.fields(cls)
    assert [p.name for p in params] == [f.name for f in declared]
    for p, f in zip(params, declared, strict=True):
        assert p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
        expected = (
            inspect.Parameter.empty
            if f.default is f.default_factory is dataclasses.MISSING
            else (_declared_default(f))
        )
        assert p.default == expected, f.name


@pytest.mark.parametrize("cls", [Outcome, Usage])
def test_init_stores_every_field_positionally_and_by_name(cls: type) -> None:
    names = [f.name for f in dataclasses.fields(cls)]
    values = [object() for _ in names]
    for built in (cls(*values), cls(**dict(zip(names, values, strict=True)))):
        assert [getattr(built, n) for n in names] == values
    with pytest.raises(dataclasses.FrozenInstanceError):
        built.__setattr__(names[0], 1)


def test_defaults_equal_the_declared_ones_and_replace_keeps_the_rest() -> None:
    o = Outcome(True)
    assert (o.extra, o.history, o.attempts, o.endpoint, o.kind) == ({}, (), 1, "chat", None)
    changed = o.replace(text="t", attempts=3)
    assert (changed.text, changed.attempts, changed.ok, changed.endpoint) == ("t", 3, True, "chat")
    assert o == Outcome(True) != changed


def _usage_reference(data: dict[str, Any]) -> tuple[Any, ...] | None:
    """The general reading, written out plainly: the lean path must agree with it on every dict."""

    def num(*keys: str) -> int | None:
        for k in keys:
            v = data.get(k)
            if isinstance(v, int) and not isinstance(v, bool):
                return v
            if isinstance(v, float) and math.isfinite(v):
                return int(v)
        return None

    if not data:
        return None
    p, c, t = (
        num("prompt_tokens", "input_tokens"),
        num("completion_tokens", "output_tokens"),
        num("total_tokens"),
    )
    if t is None and p is not None and c is not None:
        t = p + c
    known = {"prompt_tokens", "input_tokens", "completion_tokens", "output_tokens", "total_tokens"}
    details = {k: v for k, v in data.items() if k not in known} or None
    if p is None and c is None and t is None and details is None:
        return None
    return (p, c, t, details)


_counts = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 10**12), st.floats(allow_nan=True), st.text(max_size=3)
)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["prompt_tokens", "completion_tokens", "total_tokens", "input_tokens", "output_tokens",
                         "prompt_tokens_details", "cost"]),
        _counts,
    )
)  # fmt: skip
def test_usage_from_dict_agrees_with_the_general_reading(data: dict[str, Any]) -> None:
    u = Usage.from_dict(data)
    ref = _usage_reference(data)
    assert (None if u is None else (u.prompt_tokens, u.completion_tokens, u.total_tokens, u.details)) == ref


def test_usage_from_dict_common_shapes() -> None:
    assert Usage.from_dict({"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9}) == Usage(5, 4, 9)
    openai = {
        "prompt_tokens": 5,
        "completion_tokens": 4,
        "total_tokens": 9,
        "prompt_tokens_details": {"cached_tokens": 2},
    }
    assert Usage.from_dict(openai) == Usage(5, 4, 9, {"prompt_tokens_details": {"cached_tokens": 2}})
    assert Usage.from_dict({"prompt_tokens": True, "completion_tokens": 4, "total_tokens": 9}) == Usage(
        None, 4, 9
    )
    assert Usage.from_dict({"input_tokens": 3, "output_tokens": 2}) == Usage(3, 2, 5)


def test_replace_matches_dataclasses_replace_field_by_field() -> None:
    o = Outcome.failure("rate_limited", status=429, retry_after_s=2.0, text="t", usage=Usage(1, 2, 3))
    names = [f.name for f in dataclasses.fields(Outcome)]
    for name in names:
        marker = object()
        assert o.replace(**{name: marker}) == dataclasses.replace(o, **{name: marker})
        assert [getattr(o.replace(**{name: marker}), n) is marker for n in names] == [
            n == name for n in names
        ]
    assert o.replace() == o
    assert o.replace() is not o
    with pytest.raises(TypeError, match="no field 'nope'"):
        o.replace(nope=1)


def test_with_extra_merges_and_overrides_without_touching_the_original() -> None:
    o = Outcome.success(text="x").with_extra(model="a", files=["f"])
    o2 = o.with_extra(model="b")
    assert (dict(o.extra), dict(o2.extra)) == ({"model": "a", "files": ["f"]}, {"model": "b", "files": ["f"]})
    assert o2.text == "x"


# -- lossless round trip: what a journal stores must come back whole --------------------------------------

_text = st.none() | st.text(max_size=20)
_count = st.none() | st.integers(min_value=0, max_value=10**9)
_json_scalar = st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=10)
_usages = st.none() | st.builds(
    genguard.Usage,
    _count,
    _count,
    _count,
    st.none()
    | st.dictionaries(st.sampled_from(["cached_tokens", "reasoning_tokens"]), st.integers(0, 99), min_size=1),
)
_tool_calls = st.none() | st.lists(
    st.builds(genguard.ToolCall, st.none() | st.text(max_size=8), st.text(max_size=8), st.text(max_size=20)),
    max_size=3,
).map(tuple)
_attempts = st.lists(
    st.builds(
        genguard.Attempt,
        st.integers(1, 9),
        st.none() | st.sampled_from(sorted(genguard.CODES)),
        st.none() | st.integers(100, 599),
        st.floats(0, 600, allow_nan=False),
        _text,
        _text,
        _text,
    ),
    max_size=4,
).map(tuple)


_choice_codes = st.none() | st.sampled_from(sorted(c for c, i in genguard.CODES.items() if i.kind == "soft"))
_choices = st.none() | st.lists(
    st.builds(
        genguard.Choice,
        st.integers(0, 9),
        _text,
        _tool_calls,
        st.none() | st.sampled_from(["stop", "length", "content_filter", "tool_calls"]),
        _choice_codes,
        st.none() | st.sampled_from(["soft", "silent"]),
    ),
    min_size=2,
    max_size=4,
).map(tuple)
_header_text = st.text(alphabet="abcdefghijklmnopqrstuvwxyz-0123456789 ;=", max_size=12)
_raws = st.none() | st.builds(
    genguard.RawResponse,
    st.none() | st.integers(100, 599),
    st.lists(st.tuples(_header_text, _header_text), max_size=4).map(tuple),
    st.text(max_size=40),
    st.integers(0, 10**9),
    st.booleans(),
)


@st.composite
def _outcomes(draw: st.DrawFn) -> genguard.Outcome:
    common = {
        "text": draw(_text),
        "usage": draw(_usages),
        "tool_calls": draw(_tool_calls),
        "attempts": draw(st.integers(1, 20)),
        "request_id": draw(_text),
        "endpoint": draw(st.sampled_from(["chat", "image", "video"])),
        "history": draw(_attempts),
        "extra": draw(st.dictionaries(st.sampled_from(["model", "cost_usd", "files"]), _json_scalar)),
        "parsed": draw(_json_scalar),
        "choices": draw(_choices),
        "raw": draw(_raws),
    }
    if draw(st.booleans()):
        return genguard.Outcome.success(finish_reason=draw(st.sampled_from(["stop", "tool_calls"])), **common)
    return genguard.Outcome.failure(
        draw(st.sampled_from(sorted(genguard.CODES))),
        status=draw(st.none() | st.integers(100, 599)),
        retry_after_s=draw(st.none() | st.floats(0, 10**6, allow_nan=False)),
        message=draw(_text),
        provider_code=draw(_text),
        **common,
    )


@given(_outcomes())
def test_an_outcome_survives_a_full_round_trip_through_json(outcome: genguard.Outcome) -> None:
    stored = orjson.dumps(outcome.to_dict(full=True))
    back = genguard.Outcome.from_dict(orjson.loads(stored))
    assert back == outcome
    assert back.history == outcome.history
    assert back.to_dict(full=True) == outcome.to_dict(full=True)


@given(_outcomes(), st.none() | st.floats(0, 10, allow_nan=False))
def test_an_output_line_written_from_the_stored_outcome_is_its_plain_json(
    outcome: genguard.Outcome, cost: float | None
) -> None:
    # The batch writer takes the stored object's public part as it is, without the Outcome round trip: the
    # bytes must be those of the round trip, key order included.
    from genguard.bulk.model import Ended
    from genguard.bulk.outputs import output_record

    stored = orjson.loads(orjson.dumps(outcome.to_dict(full=True)))
    record = output_record(Ended(1, "c", 1, "/v1/chat/completions", stored, None, {"cost_usd": cost}))
    expected = genguard.Outcome.from_dict(stored).to_dict() | {"cost_usd": cost}
    assert orjson.dumps(record["genguard"]) == orjson.dumps(expected)
    if not outcome.ok:
        assert record["error"] == {
            "code": outcome.code,
            "message": outcome.message or outcome.cause or outcome.code,
        }
    # An object another version wrote, with fields missing, is read through the Outcome.
    older = {k: v for k, v in stored.items() if k not in ("retryable", "fix")}
    again = output_record(Ended(1, "c", 1, "/v1/chat/completions", older, None, {"cost_usd": cost}))
    assert again["genguard"] == genguard.Outcome.from_dict(older).to_dict() | {"cost_usd": cost}


def test_the_plain_json_object_is_unchanged_and_from_dict_reads_it() -> None:
    o = genguard.Outcome.failure("rate_limited", status=429, retry_after_s=2.0).with_extra(model="m")
    plain = o.to_dict()
    assert "history" not in plain
    assert "endpoint" not in plain
    back = genguard.Outcome.from_dict(plain)
    assert (back.code, back.kind, back.retry_after_s, back.extra["model"]) == (
        "rate_limited",
        "hard",
        2.0,
        "m",
    )


def test_from_dict_refuses_what_is_not_an_outcome() -> None:
    with pytest.raises(ValueError, match="'ok'"):
        genguard.Outcome.from_dict({"code": "rate_limited"})


# -- every choice of n > 1, and the raw response --------------------------------------------------------------


def test_choices_appear_in_the_plain_json_only_when_there_are_several() -> None:
    one = genguard.Outcome.success(text="hi", finish_reason="stop")
    assert "choices" not in one.to_dict()
    several = one.replace(
        choices=(
            genguard.Choice(0, "hi", None, "stop"),
            genguard.Choice(1, "Hel", None, "length", "truncated", "soft"),
        )
    )
    d = several.to_dict()
    assert list(d)[: len(CONTRACT_FIELDS)] == CONTRACT_FIELDS
    assert d["choices"] == [
        {"index": 0, "text": "hi", "tool_calls": None, "finish_reason": "stop", "code": None, "kind": None},
        {
            "index": 1,
            "text": "Hel",
            "tool_calls": None,
            "finish_reason": "length",
            "code": "truncated",
            "kind": "soft",
        },
    ]
    assert genguard.Outcome.from_dict(orjson.loads(several.to_json())).choices == several.choices


def test_raw_is_kept_only_in_the_full_form_and_comes_back() -> None:
    raw = genguard.RawResponse.capture(429, {"retry-after": "2"}, b'{"error": "slow"}')
    o = genguard.Outcome.failure("rate_limited", status=429, raw=raw)
    assert "raw" not in o.to_dict()
    full = o.to_dict(full=True)
    assert full["raw"] == {"status": 429, "headers": [["retry-after", "2"]], "body": '{"error": "slow"}', "size": 17,
                           "truncated": False}  # fmt: skip
    assert genguard.Outcome.from_dict(orjson.loads(orjson.dumps(full))).raw == raw


KEY = "sk-proj-Zx81KqLw02mVb7TnQ4"


def test_raw_masks_credentials_in_headers_and_body() -> None:
    headers = httpx.Headers(
        [("Authorization", f"Bearer {KEY}"), ("api-key", "azure-key-1234567890"), ("x-api-key", "k"),
         ("Set-Cookie", "session=abc"), ("Set-Cookie", "other=def"), ("x-echo", f"token={KEY}"),
         ("x-request-id", "req_1")]
    )  # fmt: skip
    body = f'{{"error": {{"message": "Incorrect API key provided: {KEY}", "custom": "my-own-secret-42"}}}}'
    raw = genguard.RawResponse.capture(401, headers, body.encode(), secrets=["my-own-secret-42"])
    shown = orjson.dumps(raw.to_dict()).decode()
    for secret in (KEY, KEY[8:], "azure-key-1234567890", "session=abc", "other=def", "my-own-secret-42"):
        assert secret not in shown
    assert ("x-request-id", "req_1") in raw.headers
    assert [v for k, v in raw.headers if k == "set-cookie"] == ["***", "***"]
    assert "Incorrect API key provided: sk-proj-***" in raw.body


def test_raw_cuts_a_long_body_with_a_marker() -> None:
    from genguard.core.outcome import RAW_BODY_LIMIT

    body = b"x" * (RAW_BODY_LIMIT + 5000)
    raw = genguard.RawResponse.capture(200, {}, body)
    assert raw.truncated
    assert raw.size == RAW_BODY_LIMIT + 5000
    assert raw.body.startswith("x" * RAW_BODY_LIMIT)
    assert raw.body.endswith("[5000 more characters not kept]")
    short = genguard.RawResponse.capture(200, None, "ok")
    assert (short.body, short.size, short.truncated, short.headers) == ("ok", 2, False, ())
    # A key that straddles the cut is masked before the cut, so not even its start survives.
    edge = b"y" * (RAW_BODY_LIMIT - 10) + KEY.encode() + b"z" * 100
    assert KEY[8:12] not in genguard.RawResponse.capture(200, {}, edge).body


def test_raw_of_a_parsed_body_is_its_json() -> None:
    raw = genguard.RawResponse.capture(None, {}, {"error": {"message": "x"}})
    assert orjson.loads(raw.body) == {"error": {"message": "x"}}
