"""Run checks concurrently and judge each observation against the profile.

Requests are I/O-bound, so checks run in a thread pool as soon as the session knows which ones
were selected; each pytest item then only waits for its own result. A run against a slow endpoint
therefore takes about as long as its longest chain of dependent requests.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import httpx

from conformance.accounting import RunStats, Spend
from conformance.catalog import Catalog, Entry
from conformance.checks import REGISTRY, Check
from conformance.checks.base import ProbeContext, ProbeFailed
from conformance.client import EndpointClient
from conformance.console import NOT_JUDGED, label
from conformance.endpoint import Endpoint, ModelTarget
from conformance.exceptions import BudgetExhausted, EndpointError, RequestTimeout
from conformance.exchange import Exchange
from conformance.options import Shard
from conformance.profiles import Profile
from conformance.results import INTERRUPTED, CheckResult, Observation
from conformance.workers import Workers

if TYPE_CHECKING:  # cassettes import VCR.py (about a second): only runs that record or replay need it
    from conformance.cassettes import CassetteStore


def judge(observation: Observation, expected: list[str] | None) -> str:
    """The outcome of one observation under a profile's expectation."""
    if observation.behaviour == "inconclusive":
        return "inconclusive"
    if expected is None or observation.behaviour in expected:
        return "pass"
    return "fail"


class Case(NamedTuple):
    """One unit of a run: a check judged on one model (a one-model run has one case per check)."""

    check_id: str
    model: str

    def __str__(self) -> str:
        """How pytest names the item: both the check and the model."""
        return f"{self.check_id}@{self.model}"


def execute(check: Check, entry: Entry, profile: Profile, client: EndpointClient, model: str,
            context_window: int | None, cassette: str | None = None) -> CheckResult:
    """Probe, classify, judge; every exception becomes an `error` row, never a crash. `cassette`
    names where a recording files the check's requests (default: the check's id)."""
    key = cassette or check.id
    context = ProbeContext(client, model, context_window, check_id=key)
    started = time.monotonic()
    observation: Observation | None = None
    failure = skipped = None
    try:
        try:
            observation = check.probe(context)
        except RequestTimeout:
            # Our own load may be why: once more, with one request in flight at a time.
            context = ProbeContext(client, model, context_window, check_id=key)
            with client.limit.alone():
                observation = check.probe(context)
        if observation.behaviour not in entry.vocabulary:
            failure = f"internal: check returned {observation.behaviour!r}, not one of {entry.vocabulary}"
    except BudgetExhausted as exhausted:
        skipped = str(exhausted)
    except EndpointError as error:
        failure = str(error)
        if error.exchange is not None and error.exchange not in context.exchanges:
            context.exchanges.append(error.exchange)
    except Exception as error:  # ProbeFailed, or a bug in a check: it must not take the run down
        cause = budget_exhausted(error)
        if cause is not None:  # raised inside a foreign client (the SDK), which wrapped it
            skipped = str(cause)
        else:
            failure = str(error) if isinstance(error, ProbeFailed) else \
                f"internal error in the check: {type(error).__name__}: {error}"
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
        result.details["schema_violations"] = context.reported_violations()
    attach_evidence(result, context.exchanges)
    result.spent = Spend.of(context.exchanges)
    return result


def budget_exhausted(error: BaseException | None) -> BudgetExhausted | None:
    """The BudgetExhausted behind an exception, however many wrappers (the SDK's) hide it."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, BudgetExhausted):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


#: The reason of a check the run never judged because it stopped first.


def not_judged(check: Check, entry: Entry, profile: Profile, reason: str) -> CheckResult:
    """The row of a check that was never judged: `skip`, with why."""
    return CheckResult(check_id=check.id, entry_id=entry.id, title=check.title, expected=profile.expected(entry.id),
                       outcome="skip", observed=None, reason=reason)


def unserved_family(check: Check, entry: Entry, profile: Profile, why: str) -> CheckResult:
    """A check of an API family the profile judges but the endpoint does not serve: `unsupported`,
    judged like any observation, with nothing sent. The preflight's refused request is the evidence,
    and the other family's answered one its control (a run where no family is served never starts)."""
    expected = profile.expected(entry.id)
    observation = Observation("unsupported", f"the endpoint does not serve the {entry.api} API family: {why}")
    return CheckResult(check_id=check.id, entry_id=entry.id, title=check.title, expected=expected,
                       outcome=judge(observation, expected), observed=observation.behaviour,  # type: ignore[arg-type]
                       reason=observation.reason,
                       matches=[claim.label for claim in entry.documents_saying(observation.behaviour)])


def elide_evidence(result: CheckResult) -> CheckResult:
    """A passing case of a matrix run keeps its verdict, reason and details but not the exchanges
    behind them (its model's section still counts its requests and tokens): hundreds of models'
    passes would otherwise hold gigabytes that no reader opens. Every other outcome keeps its
    evidence and curl lines whole."""
    if result.outcome == "pass":
        result.evidence, result.curl = [], []
    return result


def judge_case(check: Check, entry: Entry, profile: Profile, client: EndpointClient, model: str,
               context_window: int | None, cassette: str) -> CheckResult:
    """`execute` for one case of a matrix run, its evidence elided if it passed."""
    return elide_evidence(execute(check, entry, profile, client, model, context_window, cassette))


@dataclass
class Job:
    """One case to judge (in this process or a worker's): what `execute` needs but the client, the
    endpoint whose client it takes, and where its result goes when a worker judges it."""

    case: Case
    check: Check
    entry: Entry
    profile: Profile
    model: str
    context_window: int | None
    cassette: str
    #: The endpoint's name in a run of several (None: the run's endpoint).
    endpoint: str | None
    #: A matrix case: its evidence is elided if it passes (`judge_case`).
    matrix: bool
    #: Where its result goes when a worker process judges it (workers.py).
    future: Future[CheckResult] | None = None

    def judge(self, client: EndpointClient) -> CheckResult:
        judged = judge_case if self.matrix else execute
        return judged(self.check, self.entry, self.profile, client, self.model, self.context_window, self.cassette)

    @property
    def settled(self) -> bool:
        return self.future is not None and self.future.done()

    def settle(self, result: CheckResult) -> None:
        """A worker's result for it (`future` was made when the job was given to the worker)."""
        assert self.future is not None
        self.future.set_result(result)

    def broken(self, reason: str) -> CheckResult:
        """Its row when judging it broke outside the check (its worker process died): `error`."""
        return CheckResult(check_id=self.check.id, entry_id=self.entry.id, title=self.check.title,
                           expected=self.profile.expected(self.entry.id), outcome="error", observed=None,
                           reason=reason)


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
    results: dict[Case, CheckResult] = field(default_factory=dict)
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
    #: A matrix run's models (empty: one model, the endpoint's); `--context-window` overrides theirs.
    models: list[ModelTarget] = field(default_factory=list)
    #: `--shard K/N` of a matrix run (None: the whole run).
    shard: Shard | None = None
    #: How many cases the whole run has before sharding, and what identifies them (`selection_digest`):
    #: a shard's report says both, so `conformance merge` can tell shards of one run apart from others.
    planned: int = 0
    planned_digest: str = ""
    #: Processes judging a live matrix run's cases (workers.py); 1: every case in this process.
    workers: int = 1

    def __post_init__(self) -> None:
        self._clock = time.monotonic()
        self.client = self.client_for(None, self.stats, self.concurrency)
        # A run of several endpoints: a client each, all counted and budgeted in the one RunStats.
        self.clients = {name: self.client_for(name, self.stats, self.concurrency) for name in self.endpoint.members}
        self._pool = ThreadPoolExecutor(max_workers=max(1, self.concurrency), thread_name_prefix="check")
        self._futures: dict[Case, Future[CheckResult]] = {}
        self._workers: Workers | None = None
        self.selected: list[Case] = []
        self._targets = {target.id: target for target in self.models}

    def client_for(self, name: str | None, stats: RunStats, concurrency: int) -> EndpointClient:
        """A client of the run's endpoint (or of its member `name`), counting in `stats`, with up to
        `concurrency` requests in flight."""
        endpoint = self.endpoint if name is None else self.endpoint.members[name]
        return EndpointClient(endpoint.base_url, endpoint.api_key, self.timeout, stats, transport=self.transport,
                              concurrency=concurrency, headers=endpoint.headers)

    @property
    def matrix(self) -> bool:
        """Whether this run judges a matrix of models (its report has a model dimension)."""
        return bool(self.models)

    @property
    def model_ids(self) -> list[str]:
        return [target.id for target in self.models] if self.models else [self.endpoint.model]

    @property
    def replaying(self) -> bool:
        if self.transport is None:  # a live run: the cassettes module need not even be imported
            return False
        from conformance.cassettes import ReplayTransport

        return isinstance(self.transport, ReplayTransport)

    @property
    def mode(self) -> str:
        """`replay` (answered from cassettes, no live request), `record`, or `live`."""
        if self.replaying:
            return "replay"
        return "record" if self.recording is not None else "live"

    @property
    def cassettes(self) -> Path | None:
        """The cassette directory replayed from or recorded into, if any."""
        if self.replaying:
            return self.transport.store.directory  # type: ignore[union-attr]
        return self.recording.directory if self.recording is not None else None

    @property
    def duration_s(self) -> float:
        return round(time.monotonic() - self._clock, 3)

    def case(self, param: str | Case) -> Case:
        """What a pytest item judges: a matrix item names its case, a one-model run's its check."""
        return param if isinstance(param, Case) else Case(param, self.endpoint.model)

    def cassette(self, case: Case) -> str:
        """Where a recording files a case's requests: the check's id, in a matrix under its model."""
        if not self.matrix:
            return case.check_id
        from conformance.cassettes import case_cassette

        return case_cassette(case.model, case.check_id)

    def start(self, cases: list[str | Case]) -> None:
        """Submit every selected case (or check of a one-model run) at once: every check on every
        model, under the one limit on requests in flight; results are collected in `result()`."""
        self.selected = [self.case(case) for case in cases]
        store = self.transport.store if self.replaying else None  # type: ignore[union-attr]
        jobs: list[Job] = []
        for case in self.selected:
            check = REGISTRY[case.check_id]
            entry = self.catalog[check.entry]
            target = self._targets.get(case.model)
            cassette = self.cassette(case)
            unusable = target.problem if target is not None else None
            unserved = self.endpoint.unserved.get(entry.api)
            if unserved is not None:
                self._futures[case] = Future()
                self._futures[case].set_result(unserved_family(check, entry, self.profile, unserved))
                continue
            left_out = self.endpoint.left_out.get(entry.api)
            if left_out is not None or unusable is not None or (store is not None and not store.recorded(cassette)):
                # An API family the run does not judge (not served, not asked for), a model its preflight
                # refused, or a check added since the recording: not judged, nothing sent, no error of the
                # check's (a profile expecting it fails the run, unless its family was left out).
                why = (left_out if left_out is not None
                       else f"not judged: model {case.model!r} cannot be used: {unusable}" if unusable is not None
                       else store.not_recorded(cassette, check.entry))  # type: ignore[union-attr]
                result = not_judged(check, entry, self.profile, why)
                if left_out is not None:
                    result.expected = None  # like a check -k leaves out: no profile judges a family left out
                self._futures[case] = Future()
                self._futures[case].set_result(result)
                continue
            window = self.context_window or (target.context_window if target is not None else None)
            jobs.append(Job(case, check, entry, self.profile, target.sent if target is not None else case.model,
                            window, cassette, target.endpoint if target is not None else None, self.matrix))
        count = min(self.workers, self.concurrency, len(jobs)) if self.matrix and self.transport is None else 1
        if count > 1:  # a live matrix, on more than one core: worker processes judge it beside this one
            self._workers = Workers(self, jobs, count)
            for job in jobs:
                if job.future is not None:
                    self._futures[job.case] = job.future
            jobs = self._workers.kept
            # This process's share of the requests in flight (made before any request: nothing to wait for).
            self.client.close()
            self.client = self.client_for(None, self.stats, self._workers.kept_share)
            for name, client in self.clients.items():
                client.close()
                self.clients[name] = self.client_for(name, self.stats, self._workers.kept_share)
        for job in jobs:
            self._futures[job.case] = self._pool.submit(job.judge,
                                                        self.clients[job.endpoint] if job.endpoint else self.client)

    def on_each_result(self, callback: Callable[[CheckResult], None]) -> None:
        """Call `callback` with each started check's result as it finishes, in whatever order they
        finish and from the thread that finished it (at once for those already finished): what a
        progress display counts, while pytest's items wait for the results in catalog order."""
        def forward(done: Future[CheckResult]) -> None:
            if not done.cancelled() and done.exception() is None:
                callback(done.result())

        for future in self._futures.values():
            future.add_done_callback(forward)

    def result(self, param: str | Case) -> CheckResult:
        """The result of a case (or of a one-model run's check), waiting for it."""
        case = self.case(param)
        result = self._futures[case].result()
        self.results[case] = result
        return result

    def ordered_results(self, model: str | None = None) -> list[CheckResult]:
        """The results so far in the order selected; only `model`'s, if given."""
        return [self.results[c] for c in self.selected if c in self.results and model in (None, c.model)]

    def results_by_model(self) -> dict[str, list[CheckResult]]:
        """Every model's results so far, in the order selected (one pass over the run)."""
        found: dict[str, list[CheckResult]] = {model: [] for model in self.model_ids}
        for case in self.selected:
            if case in self.results:
                found[case.model].append(self.results[case])
        return found

    def unjudged(self) -> list[CheckResult]:
        """Checks the profile judges that got no verdict (out of budget, or the run stopped first):
        such a run is not a pass, whatever else it found."""
        return [r for r in self.ordered_results() if label(r) == NOT_JUDGED]

    def unjudged_summary(self) -> str | None:
        """One line for the console: how many expected checks were not judged, and why."""
        unjudged = self.unjudged()
        if not unjudged:
            return None
        reasons: dict[str, int] = {}
        for result in unjudged:
            why = result.reason.removeprefix("not judged: ").split(" (")[0].split(";")[0]
            reasons[why] = reasons.get(why, 0) + 1
        return (f"{len(unjudged)} check(s) the profile expects were not judged: "
                + "; ".join(f"{n} because {why}" for why, n in reasons.items()))

    def finish(self, status: str, message: str | None = None) -> None:
        """Close the run; verdicts already reached are kept even if no pytest item asked for them.
        A run is `completed` only when every selected case finished: one that stopped short (pytest
        ended the session some other way than by an interrupt) is `interrupted`."""
        if status == "completed" and not all(future.done() for future in self._futures.values()):
            status, message = "interrupted", message or "the run stopped before every check was judged"
        self.status, self.message = status, message
        for case, future in self._futures.items():
            if case not in self.results and future.done() and not future.cancelled():
                self.results[case] = future.result()
        for case in self.selected:
            if case not in self.results:
                check = REGISTRY[case.check_id]
                self.results[case] = not_judged(check, self.catalog[check.entry], self.profile, INTERRUPTED)
        if self._workers is not None:
            self._workers.close(wait=status == "completed")
        self._pool.shutdown(wait=status == "completed", cancel_futures=True)
        self.client.close()
        for client in self.clients.values():
            client.close()
        self.endpoint.close()
