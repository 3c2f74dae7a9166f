"""A fixed reply: the text every answer gives, so an application's own checks (labels, patterns, JSON it
parses) can be tested against the simulator; set server-wide, per model, or per request by header."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import httpx
import openai
import orjson
import pytest
from click.testing import CliRunner

from genguard.cli import cli
from genguard.client.clients import Client
from genguard.sim import Simulator

MSGS: Any = [{"role": "user", "content": "Is this review positive or negative? 'Loved it.'"}]
LABELS = ["positive", "negative"]


def _chat(sim: Simulator, headers: dict[str, str] | None = None, **body: Any) -> httpx.Response:
    return httpx.post(sim.base_url + "/chat/completions", headers=headers,
                      json={"model": "gpt-4o-mini", "messages": MSGS, **body})  # fmt: skip


def _content(r: httpx.Response) -> str:
    assert r.status_code == 200, r.text
    text: str = r.json()["choices"][0]["message"]["content"]
    return text


def _streamed(sim: Simulator, headers: dict[str, str] | None = None, **body: Any) -> list[str]:
    pieces: list[str] = []
    with httpx.stream("POST", sim.base_url + "/chat/completions", headers=headers,
                      json={"model": "gpt-4o-mini", "messages": MSGS, "stream": True, **body}) as r:  # fmt: skip
        for line in r.iter_lines():
            if line.startswith("data: {"):
                for choice in orjson.loads(line[6:])["choices"]:
                    pieces.append(choice["delta"].get("content") or "")
    return [p for p in pieces if p]


def test_a_labels_check_passes_with_the_reply_it_expects(sim: Simulator) -> None:
    with Client(sim.base_url, api_key="sk-test") as c:
        assert c.chat(model="gpt-4o-mini", messages=MSGS, labels=LABELS).code == "unexpected_label"
        sim.configure(reply="positive")
        o = c.chat(model="gpt-4o-mini", messages=MSGS, labels=LABELS)
    assert o.ok, o.message
    assert (o.text, o.finish_reason) == ("positive", "stop")


def test_the_header_chooses_the_reply_of_one_request(sim: Simulator) -> None:
    sim.configure(reply="positive")
    assert _content(_chat(sim, {"x-genguard-reply": "negative"})) == "negative"
    assert _content(_chat(sim)) == "positive"
    with Client(sim.base_url, api_key="sk-test", headers={"x-genguard-reply": "negative"}) as c:
        o = c.chat(model="gpt-4o-mini", messages=MSGS, labels=LABELS)
    assert (o.ok, o.text) == (True, "negative")


def test_a_reply_per_model_wins_over_the_server_wide_one(sim: Simulator) -> None:
    sim.configure(reply="neutral", reply_for={"gpt-4o": "positive", "o3-mini": "a = b"})
    assert _content(_chat(sim, model="gpt-4o")) == "positive"
    assert _content(_chat(sim, model="o3-mini")) == "a = b"
    assert _content(_chat(sim, model="gpt-4.1-mini")) == "neutral"
    assert _content(_chat(sim, {"x-genguard-reply": "negative"}, model="gpt-4o")) == "negative"


def test_streams_split_the_reply_into_chunks_that_join_back(sim: Simulator) -> None:
    reply = "The answer is positive.\nConfidence:  high, with\ttabs kept."
    sim.configure(reply=reply)
    pieces = _streamed(sim)
    assert len(pieces) > 3
    assert "".join(pieces) == reply
    assert _content(_chat(sim)) == reply


def test_a_header_spells_line_breaks_as_a_json_string(sim: Simulator) -> None:
    reply = 'Label: positive\nWhy: "loved it"'
    header = orjson.dumps(reply).decode()
    assert _content(_chat(sim, {"x-genguard-reply": header})) == reply
    assert "".join(_streamed(sim, {"x-genguard-reply": header})) == reply
    assert _content(_chat(sim, {"x-genguard-reply": '"unclosed'})) == '"unclosed'


def test_the_official_sdk_reads_the_reply_plain_and_streamed(sim: Simulator) -> None:
    sim.configure(reply="positive")
    client = openai.OpenAI(base_url=sim.base_url, api_key="sk-test", max_retries=0)
    r = client.chat.completions.create(model="gpt-4o-mini", messages=MSGS)
    assert r.choices[0].message.content == "positive"
    assert r.usage is not None
    assert r.usage.completion_tokens == 1
    chunks = client.chat.completions.create(model="gpt-4o-mini", messages=MSGS, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "positive"


def test_json_mode_stays_valid_json_unless_a_reply_is_fixed(sim: Simulator) -> None:
    schema = {"type": "object", "properties": {"label": {"enum": LABELS}}, "required": ["label"]}
    fmt = {"type": "json_schema", "json_schema": {"name": "verdict", "schema": schema}}
    for format_ in ({"type": "json_object"}, fmt):
        orjson.loads(_content(_chat(sim, response_format=format_)))
    sim.configure(reply='{"label": "positive"}')
    assert orjson.loads(_content(_chat(sim, response_format=fmt))) == {"label": "positive"}
    # The user asked for this text: it is sent as is, even where JSON was asked for.
    assert _content(_chat(sim, {"x-genguard-reply": "not json"}, response_format=fmt)) == "not json"
    with Client(sim.base_url, api_key="sk-test", headers={"x-genguard-reply": "Sure: {"}) as c:
        assert c.chat(model="gpt-4o-mini", messages=MSGS, validate="json").code == "invalid_json"


def test_max_tokens_cuts_the_reply_where_a_model_would(sim: Simulator) -> None:
    r = _chat(sim, {"x-genguard-reply": '"one two\\nthree four five"'}, max_tokens=3)
    choice = r.json()["choices"][0]
    assert (choice["message"]["content"], choice["finish_reason"]) == ("one two\nthree", "length")
    assert r.json()["usage"]["completion_tokens"] == 3


def test_scenarios_still_play_over_a_fixed_reply(sim: Simulator) -> None:
    sim.configure(reply="positive")
    assert _content(_chat(sim, {"x-genguard-scenario": "unexpected_label"})) != "positive"
    assert _content(_chat(sim, {"x-genguard-scenario": "empty_output"})) == ""
    assert _chat(sim, {"x-genguard-scenario": "server_error"}).status_code == 500
    cut = _chat(sim, {"x-genguard-scenario": "truncated", "x-genguard-reply": "a b c d e f"})
    assert cut.json()["choices"][0]["message"]["content"] == "a b c"


def test_a_header_reply_may_be_utf8(sim: Simulator) -> None:
    r = httpx.post(sim.base_url + "/chat/completions", json={"model": "m", "messages": MSGS},
                   headers=[(b"x-genguard-reply", "très positif ✓".encode())])  # fmt: skip
    assert _content(r) == "très positif ✓"


def test_the_simulator_takes_the_reply_as_a_setting() -> None:
    with Simulator(reply="negative") as sim:
        assert _content(_chat(sim)) == "negative"
        sim.configure(reply=None)
        assert _content(_chat(sim)) != "negative"


def test_simulate_takes_reply_and_reply_for() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "genguard", "simulate", "--port", "0", "--reply", "positive",
         "--reply-for", "gpt-4o=negative"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        base = proc.stdout.readline().strip().removeprefix("listening on ")
        for model, want in (("gpt-4o-mini", "positive"), ("gpt-4o", "negative")):
            r = httpx.post(base + "/chat/completions", json={"model": model, "messages": MSGS})
            assert _content(r) == want
    finally:
        proc.terminate()
        proc.wait(10)
    result = CliRunner().invoke(cli, ["simulate", "--reply-for", "no-equals-sign"])
    assert result.exit_code == 2
    assert "MODEL=VALUE" in result.output


@pytest.mark.parametrize("flag", ["--reply", "--reply-for"])
def test_help_lists_the_reply_flags(flag: str) -> None:
    assert flag in CliRunner().invoke(cli, ["simulate", "--help"]).output
