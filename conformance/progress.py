"""The console of `conformance run`: progress while checks are in flight, a line per check with
`-v`, and none of pytest's own per-test output or counts, so that the summary line the plugin
prints (`pytest_plugin.pytest_terminal_summary`) is the only one and names our outcomes.

Progress counts checks as they finish, in any order. On a terminal it is a rich live line, erased
when the run ends. Anywhere else (a pipe, a file, CI) it is a plain line every `PLAIN_INTERVAL_S`
seconds once the run has lasted that long: a log gets no carriage returns or escape sequences,
and a quick run prints none. `pytest --pyargs conformance.suites` does not load this plugin and
keeps pytest's console.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import TYPE_CHECKING, Any, Protocol, TextIO

import pytest

from conformance.console import VERDICTS_PYTEST_FAILS, label, printable, tally, verbose_line
from conformance.pytest_plugin import RUN, case_param, conformance_items, redactor_of

if TYPE_CHECKING:
    from rich.progress import Progress

    from conformance.redaction import Redactor
    from conformance.results import CheckResult
    from conformance.runner import ConformanceRun

#: Seconds between plain progress lines (the first comes after as long).
PLAIN_INTERVAL_S = 5.0
#: How the outcome word of a `-v` line is coloured on a terminal.
STYLES = {"pass": "green", "fail": "red", "error": "bold red", "internal error": "bold red"}
INTERNAL_ERROR = "internal error"


class Display(Protocol):
    """Where progress goes: told each result as it finishes, and lines to print above it."""

    def advance(self, result: CheckResult) -> None: ...

    def say(self, line: str, style: str | None, styled: int) -> None: ...

    def end(self) -> None: ...


def on_terminal(stream: TextIO) -> bool:
    """Whether `stream` is a terminal that can redraw a line (not a pipe, not `TERM=dumb`).
    Decided here, not by rich, which takes FORCE_COLOR, common in CI, to mean a terminal."""
    try:
        return stream.isatty() and os.environ.get("TERM") != "dumb"
    except ValueError:  # a closed stream
        return False


class LiveProgress:
    """A rich progress line on a terminal: checks finished of those started, the tally so far, the
    time taken; erased when the run ends."""

    def __init__(self, stream: TextIO, total: int):
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        console = Console(file=stream, force_terminal=True, highlight=False, soft_wrap=True)
        self.results: list[CheckResult] = []
        self.lock = threading.Lock()
        self.progress: Progress = Progress(
            TextColumn("checks"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TextColumn("{task.description}", markup=False), console=console, transient=True)
        self.task = self.progress.add_task("", total=total)
        self.progress.start()

    def advance(self, result: CheckResult) -> None:
        with self.lock:
            self.results.append(result)
            self.progress.update(self.task, advance=1, description=tally(self.results), refresh=True)

    def say(self, line: str, style: str | None, styled: int) -> None:
        """`line` above the progress line, its first `styled` characters in `style` (rich's syntax)."""
        from rich.text import Text

        text = Text(line)
        if style:
            text.stylize(style, 0, styled)
        self.progress.console.print(text)

    def end(self) -> None:
        self.progress.stop()


class PlainProgress:
    """Plain lines for a pipe, a file or CI: one every `interval` seconds while the run lasts."""

    def __init__(self, stream: TextIO, total: int, interval: float = PLAIN_INTERVAL_S):
        self.stream, self.total, self.interval = stream, total, interval
        self.results: list[CheckResult] = []
        self.lock = threading.Lock()
        self.started = time.monotonic()
        self.ended = threading.Event()
        self.ticker = threading.Thread(target=self.tick, name="progress", daemon=True)
        self.ticker.start()

    def tick(self) -> None:
        while not self.ended.wait(self.interval):
            with self.lock:
                counts = f" ({tally(self.results)})" if self.results else ""
                line = (f"conformance: {len(self.results)} of {self.total} checks finished{counts}, "
                        f"{time.monotonic() - self.started:.0f}s")
            self.write(line)

    def advance(self, result: CheckResult) -> None:
        with self.lock:
            self.results.append(result)

    def say(self, line: str, style: str | None, styled: int) -> None:
        self.write(line)

    def write(self, line: str) -> None:
        with self.lock:
            self.stream.write(line + "\n")
            self.stream.flush()

    def end(self) -> None:
        self.ended.set()
        self.ticker.join()


class RunConsole:
    """The pytest plugin `conformance run` adds (with `verbose` from its `-v`)."""

    def __init__(self, verbose: bool, stream: TextIO | None = None):
        self.verbose = verbose
        self.stream = stream or sys.stdout
        self.display: Display | None = None
        self.run: ConformanceRun | None = None
        self.items: dict[str, Any] = {}  # nodeid: what the item judges (a check id, or a case)
        self.id_width = 0
        self.redactor: Redactor | None = None

    @pytest.hookimpl(wrapper=True)
    def pytest_report_teststatus(self, report: pytest.TestReport):
        """No letter or word per test: the outcome pytest would name (a skip for inconclusive)
        is not ours. The category still goes into pytest's statistics."""
        category, _, _ = yield
        return category, "", ""

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        items = conformance_items(session)
        self.items = {item.nodeid: case_param(item) for item in items}
        self.id_width = max((len(str(param)) for param in self.items.values()), default=0)

    def pytest_runtestloop(self, session: pytest.Session) -> None:
        """After the conformance plugin put the checks in flight (its hook runs first), before
        pytest's loop waits for them."""
        run = self.run = session.config.stash.get(RUN, None)
        if run is None:
            return
        self.redactor = redactor_of(session.config)
        display = LiveProgress if on_terminal(self.stream) else PlainProgress
        self.display = display(self.stream, len(run.selected))
        run.on_each_result(self.display.advance)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """With -v, each check's line as pytest reaches it (catalog order); always, a pytest failure
        that is no verdict of ours (a defect in the suite), with pytest's text of it."""
        if self.run is None or report.nodeid not in self.items or (report.when != "call" and not report.failed):
            return
        case = self.run.case(self.items[report.nodeid])
        result = self.run.results.get(case)
        if self.verbose and result is not None and report.when == "call":
            self.say(verbose_line(result, self.id_width, case.model if self.run.matrix else None), label(result))
        if report.failed and (result is None or label(result) not in VERDICTS_PYTEST_FAILS):
            self.say(f"{INTERNAL_ERROR} in {report.nodeid} ({report.when}), no verdict: {report.longreprtext}",
                     INTERNAL_ERROR)

    def shown(self, text: str) -> str:
        """Server text as the console may show it: redacted, then one inert line."""
        assert self.redactor is not None
        return printable(self.redactor.text(text))

    def say(self, text: str, outcome: str) -> None:
        """Print `text` (each of its lines) above the progress, coloured as `outcome` where it starts."""
        assert self.display is not None
        for number, line in enumerate(text.split("\n")):
            self.display.say(self.shown(line), STYLES.get(outcome, "yellow") if number == 0 else None, len(outcome))

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self) -> None:
        """The progress ends before the reports are written and the summary printed."""
        if self.display is not None:
            self.display.end()
