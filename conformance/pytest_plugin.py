"""The pytest plugin (entry point `pytest11`): options, the run's state, and report writing.

The same checks run from `conformance run` and from `pytest --pyargs conformance.suites`: both
take their options from `conformance.options` (here as `--conformance-*`, a prefix no other plugin
uses). Installing the package must change nothing for other test suites, so this module imports
only pytest and `conformance.options`; the client, checks, SDK, Hypothesis and the reference
server are imported when a session has conformance items to run.
"""

from __future__ import annotations

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
    from conformance.runner import ConformanceRun

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

    return run_redactor(chosen.api_key, chosen.base_url, chosen.headers.values())


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


def conformance_items(session: pytest.Session) -> list[pytest.Function]:
    """The collected items that are conformance checks (marked, and parametrized by check id)."""
    return [item for item in session.items
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

    stats, redactor = stats_of(config), redactor_of(config)
    opening = config.stash.get(OPENING, None)
    try:
        endpoint, transport, recording = opening.result() if opening is not None else open_endpoint(chosen, stats)
    except EndpointUnusable as problem:
        config.stash[REPORTED] = True
        unwritable = write_start_report(chosen, str(problem), redactor, stats, config)
        raise pytest.UsageError(printable(redactor.text(f"{problem}{unwritable}"))) from None
    except KeyboardInterrupt:  # a signal while the endpoint was being resolved
        config.stash[REPORTED] = True
        write_start_report(chosen, INTERRUPTED_START, redactor, stats, config)
        raise
    run = ConformanceRun(endpoint, load_catalog(), chosen.profile, chosen.timeout,
                         context_window=chosen.context_window or endpoint.context_window,
                         concurrency=chosen.concurrency, transport=transport, recording=recording,
                         stats=stats, name=chosen.name)
    config.stash[RUN] = run
    keep_hypothesis_files_out_of_the_working_directory(config)
    run.start([str(item.callspec.params[CHECK_PARAM]) for item in items])


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
    from conformance.endpoint import Endpoint, EndpointUnusable, resolve

    if chosen.replay is not None:
        from conformance.cassettes import CassetteStore, ReplayTransport

        store = CassetteStore(chosen.replay, redactor_of_settings(chosen))
        try:
            recorded = CassetteStore.metadata(store.directory)
        except (OSError, ValueError) as problem:
            raise EndpointUnusable(f"cannot replay: {problem}") from None
        endpoint = Endpoint(recorded["base_url"], None, recorded["model"], label=recorded["endpoint"],
                            context_window=recorded.get("context_window"))
        return endpoint, ReplayTransport(store), None
    endpoint = resolve(chosen.base_url, chosen.api_key, chosen.model, chosen.timeout, chosen.embedded_behavior,
                       stats, chosen.headers, chosen.api, chosen.profile.apis)
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


def enforce(run: ConformanceRun, check_id: str, config: pytest.Config) -> None:
    """Turn a check's verdict into a pytest outcome (what pytest's own reporting shows)."""
    from conformance.console import VERDICTS_PYTEST_FAILS, label, printable, printable_lines

    result = run.result(check_id)
    redactor = redactor_of(config)
    if label(result) in VERDICTS_PYTEST_FAILS:  # a check the profile expects, not judged, is no pass
        pytest.fail(printable_lines(redactor.text(result.explain())), pytrace=False)
    if result.outcome in ("inconclusive", "skip"):
        pytest.skip(printable(redactor.text(result.headline())))


def conclude(config: pytest.Config, run: ConformanceRun | None, setup_failure: str | None = None) -> None:
    """Write the reports (`run` None: the run could not start, `setup_failure` says why) and, with
    a baseline, the changes since it; both stay in the stash for the CLI and the Action."""
    from conformance.report import build_report, write_atomically, write_reports

    chosen = run_settings(config)
    redactor, stats = redactor_of(config), stats_of(config)
    base_url = shown_url(chosen) if run is None else None
    config.stash[REPORTED] = True
    written = write_reports(run, chosen.report_dir, setup_failure=setup_failure, base_url=base_url,
                            stats=stats, redactor=redactor, name=chosen.name)
    if run is not None:
        run.written = written
        if run.recording is not None:
            replaced = run.recording.save(recording_metadata(run))
            if replaced:
                sys.stderr.write(f"conformance: {run.recording.directory} held another endpoint's or model's "
                                 f"recording; its {len(replaced)} cassettes were replaced, not mixed\n")
    report = config.stash[REPORT] = redactor.tree(build_report(run, setup_failure, base_url, stats, chosen.name))
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

    return {"endpoint": run.endpoint.name, "base_url": run.endpoint.base_url, "model": run.endpoint.model,
            "context_window": run.context_window, "recorded_at": run.started_at, "conformance": __version__}


def report_dir_problem(directory: Path, problem: OSError) -> str:
    return f"cannot write reports to {str(directory)!r}: {problem.strerror or problem}"


def describe_endpoint(run: ConformanceRun) -> str:
    """Which endpoint was judged; the embedded reference server is named as such, never as a URL alone."""
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
        differences_from_openai,
        failure_lines,
        printable,
        tally,
    )
    from conformance.report import build_report, traffic

    redactor = redactor_of(config)

    def write(line: str, **markup: bool) -> None:
        terminalreporter.write_line(printable(redactor.text(line)), **markup)

    results = run.ordered_results()
    terminalreporter.write_sep("=", "conformance")
    named = f"run {run.name}  " if run.name else ""
    write(f"{named}endpoint {describe_endpoint(run)}  model {run.endpoint.model}  profile {run.profile.name}")
    for family, why in run.endpoint.left_out.items():  # one line for a family's checks, not one per check
        write(f"[skip] the {family} API family's checks: {why}", yellow=True)
    left_out = set(run.endpoint.left_out.values())
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
    differences = differences_from_openai(results, run.catalog)
    if differences:
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
    write(f"{tally(results)}; {traffic(build_report(run))}{retried}, {run.duration_s:.1f}s", bold=True, **verdict)


def write_changes(terminalreporter, config: pytest.Config) -> None:
    """The changes since --baseline, as written to changes.md (warnings and verdict first)."""
    changes = config.stash.get(CHANGES, None)
    if changes is None:
        return
    from conformance.compare import render_changes
    from conformance.console import printable_lines

    terminalreporter.write_line(f"changes: {run_settings(config).report_dir / 'changes.md'}")
    terminalreporter.write(printable_lines(redactor_of(config).text(render_changes(changes))))
