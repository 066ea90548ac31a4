"""What `conformance run` prints: one summary line that agrees with report.json, in our outcomes'
names; `-v` lines naming the behaviour observed; a curl line for each failure, the key kept out;
where an unjudged endpoint differs from OpenAI; progress that never garbles piped output.

The runs are real processes (`python -m conformance run`), against the embedded server and against
`python -m conformance serve --behavior fireworks`, which fails the openai profile.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from conformance.catalog import load_catalog
from conformance.console import LONGEST_CURL_LINE, SHOWN_CURL_LINES
from conformance.progress import PlainProgress
from conformance.results import CheckResult

ROOT = Path(__file__).resolve().parents[1]
KEY = "sk-console-test-key-0123456789"
#: Our summary line: counts in our outcomes' names, then the traffic.
SUMMARY = re.compile(r"^((\d+) (pass|fail|error|inconclusive|skip)( \([^)]*\))?)(, \d+ \w+( \([^)]*\))?)*; ")
COUNT = re.compile(r"(\d+) (pass|fail|error|inconclusive|skip)\b")
#: pytest's own counts ("44 failed, 6 passed", "2 skipped"), which `conformance run` must not print.
PYTEST_COUNTS = re.compile(r"\b\d+ (passed|failed|skipped|errors?|deselected)\b")
TERMINAL_CONTROL = re.compile(r"[\x1b\r\x07]")


def environment() -> dict[str, str]:
    """This checkout first on the path; no endpoint, key or colour forced from the caller's
    environment (a run piped to a file is then colourless)."""
    drop = {"OPENAI_BASE_URL", "OPENAI_API_BASE", "OPENAI_API_KEY", "PYTEST_ADDOPTS", "PYTEST_PLUGINS",
            "FORCE_COLOR", "PY_COLORS", "TTY_COMPATIBLE", "TTY_INTERACTIVE"}
    env = {name: value for name, value in os.environ.items() if name not in drop}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    return env


@pytest.fixture(scope="module")
def fireworks_server() -> Iterator[str]:
    """`conformance serve --behavior fireworks`; its base URL (its first line, printed once it
    listens). It requires no key, so the checks of refusals are inconclusive; runs send KEY anyway."""
    server = subprocess.Popen([sys.executable, "-m", "conformance", "serve", "--port", "0", "--behavior",
                               "fireworks"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                              text=True, env=environment(), cwd=ROOT)
    assert server.stdout is not None
    try:
        yield server.stdout.readline().strip()
    finally:
        server.terminate()  # only the process this fixture started
        server.wait(timeout=30)
        server.stdout.close()


class Console:
    def __init__(self, completed: subprocess.CompletedProcess[str], report_dir: Path):
        self.code, self.out, self.err = completed.returncode, completed.stdout, completed.stderr
        self.report = json.loads((report_dir / "report.json").read_text(encoding="utf-8"))
        self.lines = self.out.splitlines()

    def summary_lines(self) -> list[str]:
        return [line for line in self.lines if SUMMARY.match(line)]


def conformance_run(tmp_path: Path, *arguments: str) -> Console:
    report_dir = tmp_path / "reports"
    completed = subprocess.run([sys.executable, "-m", "conformance", "run", "--report-dir", str(report_dir),
                                *arguments], capture_output=True, text=True, timeout=300, env=environment(),
                               cwd=tmp_path, check=False)
    assert "Traceback" not in completed.stdout + completed.stderr, completed.stdout + completed.stderr
    return Console(completed, report_dir)


def assert_one_summary_agreeing_with_the_report(console: Console) -> None:
    summaries = console.summary_lines()
    assert len(summaries) == 1, console.out
    counts = {outcome: int(number) for number, outcome in COUNT.findall(summaries[0].split(";")[0])}
    assert counts == {outcome: n for outcome, n in console.report["summary"].items() if n}, summaries[0]
    assert not [line for line in console.lines if PYTEST_COUNTS.search(line)], console.out
    assert console.lines[-1] == summaries[0]  # the last word


def assert_nothing_a_pipe_cannot_hold(console: Console) -> None:
    assert not TERMINAL_CONTROL.search(console.out + console.err), repr(console.out + console.err)
    assert not [line for line in (console.out + console.err).splitlines() if line.lstrip().startswith("::")]


def test_the_embedded_run_says_one_thing(tmp_path: Path) -> None:
    console = conformance_run(tmp_path)
    assert console.code == 0, console.out + console.err
    assert_one_summary_agreeing_with_the_report(console)
    assert_nothing_a_pipe_cannot_hold(console)
    assert console.summary_lines()[0].startswith(f"{len(console.report['results'])} pass; ")
    assert not [line for line in console.lines if line.startswith("pass ")]  # -v lines only with -v


def test_a_failing_endpoint_verbose(fireworks_server: str, tmp_path: Path) -> None:
    console = conformance_run(tmp_path, "--base-url", fireworks_server, "--api-key", KEY, "-v")
    assert console.code == 1, console.out + console.err
    assert_one_summary_agreeing_with_the_report(console)
    assert_nothing_a_pipe_cannot_hold(console)
    results = console.report["results"]
    inconclusive = [r for r in results if r["outcome"] == "inconclusive"]
    assert inconclusive, "the fireworks server should leave some check inconclusive"
    assert "skipped" not in console.out and "SKIP" not in console.out
    for result in results:  # -v: one line per check, naming what was observed
        shown = result["outcome"] if not (result["outcome"] == "skip" and result["expected"]) else "not judged"
        pattern = rf"{re.escape(shown)} +{re.escape(result['check_id'])} "
        line = next((line for line in console.lines if re.match(pattern, line)), None)
        assert line is not None, (result["check_id"], console.out)
        if result["observed"] not in (None, "inconclusive"):
            assert f"observed {result['observed']}" in line, line
        assert "site-packages" not in line and "test_conformance.py" not in line
    failing = [r for r in results if r["outcome"] in ("fail", "error")]
    assert failing
    for result in failing:  # each failure: its headline, then the curl lines that reproduce it
        start = console.lines.index(next(line for line in console.lines
                                         if line.startswith(f"[{result['outcome']}] {result['check_id']}: ")))
        block = []
        for line in console.lines[start + 1:]:
            if not line.startswith("    "):
                break
            block.append(line)
        curls = [line.removeprefix("    reproduce: ") for line in block if line.startswith("    reproduce: curl ")]
        expected = [c for c in result["curl"][:SHOWN_CURL_LINES] if len(c) <= LONGEST_CURL_LINE]
        assert curls == expected and curls, (result["check_id"], block)
        assert all('"Authorization: Bearer $OPENAI_API_KEY"' in curl for curl in curls), curls
    assert KEY not in console.out + console.err


def test_profile_none_says_where_the_endpoint_differs_from_each_familys_documents(
        fireworks_server: str, tmp_path: Path) -> None:
    console = conformance_run(tmp_path, "--base-url", fireworks_server, "--api-key", KEY, "--profile", "none")
    assert console.code == 0, console.out + console.err
    assert_one_summary_agreeing_with_the_report(console)
    for family, author in (("openai", "OpenAI"), ("anthropic", "Anthropic")):  # each against its own documents
        members = {entry.id for entry in load_catalog() if entry.api == family}
        differing = sorted(entry["id"] for entry in console.report["entries"]
                           if entry["id"] in members and set(entry["observed"]) - {family, "inconclusive"})
        line = next(line for line in console.lines if line.startswith(f"differs from {author}'s documented behaviour "))
        assert line.startswith(f"differs from {author}'s documented behaviour on {len(differing)} of "), line
        named = re.findall(r"([a-z0-9-]+) \([a-z0-9, -]+\)", line.split(": ", 1)[1])
        assert sorted(named) == differing and differing


def test_the_embedded_openai_server_matches_openai_under_profile_none(tmp_path: Path) -> None:
    console = conformance_run(tmp_path, "--profile", "none", "-k", "stream-usage or stop-sequence")
    assert console.code == 0, console.out + console.err
    assert any(line.startswith("matches OpenAI's documented behaviour on all 2 entries observed")
               for line in console.lines), console.out


def test_on_a_terminal_progress_is_live_and_the_summary_still_one_line(tmp_path: Path) -> None:
    """stdout a pseudo-terminal: a rich progress line is drawn (and erased), the summary printed once."""
    import pty

    controller, terminal = pty.openpty()
    process = subprocess.Popen([sys.executable, "-m", "conformance", "run", "--report-dir", str(tmp_path / "r")],
                               stdout=terminal, stderr=terminal, stdin=subprocess.DEVNULL, env=environment(),
                               cwd=tmp_path)
    os.close(terminal)
    shown = b""
    while True:  # until the child's end closes the terminal (EIO on Linux, EOF elsewhere)
        try:
            chunk = os.read(controller, 65536)
        except OSError:
            break
        if not chunk:
            break
        shown += chunk
    os.close(controller)
    assert process.wait(timeout=60) == 0, shown.decode(errors="replace")
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", shown.decode(errors="replace"))
    assert re.search(r"checks .*\d+/\d+", text), text  # the live line
    summaries = [line for line in text.replace("\r", "\n").splitlines() if SUMMARY.match(line)]
    assert len(summaries) == 1, text


def test_a_defect_in_the_suite_is_shown_though_pytest_is_silenced(monkeypatch: pytest.MonkeyPatch, capsys,
                                                                  tmp_path: Path) -> None:
    """pytest's failure sections are off in `conformance run`; a pytest failure that is no verdict
    of ours (here: collecting a result raises) must still be shown, not only felt in the exit code."""
    from conformance import runner
    from conformance.cli import main

    collect = runner.ConformanceRun.result

    def broken(run: runner.ConformanceRun, check_id: str) -> CheckResult:
        if check_id == "usage-in-response/chat":
            raise RuntimeError("a defect in the suite")
        return collect(run, check_id)

    monkeypatch.setattr(runner.ConformanceRun, "result", broken)
    code = main(["run", "--report-dir", str(tmp_path), "-k", "usage-in-response"])
    out = capsys.readouterr().out
    assert code == 1, out
    assert [line for line in out.splitlines() if line.startswith("internal error in ")
            and "usage-in-response/chat" in line and "RuntimeError: a defect in the suite" in line], out


class Lines:
    """A stream that tells the test when a line it waits for arrives."""

    def __init__(self, awaited: str) -> None:
        self.awaited = awaited
        self.lines: list[str] = []
        self.arrived = threading.Event()

    def write(self, text: str) -> None:
        self.lines.append(text)
        if self.awaited in text:
            self.arrived.set()

    def flush(self) -> None:
        pass


def test_plain_progress_is_whole_lines_while_the_run_lasts() -> None:
    stream = Lines("1 of 2 checks")
    progress = PlainProgress(stream, 2, interval=0.01)  # type: ignore[arg-type]
    progress.advance(CheckResult("a/x", "a", "A", "fail", ["openai"], "fireworks", "why"))
    try:
        assert stream.arrived.wait(timeout=30)
    finally:
        progress.end()
    assert not progress.ticker.is_alive()
    for line in stream.lines:  # before the result: no counts; after it, the tally
        assert re.fullmatch(r"conformance: (0 of 2 checks finished|1 of 2 checks finished \(1 fail\)), \d+s\n", line)
