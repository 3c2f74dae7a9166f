"""The batch input reader: each format, every kind of bad line named with where and what to do, the sample
files, any bytes without a crash, and memory that stays flat however long the file."""

from __future__ import annotations

import importlib.util
import json
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from genguard.bulk.inputs import SeenIds, check_file, read_lines
from genguard.bulk.model import ENDPOINTS, InputProblem, Line, line_key

EXAMPLES = Path(__file__).parent.parent / "examples" / "batch"
CHAT = "/v1/chat/completions"
MESSAGES = [{"role": "user", "content": "hi"}]
CHAT_BODY = {"model": "m", "messages": MESSAGES}
REF = {"image_url": "https://example.com/a.png"}
EDIT = {"model": "gpt-image-1", "prompt": "make the sky red", "images": [REF]}


def write(tmp_path: Path, name: str, data: bytes | str) -> Path:
    path = tmp_path / name
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def jsonl(*objects: Any) -> str:
    return "".join(json.dumps(o) + "\n" for o in objects)


def batch(custom_id: Any = "r1", url: Any = CHAT, body: Any = None, **extra: Any) -> dict[str, Any]:
    return {
        "custom_id": custom_id,
        "method": "POST",
        "url": url,
        "body": CHAT_BODY if body is None else body,
        **extra,
    }


def only(items: Iterator[Line | InputProblem]) -> Line | InputProblem:
    got = list(items)
    assert len(got) == 1, got
    return got[0]


def problem_of(tmp_path: Path, data: bytes | str, name: str = "in.jsonl", **options: Any) -> InputProblem:
    item = only(read_lines(write(tmp_path, name, data), **options))
    assert isinstance(item, InputProblem), item
    return item


def line_of(tmp_path: Path, data: bytes | str, name: str = "in.jsonl", **options: Any) -> Line:
    item = only(read_lines(write(tmp_path, name, data), **options))
    assert isinstance(item, Line), item
    return item


# -- JSON lines: the Batch shape and bare bodies -----------------------------------------------------------


def test_a_batch_line_becomes_a_line_keyed_by_its_url_and_body(tmp_path: Path) -> None:
    path = write(
        tmp_path, "in.jsonl", jsonl(batch("a"), batch("b", "/v1/embeddings", {"model": "e", "input": "x"}))
    )
    first, second = read_lines(str(path))
    assert first == Line("a", CHAT, CHAT_BODY, 1, str(path), line_key(CHAT, CHAT_BODY))
    assert isinstance(second, Line)
    assert (second.custom_id, second.url, second.number, second.endpoint) == (
        "b",
        "/v1/embeddings",
        2,
        "embedding",
    )


def test_the_source_is_the_path_as_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, "in.jsonl", jsonl(batch()))
    monkeypatch.chdir(tmp_path)
    item = only(read_lines(Path("in.jsonl")))
    assert item.source == "in.jsonl"


@pytest.mark.parametrize("suffix", [".jsonl", ".ndjson", ".json", ".JSONL"])
def test_every_json_lines_suffix_reads_the_same(tmp_path: Path, suffix: str) -> None:
    assert line_of(tmp_path, jsonl(batch()), "in" + suffix).custom_id == "r1"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("/v1/chat/completions", "/v1/chat/completions"),
        ("/chat/completions", "/v1/chat/completions"),
        ("/v1/chat/completions/", "/v1/chat/completions"),
        ("/embeddings", "/v1/embeddings"),
        ("/images/generations", "/v1/images/generations"),
        ("/v1/videos", "/v1/videos"),
    ],
)
def test_a_url_without_v1_is_normalised(tmp_path: Path, url: str, expected: str) -> None:
    body = {
        "chat": CHAT_BODY,
        "embedding": {"model": "e", "input": "x"},
        "image": {"model": "i", "prompt": "a cat"},
        "video": {"prompt": "a cat"},  # the videos API picks a model itself
    }[ENDPOINTS[expected]]
    line = line_of(tmp_path, jsonl(batch(url=url, body=body)))
    assert line.url == expected
    assert line.key == line_key(expected, body)


def test_method_may_be_left_out_or_written_in_lower_case(tmp_path: Path) -> None:
    without = {k: v for k, v in batch("a").items() if k != "method"}
    lines = list(read_lines(write(tmp_path, "in.jsonl", jsonl(without, batch("b", method="post")))))
    assert [line.custom_id for line in lines if isinstance(line, Line)] == ["a", "b"]


@pytest.mark.parametrize(
    ("url", "body"),
    [
        ("/v1/responses", {"model": "m", "input": "Say hi."}),
        ("/responses", {"model": "m", "instructions": "Be brief.", "max_output_tokens": 50,
                        "input": [{"role": "user", "content": [{"type": "input_text", "text": "hi"}]}]}),
        ("/v1/completions", {"model": "m", "prompt": "Once upon a time", "max_tokens": 20}),
    ],
)  # fmt: skip
def test_responses_and_completions_lines_are_read(tmp_path: Path, url: str, body: dict[str, Any]) -> None:
    line = line_of(tmp_path, jsonl(batch(url=url, body=body)))
    assert (line.url, line.body) == ("/v1" + url.removeprefix("/v1"), body)


def test_an_integer_custom_id_becomes_its_decimal_string(tmp_path: Path) -> None:
    assert line_of(tmp_path, jsonl(batch(7))).custom_id == "7"


@pytest.mark.parametrize(
    ("body", "url"),
    [
        ({"model": "m", "messages": MESSAGES}, "/v1/chat/completions"),
        ({"model": "m", "messages": MESSAGES, "prompt": "also here"}, "/v1/chat/completions"),
        ({"model": "e", "input": ["a", "b"]}, "/v1/embeddings"),
        ({"model": "i", "prompt": "a red bicycle"}, "/v1/images/generations"),
        (EDIT, "/v1/images/edits"),
        ({"model": "m", "input": "Tell me a joke.", "instructions": "Be brief."}, "/v1/responses"),
        (
            {"model": "m", "input": [{"role": "user", "content": "hi"}], "max_output_tokens": 50},
            "/v1/responses",
        ),
    ],
)
def test_a_bare_body_gets_its_url_from_its_keys(tmp_path: Path, body: dict[str, Any], url: str) -> None:
    line = line_of(tmp_path, "\n\n" + json.dumps(body) + "\n")
    assert (line.url, line.number, line.custom_id, line.body) == (url, 3, "3", body)


def test_numbers_are_physical_lines_and_blank_lines_yield_nothing(tmp_path: Path) -> None:
    text = "\n  \n" + json.dumps(batch("a")) + "\r\n\t\r\n" + json.dumps(CHAT_BODY) + "\n\n"
    items = list(read_lines(write(tmp_path, "in.jsonl", text)))
    assert [(i.number, i.custom_id) for i in items if isinstance(i, Line)] == [(3, "a"), (5, "5")]
    assert len(items) == 2


def test_a_utf8_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    assert line_of(tmp_path, b"\xef\xbb\xbf" + jsonl(batch()).encode()).number == 1


def test_stream_false_or_null_is_sent_as_written(tmp_path: Path) -> None:
    path = write(tmp_path, "in.jsonl", jsonl(batch("a", body={**CHAT_BODY, "stream": False}),
                                             batch("b", body={**CHAT_BODY, "stream": None})))  # fmt: skip
    first, second = read_lines(path, params={"stream": False})
    assert isinstance(first, Line)
    assert isinstance(second, Line)
    assert (first.body["stream"], second.body["stream"]) == (False, None)


def test_unicode_text_is_kept(tmp_path: Path) -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "café \u2028 ☕ 𝄞"}]}
    assert line_of(tmp_path, json.dumps(body, ensure_ascii=False) + "\n").body == body


def test_model_and_params_are_defaults_a_body_can_override(tmp_path: Path) -> None:
    path = write(
        tmp_path, "in.jsonl", jsonl({"messages": MESSAGES}, {"model": "own", "messages": MESSAGES, "n": 2})
    )
    first, second = read_lines(path, model="dflt", params={"n": 1, "max_tokens": 9})
    assert isinstance(first, Line)
    assert isinstance(second, Line)
    assert first.body == {"model": "dflt", "n": 1, "max_tokens": 9, "messages": MESSAGES}
    assert second.body == {"model": "own", "n": 2, "max_tokens": 9, "messages": MESSAGES}
    # The key is what will be sent, defaults included.
    assert first.key == line_key(CHAT, first.body)


# -- every kind of bad JSON line -------------------------------------------------------------------------


def obj(o: Any) -> str:
    return json.dumps(o) + "\n"


BAD_JSON_LINES = [
    # (id, the line, words in `what`, words in `fix`, the problem's custom_id)
    ("broken-json", '{"custom_id": "a", "body": }\n', ["not valid JSON", "column 28"], ["fix the JSON"], None),
    ("truncated-json", '{"custom_id": "a"\n', ["not valid JSON", "column 18"], ["one whole JSON object"], None),
    ("two-objects", "{} {}\n", ["not valid JSON", "column 4"], [], None),
    ("pretty-printed", "[\n", ["not valid JSON"], ["JSON Lines"], None),
    ("array", obj([batch()]), ["a list, not a JSON object"], ["one element per line"], None),
    ("string", obj("hello"), ["a string, not a JSON object"], ["one request per line"], None),
    ("number", "42\n", ["a number, not a JSON object"], [], None),
    ("null", "null\n", ["null, not a JSON object"], [], None),
    ("no-custom-id", obj({"url": CHAT, "body": CHAT_BODY}), ["no custom_id"], ['"custom_id"'], None),
    ("empty-custom-id", obj(batch("")), ["custom_id is empty"], [], None),
    ("blank-custom-id", obj(batch("  ")), ["custom_id is blank"], [], None),
    ("float-custom-id", obj(batch(1.5)), ["custom_id is a number, not a string"], ['"custom_id": "request-1"'], None),
    ("bool-custom-id", obj(batch(True)), ["custom_id is true, not a string"], [], None),
    ("null-custom-id", obj(batch(None)), ["custom_id is null"], [], None),
    ("list-custom-id", obj(batch(["a"])), ["custom_id is a list"], [], None),
    ("unknown-url", obj(batch(url="/v1/audio/speech")), ['unknown url "/v1/audio/speech"'], list(ENDPOINTS), "r1"),
    ("url-with-host", obj(batch(url="https://api.openai.com/v1/chat/completions")), ["unknown url"], ["without the host"], "r1"),
    ("url-not-string", obj(batch(url=3)), ["url is a number"], ["/v1/chat/completions"], "r1"),
    ("no-url", obj({"custom_id": "r1", "body": CHAT_BODY}), ["no url"], ["/v1/embeddings"], "r1"),
    ("method-get", obj(batch(method="GET")), ['method is "GET", not POST'], ['"method": "POST"'], "r1"),
    ("method-number", obj(batch(method=1)), ["method is a number, not POST"], [], "r1"),
    ("no-body", obj({"custom_id": "r1", "url": CHAT}), ["no body"], ['"body"'], "r1"),
    ("body-beside", obj({"custom_id": "r1", "url": CHAT, **CHAT_BODY}), ["no body"], ['under "body"', "messages"], "r1"),
    ("body-string", obj(batch(body=json.dumps(CHAT_BODY))), ["body is a string, not a JSON object"], [], "r1"),
    ("body-list", obj(batch(body=[CHAT_BODY])), ["body is a list"], [], "r1"),
    ("no-model", obj(batch(body={"messages": MESSAGES})), ['no "model"'], ['"model"', "default model"], "r1"),
    ("null-model", obj(batch(body={"model": None, "messages": MESSAGES})), ['no "model"'], [], "r1"),
    ("empty-model", obj(batch(body={"model": "", "messages": MESSAGES})), ["model is an empty string"], [], "r1"),
    ("number-model", obj(batch(body={"model": 4, "messages": MESSAGES})), ["model is a number"], [], "r1"),
    ("no-model-no-messages", obj(batch(body={"temperature": 0})), ['no "model" and no "messages"'], ['"model"', '"messages"'], "r1"),
    ("no-messages", obj(batch(body={"model": "m"})), ['no "messages"'], ['"role": "user"'], "r1"),
    ("messages-string", obj(batch(body={"model": "m", "messages": "hi"})), ["messages is a string, not a list"], [], "r1"),
    ("messages-empty", obj(batch(body={"model": "m", "messages": []})), ["messages is an empty list"], [], "r1"),
    ("message-not-object", obj(batch(body={"model": "m", "messages": [*MESSAGES, "hi"]})), ["messages[1] is a string"], [], "r1"),
    ("message-no-role", obj(batch(body={"model": "m", "messages": [{"content": "x"}]})), ["messages[0] has no role"], ['"role"'], "r1"),
    ("message-role-number", obj(batch(body={"model": "m", "messages": [{"role": 1}]})), ["messages[0].role is a number"], [], "r1"),
    ("embeddings-no-input", obj(batch(url="/v1/embeddings", body={"model": "e"})), ['no "input"'], ['"input"'], "r1"),
    ("embeddings-empty-input", obj(batch(url="/v1/embeddings", body={"model": "e", "input": ""})), ["input is an empty string"], [], "r1"),
    ("embeddings-number-input", obj(batch(url="/v1/embeddings", body={"model": "e", "input": 5})), ["input is a number"], [], "r1"),
    ("embeddings-no-model", obj(batch(url="/embeddings", body={"input": "x"})), ['no "model"'], [], "r1"),
    ("images-no-prompt", obj(batch(url="/v1/images/generations", body={"model": "i"})), ['no "prompt"'], ['"prompt"'], "r1"),
    ("images-no-model", obj(batch(url="/v1/images/generations", body={"prompt": "a cat"})), ['no "model"'], [], "r1"),
    ("images-empty-prompt", obj(batch(url="/v1/images/generations", body={"model": "i", "prompt": " "})), ["prompt is a blank string"], [], "r1"),
    ("videos-no-prompt", obj(batch(url="/v1/videos", body={"model": "v"})), ['no "prompt"'], [], "r1"),
    ("edits-no-images", obj(batch(url="/v1/images/edits", body={"model": "i", "prompt": "x"})), ['no "images"'], ['"images": [{"image_url"', "file_id"], "r1"),
    ("edits-images-string", obj(batch(url="/v1/images/edits", body={**EDIT, "images": "a.png"})), ["images is a string"], ["a list of 1 to 16 pictures"], "r1"),
    ("edits-images-empty", obj(batch(url="/v1/images/edits", body={**EDIT, "images": []})), ["images is an empty list"], [], "r1"),
    ("edits-too-many", obj(batch(url="/v1/images/edits", body={**EDIT, "images": [REF] * 17})), ["images lists 17 pictures"], ["at most 16"], "r1"),
    ("edits-multipart-field", obj(batch(url="/images/edits", body={**EDIT, "image": "@a.png"})), ['the body has "image", the multipart form'], ['"images"'], "r1"),
    ("edits-ref-string", obj(batch(url="/v1/images/edits", body={**EDIT, "images": ["https://x/a.png"]})), ["images[0] is a string, not an object"], ['{"image_url"'], "r1"),
    ("edits-ref-both", obj(batch(url="/v1/images/edits", body={**EDIT, "images": [REF, {"image_url": "u", "file_id": "f"}]})), ["images[1] has both image_url and file_id"], [], "r1"),
    ("edits-ref-neither", obj(batch(url="/v1/images/edits", body={**EDIT, "images": [{"url": "u"}]})), ["images[0] has no image_url and no file_id"], [], "r1"),
    ("edits-ref-blank", obj(batch(url="/v1/images/edits", body={**EDIT, "images": [{"file_id": " "}]})), ["images[0].file_id is a blank string"], [], "r1"),
    ("edits-mask-string", obj(batch(url="/v1/images/edits", body={**EDIT, "mask": "m.png"})), ["mask is a string, not an object"], [], "r1"),
    ("generations-with-images", obj(batch(url="/v1/images/generations", body=EDIT)), ["names pictures to edit (images)"], ['"url": "/v1/images/edits"'], "r1"),
    ("responses-no-input", obj(batch(url="/v1/responses", body={"model": "m"})), ['no "input"'], ['"input": the prompt'], "r1"),
    ("responses-messages", obj(batch(url="/v1/responses", body=CHAT_BODY)), ['no "input"'], ["a list of messages"], "r1"),
    ("responses-empty-input", obj(batch(url="/v1/responses", body={"model": "m", "input": " "})), ["input is a blank string"], [], "r1"),
    ("responses-empty-list", obj(batch(url="/responses", body={"model": "m", "input": []})), ["input is an empty list"], [], "r1"),
    ("responses-item-string", obj(batch(url="/v1/responses", body={"model": "m", "input": ["hi"]})), ["input[0] is a string"], [], "r1"),
    ("responses-number-input", obj(batch(url="/v1/responses", body={"model": "m", "input": 3})), ["input is a number"], [], "r1"),
    ("responses-background", obj(batch(url="/v1/responses", body={"model": "m", "input": "hi", "background": True})), ["background is true"], ['remove "background"'], "r1"),
    ("responses-stream", obj(batch(url="/v1/responses", body={"model": "m", "input": "hi", "stream": True})), ["stream is true"], [], "r1"),
    ("completions-no-prompt", obj(batch(url="/v1/completions", body={"model": "m"})), ['no "prompt"'], ["the text to complete"], "r1"),
    ("completions-empty-prompt", obj(batch(url="/v1/completions", body={"model": "m", "prompt": ""})), ["prompt is an empty string"], [], "r1"),
    ("stream-true", obj(batch(body={**CHAT_BODY, "stream": True})), ["stream is true"], ['remove "stream"'], "r1"),
    ("stream-string", obj(batch(body={**CHAT_BODY, "stream": "yes"})), ["stream is a string"], ['remove "stream"'], "r1"),
    ("images-stream", obj(batch(url="/v1/images/generations", body={"model": "i", "prompt": "a cat", "stream": True})), ["stream is true"], [], "r1"),
    ("bare-stream", obj({**CHAT_BODY, "stream": True}), ["stream is true"], [], "2"),
    ("bare-messages-and-input", obj({"model": "m", "messages": MESSAGES, "input": "x"}), ["messages and input"], ["Batch shape"], "2"),
    ("bare-input-and-prompt", obj({"model": "m", "input": "x", "prompt": "y"}), ["input and prompt"], ["Batch shape"], "2"),
    ("bare-unknown", obj({"model": "m", "text": "x"}), ["neither a Batch line nor a request body", '"model", "text"'], ["Batch shape"], "2"),
    ("bare-empty-object", "{}\n", ["neither a Batch line nor a request body", "(none)"], [], "2"),
    ("bare-no-model", obj({"messages": MESSAGES}), ['no "model"'], [], "2"),
    ("invalid-utf8", b'{"custom_id": "caf\xe9"}\n', ["not valid UTF-8", "byte 0xe9 at column 19"], ["save the file as UTF-8"], None),
    ("invalid-utf8-late", b"{}" + b" " * 10 + b"\xff\xfe\n", ["byte 0xff at column 13"], [], None),
    ("lone-surrogate-escape", b'{"custom_id": "\\ud800"}\n', ["not valid JSON"], [], None),
]  # fmt: skip


@pytest.mark.parametrize(
    ("line", "what", "fix", "custom_id"),
    [pytest.param(line, what, fix, cid, id=name) for name, line, what, fix, cid in BAD_JSON_LINES],
)
def test_every_bad_line_is_named_with_what_is_wrong_and_what_to_do(
    tmp_path: Path, line: str | bytes, what: list[str], fix: list[str], custom_id: str | None
) -> None:
    data = line if isinstance(line, bytes) else line.encode()
    path = write(
        tmp_path, "in.jsonl", jsonl(batch("before")).encode() + data + jsonl(batch("after")).encode()
    )
    before, problem, after = read_lines(path)
    # The lines around a bad one are read as if it were not there.
    assert isinstance(before, Line)
    assert isinstance(after, Line)
    assert (before.custom_id, after.custom_id, after.number) == ("before", "after", 3)
    assert isinstance(problem, InputProblem)
    assert (problem.source, problem.line, problem.custom_id) == (str(path), 2, custom_id)
    for words in what:
        assert words in problem.what
    for words in fix:
        assert words in problem.fix
    assert str(problem) == f"{path}:2: {problem.what}; {problem.fix}"


def test_a_bare_problem_line_is_named_by_its_line_number(tmp_path: Path) -> None:
    assert problem_of(tmp_path, "\n\n" + obj({"messages": MESSAGES})).custom_id == "3"


# -- templates: rows of JSON lines and tables ------------------------------------------------------------


def test_a_template_turns_each_json_object_into_a_chat_request(tmp_path: Path) -> None:
    rows = jsonl(
        {"text": "great", "custom_id": "c"}, {"text": "bad", "id": 12}, {"text": "meh", "n": {"k": "v"}}
    )
    path = write(tmp_path, "rows.jsonl", rows)
    lines = list(read_lines(path, template="Classify: {text}", model="m", params={"max_tokens": 5}))
    assert all(isinstance(line, Line) for line in lines)
    assert [(line.custom_id, line.number) for line in lines] == [("c", 1), ("12", 2), ("3", 3)]
    assert lines[0].body == {
        "model": "m",
        "messages": [{"role": "user", "content": "Classify: great"}],
        "max_tokens": 5,
    }
    assert lines[0].url == CHAT


def test_a_template_reads_nested_fields_and_formats(tmp_path: Path) -> None:
    path = write(tmp_path, "rows.jsonl", jsonl({"meta": {"lang": "fr"}, "score": 0.5}))
    line = only(read_lines(path, template="[{meta[lang]}] {score:.2f} {score!r}", model="m"))
    assert isinstance(line, Line)
    assert line.body["messages"][0]["content"] == "[fr] 0.50 0.5"


def test_params_may_carry_the_model(tmp_path: Path) -> None:
    line = line_of(tmp_path, jsonl({"text": "x"}), "rows.jsonl", template="{text}", params={"model": "p"})
    assert line.body["model"] == "p"


@pytest.mark.parametrize(
    ("row", "template", "what", "fix", "custom_id"),
    [
        ({"txt": "x", "id": "r"}, "{text}", 'the row has no field "text"', ["{text}", '"txt", "id"'], "r"),
        ({"meta": "x"}, "{meta[lang]}", "cannot be filled", ['"meta"'], "1"),
        ({"n": "x"}, "{n:d}", "cannot be filled", [], "1"),
        ({"text": "x", "custom_id": ""}, "{text}", "custom_id is empty", [], None),
        ({"text": "x", "id": None}, "{text}", "id is null", [], None),
        (["x"], "{text}", "a list, not a JSON object", [], None),
    ],
)
def test_a_row_the_template_cannot_fill_is_a_problem(
    tmp_path: Path, row: Any, template: str, what: str, fix: list[str], custom_id: str | None
) -> None:
    problem = problem_of(tmp_path, jsonl(row), "rows.jsonl", template=template, model="m")
    assert what in problem.what
    for words in fix:
        assert words in problem.fix
    assert problem.custom_id == custom_id


REVIEWS_CSV = (
    "id,product,text\n"
    'a1,kettle,"Loud click, but boils fast"\n'
    "\n"
    'a2,lamp,"Two\nlines, one ""quoted"" word"\n'
    "a3,mug,Fine\n"
)


def test_a_csv_row_is_numbered_by_the_line_it_starts_on(tmp_path: Path) -> None:
    path = write(tmp_path, "t.csv", REVIEWS_CSV)
    lines = list(read_lines(path, template="{product}: {text}", model="m"))
    assert all(isinstance(line, Line) for line in lines)
    assert [(line.custom_id, line.number) for line in lines] == [("a1", 2), ("a2", 4), ("a3", 6)]
    contents = [line.body["messages"][0]["content"] for line in lines if isinstance(line, Line)]
    assert contents == [
        "kettle: Loud click, but boils fast",
        'lamp: Two\nlines, one "quoted" word',
        "mug: Fine",
    ]


def test_a_csv_without_an_id_column_names_rows_by_line(tmp_path: Path) -> None:
    path = write(tmp_path, "t.csv", "\ufefftext , lang\r\nhello,en\r\nbonjour,fr\r\n")
    lines = list(read_lines(path, template="{text} ({lang})", model="m"))
    assert [(line.custom_id, line.number) for line in lines] == [("2", 2), ("3", 3)]


def test_a_custom_id_column_wins_over_id(tmp_path: Path) -> None:
    path = write(tmp_path, "t.csv", "id,custom_id,text\n1,one,x\n")
    assert line_of(tmp_path, path.read_text(), "t.csv", template="{text}", model="m").custom_id == "one"


def test_a_tsv_is_unquoted(tmp_path: Path) -> None:
    path = write(tmp_path, "t.tsv", 'text\tn\n"Great" kettle, really\t1\n')
    line = only(read_lines(path, template="{text}", model="m"))
    assert isinstance(line, Line)
    assert line.body["messages"][0]["content"] == '"Great" kettle, really'


@pytest.mark.parametrize(
    ("name", "data", "line", "what", "fix"),
    [
        ("t.csv", "text,n\ny\n", 2, "the row has 1 fields, the header has 2", "quote a value"),
        ("t.csv", "text,n\nx,1,2\n", 2, "the row has 3 fields, the header has 2", "quote a value"),
        ("t.tsv", "text\tn\nx\t1\ty\n", 2, "the row has 3 fields", "holds no tab"),
        ("t.csv", 'text,n\n"x"y,1\n', 2, "not a valid CSV row", "quote a value"),
        ("t.csv", 'text,n\n"x,1\n', 2, "not a valid CSV row: unexpected end of data", ""),
        ("t.csv", b"text,n\ncaf\xe9,1\n", 2, "not valid UTF-8: byte 0xe9 at column 4", "UTF-8"),
        # An empty value is a value, unless every field the template sends is empty; a null never is.
        ("t.csv", "text,n\n,1\n", 2, "every field the template sends is empty", "leave the row out"),
        ("t.jsonl", '{"text": null}\n', 1, 'the row\'s field "text" is null', "fill it"),
        ("t.jsonl", '{"text": NaN}\n', 1, "not valid JSON", ""),
        ("t.csv", "text,id\nx,\n", 2, "id is empty", ""),
    ],
)
def test_every_bad_table_row_is_named(
    tmp_path: Path, name: str, data: str | bytes, line: int, what: str, fix: str
) -> None:
    path = write(tmp_path, name, data)
    item = only(read_lines(path, template="{text}", model="m"))
    if not what:
        assert isinstance(item, Line)
        return
    assert isinstance(item, InputProblem)
    assert (item.line, item.source) == (line, str(path))
    assert what in item.what
    assert fix in item.fix


def test_the_rows_after_a_bad_row_are_read(tmp_path: Path) -> None:
    path = write(tmp_path, "t.csv", b'text,n\n"x"y,1\ncaf\xe9,2\nok,3\n"open,4\n')
    items = list(read_lines(path, template="{text}", model="m"))
    assert [(type(i).__name__, i.line if isinstance(i, InputProblem) else i.number) for i in items] == [
        ("InputProblem", 2),
        ("InputProblem", 3),
        ("Line", 4),
        ("InputProblem", 5),
    ]


def test_a_csv_without_a_header_is_one_problem_not_one_per_row(tmp_path: Path) -> None:
    path = write(tmp_path, "t.csv", "".join(f"review {i},{i}\n" for i in range(1, 1000)))
    problem = only(read_lines(path, template="Classify: {text}", model="m"))
    assert isinstance(problem, InputProblem)
    assert problem.line == 1
    assert 'no column "text"' in problem.what
    assert '"review 1", "1"' in problem.what
    assert "header" in problem.fix


def test_a_header_with_a_column_named_twice_is_a_problem(tmp_path: Path) -> None:
    problem = problem_of(tmp_path, "text,n,text\nx,1,y\n", "t.csv", template="{text}", model="m")
    assert (problem.line, problem.what) == (1, 'the header names "text" twice')


def test_an_empty_table_has_no_lines(tmp_path: Path) -> None:
    assert list(read_lines(write(tmp_path, "t.csv", "\n\n"), template="{text}", model="m")) == []
    assert list(read_lines(write(tmp_path, "h.csv", "text\n"), template="{text}", model="m")) == []


# -- wrong arguments fail at once; a missing file when iteration starts ---------------------------------


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("in.txt", {}, "unknown input format '.txt'"),
        ("in", {}, "(no suffix)"),
        ("in.csv", {}, "give a template"),
        ("in.csv", {"template": "{}", "model": "m"}, "positional field {}"),
        ("in.csv", {"template": "{0}", "model": "m"}, "positional field {0}"),
        ("in.csv", {"template": "{text", "model": "m"}, "malformed"),
        ("in.csv", {"template": "a } b", "model": "m"}, "malformed"),
        ("in.csv", {"template": "{text!x}", "model": "m"}, "unknown conversion"),
        ("in.csv", {"template": "{text}"}, "needs a model"),
        ("in.jsonl", {"params": {"when": object()}}, "params must be JSON"),
        ("in.jsonl", {"params": {"stream": True}}, "params: stream is true; a batch reads each answer whole"),
    ],
)
def test_wrong_arguments_raise_value_error_before_reading(
    name: str, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError) as info:
        read_lines(f"/nonexistent/{name}", **options)
    assert message in str(info.value)


def test_a_literal_brace_in_a_template_is_doubled(tmp_path: Path) -> None:
    line = line_of(tmp_path, jsonl({"text": "x"}), "rows.jsonl", template='{{"label": ?}} {text}', model="m")
    assert line.body["messages"][0]["content"] == '{"label": ?} x'


def test_a_missing_file_raises_when_iteration_starts(tmp_path: Path) -> None:
    items = read_lines(tmp_path / "missing.jsonl")
    with pytest.raises(FileNotFoundError):
        next(items)


# -- check_file: duplicates with bounded memory ---------------------------------------------------------


def test_check_file_adds_duplicate_custom_ids_to_the_readers_problems(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "in.jsonl",
        jsonl(
            batch("a"),
            batch("b", body={"model": "m"}),  # a problem whose custom_id is known still takes it
            CHAT_BODY,  # custom_id "3"
            batch("3"),
            batch("b"),
            batch("a"),
            "broken",
        ),
    )
    problems = [(p.line, p.what) for p in check_file(path)]
    assert problems == [
        (2, 'the body has no "messages"'),
        (4, 'custom_id "3" is already used on line 3'),
        (5, 'custom_id "b" is already used on line 2'),
        (6, 'custom_id "a" is already used on line 1'),
        (7, "the line is a string, not a JSON object"),
    ]


def test_check_file_of_a_clean_file_is_empty(tmp_path: Path) -> None:
    assert list(check_file(write(tmp_path, "in.jsonl", jsonl(batch("a"), batch("b"))))) == []


def test_seen_ids_tells_the_first_line_and_forgets_nothing_under_a_small_cache() -> None:
    with SeenIds(cache_kib=64) as seen:
        assert all(seen.add(f"id-{i}", i) is None for i in range(1, 20_001))
        assert seen.add("id-1", 20_001) == 1
        assert seen.add("id-20000", 20_002) == 20_000
        assert seen.add("ID-1", 20_003) is None  # ids are exact: case matters
        assert seen.add("a\x00b", 20_004) is None
        assert seen.add("a\x00c", 20_005) is None  # a NUL does not end an id
        assert seen.add("a", 20_006) is None


# -- the sample files ------------------------------------------------------------------------------------


def _make_reviews() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_reviews", EXAMPLES / "make_reviews.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_sample_files_are_what_their_script_writes() -> None:
    for name, data in _make_reviews().files().items():
        assert (EXAMPLES / name).read_bytes() == data, f"run python examples/batch/make_reviews.py ({name})"


def test_reviews_jsonl_is_a_thousand_valid_chat_lines() -> None:
    lines = list(read_lines(EXAMPLES / "reviews.jsonl"))
    assert len(lines) == 1000
    assert all(isinstance(line, Line) for line in lines)
    assert list(check_file(EXAMPLES / "reviews.jsonl")) == []
    bodies = [line.body for line in lines if isinstance(line, Line)]
    assert {body["model"] for body in bodies} == {"gpt-4o-mini"}
    assert {body["max_tokens"] for body in bodies} == set(
        range(48, 65)
    )  # room for a whole answer: the demo's failures come from its chaos
    assert len({body["messages"][-1]["content"] for body in bodies}) == 1000


def test_reviews_csv_reads_with_a_template() -> None:
    lines = list(read_lines(EXAMPLES / "reviews.csv", template="Classify: {text}", model="gpt-4o-mini"))
    assert len(lines) == 50
    assert all(isinstance(line, Line) for line in lines)
    assert lines[0].custom_id == "review-0001"
    assert lines[0].number == 2


BAD_SAMPLE_SAYS = {
    "a good line": None,
    "broken JSON": "not valid JSON at column",
    "a JSON array, not an object": "the line is a list, not a JSON object",
    "no custom_id": "the line has no custom_id",
    "an empty custom_id": "custom_id is empty",
    "a custom_id that is not a string": "custom_id is a number, not a string",
    "an unknown url": 'unknown url "/v1/audio/speech"',
    "a method other than POST": 'method is "GET", not POST',
    "a body that is not an object": "body is a string, not a JSON object",
    "a body without model": 'the body has no "model"',
    "a chat body without messages": 'the body has no "messages"',
    "messages that are not a list": "messages is a string, not a list",
    "a message without a role": "messages[0] has no role",
    "an embeddings body without input": 'the body has no "input"',
    "an images body without prompt": 'the body has no "prompt"',
    "a bare body that could be chat or embeddings": "the body has messages and input",
    "a blank line: skipped, not a problem": None,
    "bytes that are not UTF-8": "not valid UTF-8: byte 0xe9",
    "a custom_id used twice (check_file finds it)": 'custom_id "ok-1" is already used on line 1',
}


def test_bad_jsonl_has_one_line_of_each_kind_and_each_says_what_it_is() -> None:
    kinds = [kind for kind, _ in _make_reviews().BAD_LINES]
    assert kinds == list(BAD_SAMPLE_SAYS)
    problems = {p.line: p.what for p in check_file(EXAMPLES / "bad.jsonl")}
    expected = {n: says for n, says in enumerate(BAD_SAMPLE_SAYS.values(), 1) if says is not None}
    assert set(problems) == set(expected)
    for n, says in expected.items():
        assert says in problems[n], (n, problems[n])


# -- any bytes: one item per non-blank line, never an exception ------------------------------------------


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("any")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
keys = st.sampled_from(
    ["custom_id", "method", "url", "body", "model", "messages", "input", "prompt", "role", "text"]
)
near_requests = st.recursive(
    st.sampled_from([None, "", "POST", "m", CHAT, "/embeddings", "/v1/images/generations", 0, 1.5, True]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(keys, inner, max_size=5),
    max_leaves=12,
)
line_bytes = st.one_of(
    st.binary(max_size=40),
    json_values.map(lambda v: json.dumps(v).encode()),
    near_requests.map(lambda v: json.dumps(v, ensure_ascii=False).encode()),
    st.sampled_from([b"", b"  ", b"\r", b"\xef\xbb\xbf", b"{", b"\xff", b"\xc3", b'"a,b"', b"x\ty"]),
)


def _non_blank_lines(data: bytes) -> list[int]:
    lines = data.split(b"\n")
    if lines and lines[0].startswith(b"\xef\xbb\xbf"):
        lines[0] = lines[0][3:]
    return [n for n, line in enumerate(lines, 1) if line.strip(b" \t\r\n")]


@given(data=st.lists(line_bytes, max_size=8).map(b"\n".join))
def test_any_json_lines_file_yields_one_item_per_non_blank_line(work: Path, data: bytes) -> None:
    path = work / "any.jsonl"
    path.write_bytes(data)
    for items in (read_lines(path), read_lines(path, template="{text}", model="m")):
        numbers = [i.number if isinstance(i, Line) else i.line for i in items]
        assert numbers == _non_blank_lines(data)
    assert all(isinstance(p, InputProblem) for p in check_file(path))


@given(
    data=st.lists(line_bytes, max_size=8).map(b"\n".join),
    header=st.booleans(),
    name=st.sampled_from(["any.csv", "any.tsv"]),
)
def test_any_table_file_reads_without_an_exception(work: Path, data: bytes, header: bool, name: str) -> None:
    path = work / name
    path.write_bytes((b"text,custom_id\n" if header else b"") + data)
    lines = path.read_bytes().count(b"\n") + 1
    for template in ("Say: {text}", "Say hi"):
        numbers = [
            i.number if isinstance(i, Line) else i.line
            for i in read_lines(path, template=template, model="m")
        ]
        assert numbers == sorted(set(numbers))
        assert all(1 <= n <= lines for n in numbers)


# -- memory ----------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_long_file_is_read_in_flat_memory(tmp_path: Path) -> None:
    path = tmp_path / "long.jsonl"
    line = (
        '{"custom_id": "r%d", "method": "POST", "url": "/v1/chat/completions", "body": {"model": "m", '
        '"messages": [{"role": "user", "content": "Classify this review: item %d arrived late, works fine"}]}}\n'
    )
    with path.open("w") as out:
        for start in range(0, 200_000, 10_000):
            out.write("".join(line % (i, i) for i in range(start, start + 10_000)))
    size = path.stat().st_size
    tracemalloc.start()
    try:
        count = sum(1 for item in read_lines(path) if isinstance(item, Line))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 200_000
    # Allocation-based, not timed: a reader that kept the lines (or the file) would peak above its size.
    assert peak < size / 100, (peak, size)
