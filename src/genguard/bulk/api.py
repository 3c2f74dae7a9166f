"""``genguard.batch`` and ``genguard.abatch``: the batch runner from a script or a notebook.

>>> import genguard
>>> result = genguard.batch(  # doctest: +SKIP
...     [{"custom_id": "a", "body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]}}],
...     out="runs/hello", base_url="http://127.0.0.1:8000/v1",
... )
>>> for custom_id, outcome, body in result.results():  # doctest: +SKIP
...     print(custom_id, outcome.ok, outcome.text)
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import os
import re
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson

from ..client.loop import Hook
from ..client.retry import RetryPolicy
from .inputs import infer_url, read_lines
from .model import GIVEN, InputProblem, Line
from .progress import ProgressMode
from .runner import BatchOptions, BatchResult, RunInUse, SetupError, arun_batch, run_loop

__all__ = ["abatch", "batch"]

Requests = str | Path | Iterable[Mapping[str, Any]]
REQUESTS_FILE = "requests.jsonl"


def _rows(requests: Any) -> Iterable[Any]:
    # A pandas (or polars) DataFrame iterates over its column names: its rows are what is meant.
    if hasattr(requests, "columns") and callable(getattr(requests, "to_dict", None)):
        rows: Iterable[Any]
        try:
            rows = requests.to_dict("records")  # pandas
        except (TypeError, ValueError):
            rows = requests.to_dicts()  # polars
        return rows
    given: Iterable[Any] = requests
    return given


def _write_requests(requests: Iterable[Any], path: Path) -> None:
    # Requests given as objects are written out and read back like a file: the same streaming reader and the
    # same checks, and, once the run has taken them, a record of what was asked beside the results.
    with path.open("wb") as f:
        for i, item in enumerate(_rows(requests)):
            if not isinstance(item, Mapping):
                raise TypeError(
                    f"requests[{i}] is {type(item).__name__}: give mappings (request bodies, batch lines or table "
                    "rows)"
                )
            request = dict(item)
            if "body" in request and "url" not in request and isinstance(request["body"], Mapping):
                # A batch line from Python may leave its url out: the body says it, as for a bare body. A body
                # that could go to two urls is left without one, and the check names it.
                url = infer_url(request["body"])
                if url is not None:
                    request.setdefault("method", "POST")
                    request["url"] = url
            try:
                f.write(orjson.dumps(request, default=_plain) + b"\n")
            except TypeError as exc:
                raise TypeError(f"requests[{i}] holds a value that is not JSON: {exc}") from None


def _plain(value: Any) -> Any:
    # numpy's numbers and arrays, as a DataFrame's rows hold them.
    for method in ("item", "tolist"):
        if callable(getattr(value, method, None)):
            return getattr(value, method)()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


_OPTION = re.compile(r"--([a-z][a-z-]*)(?: (?=[\d$]))?")


def for_python(text: str) -> str:
    """A message the runner words for the command, worded for a caller of :func:`batch`: its options as
    keyword arguments.

    >>> for_python("raise --timeout 0.3 s, or pass another --api-key, then run the same command again")
    'raise timeout=0.3 s, or pass another api_key=, then call batch() again with the same out='
    """
    text = text.replace("run the same command again", "call batch() again with the same out=")
    return _OPTION.sub(lambda m: m.group(1).replace("-", "_") + "=", text)


def _given(items: Iterable[Line | InputProblem]) -> Iterator[Line | InputProblem]:
    # Each line's place is its item in what was given (requests[i]), not a line of the file written from it.
    for item in items:
        yield dataclasses.replace(item, source=GIVEN)


def _options(out: str | Path, kwargs: dict[str, Any]) -> BatchOptions:
    keys = kwargs.pop("api_key", None)
    if isinstance(keys, str):
        keys = (keys,)
    retry_failed = kwargs.pop("retry_failed", None)
    if retry_failed is True:
        retry_failed = ()
    elif retry_failed is False:
        retry_failed = None
    elif isinstance(retry_failed, str):
        retry_failed = (retry_failed,)  # one code
    elif retry_failed is not None:
        retry_failed = tuple(retry_failed)
    hooks = tuple(kwargs.pop("hooks", ()))
    fallbacks = kwargs.pop("fallbacks", ())
    if isinstance(fallbacks, str):
        fallbacks = (fallbacks,)  # one model
    return BatchOptions(
        out=Path(out),
        api_keys=tuple(keys or ()),
        retry_failed=retry_failed,
        fallbacks=tuple(fallbacks),
        hooks=hooks,
        python=True,
        **kwargs,
    )


async def _from_objects(requests: Iterable[Any], opts: BatchOptions) -> BatchResult:
    out = opts.out
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=".requests-", suffix=".jsonl", dir=out)
    except OSError as exc:
        raise SetupError(f"out={str(out)!r} cannot be created: {exc.strerror or exc}") from exc
    os.close(fd)
    written = Path(name)
    try:
        _write_requests(requests, written)
        try:
            items = read_lines(written, template=opts.template, model=opts.model, params=opts.params or None)
        except ValueError as exc:
            raise SetupError(str(exc)) from None
        # The file takes DIR/requests.jsonl's place only once the run holds the folder and has taken the
        # lines: a call refused (another run holds the folder, bad or changed lines) leaves the run's own.
        return await arun_batch(
            out / REQUESTS_FILE,
            opts,
            lines=_given(items),
            loaded_input=lambda: os.replace(written, out / REQUESTS_FILE),
        )
    finally:
        written.unlink(missing_ok=True)


async def abatch(
    requests: Requests | None,
    *,
    out: str | Path | None = None,
    base_url: str | None = None,
    api_key: str | Sequence[str] | None = None,
    concurrency: int = 64,
    rpm: int | None = None,
    tpm: int | None = None,
    max_cost: float | None = None,
    deadline: float | None = None,
    retry_failed: bool | str | Sequence[str] | None = None,
    skip_invalid: bool = False,
    rerun_changed: bool = False,
    keep_changed: bool = False,
    template: str | None = None,
    model: str | None = None,
    validate: Any = None,
    retry: RetryPolicy | None = None,
    fallbacks: str | Sequence[str] = (),
    timeout: float = 120.0,
    progress: ProgressMode = "auto",
    hooks: Sequence[Hook] = (),
    limiter: str | None = None,
    journal: str | None = None,
    run: str | None = None,
    lease_s: float | None = None,
) -> BatchResult:
    """The batch runner, awaited: :func:`batch` in an event loop (a notebook cell: ``await genguard.abatch(...)``)."""
    kwargs = dict(locals())
    kwargs.pop("requests")
    given = kwargs.pop("out")
    if given is None:
        if not run:
            raise TypeError("give out= (the run's folder), or journal= and run= for a shared run")
        given = run
    opts = _options(Path(given), kwargs)
    try:
        if requests is None or isinstance(requests, str | Path):
            result = await arun_batch(requests, opts)
        else:
            result = await _from_objects(requests, opts)
    except (SetupError, RunInUse) as exc:
        raise type(exc)(for_python(str(exc))) from None
    if result.stopped is None:
        return result
    return dataclasses.replace(result, stopped=for_python(result.stopped))


def batch(
    requests: Requests | None,
    *,
    out: str | Path | None = None,
    base_url: str | None = None,
    api_key: str | Sequence[str] | None = None,
    concurrency: int = 64,
    rpm: int | None = None,
    tpm: int | None = None,
    max_cost: float | None = None,
    deadline: float | None = None,
    retry_failed: bool | str | Sequence[str] | None = None,
    skip_invalid: bool = False,
    rerun_changed: bool = False,
    keep_changed: bool = False,
    template: str | None = None,
    model: str | None = None,
    validate: Any = None,
    retry: RetryPolicy | None = None,
    fallbacks: str | Sequence[str] = (),
    timeout: float = 120.0,
    progress: ProgressMode = "auto",
    hooks: Sequence[Hook] = (),
    limiter: str | None = None,
    journal: str | None = None,
    run: str | None = None,
    lease_s: float | None = None,
) -> BatchResult:
    """Run (or resume) a batch of requests into the folder ``out``, as ``genguard batch`` does.

    ``requests`` is a path (JSONL in the OpenAI Batch shape or bare bodies; CSV/JSONL rows with ``template``
    and ``model``), or an iterable of request bodies or batch lines, or ``None`` to resume what ``out`` holds.
    Calling it again with the same ``out`` resumes: lines that ended are not sent again. The result's
    ``results()`` yields ``(custom_id, Outcome, provider body)`` in input order; ``exit_code`` is what the
    command would exit with. ``hooks`` are handed to the client that sends the lines (tracing: see
    docs/observability.md). ``limiter`` (``"redis://host:6379/0?name=NAME"``) shares one rate limit with every
    worker given the same URL. In a running event loop (Jupyter) it runs in a worker thread; ``await abatch``
    is the same without one.

    ``journal="postgresql://..."`` with ``run="NAME"`` works one run shared by every process started with the
    same requests, journal and name, on any machine (``out`` then defaults to ``./NAME``, where this process
    writes the files if it is the one that sees the run finish); ``lease_s`` is how long a line this process
    claimed stays its own without a renewal (60 s).

    Resumed with requests that changed since the run began: a line not ended yet takes its new request; one that
    ended refuses the run (:class:`BadInput`), unless ``rerun_changed=True`` sends it again (its old answer set
    aside in the journal's history) or ``keep_changed=True`` keeps its answer (e.g. new settings for the lines
    not run yet only).

    Requests given as objects may be request bodies, batch lines (``url`` may be left out: the body says it) or
    table rows with ``template`` (a pandas DataFrame is read row by row); what the run took is kept as
    ``out/requests.jsonl``, and messages name an item as ``requests[i]``. ``retry_failed`` and ``fallbacks``
    take one code or model, or a list.

    Raises, before anything is sent: :class:`genguard.BadInput` (bad or changed lines, each named; ``problems``),
    :class:`genguard.SetupError` (the folder, the input's file or format, a folder holding no run to resume),
    :class:`genguard.RunInUse` (another run holds ``out``), ``ValueError`` (a setting out of range, e.g.
    ``max_cost=0``, an unknown ``retry_failed`` code or ``validate`` spec: :class:`genguard.ConfigError`) and
    ``TypeError`` (a setting of the wrong type). A stop about the whole run (quota, every key refused, the cost
    cap, the deadline) is not raised: ``exit_code`` is 3 and ``stopped`` says why.
    """
    kwargs = dict(locals())
    coro = abatch(**kwargs)
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return run_loop(coro)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(run_loop, coro).result()
