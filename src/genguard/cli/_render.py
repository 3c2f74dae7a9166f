"""The readable diagnosis of one Outcome, as `genguard explain` and `genguard chat` print it.

The text is plain; with ``color=True`` (the callers pass it only on a terminal) the headline and labels
are styled with click. Everything goes through :func:`genguard.redact`, so a key echoed in a
provider's message never reaches the screen.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterable
from typing import Any

import click
import orjson

from ..core.outcome import Choice, Outcome, ToolCall
from ..core.secrets import redact
from ._terminal import printable

_WIDTH = 100
_LABEL = 15
_TEXT_LIMIT = 400
_ARGS_LIMIT = 200
_HEADLINE = {"hard": "HARD FAILURE", "soft": "SOFT FAILURE", "silent": "SILENT FAILURE"}
_COLOUR = {"hard": "red", "soft": "yellow", "silent": "magenta"}
# Per-command fields printed as their own lines; anything else in ``extra`` is shown generically.
_SKIP_EXTRA = {"source"}


def format_wait(seconds: float) -> str:
    """A wait as a person reads it: ``277 ms``, ``1.6 s``, ``9 min 38 s``.

    >>> [format_wait(s) for s in (0.277, 1.574, 578.016)]
    ['277 ms', '1.6 s', '9 min 38 s']
    """
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s".replace(".0 s", " s")
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 120:
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"


def shorten(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters with a note of how much was left out."""
    if len(text) <= limit:
        return text
    return f"{text[:limit].rstrip()}… [{len(text) - limit} more characters]"


def _tool_call_line(call: ToolCall) -> str:
    args = " ".join(call.arguments.split())
    return f"{call.name}({shorten(args, _ARGS_LIMIT)})" + (f"  id {call.id}" if call.id else "")


def _choice_line(choice: Choice) -> str:
    """One choice of n > 1 on a line: ``1: truncated (finish_reason length) "Once upon a…"``."""
    line = f"{choice.index}: {choice.code or 'ok'}"
    if choice.finish_reason:
        line += f" (finish_reason {choice.finish_reason})"
    if choice.tool_calls:
        line += f" {len(choice.tool_calls)} tool call{'s' if len(choice.tool_calls) != 1 else ''}"
    if choice.text:
        line += f' "{shorten(" ".join(choice.text.split()), _CHOICE_LIMIT)}"'
    return line


_CHOICE_LIMIT = 60

# Why there is no status, for failures that happen on the client's side of a live call.
_NO_STATUS = {
    "timeout": "no HTTP response: genguard stopped waiting",
    "connection_error": "no HTTP response: the connection failed",
    "invalid_input": "nothing was sent",
    "task_timeout": "the task was polled until the deadline",
    "stuck_in_queue": "the task was polled until the queue stall limit",
}


def _what_happened(o: Outcome) -> str:
    parts: list[str] = []
    parts.append(
        _NO_STATUS.get(o.code or "", "no HTTP status in the capture")
        if o.status is None
        else f"HTTP {o.status}"
    )
    if o.finish_reason is not None:
        parts.append(f"finish_reason {o.finish_reason}")
    if o.provider_code is not None or o.provider_type is not None:
        said = [f"code {o.provider_code}"] if o.provider_code is not None else []
        if o.provider_type is not None:
            said.append(f"type {o.provider_type}")
        parts.append("provider " + ", ".join(said))
    if o.param is not None:
        parts.append(f"param {o.param}")
    return "; ".join(parts)


def _retry_line(o: Outcome) -> str:
    if o.ok:
        return ""
    if not o.retryable:
        return "no: sending the same request again will fail the same way"
    if o.retry_after_s is not None:
        return f"yes, after waiting {format_wait(o.retry_after_s)}"
    return "yes, with a backoff (the provider named no wait)"


def _usage_line(o: Outcome) -> str | None:
    u = o.usage
    if u is None:
        return None
    bits = [
        f"{name} {value}"
        for name, value in (
            ("prompt", u.prompt_tokens),
            ("completion", u.completion_tokens),
            ("total", u.total_tokens),
        )
        if value is not None
    ]
    return ", ".join(bits) + " tokens" if bits else None


def _extra_value(value: Any) -> str:
    if isinstance(value, str):
        return value
    try:
        return orjson.dumps(value, default=str).decode()
    except TypeError:
        return str(value)


def render_outcome(outcome: Outcome, *, source: str | None = None, color: bool = False) -> str:
    """The diagnosis of ``outcome`` as a few labelled lines (redacted; styled only when ``color``).

    >>> print(render_outcome(Outcome.failure("rate_limited", status=429, retry_after_s=20.0), source="x.http"))
    ... # doctest: +ELLIPSIS
    x.http
      HARD FAILURE rate_limited
      what happened  HTTP 429
    ...
      retry          yes, after waiting 20 s
    """

    def style(text: str, **kw: Any) -> str:
        return click.style(text, **kw) if color else text

    o = outcome
    lines: list[str] = []
    if source is not None:
        lines.append(style(printable(source), bold=True))
    if o.ok:
        head = style("OK", fg="green", bold=True)
        detail = []
        if o.finish_reason:
            detail.append(f"finish_reason {o.finish_reason}")
        if o.tool_calls:
            detail.append(f"{len(o.tool_calls)} tool call{'s' if len(o.tool_calls) != 1 else ''}")
        lines.append(f"  {head}" + (f" ({printable(', '.join(detail))})" if detail else ""))
    else:
        word = _HEADLINE.get(o.kind or "", "FAILURE")
        lines.append(
            f"  {style(word, fg=_COLOUR.get(o.kind or '', 'red'), bold=True)} {style(o.code or '?', bold=True)}"
        )

    def field(label: str, value: str | None) -> None:
        if value is None or value == "":
            return
        # What a capture or a provider sent reaches the terminal as text, never as its control sequences.
        value = printable(value)
        pad = " " * (2 + _LABEL)
        # Each line is wrapped on its own: a provider's message can hold newlines (Google's quota text) and
        # its long lines must not run off the screen, while the line breaks themselves are kept.
        wrapped = "\n".join(
            textwrap.fill(
                line,
                width=_WIDTH,
                initial_indent=pad,
                subsequent_indent=pad,
                break_long_words=False,
                break_on_hyphens=False,
                replace_whitespace=False,
                drop_whitespace=True,
            )
            or pad.rstrip()
            for line in value.splitlines()
        )
        # A label as long as the column (an extra field such as images_filtered) still gets its space.
        lines.append("  " + style(label.ljust(_LABEL - 1) + " ", dim=True) + wrapped[len(pad) :])

    field("what happened", _what_happened(o))
    if not o.ok:
        field("why", o.cause)
        field("what to do", o.fix)
        field("details" if _own_words(o) else "provider said", o.message)
    field("request id", o.request_id)
    if o.retry_after_s is not None:
        field("wait", format_wait(o.retry_after_s))
    field("retry", _retry_line(o))
    for key, value in o.extra.items():
        if key not in _SKIP_EXTRA and value not in (None, "", [], {}, ()):
            field(str(key), shorten(_extra_value(value), _ARGS_LIMIT))
    if o.text is not None:
        # Not strip(): it would copy a large text that ends in a newline only to test it.
        shown = o.text if o.text and not o.text.isspace() else repr(o.text)
        field("text", shorten(shown, _TEXT_LIMIT))
    if o.tool_calls:
        field("tool calls", "\n".join(_tool_call_line(c) for c in o.tool_calls))
    if o.choices:
        field("choices", "\n".join(_choice_line(c) for c in o.choices))
    field("usage", _usage_line(o))
    return redact("\n".join(lines))


def render_outcomes(items: Iterable[tuple[Outcome, str | None]], *, color: bool = False) -> str:
    """Several diagnoses, separated by blank lines."""
    return "\n\n".join(render_outcome(o, source=s, color=color) for o, s in items)


# Codes whose message genguard writes itself (a validator's verdict, how a stream or task ended, a transport
# error): labelling those "provider said" would send the reader looking at the wrong party.
_OWN_CODES = frozenset(
    {
        "incomplete_stream",
        "timeout",
        "connection_error",
        "invalid_input",
        "download_failed",
        "task_timeout",
        "stuck_in_queue",
    }
)


def _own_words(outcome: Outcome) -> bool:
    # A failure that came from a choice other than 0 is described by genguard ("choice 1 of 2 ...").
    choices = outcome.choices
    from_other_choice = bool(choices) and choices is not None and choices[0].ok
    return outcome.kind == "silent" or outcome.code in _OWN_CODES or from_other_choice
