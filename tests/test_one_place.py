"""One place per rule: the failure model's imports run one way, and each rule (the request id, secret masking,
the words for success, the error-body test, the transport exceptions) lives in one module the others use."""

from __future__ import annotations

import ast
import importlib
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import genguard
from genguard.client.transport import TRANSPORT_ERRORS, classify_exception
from genguard.core.capture import read_captures
from genguard.core.chat_stream import ChatStreamReader, read_chat_stream
from genguard.core.classify import classify_http
from genguard.core.error_body import is_error_body, read_error
from genguard.core.explain import explain_exchange
from genguard.core.headers import REQUEST_ID_HEADERS, request_id
from genguard.core.media_body import image_outcome, parse_task, task_outcome
from genguard.core.secrets import mask_url, redact
from genguard.core.status_words import FINAL_STATUSES, TaskStatus, is_success_code, normalise_status

SRC = Path(genguard.__file__).parent
# The simulator plays providers: it speaks their header names and status words on purpose.
LIBRARY = [p for p in sorted(SRC.rglob("*.py")) if p.relative_to(SRC).parts[0] != "sim"]


def _rel(path: Path) -> str:
    return path.relative_to(SRC).as_posix()


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _sibling_imports(tree: ast.Module) -> Iterator[tuple[str, ast.ImportFrom, bool]]:
    """``(module, node, local)`` for each ``from .module import ...`` at runtime; ``local`` when inside a
    function. Imports under ``if TYPE_CHECKING:`` are skipped: they never run."""

    def visit(node: ast.AST, local: bool) -> Iterator[tuple[str, ast.ImportFrom, bool]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                continue
            if isinstance(child, ast.ImportFrom) and child.level == 1 and child.module:
                yield child.module, child, local
            inner = local or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
            yield from visit(child, inner)

    yield from visit(tree, False)


def _core_graph() -> dict[str, list[tuple[str, ast.ImportFrom, bool]]]:
    return {
        p.stem: list(_sibling_imports(ast.parse(p.read_text())))
        for p in sorted((SRC / "core").glob("*.py"))
        if p.stem != "__init__"
    }


# -- imports run one way -------------------------------------------------------------------------------


def test_core_modules_import_each_other_without_a_circle() -> None:
    graph = {name: {m for m, _, _ in edges} for name, edges in _core_graph().items()}
    done: set[str] = set()

    def walk(name: str, path: list[str]) -> None:
        if name in path:
            cycle = [*path[path.index(name) :], name]
            pytest.fail("import circle in core: " + " -> ".join(cycle))
        if name in done:
            return
        for target in sorted(graph.get(name, ())):
            walk(target, [*path, name])
        done.add(name)

    for name in sorted(graph):
        walk(name, [])
    # The readers and the error verdict sit below the dispatcher: none of them reaches back up to it.
    below = ("chat_body", "chat_stream", "image_body", "media_body", "error_body", "error_verdict")
    assert not [name for name in below if "classify" in graph[name]]


def test_no_function_local_import_between_core_modules() -> None:
    local = [
        f"core/{name}.py:{node.lineno} imports .{module}"
        for name, edges in _core_graph().items()
        for module, node, is_local in edges
        if is_local
    ]
    assert not local, "a function-local import in core hides a circle or costs a lookup per call: " + str(
        local
    )


def test_core_modules_share_no_private_names() -> None:
    crossing = [
        f"core/{name}.py imports {alias.name} from .{module}"
        for name, edges in _core_graph().items()
        for module, node, _ in edges
        for alias in node.names
        if alias.name.startswith("_")
    ]
    assert not crossing, crossing


# -- the request id ------------------------------------------------------------------------------------

_CHAT = b'{"choices": [{"message": {"content": "Hi"}, "finish_reason": "stop"}]}'
_STREAM = (
    b'data: {"choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n'
)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"x-request-id": "req_x", "request-id": "req_a", "cf-ray": "ray-1"}, "req_x"),
        ({"Request-Id": "req_a", "CF-Ray": "ray-1"}, "req_a"),
        ({"CF-RAY": "8a1b2c3d4e5f-AMS"}, "8a1b2c3d4e5f-AMS"),
        ({"x-request-id": "  ", "cf-ray": " ray-2 "}, "ray-2"),
        ({"content-type": "application/json"}, None),
    ],
)
def test_every_reader_names_the_same_request_id(headers: dict[str, str], expected: str | None) -> None:
    """classify_http and the stream readers once disagreed on a response that only had cf-ray."""
    for given in (headers, httpx.Headers(headers)):
        got = {
            "chat body": classify_http(200, given, _CHAT).request_id,
            "error": classify_http(429, given, b'{"error": {"code": "rate_limit_exceeded"}}').request_id,
            "not json": classify_http(200, given, b"<html>Login</html>").request_id,
            "read_chat_stream": read_chat_stream(_STREAM, headers=given).request_id,
            "ChatStreamReader": ChatStreamReader(headers=given).finish().request_id,
            "error reader": read_error(b"{}", given).request_id,
            "image": image_outcome({"created": 1, "data": []}, headers=given).request_id,
            "task": task_outcome(parse_task({"id": "t", "status": "queued"}), headers=given).request_id,
            "headers.request_id": request_id(given),
        }
        assert set(got.values()) == {expected}, got


def test_request_id_header_names_are_written_in_one_module() -> None:
    names = set(REQUEST_ID_HEADERS)
    found = [
        f"{_rel(p)}:{node.lineno}"
        for p in LIBRARY
        if _rel(p) != "core/headers.py"
        for node in ast.walk(ast.parse(p.read_text()))
        if isinstance(node, ast.Constant) and node.value in names
    ]
    assert not found, f"read the request id with genguard.core.headers.request_id: {found}"


# -- secrets -------------------------------------------------------------------------------------------

KEY = "sk-proj-Zx81KqLw02mVb7Tn"


def test_masking_goes_through_one_function() -> None:
    from genguard.client import log

    assert genguard.redact is redact
    assert log.mask is redact
    text = f"401 for https://api.example/v1/models?key={KEY}: Incorrect API key {KEY}"
    for out in (redact(text), redact(text, [KEY]), log.mask(text, [KEY])):
        assert KEY not in out
        assert KEY[8:] not in out
    assert KEY not in mask_url(f"https://u:{KEY}@api.example/v1/models?key={KEY}&alt=sse")


def _code_strings(path: Path) -> Iterator[ast.Constant]:
    """The string constants of a module's code, its docstrings (and their examples) left out."""
    tree = ast.parse(path.read_text())
    docs = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
            yield node


def test_mask_strings_are_written_in_one_module() -> None:
    found = [
        f"{_rel(p)}:{node.lineno}"
        for p in LIBRARY
        if _rel(p) != "core/secrets.py"
        for node in _code_strings(p)
        if "***" in node.value
    ]
    assert not found, f"mask with genguard.core.secrets: {found}"


# -- the words for success -----------------------------------------------------------------------------


def test_one_vocabulary_says_succeeded() -> None:
    succeeded = [
        w for w in ("success", "succeed", "succeeded", "SUCCEED", "completed") if normalise_status(w)
    ]
    assert all(normalise_status(w) == "succeeded" for w in succeeded)
    # An envelope whose code is a word for success names no error, in the reader and the error test alike.
    for word in succeeded:
        assert is_success_code(word)
        assert not is_error_body({"code": word, "message": "ok"})
    assert {"succeeded", "failed", "cancelled"} == FINAL_STATUSES
    assert set(TaskStatus.__args__) >= FINAL_STATUSES  # type: ignore[attr-defined]


def test_vendor_success_words_are_written_in_one_module() -> None:
    words = {"succeed", "success", "successful", "SUCCEED", "SUCCESS"}
    found = [
        f"{_rel(p)}:{node.lineno}"
        for p in LIBRARY
        if _rel(p) != "core/status_words.py"
        for node in ast.walk(ast.parse(p.read_text()))
        if isinstance(node, ast.Constant) and node.value in words
    ]
    assert not found, f"use genguard.core.status_words: {found}"


# -- is this an error body? ----------------------------------------------------------------------------

BODIES = [
    (b'{"error": {"message": "nope", "code": "invalid_api_key"}}', True),
    (b'[{"error": {"code": 503, "message": "overloaded", "status": "UNAVAILABLE"}}]', True),
    (b'{"object": "error", "message": "model not found", "code": 404}', True),
    (b'{"code": 1301, "message": "risk control", "request_id": "r1"}', True),
    (b'{"code": "InvalidParameter", "message": "bad size"}', True),
    (b'{"detail": "Not Found"}', True),
    (b'{"code": 0, "message": "SUCCEED", "data": {"task_id": "t1", "task_status": "submitted"}}', False),
    (b'{"code": "success", "message": "ok"}', False),
    (b'{"id": "v1", "status": "failed", "error": {"message": "flagged by moderation"}}', False),
    (b'{"id": "g1", "choices": null, "error": {"message": "Provider returned error", "code": 429}}', False),
    (_CHAT, False),
]


@pytest.mark.parametrize(("body", "error"), BODIES)
def test_classify_http_and_explain_share_the_error_body_test(body: bytes, error: bool) -> None:
    import orjson

    assert is_error_body(orjson.loads(body)) is error
    [exchange] = read_captures(body, source="body.json")
    # explain: a bare error body has no known status; anything else is read as the 200 it came with.
    assert (explain_exchange(exchange).status is None) is error
    outcome = classify_http(200, {}, body)
    if error:
        assert outcome.code != "invalid_response"


def test_cli_explain_holds_no_domain_logic() -> None:
    tree = ast.parse((SRC / "cli" / "explain.py").read_text())
    modules = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert "core.explain" in modules
    assert not modules & {"core.classify", "core.error_body", "core.error_verdict", "core.media_body"}


# -- transport exceptions ------------------------------------------------------------------------------


def _subclasses(cls: type[BaseException]) -> Iterator[type[BaseException]]:
    yield cls
    for sub in cls.__subclasses__():
        yield from _subclasses(sub)


def test_everything_caught_at_the_boundary_has_a_verdict() -> None:
    request = httpx.Request("GET", "https://api.example/v1/models?key=secret-in-url")
    for base in TRANSPORT_ERRORS:
        for cls in _subclasses(base):
            if not cls.__module__.startswith("httpx"):
                continue
            exc = cls("boom", request=request) if cls is not httpx.DecodingError else cls("boom")
            outcome = classify_exception(exc)
            assert outcome.code in ("timeout", "connection_error", "invalid_response"), cls
            assert outcome.retryable, cls
            assert "secret-in-url" not in (outcome.message or "")


def test_httpx_exceptions_are_caught_only_through_the_boundary() -> None:
    found = []
    for p in LIBRARY:
        if _rel(p) in ("client/transport.py", "client/wire.py"):  # the boundary, and the wire that feeds it
            continue
        for node in ast.walk(ast.parse(p.read_text())):
            caught = ast.unparse(node.type) if isinstance(node, ast.ExceptHandler) and node.type else ""
            if re.search(r"\bhttpx\.", caught):
                found.append(f"{_rel(p)}:{node.lineno} except {caught}")
    assert not found, f"catch TRANSPORT_ERRORS from genguard.client.transport: {found}"
    assert importlib.import_module("genguard").classify_exception is classify_exception


def test_doctor_builds_no_http_client_of_its_own() -> None:
    tree = ast.parse((SRC / "cli" / "doctor.py").read_text())
    found = [
        f"cli/doctor.py:{node.lineno}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and re.fullmatch(
            r"httpx\.(?:Async)?Client|httpx\.create_ssl_context|ssl\.\w+", ast.unparse(node.func)
        )
    ]
    assert not found, f"doctor checks what genguard's Client sends (its TLS store and timeouts): {found}"
