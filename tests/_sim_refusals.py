"""The simulator's 400s in OpenAI's shape, checked alike for each endpoint that refuses a body as OpenAI does."""

from __future__ import annotations

from typing import Any

import httpx

GONE = object()
"""A value in a change that removes its key from the body."""


def check_refusal(
    http: httpx.Client, path: str, body: dict[str, Any], change: dict[str, Any], param: str | None,
    code: str | None, message: str,
) -> None:  # fmt: skip
    """``body`` changed by ``change`` is refused with a 400 naming ``param`` and ``code``, its message starting
    with ``message``."""
    sent = {k: v for k, v in {**body, **change}.items() if v is not GONE}
    r = http.post(path, json=sent)
    assert r.status_code == 400
    error = r.json()["error"]
    assert (error["param"], error["code"], error["type"]) == (param, code, "invalid_request_error")
    assert error["message"].startswith(message)


def check_not_json(http: httpx.Client, path: str) -> None:
    """A body that is not JSON, and one that is not an object, are refused as OpenAI refuses them."""
    r = http.post(path, content=b"{model: gpt-4o", headers={"content-type": "application/json"})
    assert r.status_code == 400
    assert "could not parse the JSON body" in r.json()["error"]["message"]
    r = http.post(path, json=["not", "an", "object"])
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "invalid_type"
