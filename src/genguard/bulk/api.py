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
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson

from ..client.loop import Hook
from ..client.retry import RetryPolicy
from .runner import BatchOptions, BatchResult, arun_batch, run_loop

__all__ = ["abatch", "batch"]

Requests = str | Path | Iterable[Mapping[str, Any]]


def _write_requests(requests: Iterable[Mapping[str, Any]], path: Path) -> None:
    # Requests given as objects are written to DIR/requests.jsonl and read back like a file: the same streaming
    # reader and the same line numbers in every message, and a record of what was asked beside the results.
    tmp = path.with_suffix(".jsonl.tmp")
    with tmp.open("wb") as f:
        for item in requests:
            if not isinstance(item, Mapping):
                raise TypeError(
                    f"requests must be mappings (a request body or a batch line), got {type(item).__name__}"
                )
            request = dict(item)
            if "body" in request and "url" not in request and isinstance(request["body"], Mapping):
                request.setdefault("method", "POST")
                request["url"] = _infer_url(request["body"])
            f.write(orjson.dumps(request) + b"\n")
    tmp.replace(path)


def _infer_url(body: Mapping[str, Any]) -> str:
    if "messages" in body:
        return "/v1/chat/completions"
    if "input" in body:
        return "/v1/embeddings"
    if "prompt" in body:
        return "/v1/images/generations"
    return "/v1/chat/completions"


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
        raise TypeError("retry_failed takes True (every failure) or a list of codes, not a string")
    elif retry_failed is not None:
        retry_failed = tuple(retry_failed)
    hooks = tuple(kwargs.pop("hooks", ()))
    fallbacks = kwargs.pop("fallbacks", ())
    if isinstance(fallbacks, str):
        raise TypeError("fallbacks takes a list of model names, not a string")
    return BatchOptions(
        out=Path(out),
        api_keys=tuple(keys or ()),
        retry_failed=retry_failed,
        fallbacks=tuple(fallbacks),
        hooks=hooks,
        **kwargs,
    )


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
    retry_failed: bool | Sequence[str] | None = None,
    skip_invalid: bool = False,
    rerun_changed: bool = False,
    keep_changed: bool = False,
    template: str | None = None,
    model: str | None = None,
    validate: Any = None,
    retry: RetryPolicy | None = None,
    fallbacks: Sequence[str] = (),
    timeout: float = 120.0,
    progress: str = "auto",
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
    out_dir = Path(given)
    opts = _options(out_dir, kwargs)
    source: str | Path | None
    if requests is None or isinstance(requests, str | Path):
        source = requests
    else:
        out_dir.mkdir(parents=True, exist_ok=True)
        source = out_dir / "requests.jsonl"
        _write_requests(requests, source)
    return await arun_batch(source, opts)


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
    retry_failed: bool | Sequence[str] | None = None,
    skip_invalid: bool = False,
    rerun_changed: bool = False,
    keep_changed: bool = False,
    template: str | None = None,
    model: str | None = None,
    validate: Any = None,
    retry: RetryPolicy | None = None,
    fallbacks: Sequence[str] = (),
    timeout: float = 120.0,
    progress: str = "auto",
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
    """
    kwargs = dict(locals())
    coro = abatch(**kwargs)
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return run_loop(coro)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(run_loop, coro).result()
