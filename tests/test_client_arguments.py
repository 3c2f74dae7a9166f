"""Bad arguments to the clients fail at the call, naming the parameter, what it got and what it takes: never a
quiet wrong answer (a str iterated into letters, a dict into its keys) and never a low-level error far from the
cause. Calls are made over real HTTP against the simulator, which must see nothing of a refused call."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from genguard import AsyncClient, Client, ConfigError, ImageRuleBook, Outcome, RetryPolicy
from genguard.sim import Simulator

MSGS = [{"role": "user", "content": "Hi"}]
KEY = "sk-arguments-0123456789abcdef"
ONE = RetryPolicy(max_attempts=1)

# (parameter, bad value, exception). The parameter's name must appear in the message.
CHAT_BAD: list[tuple[str, Any, type[Exception]]] = [
    ("messages", "hello there", TypeError),
    ("messages", {"role": "user", "content": "hi"}, TypeError),
    ("messages", b"hello", TypeError),
    ("messages", None, TypeError),
    ("messages", 5, TypeError),
    ("messages", [], ValueError),
    ("messages", ["hi"], TypeError),
    ("messages", [("role", "user")], TypeError),
    ("messages", [{"content": "no role"}], ValueError),
    ("messages", [{"role": 5, "content": "x"}], ValueError),
    ("messages", [*MSGS, "and a str"], TypeError),
    ("model", "", ValueError),
    ("model", "   ", ValueError),
    ("model", None, TypeError),
    ("model", 4, TypeError),
    ("fallbacks", "gpt-4o-mini", TypeError),
    ("fallbacks", {"gpt-4o-mini": 1}, TypeError),
    ("fallbacks", [1], TypeError),
    ("fallbacks", ["ok", ""], ValueError),
    ("retry", {"max_attempts": 2}, TypeError),
    ("retry", 3, TypeError),
    ("stream", "yes", TypeError),
    ("stream", 1, TypeError),
    ("labels", "positive", TypeError),
    ("labels", {"positive": 1}, TypeError),
    ("min_words", "3", TypeError),
    ("min_words", 2.5, TypeError),
    ("min_words", 0, ValueError),
    ("pattern", 5, TypeError),
    ("validate", 5, ValueError),
]


def _client(sim: Simulator, **kw: Any) -> Client:
    kw.setdefault("retry", ONE)
    return Client(sim.base_url, api_key=KEY, **kw)


def _aclient(sim: Simulator, **kw: Any) -> AsyncClient:
    kw.setdefault("retry", ONE)
    return AsyncClient(sim.base_url, api_key=KEY, **kw)


def _named(exc: BaseException, name: str) -> None:
    text = str(exc)
    assert name in text, text
    # What it takes, and what it got or how to fix it.
    assert any(w in text for w in ("must", "is empty", "has no role", "cannot")), text


def _chat_kwargs(name: str, value: Any) -> dict[str, Any]:
    kw: dict[str, Any] = {"model": "gpt-4o-mini", "messages": MSGS}
    kw[name] = value
    return kw


def _ways(*hows: str) -> list[tuple[str, str, Any, type[Exception]]]:
    # stream() takes no stream argument, and chat(stream=True) sets it.
    return [(how, *case) for how in hows for case in CHAT_BAD if case[0] != "stream" or how == "chat"]


@pytest.mark.parametrize(("how", "name", "value", "error"), _ways("chat", "chat(stream=True)", "stream"))
def test_chat_refuses_bad_arguments_before_sending(
    sim: Simulator, how: str, name: str, value: Any, error: type[Exception]
) -> None:
    kw = _chat_kwargs(name, value)
    if how == "chat(stream=True)" and name != "stream":
        kw["stream"] = True
    with _client(sim) as c, pytest.raises(error) as raised:
        c.stream(**kw) if how == "stream" else c.chat(**kw)
    _named(raised.value, name)
    assert sim.stats()["requests"] == 0
    with _client(sim) as c:  # and a good call still works
        assert c.chat(model="gpt-4o-mini", messages=MSGS).ok


@pytest.mark.anyio
@pytest.mark.parametrize(("how", "name", "value", "error"), _ways("chat", "stream"))
async def test_async_chat_refuses_bad_arguments_before_sending(
    sim: Simulator, how: str, name: str, value: Any, error: type[Exception]
) -> None:
    kw = _chat_kwargs(name, value)
    async with _aclient(sim) as c:
        with pytest.raises(error) as raised:
            c.stream(**kw) if how == "stream" else await c.chat(**kw)
        _named(raised.value, name)
        assert sim.stats()["requests"] == 0
        assert (await c.chat(model="gpt-4o-mini", messages=MSGS)).ok


def test_messages_error_shows_how_to_write_them(sim: Simulator) -> None:
    with _client(sim) as c, pytest.raises(TypeError) as raised:
        c.chat(model="gpt-4o-mini", messages="hello there")
    assert 'messages=[{"role": "user", "content": "hello there"}]' in str(raised.value)
    assert 'e.g. messages=[{"role": "user", "content": "..."}]' in str(raised.value)


def test_a_str_fallback_is_refused_not_tried_letter_by_letter(sim: Simulator) -> None:
    with _client(sim) as c, pytest.raises(TypeError, match=r"pass fallbacks=\['gpt-4o-mini'\]"):
        c.chat(model="m", messages=MSGS, fallbacks="gpt-4o-mini")
    assert sim.stats()["requests"] == 0


def test_good_arguments_of_every_shape_are_taken(sim: Simulator) -> None:
    # Tuples, sets, generators: any collection that is not a str or a mapping, read once.
    hooks_seen: list[Any] = []
    with _client(sim, fallbacks=("a", "b"), hooks=(hooks_seen.append,), headers={"x-team": "t"}) as c:
        out = c.chat(
            model="gpt-4o-mini",
            messages=tuple(MSGS),
            labels=(w for w in ["yes", "no"]),
            fallbacks=iter(["small"]),
            retry=RetryPolicy(max_attempts=1, retry_on={"rate_limited"}, fallback_on=["unavailable"]),
        )
    assert out.code == "unexpected_label"  # the simulator's answer is neither label: the labels were used
    assert hooks_seen


# -- constructors -----------------------------------------------------------------------------------

CLIENT_BAD: list[tuple[str, Any, type[Exception]]] = [
    *[(name, v, ConfigError) for name in ("timeout", "connect_timeout", "stall_timeout")
      for v in (-1, 0, math.nan, math.inf)],
    *[(name, v, TypeError) for name in ("timeout", "connect_timeout", "stall_timeout") for v in ("10", None, True)],
    ("api_key", 123, TypeError),
    ("api_key", b"sk-bytes", TypeError),
    ("api_key", ["sk-ok", 5], TypeError),
    ("api_key", {"sk-a": 1}, TypeError),
    ("api_key", "sk-\u2019curly", ConfigError),
    ("api_key", "sk-line\nbreak", ConfigError),
    ("fallbacks", "gpt-4o-mini", TypeError),
    ("fallbacks", [None], TypeError),
    ("hooks", print, TypeError),
    ("hooks", [5], TypeError),
    ("headers", {"x-a": 1}, TypeError),
    ("headers", ["x-a"], TypeError),
    ("retry", {"max_attempts": 2}, TypeError),
    ("default_query", "api-version=1", TypeError),
    ("default_query", {"api-version": 2024}, TypeError),
    ("default_query", {"": "x"}, ConfigError),
    ("base_url", 8000, TypeError),
]  # fmt: skip


@pytest.mark.parametrize(("name", "value", "error"), CLIENT_BAD)
@pytest.mark.parametrize("cls", [Client, AsyncClient])
def test_clients_refuse_bad_settings(
    sim: Simulator, cls: type[Client | AsyncClient], name: str, value: Any, error: type[Exception]
) -> None:
    kw: dict[str, Any] = {"api_key": KEY, name: value}
    base = kw.pop("base_url", sim.base_url)
    with pytest.raises(error) as raised:
        cls(base, **kw)
    _named(raised.value, "API key" if name == "api_key" and error is ConfigError else name)


def test_a_bad_key_is_never_shown(sim: Simulator) -> None:
    for value in (b"sk-secret-bytes", ["sk-secret-ok", b"sk-secret-bytes"], "sk-secret-\u2019"):
        with pytest.raises((TypeError, ConfigError)) as raised:
            Client(sim.base_url, api_key=value)
        assert "secret" not in str(raised.value)


def test_rejected_retry_dict_shows_the_policy_to_write(sim: Simulator) -> None:
    with _client(sim) as c, pytest.raises(TypeError, match=r"pass retry=RetryPolicy\(max_attempts=2\)"):
        c.chat(model="m", messages=MSGS, retry={"max_attempts": 2})


# -- media and the retry loop -----------------------------------------------------------------------

IMAGE_BAD: list[tuple[str, Any, type[Exception]]] = [
    ("n", "2", TypeError),
    ("n", 2.0, TypeError),
    ("n", True, TypeError),
    ("n", None, TypeError),
    ("prompt", b"a fox", TypeError),
    ("prompt", None, TypeError),
    ("model", "", ValueError),
    ("model", None, TypeError),
    ("size", 1024, TypeError),
    ("out", 5, TypeError),
    ("stem", 5, TypeError),
    ("max_bytes", 0, ValueError),
    ("max_bytes", "1", TypeError),
    ("rules", {"max_n": 1}, TypeError),
    ("fallbacks", "dall-e-3", TypeError),
    ("retry", {"max_attempts": 1}, TypeError),
]

VIDEO_BAD: list[tuple[str, Any, type[Exception]]] = [
    ("prompt", b"waves", TypeError),
    ("model", "", ValueError),
    ("seconds", 0, ValueError),
    ("seconds", 2.5, TypeError),
    ("seconds", "", ValueError),
    ("size", 720, TypeError),
    ("input_reference", 5, TypeError),
    ("poll_interval", -1, ValueError),
    ("poll_interval", 0, ValueError),
    ("poll_interval", "1", TypeError),
    ("deadline", 0, ValueError),
    ("deadline", "600", TypeError),
    ("stall_limit", -1, ValueError),
    ("not_exist_grace", -1, ValueError),
    ("fallbacks", "kling-v2", TypeError),
    ("fallbacks", None, TypeError),
    ("on_progress", 5, TypeError),
    ("max_bytes", -1, ValueError),
    ("retry", {"max_attempts": 1}, TypeError),
]


def _media_kwargs(kind: str, name: str, value: Any, out: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
    kw: dict[str, Any] = {"model": "dall-e-2" if kind == "image" else "sora-2", "out": out}
    prompt: Any = "a fox"
    if kind == "video":
        kw.update(poll_interval=0.05, deadline=10, stall_limit=5)
    if name == "prompt":
        prompt = value
    else:
        kw[name] = value
    return (prompt,), kw


@pytest.mark.parametrize(
    ("kind", "name", "value", "error"),
    [("image", *case) for case in IMAGE_BAD] + [("video", *case) for case in VIDEO_BAD],
)
def test_media_refuses_bad_arguments_before_sending(
    sim: Simulator, tmp_path: Any, kind: str, name: str, value: Any, error: type[Exception]
) -> None:
    args, kw = _media_kwargs(kind, name, value, tmp_path)
    with _client(sim) as c, pytest.raises(error) as raised:
        (c.images if kind == "image" else c.videos).generate(*args, **kw)
    assert name in str(raised.value)
    assert sim.stats()["requests"] == 0


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("kind", "name", "value", "error"),
    [("image", *case) for case in IMAGE_BAD[:6]] + [("video", *case) for case in VIDEO_BAD[:9]],
)
async def test_async_media_refuses_bad_arguments_before_sending(
    sim: Simulator, tmp_path: Any, kind: str, name: str, value: Any, error: type[Exception]
) -> None:
    args, kw = _media_kwargs(kind, name, value, tmp_path)
    async with _aclient(sim) as c:
        with pytest.raises(error) as raised:
            await (c.images if kind == "image" else c.videos).generate(*args, **kw)
    assert name in str(raised.value)
    assert sim.stats()["requests"] == 0


def test_out_of_range_image_count_stays_an_invalid_input_outcome(sim: Simulator) -> None:
    # The documented contract for n and an empty prompt: an Outcome saying nothing was sent.
    with _client(sim) as c:
        assert c.images.generate("a fox", model="dall-e-2", n=0).code == "invalid_input"
        assert c.images.generate("", model="dall-e-2").code == "invalid_input"
        assert c.images.generate("a fox", model="dall-e-2", rules=ImageRuleBook()).ok
    assert sim.stats()["requests"] == 1


SEND_BAD: list[tuple[str, Any, type[Exception]]] = [
    ("build", None, TypeError),
    ("parse", "classify", TypeError),
    ("model", "", ValueError),
    ("model", 5, TypeError),
    ("endpoint", "images", ValueError),
    ("endpoint", None, TypeError),
    ("fallbacks", "dall-e-3", TypeError),
    ("retry", {"max_attempts": 1}, TypeError),
]


def _send_kwargs(c: Client | AsyncClient, name: str, value: Any) -> dict[str, Any]:
    def build(key: str | None, model: str) -> httpx.Request:
        return c.build_request("POST", "/images/generations", key=key, json={"model": model, "prompt": "x"})

    def parse(response: httpx.Response) -> Outcome:
        return c._classify_response(response, "image")

    kw: dict[str, Any] = {"build": build, "parse": parse, "model": "dall-e-2", "endpoint": "image"}
    kw[name] = value
    return kw


@pytest.mark.parametrize(("name", "value", "error"), SEND_BAD)
def test_send_with_retries_refuses_bad_arguments(
    sim: Simulator, name: str, value: Any, error: type[Exception]
) -> None:
    with _client(sim) as c:
        with pytest.raises(error) as raised:
            c.send_with_retries(**_send_kwargs(c, name, value))
        assert name in str(raised.value)
        assert sim.stats()["requests"] == 0
        assert c.send_with_retries(**_send_kwargs(c, "model", "dall-e-2")).ok


@pytest.mark.anyio
@pytest.mark.parametrize(("name", "value", "error"), SEND_BAD)
async def test_async_send_with_retries_refuses_bad_arguments(
    sim: Simulator, name: str, value: Any, error: type[Exception]
) -> None:
    async with _aclient(sim) as c:
        call: Callable[..., Awaitable[Outcome]] = c.send_with_retries
        with pytest.raises(error) as raised:
            await call(**_send_kwargs(c, name, value))
        assert name in str(raised.value)
        assert sim.stats()["requests"] == 0


@given(st.text(min_size=1, max_size=30).filter(str.strip))
def test_any_str_where_a_list_is_wanted_is_refused_at_every_entry_point(value: str) -> None:
    # Nothing listens on port 9: a call that got past its checks would fail differently.
    with Client("http://127.0.0.1:9/v1", api_key=KEY, retry=ONE) as c:
        refusals: list[Callable[[], Any]] = [
            lambda: Client("http://127.0.0.1:9/v1", fallbacks=value),
            lambda: c.chat(model="m", messages=MSGS, fallbacks=value),
            lambda: c.stream(model="m", messages=MSGS, fallbacks=value),
            lambda: c.chat(model="m", messages=MSGS, labels=value),
            lambda: c.images.generate("a fox", model="m", fallbacks=value),
            lambda: c.videos.generate("waves", model="m", fallbacks=value),
            lambda: c.send_with_retries(
                lambda k, m: httpx.Request("GET", "http://x"),
                c._classify_response,
                model="m",
                fallbacks=value,
            ),
        ]
        for refuse in refusals:
            with pytest.raises(TypeError, match="letter by letter"):
                refuse()
        with pytest.raises(TypeError, match=r"messages must be a list of message dicts"):
            c.chat(model="m", messages=value)
