"""Bad arguments to the retry policy, the testing switch and the validators' builders fail at the call, naming
the parameter, what it got and what it takes: never a str taken for a set of letters, never a misspelt failure
code that silently never matches. (The clients' own entry points: tests/test_client_arguments.py.)"""

from __future__ import annotations

import math
import string
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import genguard
from genguard import CODES, ConfigError, RetryPolicy, validators

POLICY_BAD: list[tuple[str, Any, type[Exception]]] = [
    ("max_attempts", 0, ConfigError),
    ("max_attempts", 2.5, TypeError),
    ("max_attempts", "3", TypeError),
    ("max_attempts", True, TypeError),
    *[(name, v, ConfigError) for name in ("backoff_base", "backoff_max", "jitter") for v in (-1, math.nan, math.inf)],
    *[(name, "1", TypeError) for name in ("backoff_base", "backoff_max", "jitter", "max_wait", "deadline")],
    ("max_wait", -1, ConfigError),
    ("max_wait", math.nan, ConfigError),
    ("deadline", -5, ConfigError),
    ("deadline", math.nan, ConfigError),
    ("retry_on", "rate_limited", TypeError),
    ("retry_on", ["rate_limited", 429], TypeError),
    ("retry_on", ["rate_limted"], ConfigError),
    ("fallback_on", "unavailable", TypeError),
    ("fallback_on", {"unavailabel"}, ConfigError),
    ("reask_on_silent", -1, ConfigError),
    ("reask_on_silent", 1.5, TypeError),
    ("raise_max_tokens_on_truncated", "yes", TypeError),
]  # fmt: skip


@pytest.mark.parametrize(("name", "value", "error"), POLICY_BAD)
def test_retry_policy_refuses_bad_settings(name: str, value: Any, error: type[Exception]) -> None:
    with pytest.raises(error) as raised:
        RetryPolicy(**{name: value})
    assert name in str(raised.value)


@pytest.mark.parametrize("code", sorted(CODES))
@pytest.mark.parametrize("field", ["retry_on", "fallback_on"])
def test_a_misspelt_code_is_refused_with_the_real_one(code: str, field: str) -> None:
    for typo in {code[:-1], code[1:], code.replace("_", ""), code[:2] + code[3:]} - {code}:
        with pytest.raises(ConfigError) as raised:
            RetryPolicy(**{field: [typo]})
        assert str(raised.value) == f"unknown failure code {typo!r} in {field}; did you mean {code!r}?"


def test_a_code_nothing_like_any_real_one_points_to_the_list() -> None:
    with pytest.raises(
        ConfigError, match=r"unknown failure code 'zzzz' in retry_on; genguard\.CODES lists them"
    ):
        RetryPolicy(retry_on=["zzzz"])


@given(st.text(alphabet=string.ascii_letters + "_", min_size=1, max_size=30))
def test_any_str_where_a_list_of_str_is_wanted_is_refused(value: str) -> None:
    from genguard.core import arguments

    refusals: list[Callable[[], Any]] = [
        lambda: RetryPolicy(retry_on=value),
        lambda: RetryPolicy(fallback_on=value),
        lambda: validators.labels(value),
        lambda: validators.build_validators(labels=value),
        lambda: arguments.str_items("fallbacks", value),
    ]
    for refuse in refusals:
        with pytest.raises(TypeError, match="letter by letter"):
            refuse()


def test_set_testing_refuses_bad_arguments() -> None:
    with genguard.set_testing(False):
        for kw, error in (
            ({"on": "yes"}, TypeError),
            ({"attempts": 0}, ConfigError),
            ({"attempts": "2"}, TypeError),
        ):
            with pytest.raises(error) as raised:
                genguard.set_testing(**kw)
            assert next(iter(kw)) in str(raised.value)
        assert not genguard.is_testing()


@pytest.mark.parametrize(
    ("build", "name", "error"),
    [
        (lambda: validators.labels("positive"), "labels", TypeError),
        (lambda: validators.labels({"positive": 1}), "labels", TypeError),
        (lambda: validators.min_length(words="3"), "words", TypeError),
        (lambda: validators.min_length(chars=1.5), "chars", TypeError),
        (lambda: validators.pattern(5), "pattern", TypeError),
        (lambda: validators.pattern("a", full="yes"), "full", TypeError),
        (lambda: validators.custom("not a function"), "func", TypeError),
        (lambda: validators.json_schema(5), "schema", TypeError),
        (lambda: validators.build_validators(min_words="3"), "min_words", TypeError),
        (lambda: validators.build_validators(min_words=0), "min_words", ConfigError),
    ],
)
def test_validator_builders_refuse_bad_arguments(
    build: Callable[[], Any], name: str, error: type[Exception]
) -> None:
    with pytest.raises(error) as raised:
        build()
    assert name in str(raised.value)
