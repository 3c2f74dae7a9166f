"""Whatever a public signature takes or gives is itself public: a user can name every type they meet."""

from __future__ import annotations

import importlib
import inspect
import types
import typing
from collections.abc import Callable, Iterator

import pytest

import genguard


def _hint_types(hint: object) -> Iterator[type]:
    """The classes a type hint mentions, at any depth (``Sequence[Hook] | None`` gives Attempt, ...)."""
    if isinstance(hint, type) and not typing.get_args(hint):
        yield hint
        return
    origin = typing.get_origin(hint)
    if isinstance(origin, type) and origin is not types.UnionType:
        yield origin
    for arg in typing.get_args(hint):
        if isinstance(arg, list):  # Callable's argument list
            for inner in arg:
                yield from _hint_types(inner)
        else:
            yield from _hint_types(arg)


def _namespace() -> dict[str, object]:
    # Modules import some names only for type checkers; resolve them from the public namespace, so a name
    # that is not public fails to resolve and is reported.
    return {"Self": typing.Self, **{name: getattr(genguard, name) for name in genguard.__all__}}


def _hints(obj: object) -> dict[str, object]:
    module = inspect.getmodule(obj)
    globalns = dict(vars(module)) if module else {}
    while True:
        try:
            return typing.get_type_hints(obj, globalns=globalns, localns=_namespace())
        except NameError as exc:
            name = exc.name or str(exc)
            # A third-party module imported only for type checkers (`aiohttp.ClientSession`) is not ours to
            # export: resolve it and look again. Any other unresolved name is a genguard name left private.
            try:
                globalns[name] = importlib.import_module(name)
            except ImportError:
                return {"<unresolved>": name}


# Constructors only the library calls: a stream is made by client.stream(), never by hand.
NOT_CALLED_BY_USERS = {"ChatStream.__init__", "AsyncChatStream.__init__"}


def _members(cls: type) -> Iterator[tuple[str, Callable[..., object]]]:
    for name in dir(cls):
        if (name.startswith("_") and name != "__init__") or f"{cls.__name__}.{name}" in NOT_CALLED_BY_USERS:
            continue
        raw = inspect.getattr_static(cls, name)
        func = raw.fget if isinstance(raw, property) else getattr(raw, "__func__", raw)
        if callable(func) and getattr(func, "__module__", "").startswith("genguard"):
            yield name, func


def _mentioned() -> dict[str, set[str]]:
    """Each genguard-defined name a public signature mentions -> where."""
    found: dict[str, set[str]] = {}
    targets: list[tuple[str, object]] = []
    for name in genguard.__all__:
        obj = getattr(genguard, name)
        if inspect.isclass(obj):
            targets.append((name, obj))  # its public attributes (dataclass fields...)
            targets.extend((f"{name}.{member}", func) for member, func in _members(obj))
        elif inspect.isfunction(obj):
            targets.append((name, obj))
        elif inspect.ismodule(obj):
            for fname in getattr(obj, "__all__", ()):
                targets.append((f"{name}.{fname}", getattr(obj, fname)))
    for where, obj in targets:
        for param, hint in _hints(obj).items():
            if param.startswith("_"):
                continue
            if param == "<unresolved>":
                found.setdefault(str(hint), set()).add(where)
                continue
            for cls in _hint_types(hint):
                if cls.__module__.startswith("genguard"):
                    found.setdefault(cls.__name__, set()).add(f"{where}: {param}")
    return found


def _public_names() -> set[str]:
    """genguard's own names, and those of its public modules (``genguard.validators.Validator``)."""
    names = set(genguard.__all__)
    for name in genguard.__all__:
        obj = getattr(genguard, name)
        if inspect.ismodule(obj):
            names.update(getattr(obj, "__all__", ()))
    return names


def test_every_type_in_a_public_signature_is_exported() -> None:
    public = _public_names()
    missing = {name: sorted(where) for name, where in _mentioned().items() if name not in public}
    assert not missing, f"public signatures use names genguard does not export: {missing}"


def test_the_scan_sees_through_aliases_and_containers() -> None:
    """The check above must reach types inside Callable aliases and unions, or it proves nothing."""
    seen = _mentioned()
    assert "Attempt" in seen  # only through Hook = Callable[[Attempt], None] in the clients' hooks
    assert "TaskState" in seen  # only through ProgressHook in videos.generate's on_progress
    assert "RetryPolicy" in seen  # through `RetryPolicy | None`


@pytest.mark.anyio
async def test_media_namespaces_and_callback_types_are_public() -> None:
    with genguard.Client("http://127.0.0.1:9/v1", api_key="sk-test") as client:
        assert isinstance(client.images, genguard.Images)
        assert isinstance(client.videos, genguard.Videos)
    async with genguard.AsyncClient("http://127.0.0.1:9/v1", api_key="sk-test") as aclient:
        assert isinstance(aclient.images, genguard.AsyncImages)
        assert isinstance(aclient.videos, genguard.AsyncVideos)
    assert typing.get_args(genguard.Hook)[0] == [genguard.Attempt]
    assert typing.get_args(genguard.ProgressHook)[0] == [genguard.TaskState]


def test_download_failed_is_a_hard_failure_of_the_exception_tree() -> None:
    from genguard.client import download
    from genguard.core import exceptions

    assert issubclass(genguard.DownloadFailed, genguard.HardFailure)
    assert genguard.DownloadFailed is download.DownloadFailed is exceptions.DownloadFailed
    assert "DownloadFailed" in (exceptions.__doc__ or "")
