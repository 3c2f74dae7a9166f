"""`genguard explain`: realistic captures in, the right diagnosis out; exit codes, stdin, secrets."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import click
import orjson
import pytest
from click.testing import CliRunner

from genguard import Outcome, ToolCall, Usage
from genguard.cli import cli
from genguard.cli._render import format_wait, render_outcome

ROOT = Path(__file__).resolve().parent.parent
CAPTURES = ROOT / "examples" / "captures"
FAKE_KEY = "sk-proj-FAKEkeyFAKEkey0123456789"

# The fields of the outcome object in TAXONOMY.md, in order.
TAXONOMY_FIELDS = [
    "ok", "kind", "code", "retryable", "retry_after_s", "status", "message", "param", "provider_code",
    "provider_type", "request_id", "finish_reason", "text", "tool_calls", "usage", "attempts", "cause", "fix",
]  # fmt: skip


def run(*args: str, stdin: bytes | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["explain", *args], input=stdin)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def outcomes(*args: str, stdin: bytes | None = None) -> list[dict[str, object]]:
    code, out, err = run("--json", *args, stdin=stdin)
    assert code == 0, err
    return [orjson.loads(line) for line in out.splitlines()]


# -- the bundled example captures -------------------------------------------------------------------

EXAMPLES = {
    "openai-429-rate-limit.http": [("hard", "rate_limited", True)],
    "openai-429-insufficient-quota.http": [("hard", "quota_exceeded", False)],
    "azure-content-filter-400.http": [("hard", "prompt_blocked", False)],
    "chat-200-truncated.json": [("soft", "truncated", False)],
    "stream-cut-off.sse": [("soft", "incomplete_stream", True)],
    "openrouter-stream-error.http": [("soft", "stream_error", True)],
    "anthropic-529-overloaded.http": [("hard", "unavailable", True)],
    "cloudflare-524-timeout.http": [("hard", "gateway_timeout", True)],
    "image-empty-data.txt": [("soft", "content_filtered", False)],
    "kling-video-failed.txt": [("soft", "generation_failed", True)],
    "browser-two-requests.har": [(None, None, False), ("hard", "server_error", True)],
    "tool-calls-stream.sse": [(None, None, False)],
}


def test_every_example_is_covered() -> None:
    assert sorted(p.name for p in CAPTURES.iterdir()) == sorted(EXAMPLES)


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_example_captures(name: str) -> None:
    got = outcomes(str(CAPTURES / name))
    assert [(o["kind"], o["code"], o["retryable"]) for o in got] == EXAMPLES[name]
    for o in got:
        assert list(o) == [*TAXONOMY_FIELDS, *(k for k in o if k not in TAXONOMY_FIELDS)]
        assert o["source"] is not None
        assert str(o["source"]).startswith(str(CAPTURES / name))
        assert o["ok"] is (o["code"] is None)


def test_example_details() -> None:
    [rate] = outcomes(str(CAPTURES / "openai-429-rate-limit.http"))
    assert rate["status"] == 429
    assert rate["request_id"] == "req_9f2c51d4a0e14b7cb1a8f3e6d2c0b7aa"
    assert rate["provider_code"] == "rate_limit_exceeded"
    assert isinstance(rate["retry_after_s"], float)
    assert rate["retry_after_s"] > 0
    [cut] = outcomes(str(CAPTURES / "stream-cut-off.sse"))
    assert cut["text"] == "The three largest moons of Jupiter are Ganymede, Callisto and"
    [tools] = outcomes(str(CAPTURES / "tool-calls-stream.sse"))
    assert tools["finish_reason"] == "tool_calls"
    assert tools["tool_calls"] is not None
    calls = tools["tool_calls"]
    assert isinstance(calls, list)
    assert [json.loads(c["function"]["arguments"]) for c in calls] == [{"city": "Paris"}, {"city": "Tokyo"}]
    assert tools["usage"] == {"prompt_tokens": 82, "completion_tokens": 38, "total_tokens": 120}
    ok, _ = outcomes(str(CAPTURES / "browser-two-requests.har"))
    assert ok["text"] == "positive"
    assert ok["source"] == f"{CAPTURES / 'browser-two-requests.har'}#1"


def test_all_examples_at_once_in_order() -> None:
    files = sorted(str(p) for p in CAPTURES.iterdir())
    got = outcomes(*files)
    assert len(got) == sum(len(v) for v in EXAMPLES.values())
    sources = [str(o["source"]).split("#")[0] for o in got]
    assert sources == sorted(sources)


def test_readable_output() -> None:
    code, out, _ = run(str(CAPTURES / "openai-429-rate-limit.http"))
    assert code == 0
    assert out.startswith(str(CAPTURES / "openai-429-rate-limit.http"))
    assert "HARD FAILURE rate_limited" in out
    for label in ("what happened", "why", "what to do", "provider said", "request id", "wait", "retry"):
        assert f"  {label} " in out
    assert "HTTP 429" in out
    assert "Rate limit reached for gpt-4o-mini" in out
    assert "\x1b[" not in out  # not a terminal: no colour
    _, ok_out, _ = run(str(CAPTURES / "tool-calls-stream.sse"))
    assert "OK (finish_reason tool_calls, 2 tool calls)" in ok_out
    assert 'get_weather({"city": "Tokyo"})' in ok_out


# -- more codes from realistic captures -------------------------------------------------------------


def http(status: str, body: str, *headers: str) -> bytes:
    return (
        "\r\n".join([f"HTTP/1.1 {status}", "content-type: application/json", *headers]) + "\r\n\r\n" + body
    ).encode()


def err(message: str, type_: str | None = None, code: str | None = None, param: str | None = None) -> str:
    return json.dumps({"error": {"message": message, "type": type_, "param": param, "code": code}})


CASES = {
    "auth_failed": http("401 Unauthorized", err("Incorrect API key provided: sk-abc***xyz.", "invalid_request_error", "invalid_api_key")),
    "permission_denied": http("403 Forbidden", err("You are not allowed to sample from this model", "invalid_request_error")),
    "model_not_found": http("404 Not Found", err("The model `gpt-5-ultra` does not exist or you do not have access to it.", "invalid_request_error", "model_not_found")),
    "bad_request": http("400 Bad Request", err("Invalid value for 'temperature': must be <= 2.", "invalid_request_error", None, "temperature")),
    "context_length_exceeded": http("400 Bad Request", err("This model's maximum context length is 128000 tokens. However, your messages resulted in 130412 tokens.", "invalid_request_error", "context_length_exceeded", "messages")),
    "request_too_large": http("413 Payload Too Large", ""),
    "quota_exceeded": http("402 Payment Required", json.dumps({"error": {"message": "Insufficient credits. Add more using https://openrouter.ai/credits", "code": 402}})),
    "request_timeout": http("408 Request Timeout", ""),
    "conflict": http("409 Conflict", err("Conflict")),
    "unprocessable": http("422 Unprocessable Entity", json.dumps({"detail": [{"loc": ["body", "messages"], "msg": "field required", "type": "missing"}]})),
    "bad_gateway": b"HTTP/1.1 502 Bad Gateway\r\ncontent-type: text/html\r\n\r\n<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center><hr><center>nginx</center></body></html>",
    "invalid_response": b"HTTP/2 200\r\ncontent-type: text/html\r\n\r\n<!DOCTYPE html><html><title>Sign in</title></html>",
    "empty_output": http("200 OK", json.dumps({"id": "c", "object": "chat.completion", "choices": [{"index": 0, "message": {"role": "assistant", "content": ""}, "finish_reason": "stop"}]})),
    "content_filtered": http("200 OK", json.dumps({"choices": [{"index": 0, "message": {"role": "assistant", "content": None}, "finish_reason": "content_filter"}]})),
    "stream_error": b'event: error\ndata: {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}\n\n',
}  # fmt: skip


@pytest.mark.parametrize("code", sorted(CASES))
def test_more_codes(code: str, tmp_path: Path) -> None:
    path = tmp_path / "capture.http"
    path.write_bytes(CASES[code])
    [o] = outcomes(str(path))
    assert o["code"] == code


# -- bare bodies, overrides, stdin ------------------------------------------------------------------

RATE_BODY = err(
    "Rate limit reached for requests. Please try again in 20s.", "requests", "rate_limit_exceeded"
)


def test_bare_json_without_status_is_a_200_unless_an_error(tmp_path: Path) -> None:
    path = tmp_path / "error.json"
    path.write_text(RATE_BODY)
    [o] = outcomes(str(path))
    assert o["status"] is None
    assert o["code"] == "rate_limited"
    assert o["retry_after_s"] == 20.0
    [with_status] = outcomes("--status", "429", str(path))
    assert with_status["status"] == 429
    assert with_status["code"] == "rate_limited"
    [server] = outcomes("--status", "500", str(path))
    assert server["status"] == 500
    chat = tmp_path / "chat.json"
    chat.write_text(
        json.dumps({"choices": [{"index": 0, "message": {"content": "hi"}, "finish_reason": "stop"}]})
    )
    [fine] = outcomes(str(chat))
    assert (fine["ok"], fine["status"], fine["text"]) == (True, 200, "hi")


@pytest.mark.parametrize(
    ("fields", "code", "kind"),
    [
        ({"status": "completed"}, None, None),
        ({"status": "incomplete", "incomplete_details": {"reason": "max_output_tokens"}}, "truncated", "soft"),
        ({"status": "completed", "output": [{"type": "message", "role": "assistant",
          "content": [{"type": "refusal", "refusal": "I cannot assist with that."}]}]}, "content_filtered", "soft"),
        ({"status": "failed", "output": [], "error": {"code": "server_error", "message": "The model failed."}},
         "server_error", "hard"),
    ],
)  # fmt: skip
def test_a_saved_responses_api_body_is_read_as_an_answer_not_a_media_task(
    tmp_path: Path, fields: dict[str, object], code: str | None, kind: str | None
) -> None:
    # Its "status" (completed, failed...) is also a media task's word: the body's "object" tells them apart.
    body: dict[str, object] = {
        "id": "resp_1", "object": "response", "model": "gpt-4o-mini", "error": None, "incomplete_details": None,
        "output": [{"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Hi."}]}],
        "usage": {"input_tokens": 5, "output_tokens": 2, "total_tokens": 7},
    }  # fmt: skip
    path = tmp_path / "response.json"
    path.write_text(json.dumps({**body, **fields}))
    [o] = outcomes(str(path))
    assert (o["code"], o["kind"]) == (code, kind)
    if code is None:
        assert (o["text"], o["finish_reason"]) == ("Hi.", "stop")


def test_header_option_adds_the_wait(tmp_path: Path) -> None:
    path = tmp_path / "e.json"
    path.write_text(err("Too many requests", "requests", "rate_limit_exceeded"))
    [o] = outcomes(
        "--status", "429", "--header", "Retry-After: 7", "--header", "x-request-id: req_h", str(path)
    )
    assert o["retry_after_s"] == 7.0
    assert o["request_id"] == "req_h"


def test_endpoint_option(tmp_path: Path) -> None:
    path = tmp_path / "img.json"
    path.write_text(json.dumps({"created": 1, "data": []}))
    [o] = outcomes("--endpoint", "image", str(path))
    assert o["code"] == "content_filtered"
    assert o["cause"] != outcomes(str(CAPTURES / "chat-200-truncated.json"))[0]["cause"]


def test_stdin() -> None:
    [o] = outcomes("-", stdin=(CAPTURES / "openai-429-insufficient-quota.http").read_bytes())
    assert o["code"] == "quota_exceeded"
    assert o["source"] == "<stdin>"


def test_validate_option() -> None:
    har = str(CAPTURES / "browser-two-requests.har")
    first, second = outcomes("--validate", "labels:negative,neutral", har)
    assert (first["kind"], first["code"], first["text"]) == ("silent", "unexpected_label", "positive")
    assert second["code"] == "server_error"
    [fine, _] = outcomes("--validate", "labels:positive,negative", "--validate", "min-words:1", har)
    assert fine["ok"] is True


def test_har_entry_without_response(tmp_path: Path) -> None:
    entry = {"request": {"method": "POST", "url": "https://h/v1/chat/completions", "headers": []},
             "response": {"status": 0, "headers": [], "content": {"size": 0, "mimeType": "x-unknown"}}}  # fmt: skip
    path = tmp_path / "a.har"
    path.write_bytes(orjson.dumps({"log": {"version": "1.2", "entries": [entry]}}))
    [o] = outcomes(str(path))
    assert o["code"] == "connection_error"


# -- exit codes -------------------------------------------------------------------------------------


def test_missing_and_unreadable_inputs_exit_2(tmp_path: Path) -> None:
    code, out, err_text = run(str(tmp_path / "nope.http"))
    assert code == 2
    assert out == ""
    assert "nope.http: no such file" in err_text
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes about the outage\n")
    code, _, err_text = run(str(notes))
    assert code == 2
    assert "notes.txt: not a capture" in err_text
    assert "curl -i" in err_text
    code, _, err_text = run(str(tmp_path))
    assert code == 2
    assert "directory" in err_text


def test_good_inputs_still_explained_when_one_is_bad(tmp_path: Path) -> None:
    code, out, err_text = run("--json", str(tmp_path / "missing"), str(CAPTURES / "stream-cut-off.sse"))
    assert code == 2
    assert "missing: no such file" in err_text
    assert orjson.loads(out)["code"] == "incomplete_stream"


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--validate", "yaml"], "unknown --validate"),
        (["--header", "no colon here"], "Name: value"),
        (["--status", "42"], "42"),
        (["--endpoint", "audio"], "audio"),
        ([], "FILE"),
    ],
)
def test_bad_options_exit_2(args: list[str], words: str) -> None:
    files = [] if not args else [str(CAPTURES / "chat-200-truncated.json")]
    code, _, err_text = run(*args, *files)
    assert code == 2
    assert words in err_text


# -- secrets ----------------------------------------------------------------------------------------


def test_secrets_never_reach_the_output(tmp_path: Path) -> None:
    capture = (
        "> POST /v1/chat/completions HTTP/1.1\n"
        "> Host: api.example.com\n"
        f"> Authorization: Bearer {FAKE_KEY}\n"
        ">\n"
        "< HTTP/1.1 401 Unauthorized\n"
        "< content-type: application/json\n"
        "<\n"
        + err(f"Incorrect API key provided: {FAKE_KEY}. Find your key at https://example.com.", "invalid_request_error", "invalid_api_key")
    )  # fmt: skip
    path = tmp_path / "leak.txt"
    path.write_text(capture)
    for args in ([], ["--json"]):
        code, out, err_text = run(*args, str(path))
        assert code == 0
        assert FAKE_KEY not in out + err_text
        assert "FAKEkey" not in out + err_text
        assert "Incorrect API key provided" in out
    [o] = outcomes(str(path))
    assert o["code"] == "auth_failed"


# -- the printer ------------------------------------------------------------------------------------


def test_render_colour_only_when_asked() -> None:
    o = Outcome.failure("stuck_in_queue", endpoint="video", message=f"queued too long for {FAKE_KEY}")
    plain = render_outcome(o, source="t")
    assert "\x1b[" not in plain
    assert "SOFT FAILURE stuck_in_queue" in plain
    assert FAKE_KEY not in plain
    coloured = render_outcome(o, source="t", color=True)
    assert "\x1b[" in coloured
    assert FAKE_KEY not in coloured


def test_render_ok_and_silent() -> None:
    ok = Outcome.success(
        text="x" * 2000, finish_reason="stop", usage=Usage(1, 2, 3), tool_calls=(ToolCall("c", "f", "{}"),)
    )
    text = render_outcome(ok, source=None)
    assert text.lstrip().startswith("OK (finish_reason stop, 1 tool call)")
    assert "more characters]" in text
    assert "prompt 1, completion 2, total 3 tokens" in text
    silent = render_outcome(Outcome.failure("invalid_json", text="{", message="output is not JSON"))
    assert "SILENT FAILURE invalid_json" in silent
    assert "no: sending the same request again" in silent


@pytest.mark.parametrize(
    ("seconds", "shown"), [(0.0, "0 ms"), (0.277, "277 ms"), (2.0, "2 s"), (20.5, "20.5 s"), (578.016, "9 min 38 s"), (7200, "2 h")]
)  # fmt: skip
def test_format_wait(seconds: float, shown: str) -> None:
    assert format_wait(seconds) == shown


# -- once as a real program -------------------------------------------------------------------------


def test_real_subprocess() -> None:
    exe = Path(sys.executable).parent / "genguard"
    proc = subprocess.run(
        [str(exe), "explain", "--json", str(CAPTURES / "anthropic-529-overloaded.http"), "-"],
        input=(CAPTURES / "cloudflare-524-timeout.http").read_bytes(),
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    lines = [orjson.loads(line) for line in proc.stdout.splitlines()]
    assert [o["code"] for o in lines] == ["unavailable", "gateway_timeout"]
    missing = subprocess.run(
        [str(exe), "explain", "/no/such/file"], capture_output=True, timeout=60, check=False
    )
    assert missing.returncode == 2
    assert b"no such file" in missing.stderr


def test_genguards_own_words_are_not_attributed_to_the_provider() -> None:
    from genguard import Outcome
    from genguard.cli._render import render_outcome

    cut = render_outcome(Outcome.failure("incomplete_stream", message="ended without [DONE]"))
    assert "details" in cut
    assert "provider said" not in cut
    limited = render_outcome(Outcome.failure("rate_limited", message="Slow down"))
    assert "provider said" in limited


def test_live_failures_without_a_status_say_why_there_is_none() -> None:
    from genguard import Outcome
    from genguard.cli._render import render_outcome

    stuck = render_outcome(Outcome.failure("stuck_in_queue", endpoint="video"))
    assert "polled until the queue stall limit" in stuck
    assert "in the capture" not in stuck
    assert "in the capture" in render_outcome(Outcome.failure("server_error"))


# -- a browser's HAR file: the API exchanges alone ---------------------------------------------------


def har_entry(
    method: str, url: str, status: int, mime: str, text: str = "", resource: str | None = None
) -> dict[str, object]:
    entry: dict[str, object] = {
        "request": {"method": method, "url": url, "headers": []},
        "response": {"status": status, "headers": [], "content": {"mimeType": mime, "text": text}},
    }
    if resource:
        entry["_resourceType"] = resource
    return entry


APP = "https://chat.example.com"
BROWSER = [
    har_entry("GET", f"{APP}/", 200, "text/html", "<!doctype html><html><title>Chat</title></html>", "document"),
    har_entry("GET", f"{APP}/assets/app.js", 200, "application/javascript", "console.log(1)", "script"),
    har_entry("GET", f"{APP}/assets/app.css", 200, "text/css", "body{}", "stylesheet"),
    har_entry("GET", f"{APP}/favicon.ico", 200, "image/x-icon", "", "image"),
    har_entry("GET", f"{APP}/fonts/inter.woff2", 200, "font/woff2", "", "font"),
    har_entry("OPTIONS", "https://api.example.com/v1/chat/completions", 204, "", "", "preflight"),
    har_entry("POST", "https://api.example.com/v1/chat/completions", 429, "application/json", RATE_BODY, "fetch"),
    har_entry("GET", f"{APP}/logo.svg", 200, "image/svg+xml", "<svg/>", "image"),
]  # fmt: skip


def test_har_from_a_browser_explains_only_the_api_exchanges(tmp_path: Path) -> None:
    path = tmp_path / "session.har"
    path.write_bytes(orjson.dumps({"log": {"version": "1.2", "entries": BROWSER}}))
    [o] = outcomes(str(path))
    assert (o["code"], o["source"], o["entries_skipped"]) == ("rate_limited", f"{path}#7", 7)
    code, out, _ = run(str(path))
    assert code == 0
    assert "invalid_response" not in out
    assert out.count("FAILURE") == 1
    assert out.rstrip().endswith(
        f"{path}: 7 entries skipped, not API exchanges "
        "(1 page, 1 script, 1 stylesheet, 2 images, 1 font, 1 CORS preflight)"
    )


def test_har_with_no_api_exchange_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "assets.har"
    path.write_bytes(orjson.dumps({"log": {"version": "1.2", "entries": BROWSER[:5]}}))
    code, out, err_text = run(str(path))
    assert code == 2
    assert out == ""
    assert "none of its 5 entries is an API exchange" in err_text


# -- files written by Windows PowerShell --------------------------------------------------------------

CURL_I = http("429 Too Many Requests", RATE_BODY, "retry-after: 20", "x-request-id: req_ps")


@pytest.mark.parametrize(
    "data",
    [
        # `curl.exe -i ... > reply.http` in Windows PowerShell: CRLF lines, UTF-16 LE with a BOM.
        ("\r\n".join(CURL_I.decode().splitlines()) + "\r\n").encode("utf-16"),
        b"\xfe\xff" + CURL_I.decode().encode("utf-16-be"),
        b"\xef\xbb\xbf" + CURL_I,
    ],
    ids=["utf16-le-bom-crlf", "utf16-be-bom", "utf8-bom"],
)
def test_utf16_and_bom_captures(data: bytes, tmp_path: Path) -> None:
    path = tmp_path / "reply.http"
    path.write_bytes(data)
    [o] = outcomes(str(path))
    assert (o["code"], o["status"], o["retry_after_s"], o["request_id"]) == (
        "rate_limited",
        429,
        20.0,
        "req_ps",
    )
    [piped] = outcomes("-", stdin=data)
    assert piped["code"] == "rate_limited"


def test_utf16_stream(tmp_path: Path) -> None:
    path = tmp_path / "stream.sse"
    path.write_bytes((CAPTURES / "stream-cut-off.sse").read_text().encode("utf-16"))
    [o] = outcomes(str(path))
    assert (o["code"], o["text"]) == (
        "incomplete_stream",
        "The three largest moons of Jupiter are Ganymede, Callisto and",
    )


# -- broken bodies -------------------------------------------------------------------------------------

CUT = b'{"error": {"message": "Rate limit reached for gpt-4o in organization org-x on requests per min'


def test_bare_json_cut_short_is_judged_by_the_given_status(tmp_path: Path) -> None:
    path = tmp_path / "cut.json"
    path.write_bytes(CUT)
    [o] = outcomes("--status", "429", str(path))
    assert (o["code"], o["status"], o["retryable"]) == ("rate_limited", 429, True)
    message = str(o["message"])
    assert message.startswith("Rate limit reached for gpt-4o")
    assert "cut short" in message
    [ok_status] = outcomes("--status", "200", str(path))
    assert (ok_status["code"], ok_status["status"]) == ("invalid_response", 200)
    assert "cut short" in str(ok_status["message"])
    # The same body after its headers reads the same.
    raw = tmp_path / "cut.http"
    raw.write_bytes(http("429 Too Many Requests", CUT.decode()))
    [with_headers] = outcomes(str(raw))
    assert (with_headers["code"], with_headers["message"]) == ("rate_limited", o["message"])
    code, _, err_text = run(str(path))
    assert code == 2
    assert "--status" in err_text


def test_bare_html_page_has_no_status(tmp_path: Path) -> None:
    path = tmp_path / "page.html"
    path.write_text("<!DOCTYPE html><html><head><title>Sign in</title></head></html>")
    [o] = outcomes(str(path))
    assert (o["code"], o["status"]) == ("invalid_response", None)
    code, out, _ = run(str(path))
    assert code == 0
    assert "HTTP 200" not in out
    assert "no HTTP status in the capture" in out
    [given] = outcomes("--status", "502", str(path))
    assert (given["code"], given["status"]) == ("bad_gateway", 502)


@pytest.mark.parametrize("headers", [True, False], ids=["curl-i", "bare"])
def test_error_body_that_is_not_utf8_keeps_its_type(headers: bool, tmp_path: Path) -> None:
    body = b'{"error": {"type": "rate_limit_error", "message": "caf\xe9 is busy, slow down"}}'
    path = tmp_path / "latin1.http"
    path.write_bytes(
        b"HTTP/1.1 429 Too Many Requests\r\ncontent-type: application/json\r\n\r\n" + body
        if headers
        else body
    )
    [o] = outcomes(str(path))
    assert (o["code"], o["provider_type"]) == ("rate_limited", "rate_limit_error")
    assert o["message"] == "caf\ufffd is busy, slow down"


# -- what reaches the terminal -----------------------------------------------------------------------

HOSTILE = (
    "\x1b]0;owned\x07Rate \x1b[31mlimit\x1b[0m "
    "\x1b]8;;https://evil.example\x1b\\click\x1b]8;;\x1b\\ "
    "\x1bP+q544e\x1b\\\x1b_apc\x1b\\\x1b^pm\x1b\\\x1bc\x1b7"
    "\x9b2J\x9d0;c1\x9c\x85reached\r\x08\x00\x07\x7f done"
)


def visible(text: str) -> bool:
    return all(ch in "\n\t" or ch.isprintable() for ch in text)


def test_no_control_sequence_reaches_the_terminal(tmp_path: Path) -> None:
    path = tmp_path / "hostile.http"
    path.write_bytes(
        http(
            "429 Too Many Requests",
            err(HOSTILE, "requests", "rate_limit_exceeded"),
            "x-request-id: req_\x1b[2Jx",
        )
    )
    code, out, _ = run(str(path))
    assert code == 0
    assert visible(out), repr(out)
    assert "Rate limit click reached done" in out
    # JSON keeps the message as data, every control escaped.
    code, raw, _ = run("--json", str(path))
    assert visible(raw), repr(raw)
    assert orjson.loads(raw)["message"] == HOSTILE
    # On a terminal, genguard's own colours stay and the capture's sequences go.
    o = Outcome.failure("rate_limited", status=429, message=HOSTILE, request_id="r\x1b]0;t\x07")
    coloured = render_outcome(o, source="t\x1b[2J", color=True)
    assert "\x1b[" in coloured
    assert visible(click.unstyle(coloured)), repr(coloured)


def test_file_names_are_shown_without_their_control_characters(tmp_path: Path) -> None:
    code, _, err_text = run(str(tmp_path / "no\x1b]0;x\x07such"))
    assert code == 2
    assert visible(err_text), repr(err_text)
    assert "no such file" in err_text


# -- a large capture is read from the front ---------------------------------------------------------


def test_a_stream_larger_than_the_window_is_explained(tmp_path: Path) -> None:
    from genguard.core.capture import PIECE

    event = b'data: {"choices": [{"index": 0, "delta": {"content": "ab"}, "finish_reason": null}]}\n\n'
    count = 3 * PIECE // len(event)
    tail = b'data: {"choices": [{"index": 0, "delta": {}, "finish_reason": "length"}]}\n\n'
    path = tmp_path / "long.http"
    path.write_bytes(b"HTTP/2 200\r\ncontent-type: text/event-stream\r\n\r\n" + event * count + tail)
    for args in ([str(path)], ["-"]):
        [o] = outcomes(*args, stdin=path.read_bytes() if args == ["-"] else None)
        assert (o["code"], o["status"], o["text"]) == ("truncated", 200, "ab" * count)
