"""Per-model image rules: which parameters a model rejects, how many images one call may ask for.

Image models differ in ways that turn an ordinary request into a 400: gpt-image models reject
``response_format`` (and always return ``b64_json``), ``dall-e-3`` and ``qwen-image`` accept only ``n=1``.
:func:`plan_image_requests` turns what the caller asked for into the requests a model accepts, and says what
it changed. Models are looked up by exact name, then by the longest registered prefix (a gateway's
``vendor/`` prefix is ignored when the full name is unknown); unknown models pass through untouched.

>>> plan = plan_image_requests("qwen-image", {"prompt": "a fox", "n": 3})
>>> [r["n"] for r in plan.requests]
[1, 1, 1]
"""

from __future__ import annotations

import logging
import os
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

import orjson

logger = logging.getLogger("genguard")

ImageFormat = Literal["url", "b64_json"]
_GPT_IMAGE_ONLY = frozenset({"output_format", "output_compression", "background", "moderation"})


@dataclass(frozen=True, slots=True)
class ImageModelRules:
    """What one image model accepts.

    ``max_n``: the most images one call may ask for (``None``: no known limit); ``rejects``: parameters
    the model refuses, dropped before sending; ``returns``: the format it always answers with, whatever was
    asked (``None``: it honours ``response_format``); ``defaults``: parameters added when the caller gave none.

    >>> ImageModelRules(max_n=1, rejects=frozenset({"style"})).max_n
    1
    """

    max_n: int | None = None
    rejects: frozenset[str] = frozenset()
    returns: ImageFormat | None = None
    defaults: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ImageModelRules:
        """Rules from a mapping such as one table of a rules file; raises ``ValueError`` naming a bad field.

        >>> ImageModelRules.from_dict({"max_n": 1, "rejects": ["quality"]}).rejects
        frozenset({'quality'})
        """
        unknown = set(data) - {"max_n", "rejects", "returns", "defaults"}
        if unknown:
            raise ValueError(
                f"unknown image rule field(s) {sorted(unknown)}; known: max_n, rejects, returns, defaults"
            )
        max_n = data.get("max_n")
        if max_n is not None and (isinstance(max_n, bool) or not isinstance(max_n, int) or max_n < 1):
            raise ValueError(f"max_n must be a whole number of at least 1, not {max_n!r}")
        rejects = data.get("rejects", ())
        if isinstance(rejects, str) or not isinstance(rejects, Iterable):
            raise ValueError(f"rejects must be a list of parameter names, not {rejects!r}")
        returns = data.get("returns")
        if returns not in (None, "url", "b64_json"):
            raise ValueError(f"returns must be 'url' or 'b64_json', not {returns!r}")
        defaults = data.get("defaults", {})
        if not isinstance(defaults, Mapping):
            raise ValueError(f"defaults must be a table of parameters, not {defaults!r}")
        return cls(max_n, frozenset(str(r) for r in rejects), returns, MappingProxyType(dict(defaults)))


PASS_THROUGH = ImageModelRules()
"""The rules of a model nobody described: send what the caller asked for."""

_BUILTIN: dict[str, ImageModelRules] = {
    "gpt-image-": ImageModelRules(
        max_n=10, rejects=frozenset({"response_format", "style"}), returns="b64_json"
    ),
    "dall-e-3": ImageModelRules(max_n=1, rejects=_GPT_IMAGE_ONLY),
    "dall-e-2": ImageModelRules(max_n=10, rejects=_GPT_IMAGE_ONLY | {"style", "quality"}),
    "qwen-image": ImageModelRules(max_n=1, rejects=_GPT_IMAGE_ONLY),
}


class ImageRuleBook:
    """A table of image model rules: the built-in ones plus any the user registers or loads.

    >>> book = ImageRuleBook()
    >>> book.register("my-diffusion", ImageModelRules(max_n=2))
    >>> book.lookup("my-diffusion-xl").max_n
    2
    """

    def __init__(self, rules: Mapping[str, ImageModelRules] | None = None, *, builtin: bool = True) -> None:
        self._rules: dict[str, ImageModelRules] = dict(_BUILTIN) if builtin else {}
        for name, r in (rules or {}).items():
            self.register(name, r)

    def register(self, name_or_prefix: str, rules: ImageModelRules | Mapping[str, Any]) -> None:
        """Add or replace the rules for a model name, which also serves as a prefix for longer names."""
        if not isinstance(name_or_prefix, str) or not name_or_prefix.strip():
            raise ValueError("an image model rule needs a model name or prefix")
        if not isinstance(rules, ImageModelRules):
            rules = ImageModelRules.from_dict(rules)
        self._rules[name_or_prefix.strip().lower()] = rules

    def load(self, source: str | os.PathLike[str] | Mapping[str, Any]) -> None:
        """Register every model of a TOML or JSON file (or a dict): ``{"models": {name: {max_n, rejects,
        returns, defaults}}}``, or the model tables at the top level. Raises ``ValueError`` naming the file
        and model when a rule is malformed."""
        where = "rules"
        if isinstance(source, Mapping):
            data: Any = source
        else:
            path = Path(source)
            where = str(path)
            try:
                raw = path.read_bytes()
                data = tomllib.loads(raw.decode()) if path.suffix.lower() == ".toml" else orjson.loads(raw)
            except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, orjson.JSONDecodeError) as exc:
                raise ValueError(f"cannot read image rules from {where}: {exc}") from None
        if not isinstance(data, Mapping):
            raise ValueError(f"{where}: image rules must be a table of models")
        models = data.get("models", data)
        if not isinstance(models, Mapping):
            raise ValueError(f"{where}: 'models' must be a table of models")
        for name, table in models.items():
            if not isinstance(table, Mapping):
                raise ValueError(f"{where}: model {name!r} must be a table of rules")
            try:
                self.register(name, table)
            except ValueError as exc:
                raise ValueError(f"{where}: model {name!r}: {exc}") from None

    def lookup(self, model: str | None) -> ImageModelRules:
        """The rules for ``model``: exact name, else the longest registered prefix, else pass-through."""
        if not model:
            return PASS_THROUGH
        name = model.strip().lower()
        found = self._match(name)
        if found is None and "/" in name:
            found = self._match(name.rsplit("/", 1)[1])
        return found or PASS_THROUGH

    def _match(self, name: str) -> ImageModelRules | None:
        exact = self._rules.get(name)
        if exact is not None:
            return exact
        best = ""
        for key in self._rules:
            if len(key) > len(best) and name.startswith(key):
                best = key
        return self._rules[best] if best else None


DEFAULT_RULES = ImageRuleBook()
"""The rule book used when none is given; :func:`register_image_model` and :func:`load_image_rules` extend it."""

RULES_ENV = "GENGUARD_IMAGE_RULES"
"""An environment variable naming a TOML or JSON rules file that the default rule book loads on first use."""

_env_loaded: list[str] = []


def default_rules() -> ImageRuleBook:
    """The default rule book, with the file named by ``GENGUARD_IMAGE_RULES`` loaded into it (once per path).

    Raises ``ValueError`` naming the file when it cannot be read or a rule in it is malformed.

    >>> default_rules().lookup("dall-e-3").max_n
    1
    """
    path = os.environ.get(RULES_ENV, "").strip()
    if path and path not in _env_loaded:
        DEFAULT_RULES.load(path)
        _env_loaded.append(path)
    return DEFAULT_RULES


def register_image_model(name_or_prefix: str, rules: ImageModelRules | Mapping[str, Any]) -> None:
    """Describe a model (or every model starting with a prefix) in the default rule book.

    Example: ``register_image_model("flux-", {"max_n": 4})``, after which ``rules_for("flux-schnell").max_n``
    is 4.
    """
    DEFAULT_RULES.register(name_or_prefix, rules)


def load_image_rules(source: str | os.PathLike[str] | Mapping[str, Any]) -> None:
    """Load rules from a TOML or JSON file (or a dict) into the default rule book; see :meth:`ImageRuleBook.load`.

    Example: ``load_image_rules("image-rules.toml")`` with a table ``[models."seedream-"]`` holding
    ``max_n = 1`` and ``rejects = ["quality"]``.
    """
    DEFAULT_RULES.load(source)


def rules_for(model: str | None, *, book: ImageRuleBook | None = None) -> ImageModelRules:
    """The rules for ``model`` in ``book`` (the default rule book, see :func:`default_rules`, when not given).

    >>> rules_for("gpt-image-1").returns
    'b64_json'
    """
    return (book or default_rules()).lookup(model)


@dataclass(frozen=True, slots=True)
class ImagePlan:
    """The requests to send for one images call, what was changed on the way, and the rules that applied.

    >>> plan_image_requests("gpt-image-1", {"prompt": "x", "response_format": "url"}).notes[0][:24]
    'dropped response_format:'
    """

    requests: tuple[Mapping[str, Any], ...]
    notes: tuple[str, ...]
    rules: ImageModelRules

    @property
    def returns(self) -> ImageFormat | None:
        """The format the answers will carry when the model decides it (``b64_json`` for gpt-image)."""
        return self.rules.returns


def plan_image_requests(
    model: str | None, params: Mapping[str, Any], *, book: ImageRuleBook | None = None
) -> ImagePlan:
    """Turn one images call (``params`` is the request body, ``n`` included) into the requests ``model``
    accepts: rejected parameters dropped (each noted and logged), ``n`` split into several calls when the
    model takes fewer per call.

    >>> [r["n"] for r in plan_image_requests("dall-e-2", {"prompt": "x", "n": 12}).requests]
    [10, 2]
    """
    rules = rules_for(model, book=book)
    body = {k: v for k, v in params.items() if v is not None}
    if model is not None:
        body["model"] = model
    notes: list[str] = []
    for name in sorted(rules.rejects & body.keys()):
        value = body.pop(name)
        why = " (the model always returns b64_json)" if name == "response_format" and rules.returns else ""
        notes.append(f"dropped {name}: {model} rejects it{why}; it was {value!r}")
    for name, value in rules.defaults.items():
        body.setdefault(name, value)
    n_raw = body.get("n", 1)
    n = n_raw if isinstance(n_raw, int) and not isinstance(n_raw, bool) and n_raw >= 1 else 1
    per_call = n if rules.max_n is None else min(n, rules.max_n)
    requests: list[Mapping[str, Any]] = []
    left = n
    while left > 0:
        take = min(per_call, left)
        requests.append({**body, "n": take} if "n" in body or take != 1 else dict(body))
        left -= take
    if len(requests) > 1:
        notes.append(
            f"{model} accepts at most n={rules.max_n} per call: asking {len(requests)} times for {n} images"
        )
    for note in notes:
        logger.info("images: %s", note)
    return ImagePlan(tuple(requests), tuple(notes), rules)
