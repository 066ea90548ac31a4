"""The pytest plugin (entry point `pytest11`): options, the run's state, and report writing.

The same checks run from `conformance run` and from `pytest --pyargs conformance.suites`: the
CLI only translates its flags into these options. The plugin stays idle in sessions that collect
no conformance items, so installing the package changes nothing for other test suites.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import httpx
import pytest

from conformance import __version__
from conformance.cassettes import CassetteStore, RecordingTransport, ReplayTransport

from conformance.catalog import load_catalog
from conformance.client import RunStats, without_credentials
from conformance.console import printable, printable_lines
from conformance.endpoint import Endpoint, EndpointUnusable, base_url_from_environment, resolve
from conformance.profiles import ProfileError, load_profile
from conformance.redaction import Redactor, run_redactor
from conformance.report import build_report, traffic, write_reports
from conformance.runner import ConformanceRun

RUN = pytest.StashKey[ConformanceRun]()
#: The run's secrets, known before the endpoint is resolved, so even a failed start is redacted.
REDACTOR = pytest.StashKey[Redactor]()
#: Set once the session has written (or tried to write) its reports.
REPORTED = pytest.StashKey[bool]()
INTERRUPTED_START = "interrupted before the run started (while starting up or resolving the endpoint)"
CHECK_PARAM = "check_id"

OPT_BASE_URL = "--base-url"
OPT_API_KEY = "--api-key"
OPT_MODEL = "--model"
OPT_PROFILE = "--profile"
OPT_REPORT_DIR = "--report-dir"
OPT_TIMEOUT = "--request-timeout"
OPT_CONTEXT_WINDOW = "--context-window"
OPT_CONCURRENCY = "--concurrency"
OPT_EMBEDDED = "--embedded-behavior"
OPT_BUDGET = "--max-tokens-budget"
OPT_RECORD = "--record-dir"
OPT_REPLAY = "--replay-dir"

DEFAULT_TIMEOUT = 30.0
DEFAULT_CONCURRENCY = 16


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("conformance", "OpenAI/Fireworks API conformance")
    group.addoption(OPT_BASE_URL, default=None,
                    help="endpoint base URL (default: $OPENAI_BASE_URL, $OPENAI_API_BASE, else the embedded server)")
    group.addoption(OPT_API_KEY, default=None, help="API key (default: $OPENAI_API_KEY)")
    group.addoption(OPT_MODEL, default=None, help="model id (default: the first one /models lists)")
    group.addoption(OPT_PROFILE, default="openai", help="openai, fireworks, none, or a profile file")
    group.addoption(OPT_REPORT_DIR, default="reports", help="where report.json/.md/.html and junit.xml go")
    group.addoption(OPT_TIMEOUT, type=float, default=DEFAULT_TIMEOUT, help="seconds allowed per request")
    group.addoption(OPT_CONTEXT_WINDOW, type=int, default=None, help="the model's context window, if known")
    group.addoption(OPT_CONCURRENCY, type=int, default=DEFAULT_CONCURRENCY, help="requests in flight at once")
    group.addoption(OPT_EMBEDDED, default="openai", choices=("openai", "fireworks"),
                    help="how the embedded reference server behaves when no base URL is given")
    group.addoption(OPT_BUDGET, type=int, default=None,
                    help="stop sending once this many tokens are spent; remaining checks are skipped")
    group.addoption(OPT_RECORD, default=None,
                    help="record every interaction into cassettes in this directory ('' = cassettes/<endpoint>)")
    group.addoption(OPT_REPLAY, default=None, help="replay a recorded run from this directory; no network")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "conformance: a conformance check against an endpoint")


def conformance_items(session: pytest.Session) -> list[pytest.Item]:
    """The collected items that are conformance checks (marked, and parametrized by check id)."""
    return [item for item in session.items
            if item.get_closest_marker("conformance") is not None
            and CHECK_PARAM in getattr(getattr(item, "callspec", None), "params", {})]


@pytest.hookimpl(tryfirst=True)
def pytest_runtestloop(session: pytest.Session) -> None:
    """Before the first test: resolve the endpoint and put every selected check in flight."""
    config = session.config
    items = conformance_items(session)
    if config.option.collectonly or not items:
        return
    option = config.getoption
    stats = RunStats(token_budget=option(OPT_BUDGET))
    redactor = config.stash[REDACTOR] = run_redactor(api_key_of(config), base_url_of(config))
    try:
        profile = load_profile(option(OPT_PROFILE), load_catalog())
        endpoint, transport, recording = open_endpoint(config, stats)
    except (ProfileError, EndpointUnusable) as problem:
        config.stash[REPORTED] = True
        unwritable = write_start_report(option(OPT_REPORT_DIR), str(problem), base_url_of(config), redactor, stats)
        raise pytest.UsageError(printable(redactor.text(f"{problem}{unwritable}"))) from None
    except KeyboardInterrupt:  # a signal while the endpoint was being resolved
        config.stash[REPORTED] = True
        write_start_report(option(OPT_REPORT_DIR), INTERRUPTED_START, base_url_of(config), redactor, stats)
        raise
    run = ConformanceRun(endpoint, load_catalog(), profile, option(OPT_TIMEOUT),
                         context_window=option(OPT_CONTEXT_WINDOW) or endpoint.context_window,
                         concurrency=option(OPT_CONCURRENCY), transport=transport, recording=recording,
                         stats=stats)
    config.stash[RUN] = run
    run.start([item.callspec.params[CHECK_PARAM] for item in items])


def open_endpoint(config: pytest.Config, stats: RunStats) -> tuple[Endpoint, httpx.BaseTransport | None,
                                                                    CassetteStore | None]:
    """The endpoint to judge, and how requests reach it: live, live and recorded, or replayed.
    Resolving it (listing, preflight) is counted in `stats`."""
    option = config.getoption
    api_key = api_key_of(config)
    if option(OPT_REPLAY):
        store = CassetteStore(Path(option(OPT_REPLAY)), config.stash[REDACTOR])
        try:
            recorded = CassetteStore.metadata(store.directory)
        except (OSError, ValueError) as problem:
            raise EndpointUnusable(f"cannot replay: {problem}") from None
        endpoint = Endpoint(recorded["base_url"], None, recorded["model"], label=recorded["endpoint"],
                            context_window=recorded.get("context_window"))
        return endpoint, ReplayTransport(store), None
    endpoint = resolve(option(OPT_BASE_URL), api_key, option(OPT_MODEL), option(OPT_TIMEOUT), option(OPT_EMBEDDED),
                       stats)
    if option(OPT_RECORD) is None:
        return endpoint, None, None
    store = CassetteStore(Path(option(OPT_RECORD) or Path("cassettes") / endpoint.name), config.stash[REDACTOR])
    return endpoint, RecordingTransport(store), store


def write_start_report(directory: str, problem: str, base_url: str | None, redactor: Redactor,
                       stats: RunStats | None = None) -> str:
    """Write the report of a run that could not start; '' or, if even that failed, why."""
    try:
        write_reports(None, Path(directory), setup_failure=problem,
                      base_url=without_credentials(base_url) if base_url else None, redactor=redactor,
                      stats=stats)
    except OSError as unwritable:
        return f" (and no report: {report_dir_problem(directory, unwritable)})"
    return ""


def reported(config: pytest.Config) -> bool:
    """Whether this session wrote (or tried to write) its reports."""
    return config.stash.get(REPORTED, False)


def api_key_of(config: pytest.Config) -> str | None:
    return config.getoption(OPT_API_KEY) or os.environ.get("OPENAI_API_KEY")


def base_url_of(config: pytest.Config) -> str | None:
    return config.getoption(OPT_BASE_URL) or base_url_from_environment()


@pytest.fixture
def conformance_run(request: pytest.FixtureRequest) -> ConformanceRun:
    run = request.config.stash.get(RUN, None)
    if run is None:
        pytest.skip("no conformance run was started")
    return run


def enforce(run: ConformanceRun, check_id: str, config: pytest.Config) -> None:
    """Turn a check's verdict into a pytest outcome (what pytest's own reporting shows)."""
    result = run.result(check_id)
    redactor = config.stash[REDACTOR]
    if result.outcome in ("fail", "error") or (result.outcome == "skip" and result.expected is not None):
        # a check the profile expects, not judged, is no pass
        pytest.fail(printable_lines(redactor.text(result.explain())), pytrace=False)
    if result.outcome in ("inconclusive", "skip"):
        pytest.skip(printable(redactor.text(result.headline())))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    run = session.config.stash.get(RUN, None)
    if run is None:
        return
    interrupted = exitstatus == pytest.ExitCode.INTERRUPTED or session.shouldstop
    run.finish("interrupted" if interrupted else "completed",
               "the run was interrupted; the report holds the checks finished by then" if interrupted else None)
    directory = session.config.getoption(OPT_REPORT_DIR)
    try:
        session.config.stash[REPORTED] = True
        run.written = write_reports(run, Path(directory), redactor=session.config.stash[REDACTOR])
        if run.recording is not None:
            replaced = run.recording.save(recording_metadata(run))
            if replaced:
                sys.stderr.write(f"conformance: {run.recording.directory} held another endpoint's or model's "
                                 f"recording; its {len(replaced)} cassettes were replaced, not mixed\n")
    except OSError as problem:
        # One line, not an internal-error traceback; a run without its reports is not a success.
        sys.stderr.write(f"conformance: error: {report_dir_problem(directory, problem)}\n")
        session.exitstatus = pytest.ExitCode.USAGE_ERROR


def recording_metadata(run: ConformanceRun) -> dict:
    """What a replay needs besides the cassettes: where they came from, and which model."""
    return {"endpoint": run.endpoint.name, "base_url": run.endpoint.base_url, "model": run.endpoint.model,
            "context_window": run.context_window, "recorded_at": run.started_at, "conformance": __version__}


def report_dir_problem(directory: str, problem: OSError) -> str:
    return f"cannot write reports to {directory!r}: {problem.strerror or problem}"


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    run = config.stash.get(RUN, None)
    if run is None:
        return
    redactor = config.stash[REDACTOR]

    def write(line: str, **markup: bool) -> None:
        terminalreporter.write_line(printable(redactor.text(line)), **markup)

    counts: dict[str, int] = {}
    for result in run.ordered_results():
        counts[result.outcome] = counts.get(result.outcome, 0) + 1
    summary = ", ".join(f"{n} {outcome}" for outcome, n in counts.items()) or "no checks finished"
    terminalreporter.write_sep("=", "conformance")
    write(f"endpoint {run.endpoint.base_url}  model {run.endpoint.model}  profile {run.profile.name}")
    retried = f" ({run.stats.retries} retried: Retry-After or a dropped connection)" if run.stats.retries else ""
    write(f"{summary}; {traffic(build_report(run))}{retried}, {run.duration_s:.1f}s")
    if run.unjudged_summary():
        write(run.unjudged_summary(), yellow=True, bold=True)
    for result in run.ordered_results():
        if result.outcome != "pass":
            markup = {"fail": {"red": True}, "error": {"red": True, "bold": True}}.get(result.outcome, {"yellow": True})
            write(result.headline(), **markup)
    for path in run.written:
        write(f"report: {path}")
    if run.recording is not None:
        write(f"cassettes: {run.recording.directory}")


