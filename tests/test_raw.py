"""The raw response on the Outcome when asked for (``keep_raw``): over real HTTP against the simulator, and on
the readers; off by default, credentials masked, the body capped with a marker."""

from __future__ import annotations

import orjson
import pytest

from genguard import Outcome
from genguard.client.clients import Client
from genguard.client.retry import RetryPolicy
from genguard.core.chat_stream import ChatStreamReader, read_chat_stream
from genguard.core.classify import classify_http
from genguard.core.error_verdict import classify_error
from genguard.core.outcome import RAW_BODY_LIMIT
from genguard.sim import Simulator

ONE_TRY = RetryPolicy(max_attempts=1)
KEY = "sk-test-raw-0123456789abcdefXYZ"
MSGS = [{"role": "user", "content": "Tell me about lighthouses"}]


def test_off_by_default_over_http(sim: Simulator) -> None:
    with Client(sim.base_url, api_key=KEY, retry=ONE_TRY) as c:
        o = c.chat(model="gpt-4o-mini", messages=MSGS)
    assert o.ok
    assert o.raw is None
    assert "raw" not in o.to_dict(full=True)


def test_a_failure_keeps_status_headers_and_body_over_http(sim: Simulator) -> None:
    headers = {"x-genguard-scenario": "rate_limited"}
    with Client(sim.base_url, api_key=KEY, retry=ONE_TRY, headers=headers, keep_raw=True) as c:
        o = c.chat(model="gpt-4o-mini", messages=MSGS)
    assert o.code == "rate_limited"
    assert o.raw is not None
    assert o.raw.status == 429
    names = [name for name, _ in o.raw.headers]
    assert "retry-after" in names
    assert ("x-request-id", o.request_id) in o.raw.headers
    assert orjson.loads(o.raw.body)["error"]["code"] == "rate_limit_exceeded"
    assert (o.raw.size, o.raw.truncated) == (len(o.raw.body), False)
    stored = orjson.dumps(o.to_dict(full=True)).decode()
    assert KEY not in stored
    assert Outcome.from_dict(orjson.loads(stored)).raw == o.raw


def test_an_ok_answer_keeps_its_body_over_http(sim: Simulator) -> None:
    with Client(sim.base_url, api_key=KEY, retry=ONE_TRY, keep_raw=True) as c:
        o = c.chat(model="gpt-4o-mini", messages=MSGS)
        image = c.images.generate("a lighthouse at dusk", model="dall-e-2", n=1)
    assert o.ok
    assert o.raw is not None
    assert orjson.loads(o.raw.body)["choices"][0]["message"]["content"] == o.text
    assert image.raw is not None
    assert "data" in orjson.loads(image.raw.body)


def test_the_error_reader_and_the_stream_reader_keep_it_too() -> None:
    o = classify_error(401, {"www-authenticate": "Bearer", "x-api-key": "k-1"}, {"error": {"message": f"bad {KEY}"}},
                       secrets=[KEY], keep_raw=True)  # fmt: skip
    assert o.raw is not None
    assert o.raw.headers == (("www-authenticate", "Bearer"), ("x-api-key", "***"))
    assert KEY not in o.raw.body
    stream = (
        b'data: {"choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n'
    )
    s = read_chat_stream(stream, headers={"content-type": "text/event-stream"}, keep_raw=True)
    assert s.raw is not None
    assert (s.raw.status, s.raw.body, s.raw.headers) == (
        200,
        stream.decode(),
        (("content-type", "text/event-stream"),),
    )
    assert read_chat_stream(stream).raw is None


def test_a_long_stream_keeps_only_its_start() -> None:
    reader = ChatStreamReader(keep_raw=True, secrets=[KEY])
    piece = (
        b'data: {"choices":[{"index":0,"delta":{"content":"'
        + b"word " * 200
        + b'"},"finish_reason":null}]}\n\n'
    )
    sent = 0
    while sent <= RAW_BODY_LIMIT * 2:
        reader.feed(piece)
        sent += len(piece)
    reader.feed(b'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n')
    o = reader.finish()
    assert o.ok
    assert o.raw is not None
    assert o.raw.truncated
    assert o.raw.size > RAW_BODY_LIMIT * 2
    assert o.raw.body.endswith("more characters not kept]")
    assert len(o.raw.body) < RAW_BODY_LIMIT + 100


@pytest.mark.parametrize("status", [200, 400, 429, 503])
def test_classify_http_keeps_it_on_every_path(status: int) -> None:
    body = b'{"error": {"message": "x"}}' if status != 200 else b"<html>login</html>"
    o = classify_http(status, {"set-cookie": "sid=1"}, body, keep_raw=True)
    assert o.raw is not None
    assert (o.raw.status, o.raw.body, o.raw.headers) == (status, body.decode(), (("set-cookie", "***"),))
