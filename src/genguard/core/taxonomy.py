"""The failure vocabulary as data: each code's kind, retry verdict, and cause and fix per endpoint.

This table is the contract described in TAXONOMY.md. Codes may be added; they are never renamed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal, get_args

Kind = Literal["hard", "soft", "silent"]
Endpoint = Literal["chat", "image", "video", "embedding", "moderation"]
ENDPOINTS: tuple[Endpoint, ...] = get_args(Endpoint)

GENERATION_KEYS = frozenset(
    {"instructions", "max_output_tokens", "previous_response_id", "reasoning", "text", "tools", "tool_choice",
     "temperature", "top_p", "store"}
)  # fmt: skip
"""Keys only a text generation's body has: a body with ``input`` and one of these is a Responses API request,
not an embeddings one."""

logger = logging.getLogger("genguard")


@dataclass(frozen=True, slots=True)
class CodeInfo:
    """What one failure code means: its kind, whether a retry may help, and what to tell the developer."""

    name: str
    kind: Kind
    retryable: bool
    cause: str
    fix: str
    causes: MappingProxyType[str, str] = field(default_factory=lambda: MappingProxyType({}))
    fixes: MappingProxyType[str, str] = field(default_factory=lambda: MappingProxyType({}))

    def cause_for(self, endpoint: str) -> str:
        """The cause sentence for ``endpoint`` (``chat``, ``image`` or ``video``)."""
        return self.causes.get(endpoint, self.cause)

    def fix_for(self, endpoint: str) -> str:
        """The fix sentence for ``endpoint`` (``chat``, ``image`` or ``video``)."""
        return self.fixes.get(endpoint, self.fix)


def _code(
    name: str,
    kind: Kind,
    retryable: bool,
    cause: str,
    fix: str,
    *,
    causes: dict[str, str] | None = None,
    fixes: dict[str, str] | None = None,
) -> CodeInfo:
    return CodeInfo(
        name, kind, retryable, cause, fix, MappingProxyType(causes or {}), MappingProxyType(fixes or {})
    )


_ALL: tuple[CodeInfo, ...] = (
    # -- hard: the request produced no generation ---------------------------------------------------
    _code(
        "auth_failed",
        "hard",
        False,
        "The provider rejected the API key: it is missing, mistyped, revoked or for another provider.",
        "Check the key (GENGUARD_API_KEY or OPENAI_API_KEY) and that it belongs to this base URL; "
        "give several keys to rotate to the next one.",
    ),
    _code(
        "permission_denied",
        "hard",
        False,
        "The key is valid but not allowed to do this: the model, region, organisation or project is "
        "not enabled for it.",
        "Enable the model or project for this key in the provider's console, or use a key that has access.",
    ),
    _code(
        "model_not_found",
        "hard",
        False,
        "The model does not exist on this endpoint, or this key cannot see it.",
        "Check the model name against GET /v1/models on this base URL (or pull it, for a local server); "
        "name a fallback model.",
    ),
    _code(
        "not_found",
        "hard",
        False,
        "The URL does not exist on this server: the base URL or the path is wrong.",
        "Check the base URL (it usually ends in /v1) and the endpoint path.",
        causes={
            "video": "The server does not know this video task or URL: the id is wrong, or the task expired."
        },
        fixes={"video": "Check the task id and the base URL; submit the task again if it expired."},
    ),
    _code(
        "bad_request",
        "hard",
        False,
        "The provider rejected the request as malformed or with an invalid parameter.",
        "Read the provider's message and param; fix that parameter (a wrong type, an unsupported value "
        "for this model) and send again.",
        fixes={
            "image": "Read the provider's message and param: image models differ in the sizes, n, "
            "quality and response_format they accept.",
            "video": "Read the provider's message and param: video models differ in the sizes and "
            "durations (seconds) they accept.",
        },
    ),
    _code(
        "context_length_exceeded",
        "hard",
        False,
        "The prompt plus the requested output is longer than the model's context window.",
        "Shorten the messages (drop or summarise old turns), lower max_tokens, or use a model with a "
        "longer context.",
    ),
    _code(
        "request_too_large",
        "hard",
        False,
        "The request is larger than the provider accepts in one call (or than the per-minute token "
        "limit itself).",
        "Split the input into smaller requests, or ask the provider for a higher limit; retrying the same "
        "request cannot succeed.",
    ),
    _code(
        "prompt_blocked",
        "hard",
        False,
        "The provider's safety system refused the input before generating anything.",
        "Rephrase the prompt so it does not trip the content policy; retrying the same prompt will be "
        "refused again.",
        causes={
            "image": "The provider's safety system refused the image prompt before generating anything.",
            "video": "The provider's safety system refused the video prompt or input image before "
            "generating anything.",
        },
    ),
    _code(
        "quota_exceeded",
        "hard",
        False,
        "The account has run out of credit or quota; this is not a rate limit and waiting will not help.",
        "Add credit or raise the quota in the provider's billing settings, or rotate to another key.",
    ),
    _code(
        "rate_limited",
        "hard",
        True,
        "The provider is limiting how many requests or tokens you send per minute.",
        "Wait retry_after_s, then send again; lower concurrency or spread the load.",
    ),
    _code(
        "request_timeout",
        "hard",
        True,
        "The server timed out waiting for the request to arrive in full.",
        "Send again; if it recurs, check the network path and the request size.",
    ),
    _code(
        "conflict",
        "hard",
        True,
        "The server reported a conflict with another request on the same resource.",
        "Send again after a short wait.",
    ),
    _code(
        "unprocessable",
        "hard",
        False,
        "The server understood the request but cannot process its content (a validation error).",
        "Read the provider's message and param (often a list of invalid fields) and fix them.",
    ),
    _code(
        "server_error",
        "hard",
        True,
        "The provider failed while handling the request (an internal error on its side).",
        "Send again with backoff; if it persists, try a fallback model or check the provider's status page.",
    ),
    _code(
        "bad_gateway",
        "hard",
        True,
        "A proxy or gateway in front of the model got a bad answer from upstream (502).",
        "Send again with backoff; a fallback model or provider helps if it persists.",
    ),
    _code(
        "unavailable",
        "hard",
        True,
        "The provider is overloaded or temporarily unavailable.",
        "Send again after retry_after_s or with backoff; use a fallback model if it lasts.",
    ),
    _code(
        "gateway_timeout",
        "hard",
        True,
        "A proxy or gateway in front of the model gave up waiting for it (504/524).",
        "Send again; for long generations, stream so the connection stays busy, or lower max_tokens.",
    ),
    _code(
        "timeout",
        "hard",
        True,
        "genguard gave up waiting: the connection, a read, a stalled stream or the overall deadline ran out.",
        "Send again; raise the timeout (or stall limit for streams) if the model is slow, or stream long "
        "answers.",
        causes={
            "video": "genguard gave up waiting for the server while submitting or polling the video task."
        },
    ),
    _code(
        "connection_error",
        "hard",
        True,
        "The connection failed: refused, reset, closed mid-answer, a DNS or TLS failure.",
        "Check the base URL and that the server is up; send again, as a dropped connection often passes.",
    ),
    _code(
        "invalid_response",
        "hard",
        True,
        "The server answered 2xx, but not with a valid response of this endpoint (HTML, not JSON, or "
        "fields missing).",
        "Check the base URL points at an OpenAI-compatible API (not a web page or proxy login); send again.",
    ),
    _code(
        "download_failed",
        "hard",
        True,
        "The media was generated, but fetching it failed: the URL expired or answered an error, or the "
        "bytes were not the promised file, or the file was over the size limit.",
        "Fetch again at once (results expire); poll the task again for a fresh URL, or raise the size limit.",
        causes={
            "image": "The image was generated, but fetching it failed: the URL expired (DALL·E URLs last "
            "60 minutes) or answered an error, the bytes were not an image, or it was over the size limit.",
            "video": "The video was generated, but fetching it failed: the URL expired or answered an "
            "error, the bytes were not a video, or it was over the size limit.",
        },
        fixes={
            "image": "Download images as soon as they are generated, or ask for b64_json; generate "
            "again if the URL expired.",
            "video": "Poll the task again for a fresh URL and download at once; raise the size limit if "
            "the file is legitimately large.",
        },
    ),
    _code(
        "invalid_input",
        "hard",
        False,
        "genguard's own input was unusable before anything was sent (a malformed line, a missing prompt, "
        "an unreadable file).",
        "Fix the input at the place the message names and run again; nothing was sent for it.",
    ),
    # -- soft: HTTP said success, but there is no usable generation ---------------------------------
    _code(
        "content_filtered",
        "soft",
        False,
        "The provider's safety filter stopped the output (finish_reason content_filter); what came back is "
        "partial or empty.",
        "Rephrase the prompt or relax what you ask for; the same request will likely be filtered again.",
        causes={
            "image": "The provider's safety filter removed the images: the response had no image data.",
            "video": "The video task failed because the provider's safety system filtered the prompt, "
            "input or output.",
        },
        fixes={
            "image": "Rephrase the prompt (avoid named people, brands, violence); the same prompt will "
            "likely be filtered again.",
            "video": "Rephrase the prompt or change the input image; the same request will likely be "
            "filtered again.",
        },
    ),
    _code(
        "truncated",
        "soft",
        False,
        "The output stopped because it hit max_tokens or the model's length limit (finish_reason length).",
        "Raise max_tokens (or let the policy raise it once), ask for a shorter answer, or continue the "
        "conversation from the partial text.",
    ),
    _code(
        "empty_output",
        "soft",
        True,
        "The model finished normally but returned no content and no tool call.",
        "Send again; if it repeats, check the prompt and stop sequences, or try another model.",
        causes={
            "embedding": "The embeddings answer held no vectors: nothing was embedded.",
            "moderation": "The moderation answer held no results: no input was checked.",
        },
        fixes={
            "embedding": "Send again; if it repeats, check that input is not empty and the model is an "
            "embedding model.",
            "moderation": "Send again; if it repeats, check that input is not empty and the model is a "
            "moderation model.",
        },
    ),
    _code(
        "incomplete_stream",
        "soft",
        True,
        "The stream ended before any finish_reason: the connection dropped or the upstream crashed "
        "mid-generation.",
        "Send again; the partial text is kept in the outcome. Raise the stall limit if the model pauses "
        "long.",
    ),
    _code(
        "stream_error",
        "soft",
        True,
        "The server reported an error inside a successful (200) stream, after the response had started.",
        "Read the embedded message; send again if it is transient, else fix what it names.",
    ),
    _code(
        "generation_failed",
        "soft",
        True,
        "The media task failed on the provider's side for a reason other than safety.",
        "Submit again; if no reason was given, a safety filter is the likely cause, so also try a "
        "rephrased prompt.",
        causes={
            "image": "The image generation failed on the provider's side for a reason other than safety."
        },
    ),
    _code(
        "task_timeout",
        "soft",
        True,
        "The media task did not finish before the deadline; its last status and progress are kept.",
        "Raise the deadline (video generation can take minutes), or poll the same task id again later.",
    ),
    _code(
        "stuck_in_queue",
        "soft",
        True,
        "The media task never left the provider's queue within the stall limit.",
        "Try a fallback model or another provider; queues for popular models can last many minutes.",
    ),
    # -- silent: the output fails the application's check -------------------------------------------
    _code(
        "invalid_json",
        "silent",
        False,
        "The output should be JSON but does not parse.",
        "Use response_format json_object or json_schema if the model supports it, or let the policy re-ask "
        "with the parse error.",
    ),
    _code(
        "schema_mismatch",
        "silent",
        False,
        "The output is JSON but does not match the required schema.",
        "Use response_format json_schema with strict mode, or let the policy re-ask with the validation "
        "error.",
    ),
    _code(
        "unexpected_label",
        "silent",
        False,
        "The output is not one of the allowed labels.",
        "List the labels in the prompt and ask for the label alone; let the policy re-ask, or map "
        "near-misses.",
    ),
    _code(
        "too_short",
        "silent",
        False,
        "The output is shorter than required.",
        "Ask explicitly for the length you need, raise max_tokens, or let the policy re-ask.",
    ),
    _code(
        "pattern_mismatch",
        "silent",
        False,
        "The output does not match the required pattern.",
        "Show the expected format in the prompt, or let the policy re-ask with the pattern.",
    ),
    _code(
        "validation_failed",
        "silent",
        False,
        "The application's own validator rejected the output.",
        "Read the validator's message; adjust the prompt, or let the policy re-ask with it.",
    ),
)

CODES: MappingProxyType[str, CodeInfo] = MappingProxyType({c.name: c for c in _ALL})
"""Every failure code, by name."""


def code_info(code: str) -> CodeInfo:
    """Look up a failure code; raises ``KeyError`` naming the known codes if ``code`` is not one."""
    try:
        return CODES[code]
    except KeyError:
        raise KeyError(f"unknown failure code {code!r}; known codes: {', '.join(CODES)}") from None


# -- finish_reason ---------------------------------------------------------------------------------

_FINISH: dict[str, str] = {}
for _norm, _values in {
    "stop": ("stop", "eos", "eos_token", "end_turn", "stop_sequence", "complete", "finished"),
    "length": ("length", "max_tokens", "model_length", "max_output_tokens"),
    "tool_calls": ("tool_calls", "function_call", "tool_use"),
    "content_filter": (
        "content_filter",
        "safety",
        "prohibited_content",
        "blocklist",
        "spii",
        "recitation",
        "image_safety",
        # Fireworks images and Bedrock (Titan, Converse), Bedrock guardrails, Cohere's toxic output.
        "content_filtered",
        "guardrail_intervened",
        "error_toxic",
    ),
    "error": ("error", "abort", "aborted"),
}.items():
    for _v in _values:
        _FINISH[_v] = _norm
del _norm, _values, _v

_unknown_seen: set[str] = set()


def normalise_finish_reason(value: object) -> str | None:
    """Map a provider's ``finish_reason`` to ``stop``, ``length``, ``tool_calls``, ``content_filter``,
    ``error``, or ``None`` (not finished). An unknown value is returned lower-cased and logged once.

    >>> normalise_finish_reason("MAX_TOKENS")
    'length'
    """
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        value = str(value)
    hit = _FINISH.get(value)
    if hit is not None:
        return hit
    low = value.lower()
    hit = _FINISH.get(low)
    if hit is not None:
        return hit
    if low not in _unknown_seen:
        _unknown_seen.add(low)
        logger.warning("unknown finish_reason %r kept as it came", low)
    return low


def is_content_filter(value: object) -> bool:
    """Whether ``value`` is a ``finish_reason`` of the content-filter family, in any letter case; quiet about
    words it does not know (a media body's own status words are not finish reasons to warn about).

    >>> is_content_filter("CONTENT_FILTERED"), is_content_filter("SUCCESS")
    (True, False)
    """
    return isinstance(value, str) and _FINISH.get(value.lower()) == "content_filter"
