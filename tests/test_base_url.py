"""Base URLs over real HTTP: a query in the base URL (Azure's ``?api-version=...``) and ``default_query`` reach
every request to the API (chat plain and streamed, images, video tasks, downloads of the API's own links), on
every transport (httpx sync, aiohttp, httpx async); an empty base URL is a configuration error, never a quiet
fall back to OpenAI's address with the key."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import httpx
import pytest

from genguard import AsyncClient, Client, ConfigError, RetryPolicy
from genguard.sim import Simulator

MSGS = [{"role": "user", "content": "Hi"}]
KEY = "sk-base-url-0123456789abcdef"
VERSION = "2024-10-21"
VIDEO = {"poll_interval": 0.05, "deadline": 20, "stall_limit": 10}

# (how the client is configured) -> the query every API request must carry
SETUPS: list[tuple[str, dict[str, Any], dict[str, str]]] = [
    ("?api-version=" + VERSION, {}, {"api-version": VERSION}),
    ("/?api-version=" + VERSION, {}, {"api-version": VERSION}),
    ("", {"default_query": {"api-version": VERSION}}, {"api-version": VERSION}),
    ("?api-version=old&team=a%20b", {"default_query": {"api-version": VERSION}}, {"api-version": VERSION, "team": "a b"}),
]  # fmt: skip


def _check(seen: list[str], sim: Simulator, expected: dict[str, str], *, paths: set[str]) -> None:
    api = urlsplit(sim.base_url).path  # /v1
    hit: set[str] = set()
    for url in seen:
        parts = urlsplit(url)
        query = parse_qs(parts.query, keep_blank_values=True)
        assert "?" not in parts.path, url
        assert "api-version" not in parts.path, url
        if parts.path.startswith(api + "/"):
            assert {k: v for k, v in query.items() if k in expected} == {
                k: [v] for k, v in expected.items()
            }, url
            hit.add(parts.path.removeprefix(api).split("/")[1])
        else:  # a storage link outside the API: its own query only
            assert not set(query) & set(expected), url
    assert paths <= hit, (paths, hit)


def _sync_everything(c: Client, out: Path) -> None:
    assert c.chat(model="gpt-4o-mini", messages=MSGS).ok
    assert c.chat(model="gpt-4o-mini", messages=MSGS, stream=True).ok
    with c.stream(model="gpt-4o-mini", messages=MSGS) as s:
        assert "".join(s)
    assert s.outcome.ok
    assert c.images.generate("a fox", model="dall-e-2", out=out).ok  # a link on storage, outside the API
    video = c.videos.generate("waves", model="sora-2", out=out, **VIDEO)  # content from the API itself
    assert video.ok, video.summary()
    assert video.extra["files"]


@pytest.mark.parametrize(("suffix", "kw", "expected"), SETUPS)
def test_every_sync_request_carries_the_default_query(
    sim: Simulator, tmp_path: Path, suffix: str, kw: dict[str, Any], expected: dict[str, str]
) -> None:
    seen: list[str] = []
    http = httpx.Client(event_hooks={"request": [lambda r: seen.append(str(r.url))]})
    with http, Client(sim.base_url + suffix, api_key=KEY, http_client=http, **kw) as c:
        assert c.base_url == sim.base_url
        assert c.default_query == expected
        _sync_everything(c, tmp_path)
    _check(seen, sim, expected, paths={"chat", "images", "videos"})
    assert any("/content?" in u for u in seen)  # the download from the API host


async def _async_everything(c: AsyncClient, out: Path) -> None:
    assert (await c.chat(model="gpt-4o-mini", messages=MSGS)).ok
    assert (await c.chat(model="gpt-4o-mini", messages=MSGS, stream=True)).ok
    async with c.stream(model="gpt-4o-mini", messages=MSGS) as s:
        assert "".join([t async for t in s])
    assert s.outcome.ok
    assert (await c.images.generate("a fox", model="dall-e-2", out=out)).ok
    video = await c.videos.generate("waves", model="sora-2", out=out, **VIDEO)
    assert video.ok, video.summary()


@pytest.mark.anyio
@pytest.mark.parametrize(("suffix", "kw", "expected"), SETUPS)
async def test_every_request_on_the_aiohttp_path_carries_the_default_query(
    sim: Simulator, tmp_path: Path, suffix: str, kw: dict[str, Any], expected: dict[str, str]
) -> None:
    seen: list[str] = []

    async def on_start(session: Any, context: Any, params: aiohttp.TraceRequestStartParams) -> None:
        seen.append(str(params.url))

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(on_start)
    session = aiohttp.ClientSession(trace_configs=[trace])
    async with session, AsyncClient(sim.base_url + suffix, api_key=KEY, http_client=session, **kw) as c:
        await _async_everything(c, tmp_path)
    _check(seen, sim, expected, paths={"chat", "images", "videos"})
    assert any("/content?" in u for u in seen)


@pytest.mark.anyio
async def test_every_request_on_the_async_httpx_path_carries_the_default_query(
    sim: Simulator, tmp_path: Path
) -> None:
    seen: list[str] = []

    async def hook(request: httpx.Request) -> None:
        seen.append(str(request.url))

    expected = {"api-version": VERSION}
    http = httpx.AsyncClient(event_hooks={"request": [hook]})
    async with (
        http,
        AsyncClient(sim.base_url + "?api-version=" + VERSION, api_key=KEY, http_client=http) as c,
    ):
        await _async_everything(c, tmp_path)
    _check(seen, sim, expected, paths={"chat", "images", "videos"})


def test_a_base_url_query_no_longer_lands_in_the_path(sim: Simulator) -> None:
    # It was glued in front of each path (.../v1?api-version=X/chat/completions): a 404 on every call.
    with Client(sim.base_url + "?api-version=" + VERSION, api_key=KEY) as c:
        assert c.chat(model="gpt-4o-mini", messages=MSGS).ok
    assert sim.stats()["by_status"] == {"200": 1}


def test_build_request_merges_its_own_params_with_the_default_query(sim: Simulator) -> None:
    with Client(sim.base_url, api_key=KEY, default_query={"api-version": VERSION}) as c:
        request = c.build_request("GET", "/models", key=KEY, params={"limit": "2"})
        assert parse_qs(request.url.query.decode()) == {"api-version": [VERSION], "limit": ["2"]}
        assert c.http.send(request).status_code == 200
        # A link of the API's own keeps its query and gains the default one; another host's is left alone.
        assert (
            c.url(sim.base_url + "/files/x?sig=1") == sim.base_url + f"/files/x?sig=1&api-version={VERSION}"
        )
        assert c.url("https://cdn.example/x.png?sig=1") == "https://cdn.example/x.png?sig=1"


@pytest.mark.parametrize("cls", [Client, AsyncClient])
@pytest.mark.parametrize("given", ["", "   ", "\t\n"])
def test_an_empty_base_url_argument_is_a_config_error(
    cls: type[Client | AsyncClient], given: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GENGUARD_BASE_URL", "http://127.0.0.1:9/v1")  # never a fall back, even to this
    with pytest.raises(ConfigError, match=r"the base_url argument \(--base-url\) is empty"):
        cls(given, api_key=KEY)


@pytest.mark.parametrize("cls", [Client, AsyncClient])
@pytest.mark.parametrize("variable", ["GENGUARD_BASE_URL", "OPENAI_BASE_URL"])
@pytest.mark.parametrize("value", ["", "  "])
def test_an_empty_base_url_variable_is_a_config_error_naming_it(
    cls: type[Client | AsyncClient], variable: str, value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("GENGUARD_BASE_URL", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError, match=f"{variable} is set but empty") as raised:
        cls(api_key=KEY)
    assert "api.openai.com" not in str(raised.value)


def test_no_base_url_anywhere_is_still_openai(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("GENGUARD_BASE_URL", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    with Client(api_key=KEY) as c:
        assert c.base_url == "https://api.openai.com/v1"
        assert c.default_query == {}


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("http://127.0.0.1:9/v1?a=1&a=2", "names the query parameter 'a' twice"),
        ("http://127.0.0.1:9/v1#part", "has a fragment"),
    ],
)
def test_base_urls_that_cannot_be_joined_are_refused(url: str, words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        Client(url, api_key=KEY)


def test_the_retry_loop_keeps_the_query_on_every_attempt(sim: Simulator) -> None:
    seen: list[str] = []
    http = httpx.Client(event_hooks={"request": [lambda r: seen.append(str(r.url))]})
    policy = RetryPolicy(max_attempts=3, backoff_base=0.01, jitter=0)
    with http, Client(sim.base_url + "?api-version=" + VERSION, api_key=KEY, http_client=http, retry=policy,
                      headers={"x-genguard-scenario": "server_error:2"}) as c:  # fmt: skip
        assert c.chat(model="gpt-4o-mini", messages=MSGS).attempts == 3
    assert len(seen) == 3
    _check(seen, sim, {"api-version": VERSION}, paths={"chat"})
