"""Run checks concurrently and judge each observation against the profile.

Requests are I/O-bound, so checks run in a thread pool as soon as the session knows which ones
were selected; each pytest item then only waits for its own result. A run against a slow endpoint
therefore takes about as long as its longest chain of dependent requests.
"""

from __future__ import annotations

import time
from pathlib import Path
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING

import httpx

from conformance.catalog import Catalog, Entry
from conformance.checks import REGISTRY, Check
from conformance.checks.base import ProbeContext, ProbeFailed
from conformance.client import BudgetExhausted, EndpointClient, EndpointError, Exchange, RunStats
from conformance.endpoint import Endpoint
from conformance.profiles import Profile
from conformance.results import CheckResult, Observation

if TYPE_CHECKING:  # cassettes import VCR.py (about a second): only runs that record or replay need it
    from conformance.cassettes import CassetteStore


def judge(observation: Observation, expected: list[str] | None) -> str:
    """The outcome of one observation under a profile's expectation."""
    if observation.behaviour == "inconclusive":
        return "inconclusive"
    if expected is None or observation.behaviour in expected:
        return "pass"
    return "fail"


def execute(check: Check, entry: Entry, profile: Profile, client: EndpointClient, model: str,
            context_window: int | None) -> CheckResult:
    """Probe, classify, judge; every exception becomes an `error` row, never a crash."""
    context = ProbeContext(client, model, context_window, check_id=check.id)
    started = time.monotonic()
    observation: Observation | None = None
    failure = skipped = None
    try:
        observation = check.probe(context)
        if observation.behaviour not in entry.vocabulary:
            failure = f"internal: check returned {observation.behaviour!r}, not one of {entry.vocabulary}"
    except BudgetExhausted as exhausted:
        skipped = str(exhausted)
    except EndpointError as error:
        failure = str(error)
        if error.exchange is not None and error.exchange not in context.exchanges:
            context.exchanges.append(error.exchange)
    except ProbeFailed as error:
        failure = str(error)
    except Exception as error:  # a bug in a check must not take the run down
        failure = f"internal error in the check: {type(error).__name__}: {error}"
    expected = profile.expected(entry.id)
    result = CheckResult(
        check_id=check.id, entry_id=entry.id, title=check.title, expected=expected,
        outcome="error", observed=None, reason=failure or "",
        duration_s=round(time.monotonic() - started, 3),
    )
    if skipped is not None:
        result.outcome, result.reason = "skip", skipped
    elif failure is None and observation is not None:
        result.outcome = judge(observation, expected)  # type: ignore[assignment]
        result.observed = observation.behaviour
        result.reason = observation.reason
        result.details = dict(observation.details)
        result.matches = [claim.label for claim in entry.documents_saying(observation.behaviour)]
    if context.violations:
        result.details["schema_violations"] = list(dict.fromkeys(context.violations))
    attach_evidence(result, context.exchanges)
    return result


def attach_evidence(result: CheckResult, exchanges: list[Exchange]) -> None:
    result.evidence = [exchange.evidence() for exchange in exchanges]
    result.curl = [exchange.curl() for exchange in exchanges]


@dataclass
class ConformanceRun:
    """One run: the endpoint, the profile, the pool of checks in flight and the results so far."""

    endpoint: Endpoint
    catalog: Catalog
    profile: Profile
    timeout: float
    context_window: int | None = None
    concurrency: int = 8
    stats: RunStats = field(default_factory=RunStats)
    started_at: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    results: dict[str, CheckResult] = field(default_factory=dict)
    status: str = "running"
    message: str | None = None
    #: The report files written at the end of the run.
    written: list[Path] = field(default_factory=list)
    #: How requests travel (None: straight to the network); a replay or recording transport.
    transport: httpx.BaseTransport | None = None
    #: Where the interactions go when recording.
    recording: CassetteStore | None = None
    #: The run's name (--name), shown in the reports and as its column in `conformance compare`.
    name: str | None = None

    def __post_init__(self) -> None:
        self._clock = time.monotonic()
        self.client = EndpointClient(self.endpoint.base_url, self.endpoint.api_key, self.timeout, self.stats,
                                     transport=self.transport, headers=self.endpoint.headers)
        self._pool = ThreadPoolExecutor(max_workers=max(1, self.concurrency), thread_name_prefix="check")
        self._futures: dict[str, Future[CheckResult]] = {}
        self.selected: list[str] = []

    @property
    def duration_s(self) -> float:
        return round(time.monotonic() - self._clock, 3)

    def start(self, check_ids: list[str]) -> None:
        """Submit every selected check at once; results are collected in `result()`."""
        self.selected = list(check_ids)
        for check_id in check_ids:
            check = REGISTRY[check_id]
            self._futures[check_id] = self._pool.submit(
                execute, check, self.catalog[check.entry], self.profile, self.client, self.endpoint.model,
                self.context_window)

    def result(self, check_id: str) -> CheckResult:
        result = self._futures[check_id].result()
        self.results[check_id] = result
        return result

    def ordered_results(self) -> list[CheckResult]:
        return [self.results[c] for c in self.selected if c in self.results]

    def finish(self, status: str, message: str | None = None) -> None:
        """Close the run; verdicts already reached are kept even if no pytest item asked for them."""
        self.status, self.message = status, message
        for check_id, future in self._futures.items():
            if check_id not in self.results and future.done() and not future.cancelled():
                self.results[check_id] = future.result()
        self._pool.shutdown(wait=status == "completed", cancel_futures=True)
        self.client.close()
        self.endpoint.close()
