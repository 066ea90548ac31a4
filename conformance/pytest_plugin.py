"""The pytest plugin (entry point `pytest11`): options, the run's state, and report writing.

The same checks run from `conformance run` and from `pytest --pyargs conformance.suites`: both
take their options from `conformance.options` (here as `--conformance-*`, a prefix no other plugin
uses). Installing the package must change nothing for other test suites, so this module imports
only pytest and `conformance.options`; the client, checks, SDK, Hypothesis and the reference
server are imported when a session has conformance items to run.
"""

from __future__ import annotations

import gc
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from conformance.options import PYTEST_PREFIX, RUN_OPTIONS, Option, OptionError, Settings, settings

if TYPE_CHECKING:
    from concurrent.futures import Future

    import httpx

    from conformance.accounting import RunStats
    from conformance.cassettes import CassetteStore
    from conformance.compare import Changes
    from conformance.endpoint import Endpoint
    from conformance.redaction import Redactor
    from conformance.runner import Case, ConformanceRun

RUN: pytest.StashKey[ConformanceRun] = pytest.StashKey()
#: The run's options: put there by `conformance run` (already validated), else read from pytest's.
SETTINGS = pytest.StashKey[Settings]()
#: The report as written, and its changes since --baseline: kept for the CLI and the Action.
REPORT = pytest.StashKey[dict]()
CHANGES: pytest.StashKey[Changes] = pytest.StashKey()
#: The endpoint being opened (`open_endpoint`) while pytest collects: `conformance run` starts it
#: before the session, so the /models round trip overlaps the imports collection costs.
OPENING: pytest.StashKey[Future[Opened]] = pytest.StashKey()
#: The run's request and token accounting, shared by the endpoint's opening and the checks.
STATS: pytest.StashKey[RunStats] = pytest.StashKey()
REDACTOR: pytest.StashKey[Redactor] = pytest.StashKey()
#: Set once the session has written (or tried to write) its reports.
REPORTED = pytest.StashKey[bool]()
#: A matrix run's plan: how many cases it has before sharding, and what identifies them.
PLAN = pytest.StashKey[tuple[int, str]]()
INTERRUPTED_START = "interrupted before the run started (while starting up or resolving the endpoint)"
CHECK_PARAM = "check_id"


def prefixed_flag(option: Option) -> str:
    return option.flag(PYTEST_PREFIX)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("conformance", "OpenAI/Fireworks API conformance (pytest --pyargs conformance.suites)")
    for option in RUN_OPTIONS:
        option.add_to(group.addoption, PYTEST_PREFIX)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "conformance: a conformance check against an endpoint")


def run_settings(config: pytest.Config) -> Settings:
    """The run's validated options (a usage error names the flag)."""
    chosen = config.stash.get(SETTINGS, None)
    if chosen is None:
        try:
            chosen = settings(vars(config.option), prefixed_flag)
        except OptionError as problem:
            raise pytest.UsageError(str(problem)) from None
        config.stash[SETTINGS] = chosen
    return chosen


def redactor_of_settings(chosen: Settings) -> Redactor:
    """The run's secrets (the key, the base URL's credentials, the values of user headers), known
    before the endpoint is resolved, so even a failed start is redacted."""
    from conformance.redaction import run_redactor

    keys = [spec.api_key for spec in chosen.endpoints if spec.api_key]
    return run_redactor(chosen.api_key, chosen.base_url, [*chosen.headers.values(), *keys, *(k.strip() for k in keys)])


def redactor_of(config: pytest.Config) -> Redactor:
    """The run's redactor, built once (every check item, the summary and the reports use it)."""
    redactor = config.stash.get(REDACTOR, None)
    if redactor is None:
        redactor = config.stash[REDACTOR] = redactor_of_settings(run_settings(config))
    return redactor


def stats_of(config: pytest.Config) -> RunStats:
    """The run's one RunStats (the CLI creates it before the endpoint is opened)."""
    stats = config.stash.get(STATS, None)
    if stats is None:
        from conformance.accounting import RunStats

        stats = config.stash[STATS] = RunStats(token_budget=run_settings(config).max_tokens_budget)
    return stats


def reported(config: pytest.Config) -> bool:
    """Whether this session wrote (or tried to write) its reports."""
    return config.stash.get(REPORTED, False)


def opening_of(config: pytest.Config) -> Future[Opened]:
    """The endpoint being opened: by `conformance run` before the session, else here, once."""
    opening = config.stash.get(OPENING, None)
    if opening is None:
        from concurrent.futures import Future

        opening = config.stash[OPENING] = Future()
        try:
            opening.set_result(open_endpoint(run_settings(config), stats_of(config)))
        except BaseException as problem:  # EndpointUnusable: the run loop reports it (a signal too)
            opening.set_exception(problem)
            if not isinstance(problem, Exception):
                raise
    return opening


def planned_cases(config: pytest.Config, check_ids: list[str]) -> list[Case] | None:
    """A matrix run's cases (every check on every model, in check order), or None: a one-model
    run, whose items are its checks. A matrix needs its models before pytest collects, so
    collection waits for the endpoint's listing; if it cannot be opened, the run loop says why."""
    chosen = run_settings(config)
    if chosen.matrix is None and chosen.replay is None:  # a replay is a matrix if its recording was
        return None
    from conformance.endpoint import EndpointUnusable
    from conformance.runner import Case

    try:
        endpoint = opening_of(config).result()[0]
    except EndpointUnusable:
        return None
    if not endpoint.models:
        return None
    return [Case(check_id, target.id) for check_id in check_ids for target in endpoint.models]


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    """After `-k` has deselected: a matrix run's plan (what `merge` matches shards by), then its
    shard (`--shard K/N`) alone is kept."""
    selected = [item for item in conformance_items(session, items) if isinstance(case_param(item), tuple)]
    if not selected:  # another project's session, or a one-model run: nothing to plan
        return
    chosen = run_settings(config)
    from conformance.report.matrix import selection_digest
    from conformance.shards import in_shard

    cases = [case_param(item) for item in selected]
    config.stash[PLAN] = (len(cases), selection_digest(cases))
    if chosen.shard is None:
        return
    kept = set(in_shard(cases, chosen.shard))
    if not kept:
        raise pytest.UsageError(f"shard {chosen.shard}: the run has only {len(cases)} "
                                f"case(s) (checks x models), too few for {chosen.shard.count} shards")
    dropped = {item for item in selected if case_param(item) not in kept}
    if dropped:
        config.hook.pytest_deselected(items=[item for item in items if item in dropped])
        items[:] = [item for item in items if item not in dropped]


def case_param(item: pytest.Item) -> Any:
    """What an item judges: a check id (one-model run) or a Case (matrix)."""
    return item.callspec.params[CHECK_PARAM]  # type: ignore[attr-defined]


def conformance_items(session: pytest.Session, items: list[pytest.Item] | None = None) -> list[pytest.Function]:
    """The collected items that are conformance checks (marked, and parametrized by check id)."""
    return [item for item in (session.items if items is None else items)
            if isinstance(item, pytest.Function) and item.get_closest_marker("conformance") is not None
            and CHECK_PARAM in getattr(getattr(item, "callspec", None), "params", {})]


@pytest.hookimpl(tryfirst=True)
def pytest_runtestloop(session: pytest.Session) -> None:
    """Before the first test: resolve the endpoint and put every selected check in flight."""
    config = session.config
    items = conformance_items(session)
    if config.option.collectonly or not items:
        return
    chosen = run_settings(config)
    from conformance.catalog import load_catalog
    from conformance.console import printable
    from conformance.endpoint import EndpointUnusable
    from conformance.runner import ConformanceRun
    from conformance.workers import default_workers

    stats, redactor = stats_of(config), redactor_of(config)
    try:
        endpoint, transport, recording = opening_of(config).result()
    except EndpointUnusable as problem:
        config.stash[REPORTED] = True
        unwritable = write_start_report(chosen, str(problem), redactor, stats, config)
        raise pytest.UsageError(printable(redactor.text(f"{problem}{unwritable}"))) from None
    except KeyboardInterrupt:  # a signal while the endpoint was being resolved
        config.stash[REPORTED] = True
        write_start_report(chosen, INTERRUPTED_START, redactor, stats, config)
        raise
    planned, digest = config.stash.get(PLAN, (0, ""))
    run = ConformanceRun(endpoint, load_catalog(), chosen.profile, chosen.timeout,
                         context_window=chosen.context_window or (None if endpoint.models else endpoint.context_window),
                         concurrency=chosen.concurrency, transport=transport, recording=recording,
                         stats=stats, name=chosen.name, models=endpoint.models, shard=chosen.shard,
                         planned=planned, planned_digest=digest, workers=chosen.workers or default_workers())
    config.stash[RUN] = run
    keep_hypothesis_files_out_of_the_working_directory(config)
    # What start-up made lives as long as the run: later collections need not walk it (and under
    # `conformance run`, the collector was off until now).
    gc.freeze()
    gc.enable()
    config.add_cleanup(gc.unfreeze)
    run.start([run.case(case_param(item)) for item in items])
    from conformance.report import prepare_writers

    prepare_writers(matrix=run.matrix)  # while the checks wait on the endpoint, not after them


def keep_hypothesis_files_out_of_the_working_directory(config: pytest.Config) -> None:
    """Hypothesis caches what it learns under ./.hypothesis/ even with `database=None`; a run of
    ours must not leave it in the user's directory. Unless the user chose a place for it
    ($HYPOTHESIS_STORAGE_DIRECTORY), it goes to a temporary directory removed with the session."""
    import os
    import tempfile

    from hypothesis.configuration import set_hypothesis_home_dir

    if os.environ.get("HYPOTHESIS_STORAGE_DIRECTORY"):
        return
    scratch = tempfile.TemporaryDirectory(prefix="conformance-hypothesis-")
    set_hypothesis_home_dir(scratch.name)

    def restore() -> None:
        set_hypothesis_home_dir(None)
        scratch.cleanup()
    config.add_cleanup(restore)


Opened = tuple["Endpoint", "httpx.BaseTransport | None", "CassetteStore | None"]


def open_endpoint(chosen: Settings, stats: RunStats) -> Opened:
    """The endpoint to judge, and how requests reach it: live, live and recorded, or replayed;
    resolving it (the listing, the preflight) is counted in `stats`.
    (VCR.py, under the cassettes, takes about a second to import: only for record and replay.)"""
    from conformance.endpoint import Endpoint, EndpointUnusable, ModelTarget, resolve

    if chosen.replay is not None:
        from conformance.cassettes import CassetteStore, ReplayTransport

        store = CassetteStore(chosen.replay, redactor_of_settings(chosen))
        try:
            recorded = CassetteStore.metadata(store.directory)
        except (OSError, ValueError) as problem:
            raise EndpointUnusable(f"cannot replay: {problem}") from None
        models = [ModelTarget(model["id"], model.get("context_window"), model.get("problem"))
                  for model in recorded.get("models") or ()]
        if chosen.matrix is not None and not models:  # a one-model recording, sharded
            models = [ModelTarget(recorded["model"], recorded.get("context_window"))]
        endpoint = Endpoint(recorded["base_url"], None, recorded["model"], label=recorded["endpoint"],
                            context_window=recorded.get("context_window"), models=models)
        return endpoint, ReplayTransport(store), None
    if chosen.endpoints:
        from conformance.endpoint import resolve_several

        assert chosen.matrix is not None  # several endpoints are always a matrix (options.settings)
        return resolve_several(chosen.endpoints, chosen.timeout, stats, chosen.headers, chosen.matrix, chosen.api,
                               chosen.profile.apis), None, None
    endpoint = resolve(chosen.base_url, chosen.api_key, chosen.model, chosen.timeout, chosen.embedded_behavior,
                       stats, chosen.headers, chosen.matrix, chosen.api, chosen.profile.apis)
    if chosen.record is None:
        return endpoint, None, None
    from conformance.cassettes import CassetteStore, RecordingTransport

    store = CassetteStore(chosen.record / endpoint.name if chosen.record_per_endpoint else chosen.record,
                          redactor_of_settings(chosen))
    return endpoint, RecordingTransport(store), store


def write_start_report(chosen: Settings, problem: str, redactor: Redactor, stats: RunStats | None = None,
                       config: pytest.Config | None = None) -> str:
    """Write the report of a run that could not start; '' or, if even that failed, why."""
    try:
        if config is not None:
            conclude(config, None, setup_failure=problem)
        else:
            from conformance.report import write_reports

            write_reports(None, chosen.report_dir, setup_failure=problem, base_url=shown_url(chosen),
                          redactor=redactor, stats=stats, name=chosen.name)
    except OSError as unwritable:
        return f" (and no report: {report_dir_problem(chosen.report_dir, unwritable)})"
    return ""


def shown_url(chosen: Settings) -> str | None:
    """The base URL as reports may show it (no credentials)."""
    from conformance.urls import without_credentials

    return without_credentials(chosen.base_url) if chosen.base_url else None


@pytest.fixture
def conformance_run(request: pytest.FixtureRequest) -> ConformanceRun:
    run = request.config.stash.get(RUN, None)
    if run is None:
        pytest.skip("no conformance run was started")
    return run


def verdict(run: ConformanceRun, param: str | Case, config: pytest.Config) -> tuple[str, str | None]:
    """A check's verdict as a pytest outcome (what pytest's own reporting shows): `passed`, or
    `failed` or `skipped` with the redacted text saying why."""
    from conformance.console import VERDICTS_PYTEST_FAILS, label, printable, printable_lines

    result = run.result(param)
    redactor = redactor_of(config)
    if label(result) in VERDICTS_PYTEST_FAILS:  # a check the profile expects, not judged, is no pass
        return "failed", printable_lines(redactor.text(result.explain()))
    if result.outcome in ("inconclusive", "skip"):
        return "skipped", printable(redactor.text(result.headline()))
    return "passed", None


def enforce(run: ConformanceRun, param: str | Case, config: pytest.Config) -> None:
    """Turn a check's verdict into a pytest outcome."""
    outcome, why = verdict(run, param, config)
    if outcome == "failed":
        pytest.fail(why or "", pytrace=False)
    if outcome == "skipped":
        pytest.skip(why or "")


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> bool | None:
    """A matrix case's item, one of thousands (checks x models): its verdict goes to pytest as the
    one report of its call, without the setup and teardown phases (its only fixtures are the run
    and the config, which need none): pytest's protocol of three phases, each with its report,
    cost a sixth of a 200-model run's CPU and its memory. Any other item runs pytest's way."""
    run = item.config.stash.get(RUN, None)
    if run is None or not run.matrix or item.get_closest_marker("conformance") is None:
        return None
    param = getattr(getattr(item, "callspec", None), "params", {}).get(CHECK_PARAM)
    if param is None:
        return None
    item.ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
    outcome, why = verdict(run, param, item.config)
    longrepr = (str(item.path), item.location[1], f"Skipped: {why}") if outcome == "skipped" else why
    item.ihook.pytest_runtest_logreport(report=pytest.TestReport(
        item.nodeid, item.location, {}, outcome, longrepr, "call"))  # type: ignore[arg-type]
    item.ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)
    return True


def conclude(config: pytest.Config, run: ConformanceRun | None, setup_failure: str | None = None) -> None:
    """Write the reports (`run` None: the run could not start, `setup_failure` says why) and, with
    a baseline, the changes since it; both stay in the stash for the CLI and the Action."""
    from conformance.report import prepared_report, write_atomically, write_report_files

    chosen = run_settings(config)
    redactor, stats = redactor_of(config), stats_of(config)
    base_url = shown_url(chosen) if run is None else None
    config.stash[REPORTED] = True
    # Built once, bounded and redacted: every format, the diff, the console and the CLI read this copy.
    report = config.stash[REPORT] = prepared_report(run, setup_failure, base_url, stats, redactor, chosen.name)
    written = write_report_files(report, chosen.report_dir, redactor)
    if run is not None:
        run.written = written
        if run.recording is not None:
            replaced = run.recording.save(recording_metadata(run))
            if replaced:
                sys.stderr.write(f"conformance: {run.recording.directory} held another endpoint's or model's "
                                 f"recording; its {len(replaced)} cassettes were replaced, not mixed\n")
    if chosen.baseline is not None:
        from conformance.compare import diff, render_changes

        changes = config.stash[CHANGES] = diff(chosen.baseline.report, report,
                                               accept_behaviour_changes=chosen.accept_behaviour_changes)
        write_atomically(chosen.report_dir / "changes.md", redactor.text(render_changes(changes)))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    run = session.config.stash.get(RUN, None)
    if run is None:
        return
    interrupted = exitstatus == pytest.ExitCode.INTERRUPTED or session.shouldstop
    run.finish("interrupted" if interrupted else "completed",
               "the run was interrupted; the report holds the checks finished by then" if interrupted else None)
    if run.matrix:  # its SDK calls are over: the workers' memory (about 130 MB) goes before the report's
        from conformance.sdk_worker import relay

        relay.stop()
    try:
        conclude(session.config, run)
    except OSError as problem:
        # One line, not an internal-error traceback; a run without its reports is not a success.
        directory = run_settings(session.config).report_dir
        sys.stderr.write(f"conformance: error: {report_dir_problem(directory, problem)}\n")
        session.exitstatus = pytest.ExitCode.USAGE_ERROR
        return
    changes = session.config.stash.get(CHANGES, None)
    if changes is not None and changes.regressed and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def recording_metadata(run: ConformanceRun) -> dict[str, Any]:
    """What a replay needs besides the cassettes: where they came from, and which model."""
    from conformance import __version__

    models = [{"id": target.id, "context_window": target.context_window, "problem": target.problem}
              for target in run.models]
    return {"endpoint": run.endpoint.name, "base_url": run.endpoint.base_url, "model": run.endpoint.model,
            "context_window": run.context_window, "recorded_at": run.started_at, "conformance": __version__,
            **({"models": models} if models else {})}


def report_dir_problem(directory: Path, problem: OSError) -> str:
    return f"cannot write reports to {str(directory)!r}: {problem.strerror or problem}"


def describe_endpoint(run: ConformanceRun) -> str:
    """Which endpoint was judged; the embedded reference server is named as such, never as a URL alone."""
    if run.endpoint.members:
        return ", ".join(f"{name} {member.base_url}" for name, member in run.endpoint.members.items())
    if run.endpoint.embedded is not None:
        return (f"the EMBEDDED reference server ({run.endpoint.embedded.config.vendor} behaviour) at "
                f"{run.endpoint.base_url}: no base URL was given, so no endpoint of yours was tested")
    return run.endpoint.base_url


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    """The run in a few lines: what was judged, each failure with the curl lines that reproduce
    it, where an unjudged endpoint differs from OpenAI, the reports, and last the one summary line
    (`conformance run` shows no other; under plain pytest, pytest's own follows it)."""
    run = config.stash.get(RUN, None)
    if run is None:
        write_changes(terminalreporter, config)  # a run that could not start, against its baseline
        return
    from conformance.console import (
        differences_from_documents,
        failure_lines,
        printable,
        tally,
    )
    from conformance.report import traffic

    redactor = redactor_of(config)

    def write(line: str, **markup: bool) -> None:
        terminalreporter.write_line(printable(redactor.text(line)), **markup)

    results = run.ordered_results()
    terminalreporter.write_sep("=", "conformance")
    named = f"run {run.name}  " if run.name else ""
    models = f"{len(run.models)} models" if run.matrix else f"model {run.endpoint.model}"
    write(f"{named}endpoint {describe_endpoint(run)}  {models}  profile {run.profile.name}")
    for family, why in run.endpoint.left_out.items():  # one line for a family's checks, not one per check
        write(f"[skip] the {family} API family's checks: {why}", yellow=True)
    left_out = set(run.endpoint.left_out.values())
    if run.matrix:
        write_matrix(write, run)
    else:
        for result in results:
            if result.reason in left_out:
                continue
            if result.outcome in ("fail", "error"):
                for number, line in enumerate(failure_lines(result)):
                    write(line, red=True, bold=number == 0 and result.outcome == "error")
            elif result.outcome != "pass":
                write(result.headline(), yellow=True)
    unjudged = run.unjudged_summary()
    if unjudged:
        write(unjudged, yellow=True, bold=True)
    for differences in differences_from_documents(results, run.catalog):
        write(differences, bold=True)
    for path in run.written:
        write(f"report: {path}")
    if run.recording is not None:
        write(f"cassettes: {run.recording.directory}")
    write_changes(terminalreporter, config)
    retried = f" ({run.stats.retries} retried: Retry-After or a dropped connection)" if run.stats.retries else ""
    counts = {result.outcome for result in results}
    verdict = ({"red": True} if counts & {"fail", "error"} else
               {"yellow": True} if counts & {"inconclusive", "skip"} else {"green": True})
    write(f"{tally(results)}; {traffic(config.stash[REPORT])}{retried}, {run.duration_s:.1f}s", bold=True, **verdict)


#: Models a matrix run's console names one by one; the rest are counted (report.md has them all).
SHOWN_MODELS = 20


def write_matrix(write, run: ConformanceRun) -> None:
    """A matrix run on the console: a line per model (its tally, or why it cannot be used), its
    failures' headlines; past SHOWN_MODELS models, only how many more (the reports list them)."""
    from conformance.console import tally

    for target in run.models[:SHOWN_MODELS]:
        results = run.ordered_results(target.id)
        failing = [r for r in results if r.outcome in ("fail", "error")]
        if target.problem is not None:
            write(f"model {target.id}: cannot be used: {target.problem}", red=True, bold=True)
            continue
        write(f"model {target.id}: {tally(results)}", red=bool(failing))
        for result in failing:
            write(f"    {result.headline()}", red=True)
    if len(run.models) > SHOWN_MODELS:
        write(f"... and {len(run.models) - SHOWN_MODELS} more models: see report.md")


def write_changes(terminalreporter, config: pytest.Config) -> None:
    """The changes since --baseline, as written to changes.md (warnings and verdict first)."""
    changes = config.stash.get(CHANGES, None)
    if changes is None:
        return
    from conformance.compare import render_changes
    from conformance.console import printable_lines

    terminalreporter.write_line(f"changes: {run_settings(config).report_dir / 'changes.md'}")
    terminalreporter.write(printable_lines(redactor_of(config).text(render_changes(changes))))
