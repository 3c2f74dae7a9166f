"""The code table is the product's contract: every code of TAXONOMY.md is there, with its kind and verdict."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest

from genguard import CODES, code_info, normalise_finish_reason

# TAXONOMY.md's codes as (code, kind, retryable); a code may be added, never renamed or dropped.
EXPECTED = {
    "auth_failed": ("hard", False),
    "permission_denied": ("hard", False),
    "model_not_found": ("hard", False),
    "not_found": ("hard", False),
    "bad_request": ("hard", False),
    "context_length_exceeded": ("hard", False),
    "request_too_large": ("hard", False),
    "prompt_blocked": ("hard", False),
    "quota_exceeded": ("hard", False),
    "rate_limited": ("hard", True),
    "request_timeout": ("hard", True),
    "conflict": ("hard", True),
    "unprocessable": ("hard", False),
    "server_error": ("hard", True),
    "bad_gateway": ("hard", True),
    "unavailable": ("hard", True),
    "gateway_timeout": ("hard", True),
    "timeout": ("hard", True),
    "connection_error": ("hard", True),
    "invalid_response": ("hard", True),
    "download_failed": ("hard", True),
    "invalid_input": ("hard", False),
    "content_filtered": ("soft", False),
    "truncated": ("soft", False),
    "empty_output": ("soft", True),
    "incomplete_stream": ("soft", True),
    "stream_error": ("soft", True),
    "generation_failed": ("soft", True),
    "task_timeout": ("soft", True),
    "stuck_in_queue": ("soft", True),
    "invalid_json": ("silent", False),
    "schema_mismatch": ("silent", False),
    "unexpected_label": ("silent", False),
    "too_short": ("silent", False),
    "pattern_mismatch": ("silent", False),
    "validation_failed": ("silent", False),
}


def test_every_contract_code_is_present_with_its_kind_and_verdict() -> None:
    for code, (kind, retryable) in EXPECTED.items():
        info = code_info(code)
        assert (info.kind, info.retryable) == (kind, retryable), code


def test_every_code_has_specific_cause_and_fix_per_endpoint() -> None:
    for info in CODES.values():
        for endpoint in ("chat", "image", "video"):
            cause, fix = info.cause_for(endpoint), info.fix_for(endpoint)
            assert len(cause) > 30, info.name
            assert len(fix) > 20, info.name
            assert "an error occurred" not in cause.lower()
    # Causes are distinct: no code shares another's diagnosis.
    assert len({c.cause for c in CODES.values()}) == len(CODES)


def test_matches_shared_taxonomy_when_present() -> None:
    """When the project's shared TAXONOMY.md is beside the checkout, its codes are all in the table."""
    path = Path(__file__).resolve().parents[2] / "shared" / "TAXONOMY.md"
    if not path.exists():
        pytest.skip("shared/TAXONOMY.md is not beside this checkout")
    codes = set(re.findall(r"^\| `([a-z_]+)` \|", path.read_text(), flags=re.M))
    codes -= {"stop", "length", "tool_calls", "content_filter", "error", "null", "hard", "soft", "silent"}
    assert codes, "no codes read from TAXONOMY.md"
    assert codes <= set(CODES)


@pytest.mark.parametrize(
    ("raw", "norm"),
    [
        ("stop", "stop"),
        ("eos", "stop"),
        ("end_turn", "stop"),
        ("STOP", "stop"),
        ("length", "length"),
        ("max_tokens", "length"),
        ("MAX_TOKENS", "length"),
        ("model_length", "length"),
        ("tool_calls", "tool_calls"),
        ("function_call", "tool_calls"),
        ("content_filter", "content_filter"),
        ("SAFETY", "content_filter"),
        ("PROHIBITED_CONTENT", "content_filter"),
        ("BLOCKLIST", "content_filter"),
        ("SPII", "content_filter"),
        ("RECITATION", "content_filter"),
        ("error", "error"),
        ("abort", "error"),
        (None, None),
        ("", None),
    ],
)
def test_finish_reason_normalised(raw: str | None, norm: str | None) -> None:
    assert normalise_finish_reason(raw) == norm


def test_unknown_finish_reason_kept_lower_cased_and_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="genguard"):
        assert normalise_finish_reason("Weird_Reason_X") == "weird_reason_x"
        assert normalise_finish_reason("WEIRD_REASON_X") == "weird_reason_x"
    assert sum("weird_reason_x" in r.getMessage() for r in caplog.records) == 1
