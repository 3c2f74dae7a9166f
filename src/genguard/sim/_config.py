"""The simulator's settings, and the scenario names it can play.

>>> cfg = SimConfig(scenario="server_error:2", rpm=60)
>>> parse_scenario(cfg.scenario)
('server_error', 2)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

DIALECTS: tuple[str, ...] = (
    "openai",
    "azure",
    "anthropic",
    "google",
    "openrouter",
    "vllm",
    "mistral",
    "ollama",
)

# The failures a server can cause, by endpoint. ``timeout`` and ``connection_error`` are client-side codes
# the simulator causes by stalling and by cutting the connection.
HARD_SCENARIOS: tuple[str, ...] = (
    "auth_failed", "permission_denied", "model_not_found", "not_found", "bad_request",
    "context_length_exceeded", "request_too_large", "prompt_blocked", "quota_exceeded", "rate_limited",
    "request_timeout", "conflict", "unprocessable", "server_error", "bad_gateway", "unavailable",
    "gateway_timeout", "timeout", "connection_error", "invalid_response",
)  # fmt: skip
CHAT_SOFT_SCENARIOS: tuple[str, ...] = (
    "content_filtered", "truncated", "empty_output", "incomplete_stream", "stream_error",
)  # fmt: skip
SILENT_SCENARIOS: tuple[str, ...] = (
    "invalid_json", "schema_mismatch", "unexpected_label", "too_short", "pattern_mismatch",
)  # fmt: skip
# Played by the image and video endpoints only; a chat request under one of these is answered normally.
MEDIA_SCENARIOS: tuple[str, ...] = ("download_failed", "generation_failed", "task_timeout", "stuck_in_queue")

SCENARIOS: frozenset[str] = frozenset(
    ("ok", *HARD_SCENARIOS, *CHAT_SOFT_SCENARIOS, *SILENT_SCENARIOS, *MEDIA_SCENARIOS)
)
"""Every scenario name the simulator accepts (``ok`` plus the TAXONOMY.md codes a server can cause)."""

SHOULD_RETRY: tuple[str, ...] = ("off", "auto", "true", "false")
"""The values of the ``should_retry`` setting (and of the ``x-genguard-should-retry`` request header)."""

DEFAULT_MODELS: tuple[str, ...] = (
    "gpt-4o-mini", "gpt-4o", "gpt-4.1-mini", "o3-mini", "gpt-image-1", "dall-e-3", "qwen-image",
    "sora-2", "kling-v2", "runway-gen4", "veo-3", "seedance-1-pro",
)  # fmt: skip


class ScenarioError(ValueError):
    """An unknown scenario name, or a malformed ``NAME:N`` / chaos specification."""


def valid_scenarios_text() -> str:
    return ", ".join(sorted(SCENARIOS))


def parse_scenario(spec: str) -> tuple[str, int | None]:
    """Split ``NAME`` or ``NAME:N`` (fail the first N attempts of each request, then succeed).

    >>> parse_scenario("rate_limited")
    ('rate_limited', None)
    """
    name, sep, count = spec.strip().partition(":")
    name = name.strip()
    if name not in SCENARIOS:
        raise ScenarioError(f"unknown scenario {name!r}; valid scenarios: {valid_scenarios_text()}")
    if not sep:
        return name, None
    try:
        n = int(count)
    except ValueError:
        raise ScenarioError(
            f"scenario {spec!r}: the part after ':' must be a whole number of attempts"
        ) from None
    if n < 0:
        raise ScenarioError(f"scenario {spec!r}: the number of failing attempts cannot be negative")
    return name, n


def parse_chaos(spec: str | Mapping[str, float] | None) -> dict[str, float]:
    """Parse ``"rate_limited=0.05,server_error=0.02"`` into ``{code: rate}``; rates sum to at most 1.

    >>> parse_chaos("rate_limited=0.05, server_error=0.02")
    {'rate_limited': 0.05, 'server_error': 0.02}
    """
    if spec is None:
        return {}
    items: list[tuple[str, Any]]
    if isinstance(spec, Mapping):
        items = list(spec.items())
    else:
        items = []
        for part in spec.split(","):
            if not part.strip():
                continue
            name, eq, rate = part.partition("=")
            if not eq:
                raise ScenarioError(
                    f"chaos entry {part.strip()!r} must look like NAME=RATE, e.g. rate_limited=0.05"
                )
            items.append((name.strip(), rate.strip()))
    out: dict[str, float] = {}
    for name, rate in items:
        if name not in SCENARIOS or name == "ok":
            raise ScenarioError(f"unknown chaos scenario {name!r}; valid scenarios: {valid_scenarios_text()}")
        try:
            value = float(rate)
        except (TypeError, ValueError):
            raise ScenarioError(
                f"chaos rate for {name!r} must be a number between 0 and 1, not {rate!r}"
            ) from None
        if not 0.0 <= value <= 1.0:
            raise ScenarioError(f"chaos rate for {name!r} must be between 0 and 1, not {value}")
        out[name] = value
    if sum(out.values()) > 1.0 + 1e-9:
        raise ScenarioError(f"chaos rates add up to {sum(out.values()):.3f}, more than 1")
    return out


def parse_pairs(
    spec: str | Mapping[str, Any] | tuple[str, ...] | list[str] | None,
    *,
    what: str,
    example: str = "gpt-4o-mini=positive",
) -> dict[str, str]:
    """Parse ``MODEL=VALUE`` entries (a mapping passes through) into ``{model: value}``; the value may hold
    ``=`` itself, and a later entry for a model wins. Anything else, or an entry with no model, is a
    :class:`ScenarioError` naming ``what`` (with ``example``, an entry of the right form).

    >>> parse_pairs(["gpt-4o=positive", "o3-mini=a=b"], what="reply_for")
    {'gpt-4o': 'positive', 'o3-mini': 'a=b'}
    """
    if spec is None:
        return {}
    if isinstance(spec, Mapping):
        entries = [(str(k), str(v)) for k, v in spec.items()]
    elif isinstance(spec, (str, list, tuple)):
        entries = []
        for entry in [spec] if isinstance(spec, str) else spec:
            model, eq, value = entry.partition("=") if isinstance(entry, str) else ("", "", "")
            if not eq:
                raise ScenarioError(f"{what} entry {entry!r} must look like MODEL=VALUE, e.g. {example}")
            entries.append((model, value))
    else:
        raise ScenarioError(
            f"{what} takes MODEL=VALUE entries (e.g. {example}) or a mapping of model to value, not {spec!r}"
        )
    out: dict[str, str] = {}
    for model, value in entries:
        if not model.strip():
            raise ScenarioError(f"{what}: an entry names no model ({model}={value}); e.g. {example}")
        out[model.strip()] = value
    return out


def _limits_for(
    spec: str | Mapping[str, Any] | tuple[str, ...] | list[str] | None, *, what: str, unit: str
) -> dict[str, int]:
    """Parse a per-model limit setting into ``{model: per minute}``: a mapping, ``MODEL=N`` entries, or one
    text of them separated by commas (a number holds no comma, so unlike a reply text it can be split there).

    >>> _limits_for("gpt-4o=60, gpt-4o-mini=600", what="rpm_for", unit="requests")
    {'gpt-4o': 60, 'gpt-4o-mini': 600}
    """
    if isinstance(spec, str):
        spec = [part for part in spec.split(",") if part.strip()]
    limits: dict[str, int] = {}
    example = "gpt-4o=60" if unit == "requests" else "gpt-4o=30000"
    for model, value in parse_pairs(spec, what=what, example=example).items():
        try:
            limits[model] = int(value)
        except ValueError:
            raise ScenarioError(
                f"{what} {model}: the limit must be a whole number of {unit} per minute, not {value!r}"
            ) from None
    return limits


# The context window of each model family, longest prefix first; a model matching none gets the default.
CONTEXT_WINDOWS: tuple[tuple[str, int], ...] = (
    ("gpt-4.1", 1_047_576), ("gpt-4o", 128_000), ("gpt-4-turbo", 128_000), ("gpt-4-32k", 32_768),
    ("gpt-4", 8_192), ("gpt-3.5-turbo", 16_385), ("gpt-5", 400_000), ("o1-mini", 128_000), ("o1", 200_000),
    ("o3", 200_000), ("o4", 200_000), ("claude", 200_000), ("gemini", 1_048_576), ("mistral-large", 131_072),
    ("mistral", 32_768), ("llama", 131_072), ("qwen", 131_072), ("deepseek", 131_072),
)  # fmt: skip
DEFAULT_CONTEXT_WINDOW = 128_000
"""The context window of a model whose family ``CONTEXT_WINDOWS`` does not know."""
MAX_BODY_BYTES = 50 * 1024 * 1024
"""The largest request body the simulator reads (OpenAI's 50 MB per request); a larger one gets a 413."""


@dataclass(frozen=True, slots=True)
class SimConfig:
    """Server-wide settings of a simulator; ``replace(**changes)`` gives a validated copy.

    >>> SimConfig(chaos="rate_limited=0.1", seed=7).chaos
    {'rate_limited': 0.1}
    """

    scenario: str = "ok"
    chaos: Mapping[str, float] = field(default_factory=dict)
    seed: int = 0
    dialect: str = "openai"
    rpm: int | None = None
    tpm: int | None = None
    # A model's own limits per minute, as OpenAI sets them per model: a model named in either has buckets of
    # its own per key (rpm/tpm where it is not named); models named in neither share the key's buckets.
    rpm_for: Mapping[str, int] = field(default_factory=dict)
    tpm_for: Mapping[str, int] = field(default_factory=dict)
    quota_tokens: int | None = None
    # The window --rpm/--tpm are enforced over: 60 lets a whole minute's budget through at once; 1 allows
    # only a second's share at a time (rpm/60), as providers that quantise their limits do.
    rate_window_s: float = 60.0
    api_keys: tuple[str, ...] = ()
    ttft_ms: float = 0.0
    tokens_per_s: float = 0.0
    task_seconds: float = 8.0
    image_url_ttl_s: float = 3600.0
    models: tuple[str, ...] = DEFAULT_MODELS
    # How long the ``timeout`` scenario stalls before giving up on the client (a real hang, bounded).
    stall_s: float = 300.0
    # The wait a ``rate_limited`` scenario advertises (retry-after and the message).
    retry_after_s: float = 1.0
    # Whether responses carry rate-limit headers (some gateways send none; doctor checks for them).
    ratelimit_headers: bool = True
    # ``x-should-retry`` on error responses: "off" (not sent), "auto" (the taxonomy's verdict for the
    # code), or "true"/"false" (that value on every error, whatever the code).
    should_retry: str = "off"
    # A fixed text every answer gives instead of generated words (the x-genguard-reply header wins, then a
    # model's own in reply_for); None: generated text.
    reply: str | None = None
    reply_for: Mapping[str, str] = field(default_factory=dict)
    # Tokens a prompt plus its max_tokens may take: None is each model family's own (CONTEXT_WINDOWS);
    # context_window_for sets it per model.
    context_window: int | None = None
    context_window_for: Mapping[str, int] = field(default_factory=dict)
    # The largest request body read; past it a 413, and the rest of the upload is drained, not kept.
    max_body_bytes: int = MAX_BODY_BYTES
    # OpenAI's automatic prompt caching (``_cache``): the prefix of a prompt of 1024 tokens or more that the
    # same key sent to the same model within prompt_cache_ttl_s is reported as cached tokens. On by default,
    # as on OpenAI; off, cached_tokens stays 0.
    prompt_cache: bool = True
    prompt_cache_ttl_s: float = 600.0

    def __post_init__(self) -> None:
        parse_scenario(self.scenario)
        object.__setattr__(self, "chaos", parse_chaos(self.chaos))
        object.__setattr__(self, "reply_for", parse_pairs(self.reply_for, what="reply_for"))
        if self.reply is not None and not isinstance(self.reply, str):
            raise ScenarioError(f"reply must be a text (or None for generated text), not {self.reply!r}")
        windows: dict[str, int] = {}
        for model, value in parse_pairs(self.context_window_for, what="context_window_for").items():
            try:
                windows[model] = int(value)
            except ValueError:
                raise ScenarioError(
                    f"context_window_for {model}: the window must be a whole number of tokens, not {value!r}"
                ) from None
        object.__setattr__(self, "context_window_for", windows)
        rpm_for = _limits_for(self.rpm_for, what="rpm_for", unit="requests")
        tpm_for = _limits_for(self.tpm_for, what="tpm_for", unit="tokens")
        object.__setattr__(self, "rpm_for", rpm_for)
        object.__setattr__(self, "tpm_for", tpm_for)
        for name, number in (("context_window", self.context_window), ("max_body_bytes", self.max_body_bytes),
                             *((f"context_window_for {m}", w) for m, w in windows.items()),
                             *((f"rpm_for {m}", n) for m, n in rpm_for.items()),
                             *((f"tpm_for {m}", n) for m, n in tpm_for.items())):  # fmt: skip
            if number is not None and number <= 0:
                raise ScenarioError(f"{name} must be a positive number, not {number}")
        if self.dialect not in DIALECTS:
            raise ScenarioError(f"unknown dialect {self.dialect!r}; valid dialects: {', '.join(DIALECTS)}")
        if self.should_retry not in SHOULD_RETRY:
            raise ScenarioError(
                f"should_retry must be one of {', '.join(SHOULD_RETRY)}, not {self.should_retry!r}"
            )
        object.__setattr__(self, "api_keys", tuple(self.api_keys))
        object.__setattr__(self, "models", tuple(self.models))
        for name in ("rpm", "tpm", "quota_tokens"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ScenarioError(f"{name} must be a positive number, not {value}")
        if not self.prompt_cache_ttl_s > 0:  # NaN too
            raise ScenarioError(
                f"prompt_cache_ttl_s must be a positive number, not {self.prompt_cache_ttl_s}"
            )
        if not 0 < self.rate_window_s <= 60:
            raise ScenarioError(f"rate_window_s must be more than 0 and at most 60, not {self.rate_window_s}")
        for name in (
            "ttft_ms",
            "tokens_per_s",
            "task_seconds",
            "image_url_ttl_s",
            "stall_s",
            "retry_after_s",
        ):
            if getattr(self, name) < 0:
                raise ScenarioError(f"{name} cannot be negative")

    def window_of(self, model: str) -> int:
        """The context window of ``model`` under these settings.

        >>> SimConfig().window_of("gpt-4o-mini"), SimConfig(context_window=4096).window_of("gpt-4o-mini")
        (128000, 4096)
        """
        window = self.context_window_for.get(model)
        if window is not None:
            return window
        if self.context_window is not None:
            return self.context_window
        return family_window(model)

    def rpm_of(self, model: str | None) -> int | None:
        """The requests per minute ``model`` may send per key (None: no limit).

        >>> cfg = SimConfig(rpm=600, rpm_for="gpt-4o=60")
        >>> cfg.rpm_of("gpt-4o"), cfg.rpm_of("gpt-4o-mini"), cfg.rpm_of(None)
        (60, 600, 600)
        """
        return self.rpm_for.get(model, self.rpm) if model is not None else self.rpm

    def tpm_of(self, model: str | None) -> int | None:
        """The tokens per minute ``model`` may take per key (None: no limit)."""
        return self.tpm_for.get(model, self.tpm) if model is not None else self.tpm

    def replace(self, **changes: Any) -> SimConfig:
        """A copy with ``changes`` applied and validated."""
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise TypeError(f"unknown simulator setting(s): {', '.join(sorted(unknown))}")
        return dataclasses.replace(self, **changes)


@lru_cache(maxsize=512)
def family_window(model: str) -> int:
    """The context window of ``model``'s family (``CONTEXT_WINDOWS``), else ``DEFAULT_CONTEXT_WINDOW``.

    >>> family_window("gpt-4o-2024-08-06"), family_window("gpt-4"), family_window("my-local-model")
    (128000, 8192, 128000)
    """
    name = model.lower().rpartition("/")[2]  # a gateway's "openai/gpt-4o" is gpt-4o
    for prefix, window in CONTEXT_WINDOWS:
        if name.startswith(prefix):
            return window
    return DEFAULT_CONTEXT_WINDOW
