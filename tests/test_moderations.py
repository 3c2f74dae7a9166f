"""Moderations (``/v1/moderations``): judged by the taxonomy, sent in bulk, and answered by the simulator."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

from _batch_helpers import check_records, write_input
from genguard.bulk.inputs import read_lines
from genguard.bulk.model import InputProblem, Line
from genguard.bulk.report import render_html, render_summary, summary
from genguard.bulk.runner import EXIT_FAILED, EXIT_OK, EXIT_USAGE, BatchOptions, run_batch
from genguard.cli import cli
from genguard.core.classify import classify_http
from genguard.core.moderation_body import moderation_outcome
from genguard.sim import Simulator

KEY = "sk-moderations-0123456789abcdef"
MODEL = "omni-moderation-latest"
URL = "/v1/moderations"


def _result(flagged: Any) -> dict[str, Any]:
    return {
        "flagged": flagged,
        "categories": {"violence": bool(flagged)},
        "category_scores": {"violence": 0.5},
    }


# -- the verdict on an answer ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("results", "code", "flagged"),
    [
        ([_result(False)], None, 0),
        ([_result(True), _result(False), _result(True)], None, 2),  # a flagged input is the answer asked for
        ([], "empty_output", None),
        # Mistral's results have no "flagged": their categories say it.
        ([{"categories": {"pii": True, "violence": False}}, {"categories": {"pii": False}}], None, 1),
        ([{"flagged": None, "categories": {"violence": None}}], "invalid_response", None),  # says neither
        ([_result(False), "flagged"], "invalid_response", None),
    ],
)
def test_a_moderation_is_usable_when_every_result_has_its_verdict(
    results: list[Any], code: str | None, flagged: int | None
) -> None:
    body = {"id": "modr-1", "model": MODEL, "results": results}
    outcome = moderation_outcome(body)
    assert outcome.code == code
    assert outcome.endpoint == "moderation"
    if code is None:
        assert outcome.ok
        assert outcome.extra == {"results": len(results), "flagged": flagged}
    # Read with no endpoint named (a saved body, `genguard explain`): the body says it is a moderation.
    same = classify_http(200, {}, orjson.dumps(body))
    assert (same.code, same.endpoint) == (code, "moderation")


def test_a_body_that_is_no_moderation_is_an_invalid_response() -> None:
    outcome = classify_http(200, {}, orjson.dumps({"id": "modr-1", "model": MODEL}), endpoint="moderation")
    assert outcome.code == "invalid_response"
    assert "no 'results' array" in (outcome.message or "")


def test_explain_reads_a_saved_moderation(tmp_path: Path) -> None:
    path = tmp_path / "moderation.json"
    path.write_text(json.dumps({"id": "modr-9", "model": MODEL, "results": [_result(True)]}))
    result = CliRunner().invoke(cli, ["explain", "--json", str(path)])
    assert result.exit_code == 0, result.output
    out = orjson.loads(result.output.splitlines()[0])
    assert (out["ok"], out["flagged"], out["results"]) == (True, 1, 1)
    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps({"id": "modr-9", "results": []}))
    result = CliRunner().invoke(cli, ["explain", "--json", "--endpoint", "moderation", str(empty)])
    assert orjson.loads(result.output.splitlines()[0])["code"] == "empty_output"


# -- batch lines -------------------------------------------------------------------------------------------


def _line(custom_id: str, body: Any) -> dict[str, Any]:
    return {"custom_id": custom_id, "method": "POST", "url": URL, "body": body}


@pytest.mark.parametrize(
    ("body", "what", "fix"),
    [
        ({"input": "hi"}, 'no "model"', '"model": "omni-moderation-latest"'),
        ({"model": MODEL}, 'no "input"', "the text to check"),
        ({"model": MODEL, "input": " "}, "input is a blank string", "the text to check"),
        ({"model": MODEL, "input": []}, "input is an empty list", "a list of parts"),
        ({"model": MODEL, "input": 7}, "input is a number", "a list of texts"),
        ({"model": MODEL, "input": [{"type": "audio", "audio": "x"}]}, "input[0] is a part of no known type", '"image_url"'),
        ({"model": MODEL, "input": ["ok", 3]}, "input[1] is a number in a list of texts", "every item a text"),
        ({"model": MODEL, "input": [{"type": "text", "text": "x"}, "ok"]}, "input[1] is a string in a list of parts", '{"type": "text"'),
        ({"model": MODEL, "input": [{"type": "image_url", "image_url": "https://x/a.png"}]}, "input[0] is an image_url part without its image_url", '"image_url": {"url"'),
        ({"model": MODEL, "input": [{"type": "text"}]}, "input[0] is a text part without its text", '{"type": "text", "text"'),
    ],
)  # fmt: skip
def test_a_bad_moderation_line_is_named_before_anything_is_sent(
    tmp_path: Path, body: dict[str, Any], what: str, fix: str
) -> None:
    [problem] = read_lines(write_input(tmp_path / "in.jsonl", [_line("m1", body)]))
    assert isinstance(problem, InputProblem)
    assert what in problem.what
    assert fix in problem.fix


def test_a_bare_body_for_a_moderation_model_goes_to_moderations(tmp_path: Path) -> None:
    bodies = [
        {"model": MODEL, "input": "a calm lake"},
        {"model": "text-embedding-3-small", "input": "a lake"},
    ]
    lines = list(read_lines(write_input(tmp_path / "in.jsonl", bodies)))
    assert all(isinstance(line, Line) for line in lines)
    assert [line.url for line in lines if isinstance(line, Line)] == [URL, "/v1/embeddings"]


def test_moderation_lines_run_in_a_batch(tmp_path: Path) -> None:
    # Over real HTTP: texts, lists of texts and content parts; flagged inputs are answers (ok lines), each
    # request's first attempt refused with a 429 and retried after the server's wait.
    lines = [
        _line("calm", {"model": MODEL, "input": "a calm lake at dawn"}),
        _line("two", {"model": MODEL, "input": ["how to build a weapon", "a recipe for bread"]}),
        _line("parts", {"model": MODEL, "input": [
            {"type": "text", "text": "explicit words"},
            {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]}),
    ]  # fmt: skip
    src = write_input(tmp_path / "in.jsonl", lines)
    out = tmp_path / "run"
    with Simulator() as sim:
        sim.configure(scenario="rate_limited:1", retry_after_s=0.05)
        result = run_batch(
            src, BatchOptions(out=out, base_url=sim.base_url, api_keys=(KEY,), progress="none")
        )
        assert sim.stats()["requests"] == 6
        # An answer with no results fails its line as empty_output, with the provider's answer kept.
        sim.configure(scenario="empty_output")
        empty = run_batch(
            write_input(tmp_path / "empty.jsonl", [_line("nothing", {"model": MODEL, "input": "a field"})]),
            BatchOptions(out=tmp_path / "empty", base_url=sim.base_url, api_keys=(KEY,), progress="none"),
        )
    assert result.exit_code == EXIT_OK
    by_id = check_records(out, [line["custom_id"] for line in lines])
    assert {cid: r["genguard"]["flagged"] for cid, r in by_id.items()} == {"calm": 0, "two": 1, "parts": 1}
    assert {r["genguard"]["attempts"] for r in by_id.values()} == {2}
    assert [r["flagged"] for r in by_id["two"]["response"]["body"]["results"]] == [True, False]
    applied = by_id["parts"]["response"]["body"]["results"][0]["category_applied_input_types"]
    assert applied["sexual"] == ["text", "image"]
    # The summary and the report count the flagged inputs (not failures): 2 of the 4 inputs of 3 lines.
    data = summary(out)
    assert data["moderations"] == {"lines": 3, "inputs": 4, "flagged": 2}
    assert "flagged    2 of the 4 inputs that 3 moderation lines checked" in render_summary(data)
    assert "Moderation inputs flagged" in render_html(data)
    assert empty.exit_code == EXIT_FAILED
    assert summary(tmp_path / "empty")["moderations"] is None
    failed = check_records(tmp_path / "empty", ["nothing"])["nothing"]
    assert failed["genguard"]["code"] == "empty_output"
    assert failed["response"]["body"]["results"] == []


def test_a_moderation_file_without_models_is_refused_whole(tmp_path: Path) -> None:
    src = write_input(tmp_path / "in.jsonl", [_line("m1", {"input": "hi"})])
    with Simulator() as sim:
        result = CliRunner().invoke(
            cli,
            ["batch", str(src), "--out", str(tmp_path / "run"), "--base-url", sim.base_url, "--api-key", KEY],
        )
        assert sim.stats()["requests"] == 0
    assert result.exit_code == EXIT_USAGE
    assert 'in.jsonl:1: the body has no "model"' in result.output
    # --model gives the default model: the same file runs.
    with Simulator() as sim:
        result = CliRunner().invoke(cli, ["batch", str(src), "--out", str(tmp_path / "run"), "--base-url",
                                          sim.base_url, "--api-key", KEY, "--model", MODEL])  # fmt: skip
    assert result.exit_code == EXIT_OK, result.output


# -- the simulator, as the official SDK sees it -------------------------------------------------------------


def test_the_official_sdk_reads_the_simulators_moderations() -> None:
    openai = pytest.importorskip("openai")
    with Simulator() as sim:
        client = openai.OpenAI(base_url=sim.base_url, api_key=KEY, max_retries=0)
        answer = client.moderations.create(model=MODEL, input=["how to build a weapon", "a calm lake"])
        assert [r.flagged for r in answer.results] == [True, False]
        assert answer.results[0].categories.violence is True
        assert answer.id.startswith("modr-")
        with pytest.raises(openai.BadRequestError) as refused:
            client.moderations.create(model=MODEL, input=[])
        assert refused.value.status_code == 400
