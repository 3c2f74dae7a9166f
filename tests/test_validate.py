"""Validators for silent failures: each check, how they are built, and how they change an Outcome."""

from __future__ import annotations

import re
from pathlib import Path

import orjson
import pydantic
import pytest

from genguard import ConfigError, Outcome, ToolCall, Usage
from genguard.core.validate import (
    Parsed,
    Problem,
    Validator,
    apply_validators,
    build_validators,
    custom,
    json_output,
    json_schema,
    labels,
    min_length,
    model,
    parse_validate_spec,
    pattern,
)

PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0}},
    "required": ["name", "age"],
}


class Person(pydantic.BaseModel):
    name: str
    age: int


def ok(text: str | None = None, **fields: object) -> Outcome:
    return Outcome.success(
        text=text, finish_reason="stop", status=200, usage=Usage(10, 5, 15), request_id="req_1", **fields
    )


# -- each validator ---------------------------------------------------------------------------------


def test_json_accepts_plain_and_fenced() -> None:
    v = json_output()
    assert v.code == "invalid_json"
    assert v('{"a": [1, 2]}') == Parsed({"a": [1, 2]})
    assert v('Here it is:\n```json\n{"a": 1}\n```\nDone.') == Parsed({"a": 1})
    assert v("```\n[1]\n```") == Parsed([1])


@pytest.mark.parametrize("text", ["{'a': 1}", "Sure! The answer is 4.", '```json\n{"a": \n```', ""])
def test_json_rejects(text: str) -> None:
    problem = json_output()(text)
    assert isinstance(problem, Problem)
    assert problem.code == "invalid_json"
    assert "not JSON" in problem.message


def test_schema_reports_the_failing_path() -> None:
    v = json_schema(PERSON)
    assert v('{"name": "Ada", "age": 36}') == Parsed({"name": "Ada", "age": 36})
    problem = v('{"name": "Ada", "age": -1}')
    assert isinstance(problem, Problem)
    assert problem.code == "schema_mismatch"
    assert "$.age" in problem.message
    assert "minimum" in problem.message or "less than" in problem.message
    missing = v('{"name": "Ada"}')
    assert isinstance(missing, Problem)
    assert "'age' is a required property" in missing.message
    not_json = v("name: Ada")
    assert isinstance(not_json, Problem)
    assert not_json.code == "invalid_json"


def test_schema_from_file_and_bad_schemas(tmp_path: Path) -> None:
    path = tmp_path / "person.json"
    path.write_bytes(orjson.dumps(PERSON))
    assert isinstance(json_schema(path)('{"name": "x"}'), Problem)
    assert isinstance(json_schema(str(path))('{"name": "x", "age": 1}'), Parsed)
    with pytest.raises(ConfigError, match="cannot read"):
        json_schema(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{nope")
    with pytest.raises(ConfigError, match="not JSON"):
        json_schema(tmp_path / "bad.json")
    with pytest.raises(ConfigError, match="invalid"):
        json_schema({"type": "no-such-type"})


def test_pydantic_model_parses_or_names_the_field() -> None:
    v = model(Person)
    result = v('```json\n{"name": "Ada", "age": "36"}\n```')
    assert isinstance(result, Parsed)
    assert result.value == Person(name="Ada", age=36)
    problem = v('{"name": "Ada", "age": "old"}')
    assert isinstance(problem, Problem)
    assert problem.code == "schema_mismatch"
    assert "Person" in problem.message
    assert "age" in problem.message
    broken = v("not json")
    assert isinstance(broken, Problem)
    assert broken.code == "invalid_json"
    with pytest.raises(ConfigError):
        model(dict)


@pytest.mark.parametrize("text", ["positive", " Positive.", '"NEGATIVE"', "**neutral**\n", "`positive`!"])
def test_labels_forgive_case_space_and_punctuation(text: str) -> None:
    result = labels(["Positive", "negative", "neutral"])(text)
    assert isinstance(result, Parsed)
    assert result.value.casefold() in text.casefold()


@pytest.mark.parametrize("text", ["positive-ish", "The sentiment is positive", "", "pos"])
def test_labels_reject_other_text(text: str) -> None:
    problem = labels(["positive", "negative"])(text)
    assert isinstance(problem, Problem)
    assert problem.code == "unexpected_label"
    assert "positive, negative" in problem.message


def test_labels_need_a_label() -> None:
    with pytest.raises(ConfigError):
        labels([])
    with pytest.raises(ConfigError):
        labels(["ok", " . "])


def test_min_words_and_chars() -> None:
    words = min_length(words=3)
    assert words("one two three") is None
    problem = words("one  two\n")
    assert isinstance(problem, Problem)
    assert problem.code == "too_short"
    assert "2 words" in problem.message
    chars = min_length(chars=5)
    assert chars("abcde") is None
    assert isinstance(chars("  abcd  "), Problem)
    with pytest.raises(ConfigError):
        min_length()


def test_pattern_searches_unless_full() -> None:
    date = pattern(r"\d{4}-\d{2}-\d{2}")
    assert date("Due on 2024-05-01.") is None
    problem = date("tomorrow")
    assert isinstance(problem, Problem)
    assert problem.code == "pattern_mismatch"
    full = pattern(re.compile(r"\d{4}-\d{2}-\d{2}"), full=True)
    assert full(" 2024-05-01\n") is None
    assert isinstance(full("Due on 2024-05-01."), Problem)
    with pytest.raises(ConfigError, match="invalid"):
        pattern("(unclosed")


def test_custom_callable_forms() -> None:
    def is_upper(text: str) -> bool:
        return text.isupper()

    def says_why(text: str) -> str | None:
        return None if "please" in text else "no please"

    def raises(text: str) -> None:
        if "x" in text:
            raise ValueError("contains x")

    def parses(text: str) -> int:
        return int(text)

    assert custom(is_upper)("OK") is None
    rejected = custom(is_upper)("ok")
    assert isinstance(rejected, Problem)
    assert rejected.code == "validation_failed"
    assert "is_upper" in rejected.message
    why = custom(says_why)("hi")
    assert isinstance(why, Problem)
    assert "no please" in why.message
    assert custom(says_why)("please") is None
    raised = custom(raises)("x")
    assert isinstance(raised, Problem)
    assert "contains x" in raised.message
    assert custom(parses)("42") == Parsed(42)


# -- building ---------------------------------------------------------------------------------------


def test_build_validators_from_every_form() -> None:
    vs = build_validators(
        ["json", PERSON, Person, re.compile("x"), str.isupper, "labels:a,b"],
        labels=["a"],
        min_words=2,
        pattern="y",
    )
    assert [v.code for v in vs] == [
        "invalid_json",
        "schema_mismatch",
        "schema_mismatch",
        "pattern_mismatch",
        "validation_failed",
        "unexpected_label",
        "unexpected_label",
        "too_short",
        "pattern_mismatch",
    ]
    assert all(isinstance(v, Validator) for v in vs)
    assert build_validators() == ()
    assert len(build_validators(Person)) == 1


def test_build_validators_keeps_a_ready_validator() -> None:
    v = labels(["a"])
    assert build_validators([v]) == (v,)


def test_build_validators_rejects_unknown_things() -> None:
    with pytest.raises(ConfigError, match="cannot validate"):
        build_validators(42)
    with pytest.raises(ConfigError, match="unknown --validate"):
        build_validators("yaml")


@pytest.mark.parametrize(
    ("spec", "code", "good", "bad"),
    [
        ("json", "invalid_json", '{"a": 1}', "{a: 1}"),
        ("labels:yes, no ,maybe", "unexpected_label", "Maybe.", "perhaps"),
        ("min-words:3", "too_short", "a b c", "a b"),
        ("min-chars:4", "too_short", "abcd", "abc"),
        ("regex:^[A-Z]{3}$", "pattern_mismatch", "ABC", "ABCD"),
        ("regex:a:b", "pattern_mismatch", "xa:bx", "ab"),
    ],
)
def test_parse_validate_spec(spec: str, code: str, good: str, bad: str) -> None:
    v = parse_validate_spec(spec)
    assert v.code == code
    assert not isinstance(v(good), Problem)
    problem = v(bad)
    assert isinstance(problem, Problem)
    assert problem.code == code


def test_parse_validate_spec_json_schema(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    path.write_bytes(orjson.dumps(PERSON))
    v = parse_validate_spec(f"json-schema:{path}")
    assert isinstance(v('{"name": 1, "age": 2}'), Problem)


@pytest.mark.parametrize(
    "spec", ["yaml", "labels:", "min-words:many", "regex:(", "json-schema:", "json:x", ""]
)
def test_bad_spec_names_itself_and_the_forms(spec: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_validate_spec(spec)
    assert repr(spec) in str(info.value)
    assert "labels:a,b,c" in str(info.value)


@pytest.mark.parametrize("spec", ["min-words:many", "min-chars:", "min-words:2.5"])
def test_bad_length_spec_says_a_whole_number_is_needed(spec: str) -> None:
    # It used to say "invalid literal for int() with base 10: 'many'".
    with pytest.raises(ConfigError, match=r"needs a whole number, e\.g\. min-") as info:
        parse_validate_spec(spec)
    assert "int()" not in str(info.value)


# -- applying ---------------------------------------------------------------------------------------


def test_failure_keeps_output_and_usage() -> None:
    out = apply_validators(ok("Maybe later"), build_validators(labels=["yes", "no"]))
    assert not out.ok
    assert (out.kind, out.code, out.retryable) == ("silent", "unexpected_label", False)
    assert out.text == "Maybe later"
    assert out.usage == Usage(10, 5, 15)
    assert out.finish_reason == "stop"
    assert out.status == 200
    assert out.request_id == "req_1"
    assert out.message is not None
    assert "Maybe later" in out.message
    assert out.cause
    assert out.fix


def test_first_failure_wins_and_success_sets_parsed() -> None:
    vs = build_validators(["json", Person])
    out = apply_validators(ok('{"name": "Ada", "age": 3}'), vs)
    assert out.ok
    assert out.parsed == Person(name="Ada", age=3)
    bad = apply_validators(ok("{broken"), vs)
    assert bad.code == "invalid_json"


def test_tool_call_arguments_checked_when_no_text() -> None:
    calls = (ToolCall("c1", "save", '{"name": "Ada", "age": 1}'), ToolCall("c2", "save", '{"name": "Bo"}'))
    out = apply_validators(ok(None, tool_calls=calls), build_validators(PERSON, labels=["x"]))
    assert out.code == "schema_mismatch"
    assert out.message is not None
    assert "save" in out.message
    assert out.tool_calls == calls
    one = apply_validators(ok(None, tool_calls=calls[:1]), build_validators(Person, min_words=5))
    assert one.ok
    assert one.parsed == Person(name="Ada", age=1)


def test_failed_and_textless_outcomes_pass_through() -> None:
    failed = Outcome.failure("truncated", text="{", finish_reason="length")
    assert apply_validators(failed, build_validators("json")) is failed
    image = Outcome.success(endpoint="image")
    assert apply_validators(image, build_validators("json", min_words=3)) is image
    plain = ok("fine")
    assert apply_validators(plain, ()) is plain


def test_a_user_validator_object_returning_a_string() -> None:
    class NoShouting:
        code = "validation_failed"

        def __call__(self, text: str) -> str | None:
            return "too loud" if text.isupper() else None

    out = apply_validators(ok("HELLO"), build_validators(NoShouting()))
    assert (out.code, out.message) == ("validation_failed", "too loud")
    assert apply_validators(ok("hello"), build_validators(NoShouting())).ok
