"""What the batch runner's tests share: writing an input file, reading a run's output files whole, and the
answer the simulator gives each request on its own (the reference a line's answer is checked against)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
import orjson

from genguard.bulk.outputs import request_id_for
from genguard.sim import Simulator

URL = "/v1/chat/completions"
MODEL = "gpt-4o-mini"
RECORD_KEYS = {"id", "custom_id", "response", "error", "genguard"}


def body_of(i: int, *, words: int = 0, max_tokens: int = 80) -> dict[str, Any]:
    """A chat request of its own: the simulator's answer is seeded by the conversation, so each line's
    answer differs from every other's, and ``words`` makes the prompt (and its usage) longer."""
    text = f"Question {i}: what is {i} times {i + 7}?" + " please" * words
    return {"model": MODEL, "messages": [{"role": "user", "content": text}], "max_tokens": max_tokens}


def lines_of(n: int, *, prefix: str = "q", **kwargs: Any) -> list[dict[str, Any]]:
    return [
        {"custom_id": f"{prefix}-{i:04d}", "method": "POST", "url": URL, "body": body_of(i, **kwargs)}
        for i in range(1, n + 1)
    ]


def write_input(path: Path, lines: Iterable[Mapping[str, Any] | bytes]) -> Path:
    with path.open("wb") as f:
        for line in lines:
            f.write((line if isinstance(line, bytes) else orjson.dumps(line)) + b"\n")
    return path


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Every record of an output file; the file must hold whole lines only."""
    if not path.exists():
        return []
    data = path.read_bytes()
    assert not data or data.endswith(b"\n"), f"{path.name} ends in a partial line"
    return [orjson.loads(line) for line in data.splitlines()]


def records(out: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    return read_jsonl(out / "output.jsonl"), read_jsonl(out / "errors.jsonl")


def check_records(out: Path, custom_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Each custom_id is in output.jsonl or errors.jsonl exactly once, in the OpenAI Batch output shape; the
    records by custom_id."""
    ok, failed = records(out)
    seen = [r["custom_id"] for r in ok + failed]
    assert sorted(seen) == sorted(custom_ids), "a line is missing or written twice"
    for r in ok + failed:
        assert set(r) == RECORD_KEYS
        assert r["id"] == request_id_for(r["custom_id"])
        g = r["genguard"]
        if r["response"] is None:
            assert r["error"]["code"] == g["code"]
        else:
            assert r["error"] is None
            assert set(r["response"]) == {"status_code", "request_id", "body"}
    assert all(r["genguard"]["ok"] for r in ok)
    assert not any(r["genguard"]["ok"] for r in failed)
    return {r["custom_id"]: r for r in ok + failed}


def check_own_answers(by_id: Mapping[str, Mapping[str, Any]], bodies: Mapping[str, Mapping[str, Any]],
                      reference: Reference) -> int:  # fmt: skip
    """Every answered chat line carries the answer to its own request: the text the simulator gives that
    request alone (or its start, when the answer was cut short), with the request id and usage of the one
    response, as the journal's outcome recorded them. How many were checked."""
    checked = 0
    for cid, r in by_id.items():
        response = r["response"]
        if response is None or response["status_code"] != 200:
            continue
        body = response["body"]
        g = r["genguard"]
        text = body["choices"][0]["message"]["content"]
        expected = reference.text(bodies[cid])
        if g["ok"]:
            assert text == expected, f"{cid} holds another request's answer"
        else:
            assert expected.startswith(text), f"{cid} holds another request's answer"
        assert body["id"].removeprefix("chatcmpl-") == response["request_id"].removeprefix("req_")
        assert g["request_id"] == response["request_id"]
        assert body["usage"]["prompt_tokens"] == g["usage"]["prompt_tokens"]
        assert body["usage"]["prompt_tokens"] == reference.prompt_tokens(bodies[cid])
        checked += 1
    return checked


class Reference:
    """The answers of a simulator with the same seed and no failures, one request at a time: what each line's
    answer must be whatever the order and concurrency it was sent in."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self.http = httpx.Client(base_url=sim.base_url, headers={"authorization": "Bearer sk-reference"})
        self._cache: dict[bytes, dict[str, Any]] = {}

    def close(self) -> None:
        self.http.close()

    def answer(self, body: Mapping[str, Any]) -> dict[str, Any]:
        key = orjson.dumps(body, option=orjson.OPT_SORT_KEYS)
        got = self._cache.get(key)
        if got is None:
            response = self.http.post("/chat/completions", content=orjson.dumps(body),
                                      headers={"content-type": "application/json", "x-genguard-scenario": "ok"})  # fmt: skip
            response.raise_for_status()
            got = self._cache[key] = response.json()
        return got

    def text(self, body: Mapping[str, Any]) -> str:
        content: str = self.answer(body)["choices"][0]["message"]["content"]
        return content

    def prompt_tokens(self, body: Mapping[str, Any]) -> int:
        tokens: int = self.answer(body)["usage"]["prompt_tokens"]
        return tokens


def journal_rows(out: Path, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    """A read of the journal as another process would do it (read-only, leaving the file as it is)."""
    db = sqlite3.connect(f"file:{out / 'journal.sqlite'}?mode=ro", uri=True)
    try:
        return db.execute(sql, params).fetchall()
    finally:
        db.close()


def states(out: Path) -> dict[str, int]:
    return dict(journal_rows(out, "SELECT state, count(*) FROM lines GROUP BY state"))  # type: ignore[arg-type]
