"""Ray Data: send every row of a dataset through genguard, with the outcome of each as columns.

For data that already is a :class:`ray.data.Dataset`. :class:`GenguardUDF` is a callable class for
``ds.map_batches``: each actor holds one :class:`~genguard.AsyncClient`, sends the rows of a batch
concurrently with genguard's retry policy (Retry-After obeyed, only what can succeed retried), and returns the
batch with columns added: ``ok``, ``code``, ``kind``, ``text``, ``attempts``, ``cause``, ``fix``, usage and
cost (see :data:`OUTPUT_COLUMNS`). A bad row never fails the dataset: a request that fails, and a row whose
input cannot make a request, both come back as a named failure in the row's columns. Only a setting that would
fail every row the same way (a missing API key, an unknown option) raises.

Two options make it fit for paid work at scale:

- ``journal``: a genguard batch journal (a SQLite file now; any :class:`~genguard.bulk.journal.Journal`
  through a factory). Rows that ended in an earlier run come back from the journal without being sent, so a
  re-run of a failed pipeline pays for nothing twice; each ended row is recorded as it ends.
- ``gate`` / ``limiter``: where every attempt of every actor asks leave to go, so that all actors share one
  rate budget instead of each running at its own pace.

:func:`map_requests` checks the options in the driver (so a wrong one fails before any actor starts) and calls
``map_batches`` with settings fit for I/O (actors at ``num_cpus=0``).

>>> from genguard import RetryPolicy
>>> udf = GenguardUDF(base_url="http://127.0.0.1:9/v1", api_key="sk-test", model="m",
...                   retry=RetryPolicy(max_attempts=1))
>>> out = udf({"prompt": ["hi", None]})  # a batch as a dict of columns (batch_format="numpy")
>>> [bool(v) for v in out["ok"]], list(out["code"])
([False, False], ['connection_error', 'invalid_input'])
>>> udf.close()
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import os
import socket
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import orjson

from ..client.clients import AsyncClient
from ..client.gate import Gate
from ..client.retry import RetryPolicy
from ..core.exceptions import ConfigError
from ..core.outcome import Outcome
from ..core.secrets import MIN_SECRET

if TYPE_CHECKING:
    from ..bulk.journal import Journal
    from ..bulk.model import Ended, Line

__all__ = ["OUTPUT_COLUMNS", "GenguardUDF", "map_requests", "resolve_journal", "resolve_limiter"]

ColumnType = Literal["bool", "str", "int", "float"]

OUTPUT_COLUMNS: tuple[tuple[str, ColumnType], ...] = (
    ("ok", "bool"),
    ("code", "str"),
    ("kind", "str"),
    ("retryable", "bool"),
    ("status", "int"),
    ("message", "str"),
    ("text", "str"),
    ("finish_reason", "str"),
    ("attempts", "int"),
    ("cause", "str"),
    ("fix", "str"),
    ("prompt_tokens", "int"),
    ("completion_tokens", "int"),
    ("total_tokens", "int"),
    ("cost_usd", "float"),
    ("request_id", "str"),
    ("from_journal", "bool"),
)
"""The columns every batch gets (after ``prefix``), with their types; ``response`` (the provider's JSON body as
text) is added when ``keep_response=True``. ``from_journal`` says the row was not sent now: its outcome is the
one an earlier run recorded (``attempts``, usage and cost are that run's)."""

_URLS = {
    "/v1/chat/completions": "chat",
    "/v1/embeddings": "embedding",
    "/v1/images/generations": "image",
}
_SOURCE = "ray dataset"
_LOCKED_TRIES = 50  # opening one SQLite file from many actors at once: each waits its turn (~5 s at most)
_CLIENTS_KEPT = 16  # distinct per-row header sets that keep a client of their own in an actor

T = TypeVar("T")

JournalSpec = str | os.PathLike[str] | Callable[[], "Journal"]
"""A SQLite journal's path, a ``postgresql://`` URL, or a zero-argument callable that opens a Journal."""


# -- resolving the journal and the limiter ----------------------------------------------------------------


def resolve_journal(spec: JournalSpec) -> Callable[[], Journal]:
    """The factory that opens the journal ``spec`` names, in whichever process calls it.

    A path is a SQLite journal (one machine: every actor must see the same file); a ``postgresql://`` or
    ``postgres://`` URL is the PostgreSQL journal, for actors on several machines; a callable is used as it is.

    >>> resolve_journal(42)
    Traceback (most recent call last):
    ...
    genguard.core.exceptions.ConfigError: journal=42 is not a journal: give a SQLite file's path, a postgresql:// URL, or a callable that opens a Journal
    """
    if callable(spec):
        return spec
    if isinstance(spec, str) and spec.startswith(("postgresql://", "postgres://")):
        return _postgres_journal(spec)
    if isinstance(spec, str | os.PathLike):
        path = Path(spec)
        if not path.parent.is_dir():
            raise ConfigError(
                f"journal={str(spec)!r}: the folder {str(path.parent)!r} does not exist; create it, or give a "
                "path in a folder that exists (every actor must be able to open this file)"
            )
        return _SQLiteOpener(str(path.absolute()))
    raise ConfigError(
        f"journal={spec!r} is not a journal: give a SQLite file's path, a postgresql:// URL, or a callable "
        "that opens a Journal"
    )


def _postgres_journal(url: str) -> Callable[[], Journal]:
    try:
        module = importlib.import_module("genguard.bulk.journal_pg")
    except ImportError:
        raise ConfigError(
            "journal='postgresql://...' needs genguard's PostgreSQL journal (genguard.bulk.journal_pg), which "
            "this install does not have; give a SQLite file's path (one machine), or a callable that opens "
            "your Journal"
        ) from None
    from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

    parts = urlsplit(url)
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    run = next((v for k, v in pairs if k == "run"), "")
    if not run:
        raise ConfigError(
            f"journal={module.masked_url(url)!r}: a PostgreSQL journal holds many runs; name this pipeline's "
            "with ?run=NAME in the URL (postgresql://HOST/DB?run=reviews), the same on every re-run"
        )
    rest = urlunsplit(parts._replace(query=urlencode([(k, v) for k, v in pairs if k != "run"])))
    return _PostgresOpener(rest, run)


@dataclass(frozen=True, slots=True)
class _PostgresOpener:
    """Opens one run of a PostgreSQL journal; a plain value, so that Ray can send it to every actor."""

    url: str
    run: str

    def __call__(self) -> Journal:
        from ..bulk.journals import open_journal

        return open_journal(self.url, run=self.run, place=f"ray:{socket.gethostname()}:{os.getpid()}")


GateFactory = Callable[[], "Gate | Awaitable[Gate]"]
"""What ``gate=`` takes: a zero-argument callable that builds the Gate (or a coroutine that does) in each actor."""


def resolve_limiter(url: str, *, base_url: str | None = None, api_key: str | None = None) -> GateFactory:
    """The factory of the shared gate that ``limiter`` names: a ``redis://`` (or ``rediss://``) URL is the
    Redis limiter that every actor, on every machine, draws from.

    >>> resolve_limiter("http://x")
    Traceback (most recent call last):
    ...
    genguard.core.exceptions.ConfigError: limiter='http://x' is not a limiter URL: give redis://HOST:PORT/DB (or rediss://), or pass gate= a callable that builds a genguard.Gate
    """
    if not isinstance(url, str) or not url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError(
            f"limiter={url!r} is not a limiter URL: give redis://HOST:PORT/DB (or rediss://), or pass gate= a "
            "callable that builds a genguard.Gate"
        )
    try:
        module = importlib.import_module("genguard.bulk.limiter_redis")
    except ImportError:
        raise ConfigError(
            "limiter='redis://...' needs genguard's Redis limiter (genguard.bulk.limiter_redis), which this "
            "install does not have; pass gate= a zero-argument callable that builds a genguard.Gate instead"
        ) from None
    from ..bulk.limiter import ModelGates, PacedGate

    build: Callable[..., Awaitable[PacedGate]] = module.open_gate

    async def factory() -> ModelGates:
        # The budget's default name is the provider's URL and key (a limit belongs to a key), and a model whose
        # answers state limits of its own gets one of its own, as in genguard batch. The shared one is opened
        # now: Redis answers.
        gates = ModelGates(lambda model: build(url, base_url=base_url, api_key=api_key, model=model))
        await gates.open(None)
        return gates

    return factory


@dataclass(frozen=True, slots=True)
class _SQLiteOpener:
    """Opens one SQLite journal; a plain value, so that Ray can send it to every actor."""

    path: str

    def __call__(self) -> Journal:
        from ..bulk.journal import SQLiteJournal

        for attempt in range(_LOCKED_TRIES):
            try:
                return SQLiteJournal(self.path)
            except sqlite3.OperationalError as exc:
                # Actors starting together race to switch a new file to WAL; the loser is told "locked".
                if "locked" not in str(exc) or attempt == _LOCKED_TRIES - 1:
                    raise
                time.sleep(0.1)
        raise AssertionError("unreachable")


# -- the options ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Options:
    base_url: str | None
    api_key: str | Sequence[str] | None
    model: str | None
    params: Mapping[str, Any]
    url: str
    body_column: str | None
    messages_column: str | None
    prompt_column: str | None
    id_column: str
    headers_column: str | None
    journal: Callable[[], Journal] | None
    rerun_changed: bool
    gate: GateFactory | None
    concurrency: int
    timeout: float
    retry: RetryPolicy | None
    fallbacks: tuple[str, ...]
    validate: Any
    keep_response: bool
    prefix: str


def _options(
    *,
    base_url: str | None = None,
    api_key: str | Sequence[str] | None = None,
    model: str | None = None,
    params: Mapping[str, Any] | None = None,
    url: str = "/v1/chat/completions",
    body_column: str | None = None,
    messages_column: str | None = None,
    prompt_column: str | None = None,
    id_column: str = "custom_id",
    headers_column: str | None = None,
    journal: JournalSpec | None = None,
    rerun_changed: bool = False,
    gate: GateFactory | None = None,
    limiter: str | None = None,
    concurrency: int = 32,
    timeout: float = 120.0,
    retry: RetryPolicy | None = None,
    fallbacks: Sequence[str] = (),
    validate: Any = None,
    keep_response: bool = False,
    prefix: str = "",
) -> _Options:
    normal = url if url.startswith("/v1/") else "/v1" + url if url.startswith("/") else url
    if normal.rstrip("/") not in _URLS:
        raise ConfigError(f"url={url!r}: the Ray adapter sends to one of {', '.join(_URLS)}")
    if params is not None:
        try:
            orjson.dumps(params)
        except TypeError as exc:
            raise ConfigError(f"params must be JSON values: {exc}") from None
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise ConfigError(f"concurrency must be a whole number of at least 1, got {concurrency!r}")
    if gate is not None and limiter is not None:
        raise ConfigError("give gate= or limiter=, not both: they name the same shared budget")
    if gate is not None and not callable(gate):
        raise ConfigError(
            f"gate={gate!r} is not callable: give a zero-argument callable that builds the Gate in each actor "
            "(a Gate holds locks and connections, which cannot travel to another process)"
        )
    for name, value in (
        ("body_column", body_column),
        ("messages_column", messages_column),
        ("prompt_column", prompt_column),
        ("id_column", id_column),
        ("headers_column", headers_column),
    ):
        if value is not None and (not isinstance(value, str) or not value):
            raise ConfigError(f"{name} must be a column name, got {value!r}")
    if not isinstance(prefix, str):
        raise ConfigError(f"prefix must be a string, got {prefix!r}")
    return _Options(
        base_url=base_url,
        api_key=api_key,
        model=model,
        params=dict(params or {}),
        url=normal.rstrip("/"),
        body_column=body_column,
        messages_column=messages_column,
        prompt_column=prompt_column,
        id_column=id_column,
        headers_column=headers_column,
        journal=None if journal is None else resolve_journal(journal),
        rerun_changed=bool(rerun_changed),
        gate=gate
        if limiter is None
        else resolve_limiter(limiter, base_url=base_url, api_key=_first_key(api_key)),
        concurrency=concurrency,
        timeout=float(timeout),
        retry=retry,
        fallbacks=tuple(fallbacks),
        validate=validate,
        keep_response=bool(keep_response),
        prefix=prefix,
    )


# -- the callable class -----------------------------------------------------------------------------------


class GenguardUDF:
    """A ``map_batches`` callable class: one :class:`~genguard.AsyncClient` per actor, every row of a batch
    sent concurrently, each row's outcome added as columns (:data:`OUTPUT_COLUMNS`, after ``prefix``).

    Each row's request is, in this order of preference: the JSON body in ``body_column`` (a dict or a JSON
    string; default column ``body``); else ``{"model": model, "messages": row[messages_column], **params}``
    (default column ``messages``); else a user message of ``row[prompt_column]`` (default ``prompt``). A body
    lacking ``model`` or a key of ``params`` gets it. The row's ``id_column`` (default ``custom_id``) names it
    in the journal; ``headers_column`` may hold extra HTTP headers per row (a dict or JSON object).

    ``journal`` (path or factory) skips rows already ended and records each row as it ends; ``gate`` (a
    zero-argument callable building a :class:`~genguard.Gate` in the actor) or ``limiter`` (a ``redis://``
    URL) is the rate budget all actors share. ``concurrency`` is the most calls one actor has on the wire.
    ``api_key`` defaults to ``GENGUARD_API_KEY`` / ``OPENAI_API_KEY`` in the actor's environment: a key given
    here travels through Ray's object store with the other constructor arguments.

    >>> import ray  # doctest: +SKIP
    >>> ds = ray.data.from_items([{"custom_id": "a", "prompt": "Hi"}])  # doctest: +SKIP
    >>> out = ds.map_batches(GenguardUDF, fn_constructor_kwargs={"base_url": url, "model": "gpt-4o-mini"},
    ...                      batch_format="pyarrow", num_cpus=0, compute=ray.data.ActorPoolStrategy(size=2))  # doctest: +SKIP
    """

    def __init__(
        self,
        *,
        base_url: str | None = None,
        api_key: str | Sequence[str] | None = None,
        model: str | None = None,
        params: Mapping[str, Any] | None = None,
        url: str = "/v1/chat/completions",
        body_column: str | None = None,
        messages_column: str | None = None,
        prompt_column: str | None = None,
        id_column: str = "custom_id",
        headers_column: str | None = None,
        journal: JournalSpec | None = None,
        rerun_changed: bool = False,
        gate: GateFactory | None = None,
        limiter: str | None = None,
        concurrency: int = 32,
        timeout: float = 120.0,
        retry: RetryPolicy | None = None,
        fallbacks: Sequence[str] = (),
        validate: Any = None,
        keep_response: bool = False,
        prefix: str = "",
    ) -> None:
        self._opts = _options(
            base_url=base_url,
            api_key=api_key,
            model=model,
            params=params,
            url=url,
            body_column=body_column,
            messages_column=messages_column,
            prompt_column=prompt_column,
            id_column=id_column,
            headers_column=headers_column,
            journal=journal,
            rerun_changed=rerun_changed,
            gate=gate,
            limiter=limiter,
            concurrency=concurrency,
            timeout=timeout,
            retry=retry,
            fallbacks=fallbacks,
            validate=validate,
            keep_response=keep_response,
            prefix=prefix,
        )
        # The rows of a batch run on one event loop of the actor's own, in a thread, whatever thread Ray calls
        # from (a threaded actor may even call from several at once).
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="genguard-ray", daemon=True)
        self._thread.start()
        self._journal_lock = threading.Lock()
        self._worker = f"ray:{socket.gethostname()}:{os.getpid()}"
        self._gate: Gate | None = None
        self._clients: OrderedDict[tuple[tuple[str, str], ...], AsyncClient] = OrderedDict()
        self._closed = False
        try:
            self._run(self._start())
            self._journal = None if self._opts.journal is None else self._opts.journal()
        except BaseException:
            self.close()
            raise
        self._index = _EndedIndex()

    def _run(self, coro: Awaitable[T]) -> T:
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self._loop)  # type: ignore[arg-type]
        return future.result()

    async def _start(self) -> None:
        if self._opts.gate is not None:
            gate = self._opts.gate()
            if inspect.isawaitable(gate):
                gate = await gate
            if not isinstance(gate, Gate):
                raise ConfigError(
                    f"gate() built {gate!r}, which is not a genguard.Gate (it needs acquire(tokens) and observe(...))"
                )
            self._gate = gate
        self._client(())  # the first client: a missing API key or a bad base URL is told now, not per row

    def _client(self, headers: tuple[tuple[str, str], ...]) -> AsyncClient:
        client = self._clients.get(headers)
        if client is not None:
            self._clients.move_to_end(headers)
            return client
        o = self._opts
        client = AsyncClient(
            o.base_url,
            api_key=o.api_key,
            timeout=o.timeout,
            retry=o.retry,
            headers=dict(headers) or None,
            max_concurrency=o.concurrency,
            gate=self._gate,
        )
        self._clients[headers] = client
        if len(self._clients) > _CLIENTS_KEPT:
            _, old = self._clients.popitem(last=False)
            self._loop.create_task(old.aclose())
        return client

    def close(self) -> None:
        """Close the clients, the journal and the actor's event loop (Ray ends actors without asking; a
        script that calls the class itself should close it)."""
        if self._closed:
            return
        self._closed = True
        if self._loop.is_running():

            async def shut() -> None:
                for client in self._clients.values():
                    await client.aclose()
                close = getattr(self._gate, "aclose", None)  # a shared limiter's connection
                if close is not None:
                    await close()

            try:
                self._run(shut())
            finally:
                self._loop.call_soon_threadsafe(self._loop.stop)
                self._thread.join(timeout=5)
        journal = getattr(self, "_journal", None)
        if journal is not None:
            journal.close()

    # -- one batch --

    def __call__(self, batch: Any) -> Any:
        """The batch with the outcome columns added; the same format it came in (pandas, pyarrow, or a dict
        of numpy arrays)."""
        columns = _column_names(batch)
        o = self._opts
        taken = [name for name in self._output_names() if name in columns]
        if taken:
            raise ConfigError(
                f"the dataset already has the column {taken[0]!r}, which the outcome would overwrite: pass "
                "prefix='gg_' (or another) to name the outcome's columns apart"
            )
        rows = _rows(batch, columns, self._needed(columns))
        values = self._batch(rows, columns)
        return _with_columns(batch, values, self._output_types(), o.prefix)

    def _output_names(self) -> list[str]:
        return [name for name, _ in self._output_types()]

    def _output_types(self) -> list[tuple[str, ColumnType]]:
        types = list(OUTPUT_COLUMNS)
        if self._opts.keep_response:
            types.append(("response", "str"))
        return [(self._opts.prefix + name, kind) for name, kind in types]

    def _needed(self, columns: Sequence[str]) -> list[str]:
        o = self._opts
        wanted = [o.id_column, "url", o.headers_column, o.body_column, o.messages_column, o.prompt_column]
        wanted += ["body", "messages", "prompt"]
        return [c for c in dict.fromkeys(wanted) if c is not None and c in columns]

    def _batch(self, rows: list[dict[str, Any]], columns: Sequence[str]) -> list[dict[str, Any]]:
        o = self._opts
        source = self._source(columns)
        if o.journal is not None and o.id_column not in columns:
            raise ConfigError(
                f"a journal needs every row to have an id: the dataset has no column {o.id_column!r} (its "
                f"columns: {', '.join(columns)}); add one, or name yours with id_column="
            )
        out: list[dict[str, Any] | None] = [None] * len(rows)
        lines: list[tuple[int, Line, tuple[tuple[str, str], ...]]] = []
        for i, row in enumerate(rows):
            made = self._line(i, row, source)
            if isinstance(made, Outcome):
                out[i] = _values(made.to_dict(), None, from_journal=False)
            else:
                lines.append((i, *made))
        if self._journal is not None and lines:
            lines = self._from_journal(lines, out)
        if lines:
            sent = self._run(self._send_all(lines))
            self._record(lines, sent)
            for (i, _, _), (outcome, response, _) in zip(lines, sent, strict=True):
                out[i] = _values(outcome.to_dict(), response, from_journal=False)
        result = [v for v in out if v is not None]
        assert len(result) == len(rows)
        return result

    def _source(self, columns: Sequence[str]) -> tuple[str, str]:
        o = self._opts
        for kind, given, _default in (
            ("body", o.body_column, "body"),
            ("messages", o.messages_column, "messages"),
            ("prompt", o.prompt_column, "prompt"),
        ):
            if given is not None:
                if given not in columns:
                    raise ConfigError(
                        f"{kind}_column={given!r}: the dataset has no such column (its columns: "
                        f"{', '.join(columns)})"
                    )
                return kind, given
        for kind, default in (("body", "body"), ("messages", "messages"), ("prompt", "prompt")):
            if default in columns:
                return kind, default
        raise ConfigError(
            "the dataset has no column to build requests from: name one with body_column= (whole request "
            "bodies), messages_column= or prompt_column= (with model=); its columns: " + ", ".join(columns)
        )

    def _line(
        self, i: int, row: Mapping[str, Any], source: tuple[str, str]
    ) -> Outcome | tuple[Line, tuple[tuple[str, str], ...]]:
        """The row's request and headers, or its invalid_input outcome (in the batch runner's words)."""
        from ..bulk.inputs import _Rows
        from ..bulk.model import Line

        o = self._opts
        kind, column = source
        custom_id = row.get(o.id_column, f"row-{i + 1}")
        headers: tuple[tuple[str, str], ...] = ()
        if o.headers_column is not None:
            given = _headers(row.get(o.headers_column))
            if isinstance(given, str):
                return _invalid(f"{o.headers_column} {given}", "give a JSON object of header names to values")
            headers = given
        value = row.get(column)
        if kind == "body":
            if isinstance(value, str | bytes):
                try:
                    value = orjson.loads(value)
                except orjson.JSONDecodeError as exc:
                    return _invalid(
                        f"{column} is not JSON ({exc})", "give the request body as a JSON object or a dict"
                    )
            body = _no_nulls(value) if isinstance(value, dict) else value
        elif kind == "messages":
            messages = value
            if isinstance(messages, str):
                try:
                    messages = orjson.loads(messages)
                except orjson.JSONDecodeError:
                    pass
            if isinstance(messages, list):
                messages = [_no_nulls(m) if isinstance(m, dict) else m for m in messages]
            body = {"messages": messages}
        elif value is None or (isinstance(value, str) and not value.strip()):
            return _invalid(f"{column} is {'empty' if value == '' else 'blank' if value else 'null'}",
                            f"give every row a prompt in the column {column!r}")  # fmt: skip
        else:
            body = {
                "messages": [{"role": "user", "content": value if isinstance(value, str) else str(value)}]
            }
        url = row.get("url") if kind == "body" and isinstance(row.get("url"), str) else o.url
        # The batch runner's reader, so that a row is refused in the same words as a line of a batch file.
        made = _Rows(None, o.model, o.params).from_object(
            _SOURCE, i + 1, {"custom_id": custom_id, "url": url, "body": body}
        )
        if not isinstance(made, Line):
            what = made.what.replace("the line", "the row")
            return _invalid(what, made.fix)
        if made.url not in _URLS:
            return _invalid(f"url is {made.url!r}", f"the Ray adapter sends to one of {', '.join(_URLS)}")
        return made, headers

    # -- the journal --

    def _from_journal(
        self, lines: list[tuple[int, Line, tuple[tuple[str, str], ...]]], out: list[dict[str, Any] | None]
    ) -> list[tuple[int, Line, tuple[tuple[str, str], ...]]]:
        """Put the batch's rows in the journal; fill ``out`` for rows that ended before (and rows the journal
        refuses); the rows still to send."""
        journal = self._journal
        assert journal is not None
        with self._journal_lock:
            report = journal.load(
                [line for _, line, _ in lines],
                rerun_changed=self._opts.rerun_changed,
                max_problems=len(lines),
            )
            journal.commit()
            refused: dict[int, Outcome] = {}
            for p in report.duplicates:
                refused[p.line] = _invalid(
                    f"custom_id {p.custom_id!r} is repeated in this batch (first at row {_first_row(p.what)})",
                    "give every row its own id: only the first was sent",
                )
            for p in report.changed if not self._opts.rerun_changed else ():
                refused[p.line] = _invalid(
                    f"custom_id {p.custom_id!r} asks for another request than the one the journal holds for it "
                    "(its url or body changed since it was recorded)",
                    "pass rerun_changed=True to send the new request (the old answer is set aside), or use "
                    "another journal",
                )
            ended: dict[str, Ended] = {}
            if report.unchanged:
                ended = self._index.find(journal, {line.custom_id for _, line, _ in lines})
        left = []
        for i, line, headers in lines:
            if line.number in refused:
                out[i] = _values(refused[line.number].to_dict(), None, from_journal=False)
            elif line.custom_id in ended:
                e = ended[line.custom_id]
                out[i] = _values(
                    {**e.outcome, "cost_usd": e.extra.get("cost_usd")},
                    None if e.response is None else e.response.get("body"),
                    from_journal=True,
                )
            else:
                left.append((i, line, headers))
        return left

    def _record(
        self,
        lines: Sequence[tuple[int, Line, tuple[tuple[str, str], ...]]],
        sent: Sequence[tuple[Outcome, Any, float]],
    ) -> None:
        journal = self._journal
        if journal is None:
            return
        from ..bulk.journal import Result
        from ..bulk.runner import _RUN_STOPPERS

        results = []
        for (_, line, _), (outcome, body, latency) in zip(lines, sent, strict=True):
            if outcome.code in _RUN_STOPPERS:
                # Quota or keys: no answer worth keeping; a re-run (after the fix) sends the row again.
                continue
            response = (
                None
                if outcome.status is None and body is None
                else {"status_code": outcome.status, "request_id": outcome.request_id, "body": body}
            )
            cost = outcome.extra.get("cost_usd")
            results.append(
                Result(
                    line.custom_id,
                    line.key,
                    outcome,
                    response=response,
                    cost_usd=cost if isinstance(cost, float) else None,
                    latency_s=latency,
                    worker=self._worker,
                )
            )
        if results:
            with self._journal_lock:
                journal.record(results)

    # -- sending --

    async def _send_all(
        self, lines: Sequence[tuple[int, Line, tuple[tuple[str, str], ...]]]
    ) -> list[tuple[Outcome, Any, float]]:
        return await asyncio.gather(*(self._send(line, headers) for _, line, headers in lines))

    async def _send(self, line: Line, headers: tuple[tuple[str, str], ...]) -> tuple[Outcome, Any, float]:
        o = self._opts
        client = self._client(headers)
        start = time.monotonic()
        endpoint = _URLS[line.url]
        outcome, raw = await client.send_json(
            line.url.removeprefix("/v1"),
            line.body,
            endpoint=endpoint,  # type: ignore[arg-type]
            fallbacks=o.fallbacks,
            retry=o.retry,
            validate=o.validate if endpoint == "chat" else None,
        )
        latency = time.monotonic() - start
        secrets = tuple(k for k in client.keys if len(k) >= MIN_SECRET)
        if raw is not None and any(k.encode() in raw for k in secrets):
            from ..bulk.runner import _masked

            outcome, raw = _masked(outcome, raw, secrets)
        body: Any = None
        if raw is not None:
            try:
                body = orjson.loads(raw)
            except orjson.JSONDecodeError:
                body = raw.decode("utf-8", "replace")
        return outcome, body, latency


# -- the journal's ended rows, found by custom_id through the Journal protocol ------------------------------


class _EndedIndex:
    """Where each ended custom_id sits in the journal's commit order, learnt by tailing ``ended(after_seq)``.

    The protocol reads ended lines by commit order only, so each actor keeps the ``seq`` of every ended line it
    has seen (about 100 bytes a line) and reads a row's stored outcome back by a short scan from its ``seq``: a
    re-run in the same order finds a batch's rows together.
    """

    def __init__(self) -> None:
        self.after = 0
        self.seq_of: dict[str, int] = {}

    def find(self, journal: Journal, wanted: set[str]) -> dict[str, Ended]:
        found: dict[str, Ended] = {}
        for e in journal.ended(self.after):
            self.seq_of[e.custom_id] = e.seq
            self.after = e.seq
            if e.custom_id in wanted:
                found[e.custom_id] = e
        targets = {self.seq_of[c] for c in wanted if c not in found and c in self.seq_of}
        if targets:
            last = max(targets)
            for e in journal.ended(min(targets) - 1):
                if e.seq in targets:
                    targets.discard(e.seq)
                    if e.custom_id in wanted:
                        found[e.custom_id] = e
                if not targets or e.seq >= last:
                    break
        return found


# -- rows and columns -------------------------------------------------------------------------------------


def _invalid(what: str, fix: str) -> Outcome:
    return Outcome.failure("invalid_input", message=what, fix=fix, attempts=0)


def _first_row(what: str) -> str:
    # The journal says "first at SOURCE:NUMBER"; a row's number is its place in the batch.
    return what.rsplit(":", 1)[-1] if ":" in what else "?"


def _no_nulls(value: dict[str, Any]) -> dict[str, Any]:
    # Arrow stores dicts with differing keys as one struct type, padding each with the keys it lacked as null.
    return {k: v for k, v in value.items() if v is not None}


def _headers(value: Any) -> tuple[tuple[str, str], ...] | str:
    if value is None:
        return ()
    if isinstance(value, str | bytes):
        try:
            value = orjson.loads(value)
        except orjson.JSONDecodeError:
            return "is not JSON"
    if isinstance(value, list):  # Arrow's map type comes back as a list of (key, value) pairs
        try:
            value = dict(value)
        except (TypeError, ValueError):
            return "is a list, not an object"
    if not isinstance(value, dict):
        return f"is {type(value).__name__}, not an object"
    items = []
    for k, v in _no_nulls(value).items():
        if not isinstance(k, str) or not isinstance(v, str | int | float):
            return f"has {k!r}: {v!r}, not a header name and its text"
        items.append((k, str(v)))
    return tuple(sorted(items))


def _values(outcome: Mapping[str, Any], response: Any, *, from_journal: bool) -> dict[str, Any]:
    usage = outcome.get("usage") or {}
    cost = outcome.get("cost_usd")
    values = {
        "ok": bool(outcome.get("ok")),
        "code": outcome.get("code"),
        "kind": outcome.get("kind"),
        "retryable": bool(outcome.get("retryable")),
        "status": outcome.get("status"),
        "message": outcome.get("message"),
        "text": outcome.get("text"),
        "finish_reason": outcome.get("finish_reason"),
        "attempts": outcome.get("attempts"),
        "cause": outcome.get("cause"),
        "fix": outcome.get("fix"),
        "prompt_tokens": usage.get("prompt_tokens"),
        "completion_tokens": usage.get("completion_tokens"),
        "total_tokens": usage.get("total_tokens"),
        "cost_usd": cost if isinstance(cost, int | float) else None,
        "request_id": outcome.get("request_id"),
        "from_journal": from_journal,
        "response": None if response is None else orjson.dumps(response).decode(),
    }
    return values


def _column_names(batch: Any) -> list[str]:
    if isinstance(batch, Mapping):
        return [str(c) for c in batch]
    names = getattr(batch, "column_names", None)  # pyarrow.Table
    if names is not None:
        return [str(c) for c in names]
    columns = getattr(batch, "columns", None)  # pandas.DataFrame
    if columns is not None:
        return [str(c) for c in columns]
    raise ConfigError(
        f"a batch of type {type(batch).__name__} is not one genguard reads: use batch_format='pyarrow', "
        "'pandas' or 'numpy'"
    )


def _plain(value: Any) -> Any:
    """A cell as plain Python: numpy arrays become lists and numpy scalars Python ones, all the way down."""
    tolist = getattr(value, "tolist", None)
    if tolist is not None and not isinstance(value, str | bytes):
        value = tolist()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, float) and value != value:  # pandas' NaN for a missing value
        return None
    return value


def _rows(batch: Any, columns: Sequence[str], needed: Sequence[str]) -> list[dict[str, Any]]:
    if hasattr(batch, "column_names") and hasattr(batch, "select"):  # pyarrow: to_pylist is plain already
        n = batch.num_rows
        data = {c: batch.column(c).to_pylist() for c in needed}
    else:
        data = {
            c: [_plain(v) for v in (batch[c].tolist() if hasattr(batch[c], "tolist") else batch[c])]
            for c in needed
        }
        n = len(batch) if hasattr(batch, "columns") else len(batch[columns[0]]) if columns else 0
    return [{c: data[c][i] for c in needed} for i in range(n)]


def _with_columns(
    batch: Any, values: Sequence[Mapping[str, Any]], types: Sequence[tuple[str, ColumnType]], prefix: str
) -> Any:
    columns = {name: [v[name.removeprefix(prefix)] for v in values] for name, _ in types}
    if hasattr(batch, "column_names") and hasattr(batch, "append_column"):
        import pyarrow as pa

        arrow = {"bool": pa.bool_(), "str": pa.string(), "int": pa.int64(), "float": pa.float64()}
        for name, kind in types:
            batch = batch.append_column(name, pa.array(columns[name], type=arrow[kind]))
        return batch
    if isinstance(batch, Mapping):
        import numpy as np

        out = dict(batch)
        for name, kind in types:
            out[name] = np.array(columns[name], dtype=bool if kind == "bool" else object)
        return out
    import pandas as pd

    dtypes = {"bool": "boolean", "str": "string", "int": "Int64", "float": "Float64"}
    batch = batch.copy()
    for name, kind in types:
        batch[name] = pd.array(columns[name], dtype=dtypes[kind])
    return batch


# -- the driver's helper ----------------------------------------------------------------------------------


def map_requests(
    ds: Any,
    *,
    actors: int = 2,
    batch_size: int = 64,
    batches_per_actor: int = 4,
    batch_format: Literal["pyarrow", "pandas", "numpy"] = "pyarrow",
    **options: Any,
) -> Any:
    """``ds.map_batches(GenguardUDF, ...)`` with the options checked here first (a wrong one fails before any
    actor starts) and settings fit for I/O: ``actors`` actors at ``num_cpus=0``, ``batch_size`` rows a batch,
    ``batches_per_actor`` batches in progress on each actor at once (so that a row waiting out a long
    Retry-After holds up its own batch only; Ray 2.50 and later, earlier ones run one at a time).

    ``options`` are :class:`GenguardUDF`'s. Lazy, as ``map_batches`` is: the requests go when the dataset is
    consumed (``take_all``, ``write_parquet``, ``materialize``...).

    >>> out = map_requests(ds, base_url=url, model="gpt-4o-mini", journal="/data/run.sqlite")  # doctest: +SKIP
    """
    import inspect

    import ray.data

    for name, value in (
        ("actors", actors),
        ("batch_size", batch_size),
        ("batches_per_actor", batches_per_actor),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{name} must be a whole number of at least 1, got {value!r}")
    known = list(inspect.signature(GenguardUDF).parameters)
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ConfigError(
            f"map_requests got an unknown option {unknown[0]!r}; GenguardUDF takes {', '.join(known)}"
        )
    journal = options.get("journal")
    if isinstance(journal, str | os.PathLike) and not str(journal).startswith(
        ("postgresql://", "postgres://")
    ):
        # Actors need not share the driver's working directory: a relative path could name another file.
        options["journal"] = str(Path(journal).absolute())
        listed: list[dict[str, Any]] = ray.nodes() if ray.is_initialized() else []  # type: ignore[no-untyped-call]
        nodes = len([node for node in listed if node.get("Alive")])
        if nodes > 1:
            # Each node would open a file of its own under the same path: rows done on one would be paid
            # again on another.
            raise ConfigError(
                f"journal={str(journal)!r} is a SQLite file, which only the actors of one machine share, and "
                f"this Ray cluster has {nodes} nodes: give the PostgreSQL journal (journal='postgresql://...')"
            )
    checked = _options(**options)
    if options.get("limiter") is not None and checked.gate is not None:
        asyncio.run(
            _reach(checked.gate)
        )  # a shared limiter that does not answer: told here, not by each actor
    try:
        # GenguardUDF may be called from several threads at once: its rows run on the actor's own event loop.
        compute = ray.data.ActorPoolStrategy(
            size=actors, max_concurrent_calls_per_actor=batches_per_actor, enable_true_multi_threading=True
        )
    except TypeError:  # before Ray 2.50
        compute = ray.data.ActorPoolStrategy(size=actors)
    return ds.map_batches(
        GenguardUDF,
        fn_constructor_kwargs=options,
        batch_size=batch_size,
        batch_format=batch_format,
        num_cpus=0,
        compute=compute,
    )


async def _reach(factory: GateFactory) -> None:
    gate = factory()
    if inspect.isawaitable(gate):
        gate = await gate
    close = getattr(gate, "aclose", None)
    if close is not None:
        await close()


def _first_key(api_key: str | Sequence[str] | None) -> str | None:
    if api_key is None or isinstance(api_key, str):
        return api_key
    return next(iter(api_key), None)
