"""Who may call the proxy (client keys), which key goes upstream, and validators under strict: over real HTTP with
the official openai SDK (sync)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from genguard import Proxy, RetryPolicy
from genguard.sim import Simulator

UPSTREAM = "sk-proxy-access-upstream-key-456"
CLIENT = "gg-client-key-for-the-proxy-789"
MSG: Any = [{"role": "user", "content": "Classify this"}]
NO_RETRY = RetryPolicy(max_attempts=1)

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def _guarded(genguard_sim: Simulator) -> Iterator[Proxy]:
    with Proxy(
        upstream=genguard_sim.base_url, api_keys=(UPSTREAM,), client_keys=(CLIENT, "gg-second")
    ) as proxy:
        yield proxy


@pytest.fixture
def guarded(sim: Simulator, _guarded: Proxy) -> Proxy:
    return _guarded


def test_a_client_with_the_client_key_is_served_with_the_proxys_upstream_key(
    sim: Simulator, guarded: Proxy
) -> None:
    sim.configure(api_keys=(UPSTREAM,))  # upstream accepts only the proxy's key, never the client's
    client = openai.OpenAI(base_url=guarded.base_url, api_key=CLIENT, timeout=10)
    completion = client.chat.completions.create(model="gpt-4o-mini", messages=MSG)
    assert completion.choices[0].message.content
    assert [m.id for m in client.models.list()] == list(sim.config.models)
    second = openai.OpenAI(base_url=guarded.base_url, api_key="gg-second", timeout=10)
    assert second.embeddings.create(model="text-embedding-3-small", input="x").data


@pytest.mark.parametrize("key", ["gg-wrong-key", CLIENT[:-1], CLIENT + "x", ""])
def test_a_client_without_a_right_key_gets_a_401_it_does_not_retry(
    sim: Simulator, guarded: Proxy, key: str
) -> None:
    client = openai.OpenAI(base_url=guarded.base_url, api_key=key or "unset", timeout=10)
    for call in (
        lambda: client.chat.completions.create(model="gpt-4o-mini", messages=MSG),
        lambda: client.chat.completions.create(model="gpt-4o-mini", messages=MSG, stream=True),
        lambda: client.models.list(),
        lambda: client.images.generate(model="gpt-image-1", prompt="a fox"),
    ):
        with pytest.raises(openai.AuthenticationError) as info:
            call()
        assert info.value.response.headers["x-should-retry"] == "false"
        assert info.value.code == "auth_failed"
        assert "client key" in info.value.message
        assert CLIENT not in info.value.response.text
    assert sim.stats()["requests"] == 0  # nothing refused went upstream


def test_no_authorization_at_all_is_refused(sim: Simulator, guarded: Proxy) -> None:
    reply = httpx.post(guarded.base_url + "/chat/completions", json={"model": "m", "messages": MSG})
    assert reply.status_code == 401
    assert reply.headers["www-authenticate"] == "Bearer"
    assert reply.json()["error"]["type"] == "genguard_hard_failure"
    assert sim.stats()["requests"] == 0


def test_client_keys_and_forwarding_the_clients_key_exclude_each_other(sim: Simulator) -> None:
    with pytest.raises(ValueError, match="exclude each other"):
        Proxy(upstream=sim.base_url, client_keys=("a",), forward_client_key=True)


# -- validators under strict --


def test_a_validator_names_a_silent_failure_in_the_headers_and_strict_raises_it(sim: Simulator) -> None:
    sim.configure(reply="maybe")
    checks = {"gpt-4o-mini": "labels:yes,no"}
    with (
        Proxy(upstream=sim.base_url, api_keys=(UPSTREAM,), validators=checks) as lenient,
        Proxy(
            upstream=sim.base_url, api_keys=(UPSTREAM,), validators=checks, strict=True, retry=NO_RETRY
        ) as strict,
    ):
        raw = openai.OpenAI(base_url=lenient.base_url, api_key="x").chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=MSG
        )
        assert raw.parse().choices[0].message.content == "maybe"  # passed through, the outcome in the headers
        assert raw.headers["x-genguard-code"] == "unexpected_label"
        assert raw.headers["x-genguard-kind"] == "silent"
        client = openai.OpenAI(base_url=strict.base_url, api_key="x", timeout=10)
        with pytest.raises(openai.UnprocessableEntityError) as info:
            client.chat.completions.create(model="gpt-4o-mini", messages=MSG)
        assert info.value.code == "unexpected_label"
        body: Any = info.value.body
        assert body["genguard"]["original"]["choices"][0]["message"]["content"] == "maybe"
        assert info.value.response.headers["x-should-retry"] == "false"
        # Another model has no validator: its answer passes.
        other = client.chat.completions.create(model="gpt-4o", messages=MSG)
        assert other.choices[0].message.content == "maybe"
        sim.configure(reply="yes")
        assert (
            client.chat.completions.create(model="gpt-4o-mini", messages=MSG).choices[0].message.content
            == "yes"
        )


def test_a_streamed_answer_failing_its_validator_ends_in_an_error_event_under_strict(sim: Simulator) -> None:
    sim.configure(reply="not json at all")
    with Proxy(upstream=sim.base_url, api_keys=(UPSTREAM,), validators={"*": "json"}, strict=True) as strict:
        client = openai.OpenAI(base_url=strict.base_url, api_key="x", timeout=10)
        seen: list[Any] = []
        with pytest.raises(openai.APIError) as info:
            seen.extend(client.chat.completions.create(model="gpt-4o-mini", messages=MSG, stream=True))
    assert seen  # the text was sent on before the check could run; the end says it failed
    assert info.value.code == "invalid_json"


# -- a shared rate limiter --


class CountingGate:
    """A gate that lets everything go and remembers what it was asked and told."""

    def __init__(self) -> None:
        self.acquired: list[int] = []
        self.observed: list[tuple[int, bool | None]] = []
        self.models: list[tuple[str, str | None]] = []  # the model each attempt asks, as a gate is told it

    async def acquire(self, tokens: int) -> None:
        from genguard.client.gate import asked_model

        self.acquired.append(tokens)
        self.models.append(("acquire", asked_model()))

    def observe(self, status: int, headers: Any, **kw: Any) -> None:
        from genguard.client.gate import asked_model

        self.observed.append((status, kw.get("rate_limited")))
        self.models.append(("observe", asked_model()))


def test_the_gate_is_asked_before_every_attempt_and_told_every_answer(sim: Simulator) -> None:
    import genguard

    gate = CountingGate()
    assert isinstance(gate, genguard.Gate)
    sim.configure(scenario="rate_limited:1", retry_after_s=0.05)
    with Proxy(upstream=sim.base_url, api_keys=(UPSTREAM,), gate=gate) as proxy:
        client = openai.OpenAI(base_url=proxy.base_url, api_key="x", timeout=10)
        client.chat.completions.create(model="gpt-4o-mini", messages=MSG)
        other: Any = [{"role": "user", "content": "another request"}]  # the simulator's 429 is per request
        list(client.chat.completions.create(model="gpt-4o-mini", messages=other, stream=True))
        client.embeddings.create(model="text-embedding-3-small", input="a cat")
    # Each call: a 429 (a rate limit the limiter must learn from), then a 200.
    assert gate.observed == [(429, True), (200, False)] * 3
    assert len(gate.acquired) == 6
    assert all(t > 0 for t in gate.acquired)  # a token estimate for each attempt
    # Each attempt's model, plain, streamed or not (for a gate that paces each model on its own).
    asked = [("acquire", m) for m in ("gpt-4o-mini",) * 4 + ("text-embedding-3-small",) * 2]
    assert gate.models == [
        x for pair in zip(asked, [("observe", m) for _, m in asked], strict=True) for x in pair
    ]


# -- what the client's request says reaches the provider --


class _Recorder:
    """A provider on 127.0.0.1 that records each request's headers and answers one chat completion (plain or
    streamed) or one embedding."""

    def __init__(self) -> None:
        import json
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.seen: list[dict[str, str]] = []
        seen = self.seen

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                seen.append({k.lower(): v for k, v in self.headers.items()})
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                if self.path.endswith("/embeddings"):
                    self._send("application/json", json.dumps({"object": "list", "model": body["model"],
                        "data": [{"object": "embedding", "index": 0, "embedding": [0.1, 0.2]}],
                        "usage": {"prompt_tokens": 1, "total_tokens": 1}}).encode())  # fmt: skip
                elif body.get("stream"):
                    chunk = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": body["model"],
                             "choices": [{"index": 0, "delta": {"content": "Hello there"}, "finish_reason": None}]}  # fmt: skip
                    end = {**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
                    events = f"data: {json.dumps(chunk)}\n\ndata: {json.dumps(end)}\n\ndata: [DONE]\n\n"
                    self._send("text/event-stream", events.encode())
                else:
                    self._send("application/json", json.dumps({"id": "c1", "object": "chat.completion",
                        "created": 1, "model": body["model"], "choices": [{"index": 0, "finish_reason": "stop",
                        "message": {"role": "assistant", "content": "Hello there"}}],
                        "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}}).encode())  # fmt: skip

            def _send(self, kind: str, data: bytes) -> None:
                self.send_response(200)
                self.send_header("content-type", kind)
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_the_clients_own_headers_reach_the_provider_with_the_proxys_key() -> None:
    recorder = _Recorder()
    try:
        with Proxy(upstream=recorder.base_url, api_keys=(UPSTREAM,), client_keys=(CLIENT,)) as proxy:
            client = openai.OpenAI(
                base_url=proxy.base_url, api_key=CLIENT, organization="org-team-a", project="proj_batch",
                default_headers={"OpenAI-Beta": "assistants=v2", "X-Trace": "t-42"}, timeout=10,
            )  # fmt: skip
            client.chat.completions.create(model="gpt-4o-mini", messages=MSG)
            list(client.chat.completions.create(model="gpt-4o-mini", messages=MSG, stream=True))
            client.embeddings.create(model="text-embedding-3-small", input="a cat")
    finally:
        recorder.close()
    assert len(recorder.seen) == 3
    for headers in recorder.seen:
        assert headers["openai-organization"] == "org-team-a"
        assert headers["openai-project"] == "proj_batch"
        assert headers["openai-beta"] == "assistants=v2"
        assert headers["x-trace"] == "t-42"
        assert headers["authorization"] == f"Bearer {UPSTREAM}"  # the proxy's key, never the client's
        assert CLIENT not in str(headers)
        assert headers["content-type"] == "application/json"
