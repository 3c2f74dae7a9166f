"""Read a batch input file into :class:`~genguard.bulk.model.Line` values, one bad line at a time named.

Formats, chosen by the file's suffix:

- ``.jsonl``, ``.ndjson``, ``.json``: JSON Lines. A line is either an OpenAI Batch input line
  ``{"custom_id", "method", "url", "body"}`` or a bare request body (its ``custom_id`` is its line number and its
  url follows from its keys: ``messages`` chat, ``input`` embeddings (or the Responses API when a key only a
  generation has is beside it: ``instructions``, ``max_output_tokens``, ``tools``...), ``prompt`` images).
- ``.csv`` and ``.tsv``: a table with a header line, read only with a ``template`` that turns each row into a
  chat request. TSV is unquoted, as IANA defines it: a field holds no tab and no newline.

With a ``template`` every CSV row or JSON-lines object is a table row: ``template.format_map(row)`` is the user
message of ``{"model": model, "messages": [{"role": "user", "content": text}], **params}``.

The file is streamed: one line (one CSV row) is in memory at a time, so a file of millions of lines reads in
flat memory. Every non-blank line yields exactly one item, a ``Line`` or an ``InputProblem`` that says where,
what is wrong and what to do; nothing in the file's bytes makes the reader raise.

Choices worth knowing:

- ``custom_id`` must be a non-blank string, as the OpenAI Batch API requires; an integer is accepted too and
  becomes its decimal string (``7`` and ``"7"`` are then the same id), because a file of numbered requests is
  common and the outputs name every line by a string anyway. Floats, booleans, null, lists and objects are
  problems.
- ``method`` may be left out (every url here is a POST); when given it must be ``POST``.
- A url may leave out the ``/v1`` prefix or end in ``/``; the line carries the url as ``ENDPOINTS`` spells it.
- Line numbers are physical, 1-based, as an editor shows them; blank lines count but yield nothing. A CSV row
  is numbered by the line it starts on (the header is usually line 1).
- Without a template, ``model`` and ``params`` are defaults: a body that has no ``model`` (or no key of
  ``params``) gets it, a body's own keys win. The line's key is the hash of the body that will be sent.
- A UTF-8 byte order mark at the start of the file is skipped; bytes that are not UTF-8 make that line a problem.
- Duplicate custom_ids are not this reader's business (it keeps no state across lines): the journal refuses
  them, and :func:`check_file` reports them with bounded memory for a validation pass.
"""

from __future__ import annotations

import csv
import re
import sqlite3
import string
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Literal

import orjson

from ..core.taxonomy import GENERATION_KEYS
from .model import ENDPOINTS, InputProblem, Line, line_key

__all__ = ["SeenIds", "check_file", "infer_url", "read_lines"]

Kind = Literal["chat", "embedding", "image", "video", "moderation"]

_BOM = b"\xef\xbb\xbf"
_JSON_SPACE = b" \t\r\n"  # JSON's whitespace: a line of only these is blank
_JSON_SUFFIXES = frozenset({".jsonl", ".ndjson", ".json"})
_TABLE_DELIMITERS = {".csv": ",", ".tsv": "\t"}
_BATCH_KEYS = frozenset({"custom_id", "method", "url", "body"})
_ID_COLUMNS = ("custom_id", "id")

# Every spelling a line may use for a url, mapped to the one ENDPOINTS uses.
_URLS: Mapping[str, str] = {
    **{url.removeprefix("/v1"): url for url in ENDPOINTS},
    **{url: url for url in ENDPOINTS},
}
# The url a bare body or a template row goes to, by its kind (a chat body has messages: chat completions).
_URL_OF: Mapping[str, str] = {kind: url for url, kind in reversed(list(ENDPOINTS.items()))}
_RESPONSES = "/v1/responses"
_COMPLETIONS = "/v1/completions"
_IMAGE_EDITS = "/v1/images/edits"
_MODERATIONS = "/v1/moderations"
_KNOWN_URLS = ", ".join(ENDPOINTS)
_BATCH_EXAMPLE = (
    '{"custom_id": "request-1", "method": "POST", "url": "/v1/chat/completions", '
    '"body": {"model": "...", "messages": [...]}}'
)
# Lines that only open or close a JSON document: the file is one pretty-printed document, not JSON Lines.
_DOCUMENT_EDGES = frozenset({b"[", b"]", b"{", b"}", b"},", b"],", b"[{", b"}]"})


class _Bad(Exception):
    """A line's problem, raised inside the reader and turned into an InputProblem at the line's boundary."""

    def __init__(self, what: str, fix: str) -> None:
        super().__init__(what)
        self.what = what
        self.fix = fix


def read_lines(
    path: str | Path,
    *,
    template: str | None = None,
    model: str | None = None,
    params: Mapping[str, Any] | None = None,
) -> Iterator[Line | InputProblem]:
    """Stream ``path``'s requests: one :class:`Line` or :class:`InputProblem` per non-blank line, in file order.

    Wrong arguments raise :class:`ValueError` at once (an unknown suffix, a CSV without a template, a template
    with positional or malformed fields, a template without a model, params that are not JSON); a file that
    cannot be opened raises :class:`OSError` when iteration starts. The file's content never raises.

    >>> import pathlib, tempfile
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "in.jsonl"
    >>> _ = p.write_text(
    ...     '{"model": "m", "messages": [{"role": "user", "content": "hi"}]}\\n'
    ...     '\\n'
    ...     '{"custom_id": "a", "url": "/embeddings", "body": {"model": "m", "input": "x"}}\\n'
    ...     '{"custom_id": "b", "url": "/v1/chat/completions", "body": {"model": "m"}}\\n'
    ... )
    >>> for item in read_lines(p):
    ...     print(item if isinstance(item, InputProblem) else f"{item.number} {item.custom_id} {item.url}")
    1 1 /v1/chat/completions
    3 a /v1/embeddings
    ...in.jsonl:4: the body has no "messages"; add "messages": [{"role": "user", "content": "..."}]
    """
    source = str(path)
    suffix = Path(source).suffix.lower()
    rows = _Rows(template, model, params)
    if suffix in _JSON_SUFFIXES:
        return _read_json(source, rows)
    if suffix in _TABLE_DELIMITERS:
        if template is None:
            raise ValueError(
                f"{source}: a {suffix} file is read as a table: give a template, e.g. 'Classify: {{text}}'"
            )
        return _read_table(source, _TABLE_DELIMITERS[suffix], rows)
    known = ", ".join([*sorted(_JSON_SUFFIXES), *_TABLE_DELIMITERS])
    raise ValueError(
        f"{source}: unknown input format {suffix or '(no suffix)'!r}; name the file with one of {known}"
    )


def check_file(
    path: str | Path,
    *,
    template: str | None = None,
    model: str | None = None,
    params: Mapping[str, Any] | None = None,
) -> Iterator[InputProblem]:
    """Every problem of ``path``: what :func:`read_lines` finds, plus each custom_id already used on an earlier
    line (problem lines whose custom_id is known count too: they would collide in the journal as well).

    Memory stays flat however long the file: the ids seen so far live in :class:`SeenIds`, on disk.

    >>> import pathlib, tempfile
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "in.jsonl"
    >>> line = '{"custom_id": "x", "url": "/v1/embeddings", "body": {"model": "m", "input": "hi"}}\\n'
    >>> _ = p.write_text(line + line)
    >>> [(problem.line, problem.what) for problem in check_file(p)]
    [(2, 'custom_id "x" is already used on line 1')]
    """
    items = read_lines(path, template=template, model=model, params=params)
    return _check(items)


def _check(items: Iterator[Line | InputProblem]) -> Iterator[InputProblem]:
    with SeenIds() as seen:
        for item in items:
            if isinstance(item, InputProblem):
                yield item
                if item.custom_id is not None:
                    seen.add(item.custom_id, item.line)
                continue
            first = seen.add(item.custom_id, item.number)
            if first is not None:
                yield InputProblem(
                    item.source,
                    item.number,
                    f"custom_id {_shown(item.custom_id)} is already used on line {first}",
                    "give every line its own custom_id: the outputs name each result by it",
                    item.custom_id,
                )


class SeenIds:
    """The custom_ids seen so far and the line each was first seen on, in a private temporary SQLite database.

    Why SQLite and not a set: a set of 16-byte digests still costs about 90 bytes a line in CPython (the bytes
    object and its hash-table slot), 900 MB for ten million lines, and cannot say which line came first. SQLite
    keeps a few MB of pages in memory and spills the rest to a temporary file it deletes on close, and it stores
    the ids themselves, so two different ids never collide.

    >>> with SeenIds() as seen:
    ...     seen.add("a", 1), seen.add("b", 2), seen.add("a", 3)
    (None, None, 1)
    """

    def __init__(self, *, cache_kib: int = 8192) -> None:
        # "" opens a private on-disk database that SQLite deletes when the connection closes.
        self._db = sqlite3.connect("", isolation_level=None)
        self._db.execute(f"PRAGMA cache_size = -{int(cache_kib)}")
        self._db.execute("PRAGMA journal_mode = OFF")
        self._db.execute("PRAGMA synchronous = OFF")
        self._db.execute("CREATE TABLE seen (id TEXT PRIMARY KEY, line INTEGER NOT NULL) WITHOUT ROWID")
        # One transaction for the whole pass: a commit per id would cost a write each.
        self._db.execute("BEGIN")

    def add(self, custom_id: str, line: int) -> int | None:
        """Record ``custom_id`` as seen on ``line``; the line it was first seen on if it was seen before."""
        if self._db.execute("INSERT OR IGNORE INTO seen VALUES (?, ?)", (custom_id, line)).rowcount:
            return None
        row = self._db.execute("SELECT line FROM seen WHERE id = ?", (custom_id,)).fetchone()
        return int(row[0])

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> SeenIds:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


# -- turning one parsed line or row into a Line ----------------------------------------------------------


class _Rows:
    """What every line of one file is read with: the template (checked once), the model and the params."""

    def __init__(self, template: str | None, model: str | None, params: Mapping[str, Any] | None) -> None:
        self.template = template
        self.model = model
        self.params = dict(params or {})
        try:
            orjson.dumps(self.params)
        except TypeError as exc:
            raise ValueError(f"params must be JSON values: {exc}") from None
        if self.params.get("stream") not in (None, False):
            raise ValueError(f"params: stream is {_a(self.params['stream'])}; {_NO_STREAM}")
        self.fields: tuple[str, ...] = ()
        if template is not None:
            self.fields = _template_fields(template)
            if model is None and "model" not in self.params:
                raise ValueError("a template needs a model: every request it makes is a chat request")
        # Without a template, model and params are defaults for bodies that lack them.
        self.defaults = dict(self.params)
        if model is not None:
            self.defaults.setdefault("model", model)

    def from_object(self, source: str, number: int, obj: Any) -> Line | InputProblem:
        """A JSON-lines object: a Batch line or a bare body, or a table row when there is a template."""
        custom_id: str | None = None
        try:
            if not isinstance(obj, dict):
                raise _Bad(
                    f"the line is {_a(obj)}, not a JSON object",
                    "write one request per line as a JSON object"
                    + (
                        "; a JSON array of requests becomes one element per line"
                        if isinstance(obj, list)
                        else ""
                    ),
                )
            if self.template is not None:
                custom_id = _row_id(obj, number)
                return self._templated(source, number, custom_id, obj)
            if _BATCH_KEYS.isdisjoint(obj):
                custom_id = str(number)
                url = _infer_url(obj)
                body = obj
            else:
                custom_id = _batch_id(obj)
                url, body = _batch_request(obj)
            return self._line(source, number, custom_id, url, body)
        except _Bad as bad:
            return InputProblem(source, number, bad.what, bad.fix, custom_id)

    def from_row(self, source: str, number: int, row: dict[str, str]) -> Line | InputProblem:
        custom_id: str | None = None
        try:
            custom_id = _row_id(row, number)
            return self._templated(source, number, custom_id, row)
        except _Bad as bad:
            return InputProblem(source, number, bad.what, bad.fix, custom_id)

    def _templated(self, source: str, number: int, custom_id: str, row: Mapping[str, Any]) -> Line:
        assert self.template is not None
        blank = 0
        for name in self.fields:
            value = row.get(name, "")
            # A missing value would be sent as its text ("Classify: None"): a request paid for that asks nothing
            # (a DataFrame's NaN is written as null too). An empty text is a value, unless every field the
            # template sends is empty.
            if value is None:
                raise _Bad(
                    f'the row\'s field "{name}" is null',
                    f"fill it (the template sends {{{name}}}), or leave the row out",
                )
            blank += isinstance(value, str) and name in row and not value.strip()
        if self.fields and blank == len(self.fields):
            names = ", ".join(f'"{n}"' for n in self.fields)
            raise _Bad(
                f"every field the template sends is empty in this row ({names})",
                "fill them, or leave the row out: the prompt would hold the template's own text only",
            )
        try:
            text = self.template.format_map(row)
        except KeyError as exc:
            raise _Bad(
                f'the row has no field "{exc.args[0]}"',
                f"the template names {{{exc.args[0]}}}; this row's fields are: {_names(row)}",
            ) from None
        except (IndexError, AttributeError, TypeError, ValueError) as exc:
            raise _Bad(
                f"the template cannot be filled from this row: {exc}",
                f"check the template's fields and formats against this row's fields: {_names(row)}",
            ) from None
        body = {"model": self.model, "messages": [{"role": "user", "content": text}], **self.params}
        return self._line(source, number, custom_id, _URL_OF["chat"], body)

    def _line(self, source: str, number: int, custom_id: str, url: str, body: dict[str, Any]) -> Line:
        if self.template is None and self.defaults:
            body = {**self.defaults, **body}
        _check_body(url, body)
        return Line(custom_id, url, body, number, source, line_key(url, body))


def _template_fields(template: str) -> tuple[str, ...]:
    """The top-level names a template reads; ValueError for a template that could never be filled by name."""
    names: list[str] = []
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ValueError(
            f"the template {template!r} is malformed: {exc} (write a literal brace as {{{{ or }}}})"
        ) from None
    for _, field, _, conversion in parsed:
        if field is None:
            continue
        name = re.split(r"[.\[]", field, maxsplit=1)[0]
        if not name or name.isdigit():
            raise ValueError(
                f"the template {template!r} has a positional field {{{field}}}: name a column, e.g. {{text}}"
            )
        if conversion not in (None, "r", "s", "a"):
            raise ValueError(
                f"the template's field {{{field}!{conversion}}} has an unknown conversion: use !r, !s or !a"
            )
        if name not in names:
            names.append(name)
    return tuple(names)


def _batch_id(obj: dict[str, Any]) -> str:
    if "custom_id" not in obj:
        raise _Bad(
            "the line has no custom_id",
            'add "custom_id": a string naming this request, different on every line',
        )
    return _id_value(obj["custom_id"], "custom_id")


def _batch_request(obj: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    method = obj.get("method", "POST")
    if not isinstance(method, str) or method.upper() != "POST":
        raise _Bad(
            f"method is {_shown(method)}, not POST", 'every batch request is a POST: write "method": "POST"'
        )
    if "url" not in obj:
        raise _Bad("the line has no url", f'add "url": one of {_KNOWN_URLS}')
    url = _normal_url(obj["url"])
    if "body" not in obj:
        bare = [key for key in ("messages", "input", "prompt") if key in obj]
        raise _Bad(
            "the line has no body",
            f'put the request under "body" (this line has {", ".join(bare)} beside custom_id): {_BATCH_EXAMPLE}'
            if bare
            else f'add "body": the request body, e.g. {_BATCH_EXAMPLE}',
        )
    body = obj["body"]
    if not isinstance(body, dict):
        raise _Bad(
            f"body is {_a(body)}, not a JSON object",
            "make body the request's JSON object, not a string of it",
        )
    return url, body


def _normal_url(url: Any) -> str:
    if not isinstance(url, str):
        raise _Bad(f"url is {_a(url)}, not a string", f"use one of {_KNOWN_URLS}")
    known = _URLS.get(url) or _URLS.get(url.rstrip("/"))
    if known is not None:
        return known
    if "://" in url:
        raise _Bad(
            f"unknown url {_shown(url)}", f"write the path only, without the host: one of {_KNOWN_URLS}"
        )
    raise _Bad(f"unknown url {_shown(url)}", f"use one of {_KNOWN_URLS}")


def infer_url(body: Mapping[str, Any]) -> str | None:
    """The url a request body goes to (``/v1/chat/completions`` for messages...), or ``None`` when it could go to
    more than one or to none (the check of a line without a url then says so).

    >>> infer_url({"model": "omni-moderation-latest", "input": "hi"}), infer_url({"model": "m", "prompt": "a cat"})
    ('/v1/moderations', '/v1/images/generations')
    """
    try:
        return _infer_url(dict(body))
    except _Bad:
        return None


def _infer_url(body: dict[str, Any]) -> str:
    kinds: list[Kind] = []
    if "messages" in body:
        kinds.append("chat")
    if "input" in body:
        if "messages" not in body and "prompt" not in body and GENERATION_KEYS.intersection(body):
            return _RESPONSES
        model = body.get("model")
        if (
            "messages" not in body
            and "prompt" not in body
            and isinstance(model, str)
            and "moderation" in model
        ):
            return _MODERATIONS  # omni-moderation-latest, text-moderation-stable...
        kinds.append("embedding")
    if "prompt" in body and "messages" not in body:
        kinds.append("image")
    if kinds == ["image"] and "images" in body:
        return _IMAGE_EDITS  # a prompt and the pictures to edit
    if len(kinds) == 1:
        return _URL_OF[kinds[0]]
    if kinds:
        keys = " and ".join(k for k in ("messages", "input", "prompt") if k in body)
        raise _Bad(
            f"the body has {keys}: it could go to more than one url",
            f"use the Batch shape, which names the url: {_BATCH_EXAMPLE}",
        )
    raise _Bad(
        f"the line is neither a Batch line nor a request body (its keys: {_names(body)})",
        f"use the Batch shape, {_BATCH_EXAMPLE}, or a chat body with messages",
    )


def _row_id(row: Mapping[str, Any], number: int) -> str:
    for column in _ID_COLUMNS:
        if column in row:
            return _id_value(row[column], column)
    return str(number)


def _id_value(value: Any, name: str) -> str:
    if isinstance(value, str):
        if value.strip():
            return value
        raise _Bad(
            f"{name} is {'empty' if not value else 'blank'}",
            f"give the line a {name}, different on every line",
        )
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise _Bad(
        f"{name} is {_a(value)}, not a string",
        f'write it as a string, e.g. "{name}": "request-1"',
    )


_NO_STREAM = 'a batch reads each answer whole: remove "stream" from the body (or set it to false)'

# What each endpoint's body needs before it is worth sending: the keys it must have, checked in this order, and
# how to write each.
_REQUIRED: Mapping[Kind, tuple[str, ...]] = {
    "chat": ("model", "messages"),
    "embedding": ("model", "input"),
    "image": ("model", "prompt"),
    "video": ("prompt",),  # the videos API picks a model when none is named
    "moderation": ("model", "input"),
}
_REQUIRED_AT: Mapping[str, tuple[str, ...]] = {
    _RESPONSES: ("model", "input"),
    _COMPLETIONS: ("model", "prompt"),
    _IMAGE_EDITS: ("model", "prompt", "images"),
}
_ADD: Mapping[str, str] = {
    "model": '"model": "<model name>" (or give a default model)',
    "messages": '"messages": [{"role": "user", "content": "..."}]',
    "input": '"input": the text to embed',
    "prompt": '"prompt": the text that describes the image',
}
_ADD_AT: Mapping[str, Mapping[str, str]] = {
    _RESPONSES: {"input": '"input": the prompt, a string or a list of messages'},
    _COMPLETIONS: {"prompt": '"prompt": the text to complete'},
    _MODERATIONS: {
        "model": '"model": "omni-moderation-latest" (or give a default model)',
        "input": '"input": the text to check, a list of texts, or text and image parts',
    },
    _IMAGE_EDITS: {
        "prompt": '"prompt": the edit to make',
        "images": '"images": [{"image_url": "https://..."}] (or {"file_id": "file-..."}), the pictures to edit',
    },
}


def _check_body(url: str, body: dict[str, Any]) -> None:
    kind = ENDPOINTS[url]
    required = _REQUIRED_AT.get(url) or _REQUIRED[kind]
    for key in required:
        if body.get(key) is None:
            missing = [k for k in required if body.get(k) is None]
            how = {**_ADD, **_ADD_AT.get(url, {})}
            raise _Bad(
                "the body has no " + " and no ".join(f'"{k}"' for k in missing),
                "add " + " and ".join(how[k] for k in missing),
            )
    model = body.get("model")
    if model is not None and not (isinstance(model, str) and model.strip()):
        raise _Bad(f"model is {_a(model)}", 'name the model as a string, e.g. "model": "gpt-4o-mini"')
    stream = body.get("stream")
    if stream is not None and stream is not False:
        # Sent as it is, it came back as server-sent events, read as an invalid answer and retried: OpenAI's Batch
        # API refuses such a line too.
        raise _Bad(f"stream is {_a(stream)}", _NO_STREAM)
    if url == _RESPONSES:
        _check_responses(body)
    elif url == _COMPLETIONS:
        prompt = body["prompt"]
        if not (isinstance(prompt, str | list) and prompt):
            raise _Bad(f"prompt is {_a(prompt)}", "make prompt the text to complete (or a list of texts)")
    elif kind == "chat":
        _check_messages(body["messages"])
    elif kind == "moderation":
        _check_moderation(body["input"])
    elif kind == "embedding":
        given = body["input"]
        if not isinstance(given, str | list):
            raise _Bad(f"input is {_a(given)}", "make input a string or a list of strings")
        if not given:
            raise _Bad(f"input is {_a(given)}", "give input the text to embed")
    else:
        prompt = body["prompt"]
        if not (isinstance(prompt, str) and prompt.strip()):
            raise _Bad(f"prompt is {_a(prompt)}", "make prompt a non-empty string")
        if url == _IMAGE_EDITS:
            _check_edits(body)
    if url != _IMAGE_EDITS and body.get("images") is not None and kind == "image":
        raise _Bad(
            "the body names pictures to edit (images) but goes to " + url,
            f'send it to {_IMAGE_EDITS} ("url": "{_IMAGE_EDITS}")',
        )


_MODERATION_PART = (
    '{"type": "text", "text": "..."} or {"type": "image_url", "image_url": {"url": "https://..."}}'
)


def _check_moderation(given: Any) -> None:
    """A moderation's ``input``: a text, a list of texts, or a list of parts (text and image URLs)."""
    if isinstance(given, str):
        if not given.strip():
            raise _Bad(f"input is {_a(given)}", "give input the text to check")
        return
    if not isinstance(given, list) or not given:
        raise _Bad(
            f"input is {_a(given)}",
            f"make input a text, a list of texts, or a list of parts: {_MODERATION_PART}",
        )
    texts = isinstance(given[0], str)  # a list of texts, or the parts of one input: not both
    for i, item in enumerate(given):
        if texts:
            if not isinstance(item, str):
                raise _Bad(f"input[{i}] is {_a(item)} in a list of texts", "make every item a text")
            continue
        if not isinstance(item, dict):
            raise _Bad(
                f"input[{i}] is {_a(item)} in a list of parts",
                f"write each item as a part: {_MODERATION_PART}",
            )
        kind = item.get("type")
        if kind == "text":
            ok = isinstance(item.get("text"), str)
        elif kind == "image_url":
            url = item.get("image_url")
            ok = isinstance(url, dict) and isinstance(url.get("url"), str) and bool(url["url"].strip())
        else:
            raise _Bad(f"input[{i}] is a part of no known type", f"write each part as {_MODERATION_PART}")
        if not ok:
            article = "an" if kind == "image_url" else "a"
            raise _Bad(
                f"input[{i}] is {article} {kind} part without its {kind}", f"write it as {_MODERATION_PART}"
            )


# The most pictures an edit takes (OpenAI's GPT image models).
_MOST_EDITED = 16
_IMAGE_REF = '{"image_url": "https://..."} or {"file_id": "file-..."}'


def _check_edits(body: dict[str, Any]) -> None:
    """An images edit in the JSON form a batch line carries: ``images``, a list of 1 to 16 references (a URL,
    a data URL or an uploaded file's id), and an optional ``mask`` of the same form. The multipart form's
    files (``image``, ``image[]``) cannot be written in a JSON line."""
    for name in ("image", "image[]"):
        if name in body:
            raise _Bad(
                f'the body has "{name}", the multipart form\'s file field, which a JSON line cannot carry',
                f'name the pictures in "images": [{_IMAGE_REF}]',
            )
    images = body["images"]
    if not isinstance(images, list) or not images:
        raise _Bad(
            f"images is {_a(images)}", f"make images a list of 1 to {_MOST_EDITED} pictures: [{_IMAGE_REF}]"
        )
    if len(images) > _MOST_EDITED:
        raise _Bad(f"images lists {len(images)} pictures", f"edit at most {_MOST_EDITED} at once")
    for i, ref in enumerate(images):
        _check_image_ref(f"images[{i}]", ref)
    mask = body.get("mask")
    if mask is not None:
        _check_image_ref("mask", mask)


def _check_image_ref(where: str, ref: Any) -> None:
    if not isinstance(ref, dict):
        raise _Bad(f"{where} is {_a(ref)}, not an object", f"write it as {_IMAGE_REF}")
    given = [k for k in ("image_url", "file_id") if ref.get(k) is not None]
    if len(given) != 1:
        raise _Bad(
            f"{where} has {'both image_url and file_id' if given else 'no image_url and no file_id'}",
            f"write it as {_IMAGE_REF}",
        )
    value = ref[given[0]]
    if not (isinstance(value, str) and value.strip()):
        raise _Bad(
            f"{where}.{given[0]} is {_a(value)}",
            "give the picture's URL (or data URL) or file id as a string",
        )


def _check_responses(body: dict[str, Any]) -> None:
    given = body["input"]
    if isinstance(given, str):
        if not given.strip():
            raise _Bad(f"input is {_a(given)}", "give input the prompt")
    elif isinstance(given, list):
        if not given:
            raise _Bad(
                "input is an empty list", 'give at least one item, e.g. {"role": "user", "content": "..."}'
            )
        for i, item in enumerate(given):
            if not isinstance(item, dict):
                raise _Bad(
                    f"input[{i}] is {_a(item)}, not an object",
                    'write each item as {"role": ..., "content": ...} (or a typed item such as a function_call_output)',
                )
    else:
        raise _Bad(f"input is {_a(given)}", "make input the prompt: a string or a list of messages")
    background = body.get("background")
    if background is not None and background is not False:
        # Answered at once with status "queued": the answer itself would have to be fetched later.
        raise _Bad(
            f"background is {_a(background)}",
            'a batch reads each answer whole: remove "background" from the body (or set it to false)',
        )


def _check_messages(messages: Any) -> None:
    if not isinstance(messages, list):
        raise _Bad(f"messages is {_a(messages)}, not a list", f"write {_ADD['messages']}")
    if not messages:
        raise _Bad(
            "messages is an empty list", 'give at least one message, e.g. {"role": "user", "content": "..."}'
        )
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise _Bad(
                f"messages[{i}] is {_a(message)}, not an object",
                'write each message as {"role": ..., "content": ...}',
            )
        role = message.get("role")
        if not (isinstance(role, str) and role):
            raise _Bad(
                f"messages[{i}] has no role" if role is None else f"messages[{i}].role is {_a(role)}",
                'give every message a "role": "system", "user", "assistant" or "tool"',
            )


def _a(value: Any) -> str:
    """A value's JSON type in words, for a message: 'a string', 'null', 'an empty string'."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return "an empty string" if not value else "a blank string" if not value.strip() else "a string"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, list):
        return "an empty list" if not value else "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _shown(value: Any, limit: int = 60) -> str:
    text = orjson.dumps(value).decode() if isinstance(value, str) else _a(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _names(row: Mapping[str, Any]) -> str:
    names = ", ".join(f'"{key}"' for key in list(row)[:20])
    return (names + (", ..." if len(row) > 20 else "")) or "(none)"


# -- the two formats -------------------------------------------------------------------------------------


def _read_json(source: str, rows: _Rows) -> Iterator[Line | InputProblem]:
    with open(source, "rb") as file:
        for number, raw in enumerate(file, 1):
            if number == 1 and raw.startswith(_BOM):
                raw = raw[len(_BOM) :]
            if not raw.strip(_JSON_SPACE):
                continue
            try:
                obj = orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                yield _broken_json(source, number, raw, exc)
                continue
            yield rows.from_object(source, number, obj)


def _broken_json(source: str, number: int, raw: bytes, exc: orjson.JSONDecodeError) -> InputProblem:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as bad:
        return _not_utf8(source, number, raw, bad.start)
    # orjson counts the line's own line ending as a new line: parse the line without it to get the column.
    try:
        orjson.loads(raw.rstrip(_JSON_SPACE))
    except orjson.JSONDecodeError as bare:
        exc = bare
    if raw.strip(_JSON_SPACE) in _DOCUMENT_EDGES:
        fix = "the file looks like one JSON document over many lines: write each request as one JSON object on one line (JSON Lines)"
    else:
        fix = "fix the JSON: each line holds one whole JSON object"
    return InputProblem(source, number, f"not valid JSON at column {exc.pos + 1}: {exc.msg}", fix)


def _not_utf8(source: str, line: int, raw: bytes, start: int) -> InputProblem:
    return InputProblem(
        source,
        line,
        # What comes before the first bad byte decodes, so the column counts characters, as an editor does.
        f"not valid UTF-8: byte 0x{raw[start]:02x} at column {len(raw[:start].decode()) + 1}",
        "save the file as UTF-8",
    )


def _read_table(source: str, delimiter: str, rows: _Rows) -> Iterator[Line | InputProblem]:
    # Lines that were not UTF-8, by line number, with the offset of the first bad byte: decoded leniently so
    # csv can find where the row ends, then the row that holds them becomes a problem.
    bad_lines: dict[int, tuple[bytes, int]] = {}

    def text(file: IO[bytes]) -> Iterator[str]:
        for number, raw in enumerate(file, 1):
            if number == 1 and raw.startswith(_BOM):
                raw = raw[len(_BOM) :]
            try:
                yield raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                bad_lines[number] = (raw, exc.start)
                yield raw.decode("utf-8", "surrogateescape")

    tsv = delimiter == "\t"
    fix_ragged = (
        "a TSV field holds no tab: replace tabs inside a value, or save the table as CSV"
        if tsv
        else 'quote a value that holds a comma, a quote or a newline: "like, this" (a quote inside is "")'
    )
    with open(source, "rb") as file:
        reader = csv.reader(
            text(file), delimiter=delimiter, strict=True, quoting=csv.QUOTE_NONE if tsv else csv.QUOTE_MINIMAL
        )
        header: list[str] | None = None
        end = 0
        while True:
            start = end + 1
            try:
                row = next(reader)
                error: str | None = None
            except StopIteration:
                return
            except csv.Error as exc:
                row, error = [], str(exc)
            end = reader.line_num
            if bad_lines:
                first = min(bad_lines)
                raw, offset = bad_lines[first]
                bad_lines.clear()
                yield _not_utf8(source, first, raw, offset)
                continue
            if error is not None:
                yield InputProblem(
                    source, start, f"not a valid {'TSV' if tsv else 'CSV'} row: {error}", fix_ragged
                )
                continue
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if header is None:
                header = [name.strip() for name in row]
                problem = _header_problem(source, start, header, rows.fields)
                if problem is not None:
                    yield problem
                    return
                continue
            if len(row) != len(header):
                yield InputProblem(
                    source, start, f"the row has {len(row)} fields, the header has {len(header)}", fix_ragged
                )
                continue
            yield rows.from_row(source, start, dict(zip(header, row, strict=True)))


def _header_problem(
    source: str, line: int, header: list[str], fields: tuple[str, ...]
) -> InputProblem | None:
    """A header the rows cannot be read by ends the file: every row would have the same problem."""
    twice = sorted({name for name in header if header.count(name) > 1})
    if twice:
        return InputProblem(
            source,
            line,
            f"the header names {_names(dict.fromkeys(twice))} twice",
            "give every column its own name",
        )
    missing = [name for name in fields if name not in header]
    if missing:
        return InputProblem(
            source,
            line,
            "the header has no column "
            + " and no ".join(f'"{name}"' for name in missing)
            + f" (its columns: {_names(dict.fromkeys(header))})",
            "the first line must be a header naming the columns the template uses: add it, or fix the template",
        )
    return None
