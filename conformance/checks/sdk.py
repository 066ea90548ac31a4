"""Driving an official SDK (openai's, anthropic's) through the run's own transport: bounded,
retried, recorded and redacted like every other request, its exchanges the check's evidence.

One policy for every SDK: independent calls go out together, and an endpoint fault (no complete
answer, a 5xx, a 429 still there after our retries) is an `error`, not a finding about the SDK;
anything else the SDK raises is the finding. The SDK is imported when a check drives it (about
0.4 s each), never when the checks are declared.
"""

from __future__ import annotations

import importlib
import threading
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

#: Held by every import of an SDK (`with SDK_IMPORT: import openai`): the SDKs are imported when
#: their checks run, on several threads at once, and two threads importing one package whose modules
#: import each other can deadlock in CPython's per-module import locks, which it breaks by handing
#: one of them a half-initialised module ("cannot import name 'ChatCompletionFunctionToolParam' from
#: partially initialized module 'openai.types.chat'", seen in a run). tests/test_cli.py holds every
#: import site to it.
SDK_IMPORT = threading.Lock()


@dataclass(frozen=True)
class Sdk:
    """What the SDK checks need to know of one official SDK."""

    #: The behaviour its check reports when every step parsed: its API family's reference.
    behaviour: str
    #: Its package, whose (Stainless-generated) errors are APITimeoutError, APIConnectionError and
    #: APIStatusError in both SDKs.
    package: str
    #: A client of the SDK whose traffic goes through `ctx.client` into the given log.
    client: Callable[[ProbeContext, list[Exchange]], Any]

    def errors(self) -> tuple[type[Exception], type[Exception], type[Exception]]:
        """(no complete answer in time, a connection that failed, an HTTP error status)."""
        with SDK_IMPORT:
            package = importlib.import_module(self.package)
        return package.APITimeoutError, package.APIConnectionError, package.APIStatusError


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


def raise_endpoint_fault(ctx: ProbeContext, sdk: Sdk, name: str, raised: BaseException | None) -> None:
    """Raise what an SDK call raised when it is the endpoint's fault (no complete answer, a 5xx, a
    429 still there after the retries): an error, not a finding about the SDK. Anything else the
    SDK raised (or nothing) is left to the caller to judge."""
    if raised is None:
        return
    timeout, connection, status = sdk.errors()
    redact = ctx.client.redactor.text
    if isinstance(raised, (timeout, httpx.TimeoutException)):
        raise RequestTimeout(f"{name}: no complete response within the {ctx.client.timeout:g}s timeout "
                             f"({type(raised).__name__})") from None
    if isinstance(raised, (connection, httpx.HTTPError)):
        cause = raised.__cause__ or raised  # the SDK says "Connection error."; the transport says which
        raise ProbeFailed(f"{name}: {type(cause).__name__}: {redact(str(cause))}") from None
    code = getattr(raised, "status_code", 0) if isinstance(raised, status) else 0
    if code >= 500 or code == 429:
        raise ProbeFailed(f"{name}: HTTP {code}: {redact(str(raised))[:240]}") from None


def sdk_exchange(ctx: ProbeContext, sdk: Sdk, name: str, step: Callable[[Any], None]
                 ) -> tuple[Exchange, BaseException | None]:
    """One SDK call, `step(client)`, and what it raised, with the one request it sent (validated
    as `ctx.send` validates): for a check that judges both what the endpoint answered and what
    the SDK made of it. An endpoint fault raises (`raise_endpoint_fault`)."""
    sent = len(ctx.exchanges)
    [raised] = run_steps(ctx, sdk, [(name, step)])
    raise_endpoint_fault(ctx, sdk, name, raised)
    if len(ctx.exchanges) != sent + 1:
        raise ProbeFailed(f"{name}: the SDK sent {len(ctx.exchanges) - sent} requests, not one")
    exchange = ctx.exchanges[sent]
    ctx.validate_exchange(ctx.path_of(exchange), exchange)
    return exchange, raised


def sdk_steps(ctx: ProbeContext, sdk: Sdk, steps: Sequence[Step]) -> Observation:
    """Run SDK calls, each `step(client)` (independent of each other, so they go out together); the
    first in order that raised is the verdict, named with the step. An endpoint fault (no complete
    answer, a 5xx, a 429 still there after the retries) is an error, not a finding about the SDK."""
    done: list[str] = []
    for (name, _), raised in zip(steps, run_steps(ctx, sdk, steps), strict=True):
        raise_endpoint_fault(ctx, sdk, name, raised)
        if raised is not None:
            return observe("other", f"{name} failed: {type(raised).__name__}: "
                           f"{ctx.client.redactor.text(str(raised))[:240]}", steps_passed=done)
        done.append(name)
    return observe(sdk.behaviour, "the SDK " + ", ".join(done) + " all parsed", steps_passed=done)
