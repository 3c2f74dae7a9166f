"""What the simulator saw, and a verdict on the client's retry behaviour.

Entries with one ``identity`` are attempts of "the same request" (see ``_core``), whatever the API key; a retry
repeats it, and so does a retry with the next key. Sending the next key after ``auth_failed`` or
``quota_exceeded`` is key rotation, not a blind retry of a failure that cannot succeed; the same key again is.
A server's ``x-should-retry`` verdict, when it sent one, wins over the taxonomy's. Several callers may send
the same request at once: each retry is judged against the wait its own failure was given (``_verdict``).

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
        entries = list(self.entries)
        for e in entries:
            status = "none" if e.status is None else str(e.status)
            row = by_scenario.setdefault(e.scenario, {})
            row[status] = row.get(status, 0) + 1
            by_status[status] = by_status.get(status, 0) + 1
            by_endpoint[e.endpoint] = by_endpoint.get(e.endpoint, 0) + 1
        return {
            "requests": sum(by_status.values()),
            "by_scenario": by_scenario,
            "by_status": by_status,
            "by_endpoint": by_endpoint,
            "verdict": _verdict(entries),
        }


class _Open:
    """A failed attempt whose retry has not been seen yet, and the first request of its kind sent too soon
    after it (a retry that did not wait, unless the failure's own retry turns up later)."""

    __slots__ = ("early", "failure")

    def __init__(self, failure: Entry) -> None:
        self.failure = failure
        self.early: Entry | None = None


def _in_time(failure: Entry, e: Entry) -> bool:
    """Whether ``e`` may be the retry of ``failure`` as the answer asked: after the wait it gave (or a moment,
    when it gave none), or at once with another key where the wait or the refusal was the key's."""
    if e.key != failure.key and (failure.retry_after_s is not None or failure.scenario in _KEY_CODES):
        return True
    wait = _NO_BACKOFF_S if failure.retry_after_s is None else failure.retry_after_s * _WAIT_SLACK
    return e.at - failure.at >= wait


def _verdict(entries: list[Entry]) -> dict[str, Any]:
    """Judge each retry against the answer its own request got.

    Concurrent callers may send the same request: a request that arrives before the wait a failure gave has
    passed is another caller's, unless that failure's own retry never comes in time. So each failure is
    paired with a later request of its kind that comes in time (the latest failure such a request may answer);
    one that never gets such a retry is paired with the first request sent too soon after it, and that is the
    retry that ignored the wait.
    """
    opens: dict[str, list[_Open]] = {}
    parent: dict[int, Entry] = {}
    pairs: list[tuple[Entry, Entry, bool]] = []  # (failure, its retry, sent too soon)
    for e in entries:
        waiting = opens.get(e.identity)
        if waiting:
            # The latest failure first: one caller retrying in turn retries what just failed.
            match = next((o for o in reversed(waiting) if _in_time(o.failure, e)), None)
            if match is not None:
                waiting.remove(match)
                pairs.append((match.failure, e, False))
                parent[id(e)] = match.failure
            else:
                for o in waiting:
                    if o.early is None:
                        o.early = e
        if _failed(e):
            opens.setdefault(e.identity, []).append(_Open(e))
    used: set[int] = set()
    for waiting in opens.values():
        for o in waiting:
            if o.early is not None and id(o.early) not in used and id(o.early) not in parent:
                used.add(id(o.early))
                pairs.append((o.failure, o.early, True))
                parent[id(o.early)] = o.failure
    ignored = non_retryable = no_backoff = rotations = 0
    storms: dict[str, int] = {}
    for failure, retry, early in pairs:
        if failure.scenario in _KEY_CODES and retry.key != failure.key:
            rotations += 1
        elif not _may_retry(failure) and retry.version == failure.version:
            non_retryable += 1
        if early and failure.retry_after_s is not None:
            ignored += 1
        elif early:
            no_backoff += 1
            storms[failure.identity] = storms.get(failure.identity, 0) + 1
    attempts: dict[int, int] = {}
    for e in entries:  # a retry comes after what it retries, so its parent is already numbered
        up = parent.get(id(e))
        attempts[id(e)] = 1 if up is None else attempts[id(up)] + 1
    storm = any(n >= _STORM_RETRIES for n in storms.values())
    problems: list[str] = []
    if ignored:
        problems.append(f"{ignored} retr{'y' if ignored == 1 else 'ies'} came sooner than retry-after said")
    if non_retryable:
        problems.append(f"{non_retryable} retr{'y' if non_retryable == 1 else 'ies'} of a failure that must "
                        "not be retried (quota, auth, filters, bad requests)")  # fmt: skip
    if storm:
        problems.append(f"retry storm: {_STORM_RETRIES}+ retries of one request without backoff")
    return {
        "ok": not problems,
        "problems": problems,
        "retries": len(pairs),
        "key_rotations": rotations,
        "max_attempts": max(attempts.values(), default=0),
        "ignored_retry_after": ignored,
        "retried_non_retryable": non_retryable,
        "retries_without_backoff": no_backoff,
        "storm": storm,
    }


def _may_retry(e: Entry) -> bool:
    if e.should_retry is not None:
        return e.should_retry
    info = CODES.get(e.scenario)
    return info is None or info.retryable


def _failed(e: Entry) -> bool:
    return e.scenario != "ok" or e.status is None or e.status >= 400
