"""Write docs/failures.md from genguard's code table: `python docs/make_failures.py`.

The page is generated so that it can never drift from what the library says; a test checks it is current.
The tables (codes, kinds, verdicts, causes and fixes, finish_reason values, the outcome's fields and an example
object) come from the library; only the prose is kept here, keyed by code or field, and rendering fails when a
code or field has no prose, so a new code cannot reach the page undocumented.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import get_args

import orjson

from genguard import CODES, classify_http
from genguard.core import taxonomy

HEADER = """# Failure codes

Every call genguard makes, and every capture `genguard explain` reads, ends in one **Outcome**: either a usable
generation, or exactly one failure with a **kind**, a **code**, a **retry verdict** and a diagnosis (a cause
and a fix). This vocabulary is the contract of the whole package: the client, `genguard explain`, the
simulator's scenario names and every command's `--json` output speak it. Codes may be added; none is ever
renamed.

This page is generated from the library's own table (`genguard.CODES`) by `python docs/make_failures.py`.
"""

KINDS_INTRO = """
## The three kinds

| kind | meaning | how it shows |
| --- | --- | --- |
"""

# kind -> (meaning, how it shows)
KINDS: dict[str, tuple[str, str]] = {
    "hard": (
        "the request produced no generation",
        "a non-2xx status; a transport failure (connect, TLS, reset, timeout); a 2xx whose body is not a valid "
        "response of that endpoint",
    ),
    "soft": (
        "HTTP said success, but there is no usable generation",
        "a `finish_reason` other than a normal stop; no content and no tool call; a stream that ended early "
        "or carried an error; an image answer with no images; a media task that failed, timed out or never "
        "left the queue",
    ),
    "silent": (
        "HTTP and `finish_reason` look fine, but the output fails the application's check",
        "a validator rejected it (JSON, JSON Schema or pydantic model, labels, length, pattern, a function of "
        "your own)",
    ),
}

TOOL_CALLS = """
`tool_calls` is not a failure: an outcome whose `finish_reason` is `tool_calls` is ok even with no text (the
provider's `content` is `null` by design): the answer is the calls in `tool_calls`.
"""

VERDICTS = """
## The retry verdict

`retryable` means: sending the same request again, after `retry_after_s` if one is known, may succeed. The
tables below give each code's verdict. A server's own verdict wins over them: an answer carrying
`x-should-retry: true` is retryable and one carrying `x-should-retry: false` is not, whatever its code.

A verdict of "no" is about the same request: another key (`auth_failed`, `quota_exceeded`), another model
(`model_not_found`), a shorter prompt or a higher `max_tokens` may well succeed, and `genguard.RetryPolicy`
does those on purpose (key rotation, fallbacks, raising `max_tokens`, re-asking after a silent failure); see
[the client guide](client.md).
"""

KIND_TITLES = {
    "hard": "the request produced no generation",
    "soft": "HTTP said success, but there is no usable generation",
    "silent": "the output fails the application's check",
}

# code -> how genguard recognises it. Status first, then the provider's code, type or message.
RECOGNISED: dict[str, str] = {
    "auth_failed": "401; a provider code or type such as `invalid_api_key`, `authentication_error`, "
    '`unauthenticated`; a message such as "Incorrect API key provided"; Kling codes 1000-1004',
    "permission_denied": "403 that is not a moderation block; codes such as `permission_error`, "
    "`unsupported_country_region_territory`; Kling code 1103",
    "model_not_found": "a code saying the model does not exist or is not available (`model_not_found`, "
    '`model_not_available`, `DeploymentNotFound`), on any status; a message saying so ("does not exist", '
    '"not found, try pulling") on a status below 500; a 404 or 410 about a model',
    "not_found": "any other 404 or 410",
    "bad_request": "400 and 405 not covered by a more specific code (and any other 4xx with no code of its "
    "own), a 400 whose message has none of [the words below](#the-words-genguard-reads); an empty 400 body; "
    "Kling codes 1200-1203",
    "context_length_exceeded": "code `context_length_exceeded` (or a variant such as "
    "`exceed_context_size_error`, `string_above_max_length`, `tokens_too_long`), or a message saying the "
    "prompt or context is longer than the model's maximum in any provider's words (Bedrock's 'Input is too "
    "long for requested model', TGI's '`inputs` tokens + `max_new_tokens` must be <=', Anthropic's 'prompt "
    "is too long': [the words below](#the-words-genguard-reads)), on any status",
    "request_too_large": "413; a 400 or 429 whose message says the single request is larger than the limit "
    'itself ("Request too large")',
    "prompt_blocked": "the provider refused the input for policy: codes `content_filter`, "
    "`content_policy_violation`, `moderation_blocked`, `ResponsibleAIPolicyViolation`, `data_inspection_failed`; "
    "Kling code 1301; a 403 (or 400, 422) whose message refuses it in a cloud's or gateway's words (moderation, "
    "a guardrail, a content policy, Vertex Imagen's safety filter threshold, DashScope's 'inappropriate "
    "content': [the words below](#the-words-genguard-reads)); a native Gemini answer with no candidates and a "
    "`promptFeedback.blockReason` (`SAFETY`, `PROHIBITED_CONTENT`, ...)",
    "quota_exceeded": '402; 429 `insufficient_quota`; "insufficient balance" or "credits", a spending '
    "limit, billing, an exhausted resource pack; Kling codes 1100-1102; a 429 (or 403, or an error with no "
    "status) about a quota counted per day or per month: Google's `quotaId` naming `PerDay`, 'per day', "
    "'daily', RPD, TPD, '/ month' (its `retry_after_s` is the reset or wait the answer names, but waiting "
    "seconds will not refill it, so it is not retryable)",
    "rate_limited": "429 otherwise (`rate_limit_exceeded`, `rate_limit_error`, `rate_limited`, "
    "`resource_exhausted`, a per-minute quota); Kling codes 1302 and 1303",
    "request_timeout": "408",
    "conflict": "409",
    "unprocessable": "422",
    "server_error": "500, 520 and any other 5xx not below; Kling codes 5000-5002",
    "bad_gateway": "502",
    "unavailable": "503, 529, or another 5xx (not 502, 504, 524) whose code, type or message says overloaded",
    "gateway_timeout": "504, 524",
    "timeout": "genguard gave up waiting: the connection, a read, a stream silent past its stall limit, or "
    "the call's overall deadline",
    "connection_error": "the connection was refused, reset or closed mid-answer; a DNS or TLS failure",
    "invalid_response": "a 2xx body that is not JSON (an HTML page, say) or lacks what the endpoint must "
    "return",
    "download_failed": "the media was generated but fetching it failed: an expired URL (403, 404), bytes "
    "that are not the promised image or video, a file over the size limit",
    "invalid_input": "genguard's own input was unusable before anything was sent: a malformed line, a "
    "missing prompt, an unreadable file or rules file",
    "content_filtered": "`finish_reason` `content_filter` (and provider variants such as `SAFETY`, "
    "`PROHIBITED_CONTENT`, `BLOCKLIST`, `SPII`, `CONTENT_FILTERED`); a refusal (chat's `message.refusal`, a "
    "Responses API `refusal` part); a Responses API body with `status` `incomplete` for `content_filter`; an "
    "image answer with an empty `data`, or "
    "whose every image the safety filter flagged (`is_nsfw`, `nsfw_content_detected: [true]`, a "
    "`finish_reason` of that family, `content_filter_results` filtered, an item with only a `revised_prompt`; "
    "when some images survive the answer is ok and `images_filtered` counts the rest); a media task that "
    "failed for safety (Runway `SAFETY.*`, Veo `raiMediaFiltered*`, Sora `moderation_blocked`, ...)",
    "truncated": "`finish_reason` `length` (and `max_tokens`, `model_length`, `MAX_TOKENS`); a Responses API body "
    "with `status` `incomplete` for `max_output_tokens` (or for a reason it does not name)",
    "empty_output": "a normal stop with no content and no tool call; a 2xx with no choices; a completed Responses "
    "API body with no `output_text` and no `function_call`; an embeddings answer with no vectors; a moderation "
    "with no results (a flagged input is a moderation's answer, not a failure)",
    "incomplete_stream": "a stream that ended (end of input, or `[DONE]`) before any `finish_reason`",
    "stream_error": "an error inside a 2xx stream: a `data:` object with an `error` key, an `event: error`, "
    "`finish_reason` `error` or `abort`",
    "generation_failed": "a media task reached a failed or cancelled state for a reason other than safety",
    "task_timeout": "a media task did not finish before the deadline (its last status and progress are kept)",
    "stuck_in_queue": "a media task stayed queued past the stall limit",
    "invalid_json": "output that should be JSON does not parse",
    "schema_mismatch": "JSON that does not match the JSON Schema or pydantic model",
    "unexpected_label": "output not in the allowed label set",
    "too_short": "fewer words or characters than required",
    "pattern_mismatch": "output that does not match the required regular expression",
    "validation_failed": "a validator of your own rejected it",
}

# code -> what to add to the bare yes/no of the table, where there is more to say.
VERDICT_NOTES: dict[str, str] = {
    "auth_failed": "another key may work: see [key rotation](client.md#configuration)",
    "quota_exceeded": "another key may work: see [key rotation](client.md#configuration); a daily quota names "
    "its reset in `retry_after_s`",
    "model_not_found": "a fallback model is the cure",
    "rate_limited": "after the server's wait",
    "download_failed": "fetching the task again may give a fresh URL",
    "truncated": "unless the policy may raise `max_tokens`",
    "stream_error": "unless the embedded error's own code says no",
    "stuck_in_queue": "a fallback model is the usual cure",
}
for _silent in ("invalid_json", "schema_mismatch", "unexpected_label", "too_short", "pattern_mismatch"):
    VERDICT_NOTES[_silent] = "a re-ask policy may opt in"
VERDICT_NOTES["validation_failed"] = "likewise"

FINISH_INTRO = """
## finish_reason, normalised

Providers word the end of a generation in their own ways; genguard maps each to one of five values (matching
is case-insensitive, so `STOP` and `MAX_TOKENS` are covered):

| normalised | provider values |
| --- | --- |
"""

FINISH_OUTRO = """| `null` | not finished (a streaming chunk) |

An unknown value is kept as it came, lower-cased, and logged once as unknown; it is not a failure by itself.
Where a gateway also reports the upstream's own word (OpenRouter's `native_finish_reason`), it is kept in the
outcome's extra fields.
"""

JSON_INTRO = """
## The outcome as JSON

`genguard explain --json`, `genguard chat --json`, `genguard image --json`, `genguard video --json` and
`Outcome.to_dict()` / `Outcome.to_json()` all give this object (one per line where there are several). Fields
that do not apply are `null`. A captured 429 as the library reads it (`genguard explain --json` prints the
same object on one line, with a `source` field after it):
"""

# field -> what it holds. Every field of Outcome.to_dict() must be here.
FIELDS: dict[str, str] = {
    "ok": "`true` for a usable generation, `false` for a failure",
    "kind": "`hard`, `soft` or `silent`; `null` when ok",
    "code": "one of the codes above; `null` when ok",
    "retryable": "whether sending the same request again may succeed (the code's verdict, or the server's "
    "`x-should-retry`); `false` when ok",
    "retry_after_s": "the wait the server asked for, in seconds: from `retry-after-ms` (or "
    "`x-ms-retry-after-ms`, which other Azure services send), else `retry-after` "
    '(seconds or an HTTP date), else a hint in the provider\'s message ("Please try again in 1.574s", '
    '"in 9m38.016s"), else the reset of an exhausted rate-limit bucket, else the body\'s own retry fields '
    "(Google's `RetryInfo`, Hugging Face's `estimated_time`, `retry_after`, `retry_after_seconds`, "
    "`retryAfter`, `retry_after_ms`); never negative; `null` when nobody named one",
    "status": "the HTTP status (for a media task too: the task's own state is in `task_status`); `null` "
    "when no answer came",
    "message": "the provider's own words, found wherever its body keeps them, with any secret masked",
    "param": "the request parameter the provider blamed, if it named one",
    "provider_code": 'the provider\'s error code, as text (`"503"` and `"rate_limit_exceeded"` alike)',
    "provider_type": "the provider's error type",
    "request_id": "the provider's request id, from a header (`x-request-id`, `request-id`, `cf-ray`) or "
    "the body",
    "finish_reason": "normalised as above",
    "text": "the generated text",
    "tool_calls": "the tool calls the model asked for, as OpenAI writes them",
    "usage": "the token counts the provider reported",
    "attempts": "how many requests the call made (retries, rotations and fallbacks included)",
    "cause": "a short plain sentence saying why this happened, specific to the code and to the endpoint "
    "(text, image, video, embedding or moderation)",
    "fix": "a short plain sentence saying what to do about it",
}

JSON_OUTRO = """
- An ok outcome has `kind` and `code` `null`, `retryable` `false`, and carries `text`, `tool_calls`,
  `finish_reason` (normalised) and `usage`.
- A failure that got partial output (`truncated`, `incomplete_stream`, `stream_error`, a silent failure) keeps
  it in `text` and `tool_calls`, and keeps `usage` when the provider reported it.
- A response with several choices (`n > 1`) adds `choices` after these: one object per choice (`index`,
  `text`, `tool_calls`, `finish_reason`, and its own `code` and `kind` when it failed, else `null`). Every
  choice is checked: when choice 0 is usable and another is not, the outcome fails with the code of the first
  failing choice (the lowest index), its kind and verdict from that code, and `message` names the choice;
  `text`, `tool_calls` and `finish_reason` stay choice 0's. A response with one choice has no `choices`.
- Commands add fields of their own after these (`source` for `explain`; `files`, `model`, `task_status`,
  `progress`, `images_filtered` for media; `vectors` for embeddings; `results` and `flagged` for moderations,
  how many inputs were checked and how many flagged; `history` for the attempts); they never remove these.
- `Outcome.to_dict(full=True)`, what a journal stores, adds `endpoint`, `history`, `parsed` and, when the
  client was asked to keep it (`keep_raw=True`), `raw`: the response's `status`, `headers` (pairs) and `body`
  (credentials masked, cut at 65,536 characters with a marker), with its full `size` and `truncated`.
"""

WORDS_INTRO = """
## The words genguard reads

Providers and gateways often refuse in prose rather than with a code. These are the wordings genguard reads in
an error's message (matching ignores case), from one table in the library (`core/phrases.py`), each tested with
the provider's own message. Which status a wording counts on: a missing model below 500; a too-long context on
any; a quota, a policy refusal or a key problem on a 4xx or an error with no status (a policy refusal on 400,
403 and 422; a quota counted per day or month on 403 and 429); the words for overloaded, rate limited and timed
out only where no status says more (an error inside a stream or a 2xx body). A quota message that names a short
wait or "per minute" is a rate limit, not an exhausted quota, unless it also names a day or a month.

| code | words | who says it |
| --- | --- | --- |
"""

# A real 429 read by the library, so the example shows exactly the fields and the order it prints.
_EXAMPLE_BODY = (
    b'{"error": {"message": "Rate limit reached for gpt-4o-mini on requests per min (RPM): Limit 500, '
    b'Used 500, Requested 1. Please try again in 20s.", "type": "requests", "param": null, '
    b'"code": "rate_limit_exceeded"}}'
)


def _check(what: str, documented: object, actual: object) -> None:
    if documented != actual:
        raise SystemExit(
            f"docs/make_failures.py: {what} are out of step: documented {documented}, actual {actual}"
        )


def _kinds() -> list[str]:
    kinds = list(get_args(taxonomy.Kind))
    _check("kinds", list(KINDS), kinds)
    lines = [KINDS_INTRO.rstrip("\n")]
    for kind in kinds:
        meaning, shows = KINDS[kind]
        lines.append(f"| `{kind}` | {meaning} | {shows} |")
    return lines


def _codes(kind: str) -> list[str]:
    lines = [f"\n## {kind}: {KIND_TITLES[kind]}\n"]
    lines.append("| code | recognised by | retryable |")
    lines.append("| --- | --- | --- |")
    infos = [info for info in CODES.values() if info.kind == kind]
    for info in infos:
        verdict = "yes" if info.retryable else "no"
        note = VERDICT_NOTES.get(info.name)
        if note:
            verdict += f" ({note})"
        lines.append(f"| `{info.name}` | {RECOGNISED[info.name]} | {verdict} |")
    lines.append(
        f"\nWhat genguard says about each {kind} failure (where it differs for an endpoint, that endpoint's "
        "words too):\n"
    )
    lines.append("| code | cause | fix |")
    lines.append("| --- | --- | --- |")
    for info in infos:
        cause, fix = info.cause, info.fix
        for endpoint in ("image", "video", "embedding", "moderation"):
            if endpoint in info.causes:
                cause += f"<br>*{endpoint}:* {info.causes[endpoint]}"
            if endpoint in info.fixes:
                fix += f"<br>*{endpoint}:* {info.fixes[endpoint]}"
        lines.append(f"| `{info.name}` | {cause} | {fix} |")
    return lines


def _finish_reasons() -> list[str]:
    groups: dict[str, list[str]] = {}
    for value, norm in taxonomy._FINISH.items():
        groups.setdefault(norm, []).append(value)
    lines = [FINISH_INTRO.rstrip("\n")]
    for norm, values in groups.items():
        lines.append(f"| `{norm}` | {', '.join(f'`{v}`' for v in values)} |")
    return [*lines, FINISH_OUTRO.rstrip("\n")]


def _outcome_json() -> list[str]:
    outcome = classify_http(429, {"x-request-id": "req_abc123"}, _EXAMPLE_BODY)
    example = outcome.to_dict()
    _check("outcome fields", list(FIELDS), list(example))
    text = orjson.dumps(example, option=orjson.OPT_INDENT_2).decode()
    lines = [JSON_INTRO.rstrip("\n"), "", "```json", text, "```", ""]
    lines.extend(f"- `{name}`: {meaning}." for name, meaning in FIELDS.items())
    return [*lines, JSON_OUTRO.rstrip("\n")]


def _words() -> list[str]:
    from genguard.core.phrases import PHRASES, SIGNS

    lines = [WORDS_INTRO.rstrip("\n")]
    for sign, code in SIGNS.items():
        for phrase in (p for p in PHRASES if p.sign == sign):
            words = phrase.words.replace("|", "/")
            lines.append(f"| `{code}` | {words} | {phrase.source} |")
    return lines


def render() -> str:
    _check("codes with a 'recognised by'", sorted(RECOGNISED), sorted(CODES))
    _check("kind titles", list(KIND_TITLES), list(KINDS))
    unknown = sorted(set(VERDICT_NOTES) - set(CODES))
    _check("codes with a verdict note that are not codes", unknown, [])
    lines = [HEADER.rstrip("\n"), *_kinds(), TOOL_CALLS.rstrip("\n"), VERDICTS.rstrip("\n")]
    for kind in KINDS:
        lines.extend(_codes(kind))
    lines.extend(_words())
    lines.extend(_finish_reasons())
    lines.extend(_outcome_json())
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    target = Path(__file__).with_name("failures.md")
    target.write_text(render())
    sys.stdout.write(f"wrote {target}\n")
