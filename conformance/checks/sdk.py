"""Driving an official SDK (openai's, anthropic's): its calls run in the SDK worker process
(`conformance/sdk_worker`), their requests through the run's own transport (bounded, retried,
recorded and redacted like every other request), their exchanges the check's evidence.

One policy for every SDK: independent calls go out together, and an endpoint fault (no complete
answer, a 5xx, a 429 still there after our retries) is an `error`, not a finding about the SDK;
anything else the SDK raises is the finding. What it raised comes back as data (`Raised`): its
class's names, message and status.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from conformance.checks.base import ProbeContext, ProbeFailed
from conformance.exceptions import BudgetExhausted, RequestTimeout
from conformance.exchange import Exchange
from conformance.results import Observation, observe
from conformance.sdk_worker import relay
from conformance.sdk_worker.relay import Raised

#: One SDK call of a check: its name in the evidence, the function of sdk_worker/PACKAGE_calls.py that makes
#: it, and that function's arguments (plain data).
Step = tuple[str, str, dict[str, Any]]


@dataclass(frozen=True)
class Sdk:
    """What the SDK checks need to know of one official SDK."""

    #: The behaviour its check reports when every step parsed: its API family's reference.
    behaviour: str
    #: Its package.
    package: str
    #: The SDK's base URL for the run's, or None when it cannot be pointed at it.
    base_url: Callable[[str], str | None]


def run_steps(ctx: ProbeContext, sdk: Sdk, steps: Sequence[Step]) -> list[tuple[Raised | None, str | None]]:
    """Run independent SDK calls at once, each with its own client; what each raised, and its note
    (what it could not show). Their exchanges join the check's evidence in the steps' order,
    whichever answered first."""
    prefix = sdk.base_url(ctx.client.base_url)
    if prefix is None:
        raise ProbeFailed(f"the {sdk.package} SDK cannot be pointed at the base URL {ctx.client.base_url}")
    logs: list[list[Exchange]] = [[] for _ in steps]
    try:
        outcomes = relay.shared(sdk.package).call(ctx.client, ctx.check_id, prefix,
                                                       [(function, arguments) for _, function, arguments in steps],
                                                       logs)
    except relay.WorkerFailed as failed:
        raise ProbeFailed(str(failed)) from None
    finally:
        for log in logs:
            ctx.exchanges.extend(log)
    return outcomes


def raise_endpoint_fault(ctx: ProbeContext, name: str, raised: Raised | None) -> None:
    """Raise what an SDK call raised when it is the endpoint's fault (no complete answer, a 5xx, a
    429 still there after the retries): an error, not a finding about the SDK. A request the token
    budget did not pay for skips the check. Anything else the SDK raised (or nothing) is left to the
    caller to judge."""
    if raised is None:
        return
    if isinstance(raised.fault, BudgetExhausted):
        raise raised.fault
    redact = ctx.client.redactor.text
    if raised.is_a("APITimeoutError", "TimeoutException"):
        raise RequestTimeout(f"{name}: no complete response within the {ctx.client.timeout:g}s timeout "
                             f"({raised.name})") from None
    if raised.is_a("APIConnectionError", "HTTPError"):
        # The SDK says "Connection error."; the transport says which
        cause = raised.fault if raised.fault is not None else raised
        cause_name = type(cause).__name__ if raised.fault is not None else raised.name
        raise ProbeFailed(f"{name}: {cause_name}: {redact(str(cause))}") from None
    code = (raised.status_code or 0) if raised.is_a("APIStatusError") else 0
    if code >= 500 or code == 429:
        raise ProbeFailed(f"{name}: HTTP {code}: {redact(str(raised))[:240]}") from None


def sdk_exchange(ctx: ProbeContext, sdk: Sdk, step: Step) -> tuple[Exchange, Raised | None]:
    """One SDK call and what it raised, with the one request it sent (validated as `ctx.send`
    validates): for a check that judges both what the endpoint answered and what the SDK made of
    it. An endpoint fault raises (`raise_endpoint_fault`)."""
    sent = len(ctx.exchanges)
    [(raised, _)] = run_steps(ctx, sdk, [step])
    raise_endpoint_fault(ctx, step[0], raised)
    if len(ctx.exchanges) != sent + 1:
        raise ProbeFailed(f"{step[0]}: the SDK sent {len(ctx.exchanges) - sent} requests, not one")
    exchange = ctx.exchanges[sent]
    ctx.validate_exchange(ctx.path_of(exchange), exchange)
    return exchange, raised


def sdk_steps(ctx: ProbeContext, sdk: Sdk, steps: Sequence[Step]) -> tuple[Observation, list[str]]:
    """Run SDK calls (independent of each other, so they go out together); the first in order that
    raised is the verdict, named with the step. An endpoint fault (no complete answer, a 5xx, a 429
    still there after the retries) is an error, not a finding about the SDK. Also returns the
    steps' notes: what they could not show (tools refused, no call made)."""
    done: list[str] = []
    outcomes = run_steps(ctx, sdk, steps)
    notes = [note for _, note in outcomes if note]
    for (name, _, _), (raised, _) in zip(steps, outcomes, strict=True):
        raise_endpoint_fault(ctx, name, raised)
        if raised is not None:
            return observe("other", f"{name} failed: {raised.name}: "
                           f"{ctx.client.redactor.text(str(raised))[:240]}", steps_passed=done), notes
        done.append(name)
    return observe(sdk.behaviour, "the SDK " + ", ".join(done) + " all parsed", steps_passed=done), notes
