"""Driving an official SDK (openai's, anthropic's) through the run's own transport: bounded,
retried, recorded and redacted like every other request, its exchanges the check's evidence.

One policy for every SDK: independent calls go out together, and an endpoint fault (no complete
answer, a 5xx, a 429 still there after our retries) is an `error`, not a finding about the SDK;
anything else the SDK raises is the finding.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx

from conformance.checks.base import ProbeContext, ProbeFailed
from conformance.exceptions import RequestTimeout
from conformance.exchange import Exchange
from conformance.results import Observation, observe

Step = tuple[str, Callable[[Any], None]]


@dataclass(frozen=True)
class Sdk:
    """What the SDK checks need to know of one official SDK."""

    #: The behaviour its check reports when every step parsed: its API family's reference.
    behaviour: str
    #: A client of the SDK whose traffic goes through `ctx.client` into the given log.
    client: Callable[[ProbeContext, list[Exchange]], Any]
    #: Its exceptions for no complete answer in time, for a connection that failed, and for an
    #: HTTP error status (with `status_code`).
    timeout_errors: tuple[type[BaseException], ...]
    connection_errors: tuple[type[BaseException], ...]
    status_error: type[Exception]


def run_steps(ctx: ProbeContext, sdk: Sdk, steps: Sequence[Step]) -> list[BaseException | None]:
    """Run independent SDK calls at once, each with its own client, and return what each raised.
    Their exchanges join the check's evidence in the steps' order, whichever answered first."""
    logs: list[list[Exchange]] = [[] for _ in steps]

    def attempt(step: Callable[[Any], None], log: list[Exchange]) -> BaseException | None:
        try:
            step(sdk.client(ctx, log))
        except Exception as error:  # judged in order by sdk_steps
            return error
        return None

    with ThreadPoolExecutor(max_workers=max(1, len(steps))) as pool:
        raised = list(pool.map(attempt, [step for _, step in steps], logs))
    for log in logs:
        ctx.exchanges.extend(log)
    return raised


def sdk_steps(ctx: ProbeContext, sdk: Sdk, steps: Sequence[Step]) -> Observation:
    """Run SDK calls, each `step(client)` (independent of each other, so they go out together); the
    first in order that raised is the verdict, named with the step. An endpoint fault (no complete
    answer, a 5xx, a 429 still there after the retries) is an error, not a finding about the SDK."""
    done: list[str] = []
    redact = ctx.client.redactor.text
    timeouts: tuple[type[BaseException], ...] = (*sdk.timeout_errors, httpx.TimeoutException)
    connection_failures: tuple[type[BaseException], ...] = (*sdk.connection_errors, httpx.HTTPError)
    for (name, _), raised in zip(steps, run_steps(ctx, sdk, steps), strict=True):
        try:
            if raised is not None:
                raise raised
        except timeouts as error:
            raise RequestTimeout(f"{name}: no complete response within the {ctx.client.timeout:g}s timeout "
                                 f"({type(error).__name__})") from None
        except connection_failures as error:
            cause = error.__cause__ or error  # the SDK says "Connection error."; the transport says which
            raise ProbeFailed(f"{name}: {type(cause).__name__}: {redact(str(cause))}") from None
        except Exception as error:  # whatever else the SDK raises is the finding
            status = getattr(error, "status_code", 0) if isinstance(error, sdk.status_error) else 0
            if status >= 500 or status == 429:
                raise ProbeFailed(f"{name}: HTTP {status}: {redact(str(error))[:240]}") from None
            return observe("other", f"{name} failed: {type(error).__name__}: {redact(str(error))[:240]}",
                           steps_passed=done)
        done.append(name)
    return observe(sdk.behaviour, "the SDK " + ", ".join(done) + " all parsed", steps_passed=done)
