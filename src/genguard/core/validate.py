"""Validators for silent failures: output that HTTP and ``finish_reason`` call fine, but the application cannot use.

A validator is a callable that takes the output text and returns ``None`` (fine), a :class:`Problem` (or a
plain message string, which fails with the validator's own ``code``), or :class:`Parsed` (fine, with a
parsed value that :func:`apply_validators` puts in ``Outcome.parsed``).

Rules worth knowing:

- JSON checks (``json``, a JSON Schema, a pydantic model) accept the whole output as JSON, or the first
  fenced block in it (```` ```json ... ``` ```` or an unlabelled ```` ``` ... ``` ````), since models often
  wrap JSON that way. With no text but tool calls, they check each tool call's arguments instead.
- Labels forgive case and surrounding whitespace, quotes and punctuation: ``" Positive."`` matches ``positive``;
  the canonical label becomes ``parsed``.
- ``min_words`` counts whitespace-separated words; ``min_chars`` counts characters of the stripped text.
- A regular expression is *searched* for (``re.search``); anchor it with ``^...$`` (or pass ``full=True`` to
  :func:`pattern`) to require the whole output to match.
- A custom callable may return ``True``/``None`` (fine), ``False`` (rejected), a non-empty string (rejected,
  with that message), raise ``ValueError`` (rejected, with its message), or return any other value, which is
  fine and becomes ``parsed``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import orjson

from . import arguments
from .exceptions import ConfigError
from .outcome import Outcome
from .taxonomy import CODES

_FENCE = re.compile(r"```[ \t]*(?:json5?|JSON)?[ \t]*\r?\n(.*?)```", re.DOTALL)
_LABEL_TRIM = " \t\r\n\"'`*_.,;:!?()[]{}<>“”‘’«»"
_SPEC_FORMS = "json, json-schema:PATH, labels:a,b,c, min-words:N, min-chars:N, regex:PATTERN"


@dataclass(frozen=True, slots=True)
class Problem:
    """What a validator found wrong: the silent failure code and a message saying what failed."""

    code: str
    message: str


@dataclass(frozen=True, slots=True)
class Parsed:
    """A validator's success that carries the parsed output (a dict, a pydantic object, a label)."""

    value: Any


Verdict = Problem | Parsed | str | None


@runtime_checkable
class Validator(Protocol):
    """Checks output text; ``code`` is the silent failure code it fails with.

    >>> v = labels(["yes", "no"])
    >>> (v.code, v(" Yes."), v("maybe").message)
    ('unexpected_label', Parsed(value='yes'), "output 'maybe' is not one of the labels: yes, no")
    """

    @property
    def code(self) -> str: ...

    def __call__(self, text: str) -> Verdict: ...


# -- JSON -----------------------------------------------------------------------------------------


def _load_json(text: str) -> tuple[Any, str | None]:
    """The JSON value in ``text`` (whole, or its first fenced block), or the parse error."""
    try:
        return orjson.loads(text), None
    except orjson.JSONDecodeError as exc:
        error = str(exc)
    m = _FENCE.search(text)
    if m is not None:
        try:
            return orjson.loads(m.group(1)), None
        except orjson.JSONDecodeError as exc:
            error = f"{exc} (in the fenced block)"
    return None, error


def _shorten(text: str, limit: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True, slots=True)
class JsonValidator:
    """Output must be JSON (``invalid_json``); the decoded value becomes ``parsed``."""

    code: str = "invalid_json"
    on_arguments: bool = True

    def __call__(self, text: str) -> Verdict:
        value, error = _load_json(text)
        if error is not None:
            return Problem("invalid_json", f"output is not JSON: {error}")
        return Parsed(value)


@dataclass(frozen=True, slots=True)
class SchemaValidator:
    """Output must be JSON valid against a JSON Schema (``invalid_json`` / ``schema_mismatch``)."""

    schema: Mapping[str, Any]
    checker: Any
    code: str = "schema_mismatch"
    on_arguments: bool = True

    def __call__(self, text: str) -> Verdict:
        value, error = _load_json(text)
        if error is not None:
            return Problem("invalid_json", f"output is not JSON: {error}")
        from jsonschema.exceptions import best_match

        err = best_match(self.checker.iter_errors(value))
        if err is None:
            return Parsed(value)
        return Problem("schema_mismatch", f"at {err.json_path}: {err.message}")


@dataclass(frozen=True, slots=True)
class ModelValidator:
    """Output must be JSON that a pydantic model accepts; the model instance becomes ``parsed``."""

    model: Any
    code: str = "schema_mismatch"
    on_arguments: bool = True

    def __call__(self, text: str) -> Verdict:
        import pydantic

        value, error = _load_json(text)
        if error is not None:
            return Problem("invalid_json", f"output is not JSON: {error}")
        try:
            return Parsed(self.model.model_validate(value))
        except pydantic.ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first.get("loc", ())) or "(root)"
            more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
            return Problem(
                "schema_mismatch", f"{self.model.__name__} rejected it at {where}: {first.get('msg')}{more}"
            )


def json_output() -> Validator:
    """A validator requiring JSON output.

    >>> json_output()('```json\\n{"a": 1}\\n```')
    Parsed(value={'a': 1})
    """
    return JsonValidator()


def json_schema(schema: Mapping[str, Any] | str | Path) -> Validator:
    """A validator requiring JSON valid against ``schema`` (a dict, or the path of a JSON file).

    >>> json_schema({"type": "object", "required": ["name"]})('{"x": 1}').message
    "at $: 'name' is a required property"
    """
    arguments.instance(
        "schema", schema, Mapping | str | Path, "a JSON Schema dict or the path of a JSON file"
    )
    if isinstance(schema, str | Path):
        path = Path(schema)
        try:
            loaded = orjson.loads(path.read_bytes())
        except OSError as exc:
            raise ConfigError(
                f"cannot read the JSON Schema file {str(path)!r}: {exc.strerror or exc}"
            ) from None
        except orjson.JSONDecodeError as exc:
            raise ConfigError(f"the JSON Schema file {str(path)!r} is not JSON: {exc}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"the JSON Schema file {str(path)!r} must hold an object")
        schema = loaded
    from jsonschema.exceptions import SchemaError
    from jsonschema.validators import validator_for

    schema = dict(schema)
    cls = validator_for(schema)
    try:
        cls.check_schema(schema)
    except SchemaError as exc:
        raise ConfigError(f"the JSON Schema is invalid: {exc.message}") from None
    return SchemaValidator(schema, cls(schema))


def model(model_class: type[Any]) -> Validator:
    """A validator requiring JSON that the pydantic ``model_class`` accepts; ``parsed`` is the instance."""
    if not hasattr(model_class, "model_validate"):
        raise ConfigError(f"{model_class!r} is not a pydantic model class (it has no model_validate)")
    return ModelValidator(model_class)


# -- text -----------------------------------------------------------------------------------------


def _norm_label(text: str) -> str:
    return text.strip(_LABEL_TRIM).casefold()


@dataclass(frozen=True, slots=True)
class LabelValidator:
    """Output must be one of ``labels``, forgiving case, whitespace, quotes and punctuation around it."""

    labels: tuple[str, ...]
    lookup: Mapping[str, str]
    code: str = "unexpected_label"

    def __call__(self, text: str) -> Verdict:
        hit = self.lookup.get(_norm_label(text))
        if hit is not None:
            return Parsed(hit)
        return Problem(
            "unexpected_label",
            f"output {_shorten(text)!r} is not one of the labels: {', '.join(self.labels)}",
        )


def labels(allowed: Iterable[str]) -> Validator:
    """A validator requiring the output to be one of ``allowed``; ``parsed`` is the label as given."""
    items = tuple(str(a) for a in arguments.items("labels", allowed, example="['positive', 'negative']"))
    if not items or any(not _norm_label(a) for a in items):
        raise ConfigError("labels need at least one non-empty label, e.g. labels=['positive', 'negative']")
    return LabelValidator(items, {_norm_label(a): a for a in items})


@dataclass(frozen=True, slots=True)
class LengthValidator:
    """Output must have at least ``min_words`` words and ``min_chars`` characters (``too_short``)."""

    min_words: int = 0
    min_chars: int = 0
    code: str = "too_short"

    def __call__(self, text: str) -> Verdict:
        if self.min_words:
            n = len(text.split())
            if n < self.min_words:
                return Problem("too_short", f"output has {n} words, fewer than the {self.min_words} required")
        if self.min_chars:
            n = len(text.strip())
            if n < self.min_chars:
                return Problem(
                    "too_short", f"output has {n} characters, fewer than the {self.min_chars} required"
                )
        return None


def min_length(*, words: int = 0, chars: int = 0) -> Validator:
    """A validator requiring at least ``words`` words and ``chars`` characters."""
    arguments.whole("words", words, error=ConfigError)
    arguments.whole("chars", chars, error=ConfigError)
    if words < 0 or chars < 0 or (words == 0 and chars == 0):
        raise ConfigError("a minimum length needs words or chars above 0")
    return LengthValidator(words, chars)


@dataclass(frozen=True, slots=True)
class PatternValidator:
    """Output must match ``regex`` (searched, or matched whole when ``full``) (``pattern_mismatch``)."""

    regex: re.Pattern[str]
    full: bool = False
    code: str = "pattern_mismatch"

    def __call__(self, text: str) -> Verdict:
        m = self.regex.fullmatch(text.strip()) if self.full else self.regex.search(text)
        if m is None:
            how = "match" if self.full else "contain a match for"
            return Problem(
                "pattern_mismatch", f"output {_shorten(text)!r} does not {how} /{self.regex.pattern}/"
            )
        return None


def pattern(regex: str | re.Pattern[str], *, full: bool = False) -> Validator:
    """A validator requiring a match for ``regex`` somewhere in the output (or the whole of it, ``full``).

    >>> pattern(r"^\\d{4}-\\d{2}-\\d{2}$")("2024-05-01") is None
    True
    """
    arguments.instance(
        "pattern", regex, str | re.Pattern, "a regular expression (a str or a compiled re.Pattern)"
    )
    arguments.flag("full", full)
    if isinstance(regex, str):
        try:
            regex = re.compile(regex)
        except re.error as exc:
            raise ConfigError(f"the regular expression {regex!r} is invalid: {exc}") from None
    return PatternValidator(regex, full)


@dataclass(frozen=True, slots=True)
class CustomValidator:
    """Wraps an application's own check (``validation_failed``); see the module docs for what it may return."""

    func: Callable[[str], Any]
    code: str = "validation_failed"

    def __call__(self, text: str) -> Verdict:
        name = getattr(self.func, "__name__", "validator")
        try:
            result = self.func(text)
        except ValueError as exc:
            return Problem(
                "validation_failed", f"{name}: {exc}" if str(exc) else f"{name} rejected the output"
            )
        if result is None or result is True:
            return None
        if result is False:
            return Problem("validation_failed", f"{name} rejected the output")
        if isinstance(result, str):
            return Problem("validation_failed", f"{name}: {result}") if result else None
        if isinstance(result, Problem | Parsed):
            return result
        return Parsed(result)


def custom(func: Callable[[str], Any]) -> Validator:
    """A validator from a plain function of the output text."""
    arguments.function("func", func, takes="the output text")
    return CustomValidator(func)


# build_validators' keyword options shadow these constructors' names.
_labels = labels
_pattern = pattern


# -- building and applying ------------------------------------------------------------------------


def _one(item: object) -> Validator:
    if isinstance(item, str):
        if item == "json":
            return json_output()
        return parse_validate_spec(item)
    if isinstance(item, re.Pattern):
        return pattern(item)
    if isinstance(item, Mapping):
        return json_schema(item)
    if isinstance(item, type) and hasattr(item, "model_validate"):
        return model(item)
    code = getattr(item, "code", None)
    if callable(item) and isinstance(code, str) and code in CODES and CODES[code].kind == "silent":
        return item  # type: ignore[return-value]  # already a Validator
    if callable(item):
        return custom(item)
    raise ConfigError(
        f"cannot validate with {item!r}: give 'json', a JSON Schema dict, a pydantic model class, "
        "a compiled regex, a callable, or a list of those"
    )


def build_validators(
    validate: object = None,
    *,
    labels: Iterable[str] | None = None,
    min_words: int | None = None,
    pattern: str | re.Pattern[str] | None = None,
) -> tuple[Validator, ...]:
    """The validators for a call, from the client's ``validate=`` and the shortcut options.

    ``validate`` may be ``"json"``, a JSON Schema dict, a pydantic model class, a compiled regex, a
    callable, a CLI spec string (see :func:`parse_validate_spec`), or a list of those.

    >>> [v.code for v in build_validators("json", labels=["a"], min_words=2)]
    ['invalid_json', 'unexpected_label', 'too_short']
    """
    out: list[Validator] = []
    if validate is not None:
        items: Sequence[object] = validate if isinstance(validate, list | tuple) else (validate,)
        out.extend(_one(i) for i in items)
    if labels is not None:
        out.append(_labels(labels))
    if min_words is not None:
        arguments.whole("min_words", min_words, at_least=1, error=ConfigError)
        out.append(min_length(words=min_words))
    if pattern is not None:
        out.append(_pattern(pattern))
    return tuple(out)


def parse_validate_spec(spec: str) -> Validator:
    """One validator from its command-line form: ``json``, ``json-schema:PATH``, ``labels:a,b,c``,
    ``min-words:N``, ``min-chars:N`` or ``regex:PATTERN``.

    >>> parse_validate_spec("labels:yes,no").code
    'unexpected_label'
    """
    kind, sep, arg = spec.partition(":")
    kind = kind.strip().lower()
    try:
        if kind == "json" and not sep:
            return json_output()
        if sep and kind == "json-schema" and arg:
            return json_schema(Path(arg))
        if sep and kind == "labels" and arg:
            return labels(a for a in (s.strip() for s in arg.split(",")) if a)
        if sep and kind in ("min-words", "min-chars"):
            if not arg.strip().isdigit():
                raise ConfigError(f"{kind} needs a whole number, e.g. {kind}:5, not {arg!r}")
            n = int(arg)
            return min_length(words=n) if kind == "min-words" else min_length(chars=n)
        if sep and kind == "regex" and arg:
            return _pattern(arg)
    except (ValueError, ConfigError) as exc:
        raise ConfigError(f"bad --validate {spec!r}: {exc}; the forms are: {_SPEC_FORMS}") from None
    raise ConfigError(f"unknown --validate {spec!r}; the forms are: {_SPEC_FORMS}")


def _verdict(v: Validator, text: str) -> Problem | Parsed | None:
    result = v(text)
    if isinstance(result, str):
        return Problem(v.code, result) if result else None
    return result


def apply_validators(outcome: Outcome, validators: Iterable[Validator]) -> Outcome:
    """Check an ok outcome's output; the first problem turns it into a silent failure.

    The failure keeps the output, usage and finish reason. On success the last parsed value (a JSON
    object, a pydantic instance, a label) goes into ``parsed``. Failed outcomes are returned unchanged.

    >>> ok = Outcome.success(text="maybe", finish_reason="stop")
    >>> apply_validators(ok, [labels(["yes", "no"])]).code
    'unexpected_label'
    """
    validators = tuple(validators)
    if not outcome.ok or not validators:
        return outcome
    parsed: Any = outcome.parsed
    got_parsed = False
    for v in validators:
        if outcome.text is not None:
            result = _verdict(v, outcome.text)
            if isinstance(result, Problem):
                return _silent(outcome, result)
            if isinstance(result, Parsed):
                parsed, got_parsed = result.value, True
        elif outcome.tool_calls and getattr(v, "on_arguments", False):
            values = []
            for call in outcome.tool_calls:
                result = _verdict(v, call.arguments)
                if isinstance(result, Problem):
                    return _silent(
                        outcome, Problem(result.code, f"tool call {call.name!r}: {result.message}")
                    )
                values.append(result.value if isinstance(result, Parsed) else None)
            parsed, got_parsed = (values[0] if len(values) == 1 else values), True
    return outcome.replace(parsed=parsed) if got_parsed else outcome


def _silent(outcome: Outcome, problem: Problem) -> Outcome:
    code = (
        problem.code
        if problem.code in CODES and CODES[problem.code].kind == "silent"
        else "validation_failed"
    )
    return Outcome.failure(
        code,
        endpoint=outcome.endpoint,
        status=outcome.status,
        message=problem.message,
        request_id=outcome.request_id,
        finish_reason=outcome.finish_reason,
        text=outcome.text,
        tool_calls=outcome.tool_calls,
        usage=outcome.usage,
        attempts=outcome.attempts,
        extra=outcome.extra,
        history=outcome.history,
    )
