"""Keys and base URL resolution, the key pool, and the testing switch."""

from __future__ import annotations

import pytest

import genguard.client.testing as testing
from genguard.client.keys import KeyPool, resolve_base_url, resolve_keys
from genguard.core.exceptions import ConfigError
from genguard.core.secrets import key_label


def test_argument_wins_over_environment() -> None:
    env = {"GENGUARD_API_KEY": "env-key", "OPENAI_API_KEY": "other"}
    assert resolve_keys("arg-key", environ=env) == ("arg-key",)
    assert resolve_keys(["a", "b", "a", " "], environ=env) == ("a", "b")


def test_genguard_variable_wins_over_openai_and_may_list_several() -> None:
    assert resolve_keys(None, environ={"GENGUARD_API_KEY": "g1, g2", "OPENAI_API_KEY": "o"}) == ("g1", "g2")
    assert resolve_keys(None, environ={"GENGUARD_API_KEY": " ", "OPENAI_API_KEY": "o"}) == ("o",)
    assert resolve_keys(None, environ={}) == ()


def test_base_url_from_argument_or_environment() -> None:
    assert resolve_base_url(None, environ={"OPENAI_BASE_URL": "http://h:1/v1/"}) == "http://h:1/v1"
    env = {"GENGUARD_BASE_URL": "http://g/v1", "OPENAI_BASE_URL": "http://o/v1"}
    assert resolve_base_url(None, environ=env) == "http://g/v1"
    assert resolve_base_url("http://a/v1", environ=env) == "http://a/v1"


def test_pool_moves_forward_and_stops_at_the_end() -> None:
    pool = KeyPool(("a", "b", "c"), start=1)
    assert pool.current == "b"
    assert pool.advance()
    assert pool.current == "c"
    assert not pool.has_next()
    assert not pool.advance()
    assert pool.current == "c"
    assert KeyPool(()).current is None


def test_key_label_never_shows_the_key() -> None:
    key = "sk-verysecretvalue1234"
    assert key not in key_label(key)
    assert key_label("short") == "key …"


def test_set_testing_plain_and_as_context_manager() -> None:
    assert not testing.is_testing()
    with testing.set_testing(True, attempts=2):
        assert testing.is_testing()
        assert testing.testing_attempts() == 2
        with testing.set_testing(False):
            assert not testing.is_testing()
            assert testing.testing_attempts() is None
        assert testing.testing_attempts() == 2
    assert not testing.is_testing()
    testing.set_testing(True)
    try:
        assert testing.is_testing()
    finally:
        testing.set_testing(False)


def test_base_url_without_scheme_or_host_is_a_config_error_naming_its_source() -> None:
    with pytest.raises(ConfigError, match=r"'not-a-url' from the base_url argument"):
        resolve_base_url("not-a-url", environ={})
    with pytest.raises(ConfigError, match=r"'localhost:8000/v1' from GENGUARD_BASE_URL"):
        resolve_base_url(None, environ={"GENGUARD_BASE_URL": "localhost:8000/v1"})
    with pytest.raises(ConfigError, match="OPENAI_BASE_URL"):
        resolve_base_url(None, environ={"OPENAI_BASE_URL": "http:///v1"})
    assert resolve_base_url("https://gw.example/openai/v1", environ={}) == "https://gw.example/openai/v1"


@pytest.mark.parametrize(
    ("given", "shown"),
    [
        ("admin:pw-hunter2@localhost:8000/v1", "'***@localhost:8000/v1'"),
        ("ftp://admin:pw-hunter2@gw.example/v1", "'ftp://***@gw.example/v1'"),
        ("http://admin:pw-hunter2@/v1", "'http://***@/v1'"),
        ("http:/admin:pw-hunter2@gw.example/v1", "'***@gw.example/v1'"),
    ],
)
def test_a_rejected_base_url_never_shows_its_password(given: str, shown: str) -> None:
    with pytest.raises(ConfigError) as raised:
        resolve_base_url(given, environ={})
    assert "hunter2" not in str(raised.value)
    assert "admin" not in str(raised.value)
    assert shown in str(raised.value)
