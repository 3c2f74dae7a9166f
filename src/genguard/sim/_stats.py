"""What the simulator saw, and a verdict on the client's retry behaviour.

"The same request" is the same body sent to the same endpoint, whatever the API key: a retry repeats it,
and so does a retry with the next key. Sending the next key after ``auth_failed`` or ``quota_exceeded`` is
key rotation, not a blind retry of a failure that cannot succeed; the same key again is. A server's
``x-should-retry`` verdict, when it sent one, wins over the taxonomy's.

>>> stats = Stats()
>>> e = stats.start("key+hash", "rate_limited", "chat", now=0.0)
>>> e.status, e.retry_after_s = 429, 2.0
>>> _ = stats.start("key+hash", "ok", "chat", now=0.5).status
>>> stats.snapshot()["verdict"]["ignored_retry_after"]
1
"""

from __future__ import annotations

from typing import Any

from ..core.taxonomy import CODES

# Codes where sending the same request with another key is the cure, not a blind retry.
_KEY_CODES = frozenset({"auth_failed", "quota_exceeded"})
# A retry sooner than this after a failure that gave no wait counts as "no backoff".
_NO_BACKOFF_S = 0.1
# This many no-backoff retries of one request make a storm.
_STORM_RETRIES = 3
# Clients may round a wait down a little; a retry this early still counts as honouring it.
_WAIT_SLACK = 0.9


class Entry:
    """One request as the simulator saw it; ``status`` None means no response was ever sent (a stall)."""

    __slots__ = ("at", "endpoint", "identity", "key", "retry_after_s", "scenario", "should_retry", "status",
                 "version")  # fmt: skip

    def __init__(self, identity: str, scenario: str, endpoint: str, at: float, key: str = "",
                 version: str = "") -> None:  # fmt: skip
        self.identity = identity
        self.key = key  # a tag of the API key, never the key
        # A tag of the body as sent: two attempts of one request with different tags changed something (a
        # re-ask, a raised max_tokens), which is a cure, not a blind retry.
        self.version = version or identity
        self.should_retry: bool | None = None
        self.scenario = scenario
        self.endpoint = endpoint
        self.at = at
        self.status: int | None = None
        self.retry_after_s: float | None = None


class Stats:
    """Every request's entry, kept in arrival order; ``snapshot()`` aggregates them."""

    def __init__(self) -> None:
        self.entries: list[Entry] = []

    def start(self, identity: str, scenario: str, endpoint: str, *, now: float, key: str = "",
              version: str = "") -> Entry:  # fmt: skip
        entry = Entry(identity, scenario, endpoint, now, key, version)
        self.entries.append(entry)
        return entry

    def snapshot(self) -> dict[str, Any]:
        """Counts by scenario, status and endpoint, and the client verdict."""
        by_scenario: dict[str, dict[str, int]] = {}
        by_status: dict[str, int] = {}
        by_endpoint: dict[str, int] = {}
        last: dict[str, Entry] = {}
        attempts: dict[str, int] = {}
        ignored = non_retryable = no_backoff = retries = rotations = 0
        problems: list[str] = []
        storms: dict[str, int] = {}
        for e in list(self.entries):
            status = "none" if e.status is None else str(e.status)
            row = by_scenario.setdefault(e.scenario, {})
            row[status] = row.get(status, 0) + 1
            by_status[status] = by_status.get(status, 0) + 1
            by_endpoint[e.endpoint] = by_endpoint.get(e.endpoint, 0) + 1
            attempts[e.identity] = attempts.get(e.identity, 0) + 1
            prev = last.get(e.identity)
            last[e.identity] = e
            if prev is None or not _failed(prev):
                continue
            retries += 1
            gap = e.at - prev.at
            if prev.retry_after_s is not None and gap < prev.retry_after_s * _WAIT_SLACK:
                ignored += 1
            if prev.scenario in _KEY_CODES and e.key != prev.key:
                rotations += 1
            elif not _may_retry(prev) and e.version == prev.version:
                non_retryable += 1
            if prev.retry_after_s is None and gap < _NO_BACKOFF_S:
                no_backoff += 1
                storms[e.identity] = storms.get(e.identity, 0) + 1
        storm = any(n >= _STORM_RETRIES for n in storms.values())
        if ignored:
            problems.append(
                f"{ignored} retr{'y' if ignored == 1 else 'ies'} came sooner than retry-after said"
            )
        if non_retryable:
            problems.append(f"{non_retryable} retr{'y' if non_retryable == 1 else 'ies'} of a failure that must "
                            "not be retried (quota, auth, filters, bad requests)")  # fmt: skip
        if storm:
            problems.append(f"retry storm: {_STORM_RETRIES}+ retries of one request without backoff")
        return {
            "requests": sum(by_status.values()),
            "by_scenario": by_scenario,
            "by_status": by_status,
            "by_endpoint": by_endpoint,
            "verdict": {
                "ok": not problems,
                "problems": problems,
                "retries": retries,
                "key_rotations": rotations,
                "max_attempts": max(attempts.values(), default=0),
                "ignored_retry_after": ignored,
                "retried_non_retryable": non_retryable,
                "retries_without_backoff": no_backoff,
                "storm": storm,
            },
        }


def _may_retry(e: Entry) -> bool:
    if e.should_retry is not None:
        return e.should_retry
    info = CODES.get(e.scenario)
    return info is None or info.retryable


def _failed(e: Entry) -> bool:
    return e.scenario != "ok" or e.status is None or e.status >= 400
