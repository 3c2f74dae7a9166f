"""``genguard demo``: a tour of the failures a user meets, played by the embedded simulator (no key, no network).

The tour is data: each :class:`Step` names the simulator's scenario, the call, and what the outcome must
show. Image and video steps can be appended to :data:`STEPS` with their own ``run`` function.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import click
import httpx
import orjson

from .._client import Client
from .._outcome import Outcome
from .._retry import RetryPolicy
from ._render import render_outcome

_MSGS = [{"role": "user", "content": "Write one line about harbours."}]
_GOOD_KEY = "sk-demo-good-key-0000000000"
_BAD_KEY = "sk-demo-revoked-key-000000"


@dataclass(frozen=True, slots=True)
class Step:
    """One stop of the tour: the scenario played, the call made, and what the outcome must show."""

    title: str
    story: str
    expect: Callable[[Outcome], bool]
    scenario: str | None = None
    call: dict[str, Any] = field(default_factory=dict)
    client: dict[str, Any] = field(default_factory=dict)
    sim: dict[str, Any] = field(default_factory=dict)
    # Scenario per model, for steps where one model fails and another answers.
    by_model: dict[str, str] = field(default_factory=dict)
    stream: bool = False


def _codes(o: Outcome) -> list[str | None]:
    return [a.code for a in o.history]


STEPS: list[Step] = [
    Step("A plain call", "HTTP 200 and a normal finish: the only kind of success genguard accepts.",
         lambda o: o.ok and o.finish_reason == "stop"),
    Step("Rate limited, then retried", "A 429 with retry-after: genguard waits exactly as long as the server "
         "said, then succeeds.", lambda o: o.ok and _codes(o)[0] == "rate_limited", scenario="rate_limited:1"),
    Step("Quota exhausted", "A 429 that is not a rate limit: waiting cannot help, so it is not retried "
         "(the official SDK retries it).", lambda o: o.code == "quota_exceeded" and o.attempts == 1,
         scenario="quota_exceeded"),
    Step("Content filtered", "HTTP 200, but finish_reason is content_filter: no usable answer.",
         lambda o: o.code == "content_filtered", scenario="content_filtered"),
    Step("Truncated", "HTTP 200, but the answer hit max_tokens and stops mid-sentence.",
         lambda o: o.code == "truncated" and bool(o.text), call={"max_tokens": 6}),
    Step("A stream cut off", "The stream ends without a finish_reason: the partial text is kept and named.",
         lambda o: o.code == "incomplete_stream" and bool(o.text), scenario="incomplete_stream", stream=True,
         client={"retry": RetryPolicy(max_attempts=1)}),
    Step("An error inside a 200 stream", "The server sends an error event mid-stream.",
         lambda o: o.code == "stream_error", scenario="stream_error", stream=True,
         client={"retry": RetryPolicy(max_attempts=1)}),
    Step("Silent: not JSON", "Everything looks fine to HTTP, but the app asked for JSON and got prose.",
         lambda o: o.code == "invalid_json" and o.kind == "silent", scenario="invalid_json",
         call={"validate": "json"}),
    Step("A fallback model", "The first model is overloaded (503) even after retries; the fallback answers.",
         lambda o: o.ok and o.extra.get("model") == "gpt-4o-mini" and "unavailable" in _codes(o),
         by_model={"gpt-4o": "unavailable"}, call={"model": "gpt-4o"},
         client={"fallbacks": ["gpt-4o-mini"], "retry": RetryPolicy(max_attempts=2, backoff_base=0.1)}),
    Step("Key rotation", "The first key was revoked (401); genguard moves to the next key.",
         lambda o: o.ok and _codes(o)[0] == "auth_failed",
         client={"api_key": [_BAD_KEY, _GOOD_KEY]}, sim={"api_keys": (_GOOD_KEY,)}),
]  # fmt: skip


def _http_for(step: Step) -> httpx.Client | None:
    if not step.by_model:
        return None

    def hook(request: httpx.Request) -> None:
        scenario = step.by_model.get(orjson.loads(request.content).get("model"))
        if scenario:
            request.headers["x-genguard-scenario"] = scenario

    return httpx.Client(event_hooks={"request": [hook]})


def run_step(base_url: str, step: Step) -> Outcome:
    """Play ``step`` against the simulator at ``base_url`` and return the call's Outcome."""
    client_kw: dict[str, Any] = {"api_key": _GOOD_KEY, "retry": RetryPolicy(backoff_base=0.1, jitter=0.05)}
    client_kw.update(step.client)
    headers = {"x-genguard-scenario": step.scenario} if step.scenario else None
    http = _http_for(step)
    call: dict[str, Any] = {"model": "gpt-4o-mini", "messages": _MSGS, **step.call}
    with Client(base_url, headers=headers, stall_timeout=2.0, http_client=http, **client_kw) as client:
        if step.stream:
            with client.stream(**call) as s:
                for _ in s:
                    pass
            outcome = s.outcome
        else:
            outcome = client.chat(**call)
    if http is not None:
        http.close()
    return outcome


def _show(n: int, step: Step, outcome: Outcome, passed: bool) -> None:
    click.echo(click.style(f"\n── {n}. {step.title}", bold=True))
    click.echo(f"   {step.story}")
    if outcome.ok:
        click.echo(f"   ok: {(outcome.text or '')[:100]!r}")
    else:
        click.echo("   " + render_outcome(outcome).replace("\n", "\n   "))
    if len(outcome.history) > 1:
        trail = ", ".join(
            f"{a.code or 'ok'} on {a.model}" + (f" (waited {a.wait_s:.2g} s)" if a.wait_s else "")
            for a in outcome.history
        )
        click.echo(f"   attempts: {trail}")
    mark = click.style("✓ as expected", fg="green") if passed else click.style("✗ NOT as expected", fg="red")
    click.echo(f"   {mark}")


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print one outcome object per step instead of text.")
def demo(as_json: bool) -> None:
    """Tour the failures of AI APIs on the embedded simulator: no key, no network, a few seconds.

    Each step plays one failure as a user meets it (rate limits, exhausted quota, filtered and truncated
    answers, cut streams, silent JSON failures, fallbacks, key rotation) and shows genguard's outcome and
    diagnosis. Exit 0 when every step showed what it should.
    """
    from ..sim import Simulator

    failures = 0
    with Simulator(retry_after_s=0.5, stall_s=3.0) as sim:
        for n, step in enumerate(STEPS, 1):
            saved = sim.config
            if step.sim:
                sim.configure(**step.sim)
            try:
                outcome = run_step(sim.base_url, step)
            finally:
                sim.restore(saved)
            passed = step.expect(outcome)
            failures += not passed
            if as_json:
                data = outcome.to_dict()
                data.update(
                    step=step.title, as_expected=passed, history=[a.to_dict() for a in outcome.history]
                )
                click.echo(orjson.dumps(data, default=str).decode())
            else:
                _show(n, step, outcome, passed)
    if not as_json:
        click.echo(f"\n{len(STEPS) - failures}/{len(STEPS)} steps showed what they should.")
    sys.exit(1 if failures else 0)
