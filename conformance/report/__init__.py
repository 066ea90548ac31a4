"""Report writers: they read a finished run's results and never send requests or change verdicts.

`build_report` makes the one dict every format is rendered from (and which `report.json` is);
`write_reports` writes report.json, report.md, report.html and junit.xml into a directory.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from conformance import __version__
from conformance.accounting import RunStats
from conformance.redaction import Redactor
from conformance.results import INTERRUPTED, OUTCOMES

if TYPE_CHECKING:
    from conformance.runner import ConformanceRun

REPORT_FORMAT = 1


def build_report(run: ConformanceRun | None, setup_failure: str | None = None,
                 base_url: str | None = None, stats: RunStats | None = None,
                 name: str | None = None) -> dict[str, Any]:
    """The report as data. With no run (it could not start), a complete report of why, counting
    the requests that found out (`stats`: the listing, the preflight)."""
    if run is None:
        stats = stats or RunStats()
        return {
            "format": REPORT_FORMAT, "tool": {"name": "conformance", "version": __version__}, "name": name,
            "endpoint": {"base_url": base_url, "name": None, "embedded": False}, "model": None,
            "profile": None, "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "duration_s": 0.0, "status": "not-started", "complete": False, "message": setup_failure,
            "mode": "live", "cassettes": None,
            "requests": stats.requests, "retries": stats.retries,
            "tokens": {"prompt": stats.prompt_tokens, "completion": stats.completion_tokens,
                       "total": stats.total_tokens},
            "summary": {outcome: 0 for outcome in OUTCOMES}, "entries": [], "results": [],
        }
    results = [] if run.matrix else run.ordered_results()  # a matrix's are per model (report/matrix.py)
    summary = {outcome: sum(1 for r in results if r.outcome == outcome) for outcome in OUTCOMES}
    missing = [r.check_id for r in results if r.reason == INTERRUPTED]
    complete = run.status == "completed" and not missing
    report = {
        "format": REPORT_FORMAT,
        "tool": {"name": "conformance", "version": __version__},
        "name": run.name,
        "endpoint": {"base_url": run.endpoint.base_url, "name": run.endpoint.name,
                     "embedded": run.endpoint.embedded is not None or run.endpoint.name.startswith("reference-")},
        "model": run.endpoint.model,
        "profile": {"name": run.profile.name, "origin": run.profile.origin, "description": run.profile.description},
        "started_at": run.started_at,
        "duration_s": run.duration_s,
        "status": run.status,
        "complete": complete,
        "mode": run.mode,
        "cassettes": str(run.cassettes) if run.cassettes is not None else None,
        "message": run.message if not missing else f"{run.message or 'incomplete'}: not judged: {', '.join(missing)}",
        "requests": run.stats.requests,
        "retries": run.stats.retries,
        "tokens": {"prompt": run.stats.prompt_tokens, "completion": run.stats.completion_tokens,
                   "total": run.stats.total_tokens},
        "summary": summary,
        "entries": entry_rows(run, results),
        "results": [result.to_dict() for result in results],
    }
    if run.matrix:
        from conformance.report.matrix import build_matrix_report

        return build_matrix_report(run, report)
    return report


def traffic(report: dict[str, Any]) -> str:
    """What the run sent, in words: live requests and tokens spent, or, for a replay, that nothing
    live was sent (every format and the console say it the same way)."""
    tokens = report["tokens"]
    if report.get("mode") == "replay":
        return (f"replayed from cassettes in {report.get('cassettes')}, no live requests: {report['requests']} "
                f"recorded requests replayed (usage as recorded: {tokens['prompt']} prompt + "
                f"{tokens['completion']} completion tokens)")
    recorded = f", recorded into {report.get('cassettes')}" if report.get("mode") == "record" else ""
    return (f"{report['requests']} requests, {tokens['prompt']} prompt + {tokens['completion']} completion "
            f"tokens{recorded}")


def entry_rows(run: ConformanceRun, results) -> list[dict[str, Any]]:
    """Per catalog entry: what was observed across its checks, and which documents that matches."""
    rows = []
    for entry in run.catalog:
        mine = [r for r in results if r.entry_id == entry.id]
        if not mine:
            continue
        observed = sorted({r.observed for r in mine if r.observed})
        rows.append({
            "id": entry.id, "title": entry.title, "expected": run.profile.expected(entry.id),
            "expected_from": run.profile.source_of(entry.id),
            "observed": observed,
            "outcome": worst([r.outcome for r in mine]),
            "matches": sorted({label for r in mine for label in r.matches}),
        })
    return rows


def worst(outcomes: list[str]) -> str:
    for outcome in ("error", "fail", "inconclusive", "skip", "pass"):
        if outcome in outcomes:
            return outcome
    return "skip"


def prepared_report(run: ConformanceRun | None, setup_failure: str | None = None, base_url: str | None = None,
                    stats: RunStats | None = None, redactor: Redactor | None = None,
                    name: str | None = None) -> dict[str, Any]:
    """The run's report as every format renders it, built once: bounded (`json_report.bounded`)
    and redacted (`Redactor.tree`). It is also what the session keeps for the CLI and the Action."""
    from conformance.report import json_report

    return json_report.bounded(build_report(run, setup_failure, base_url, stats, name), (redactor or Redactor()).text)


def write_reports(run: ConformanceRun | None, directory: Path, setup_failure: str | None = None,
                  base_url: str | None = None, stats: RunStats | None = None,
                  redactor: Redactor | None = None, name: str | None = None) -> list[Path]:
    """Build the report (`prepared_report`) and write every format; returns the paths written."""
    redactor = redactor or Redactor()
    return write_report_files(prepared_report(run, setup_failure, base_url, stats, redactor, name), directory,
                              redactor)


def prepare_writers(matrix: bool = False) -> None:
    """Import the writers and compile the page's template now (about 0.15 s, jinja2's import most of
    it): a run calls this as its checks start, so that writing the reports, the last thing it does,
    does not pay for it."""
    from conformance.report import html, json_report, junit, markdown  # noqa: F401

    html.prepare("matrix.html.j2" if matrix else "report.html.j2")


def write_report_files(report: dict[str, Any], directory: Path, redactor: Redactor | None = None) -> list[Path]:
    """Write every format of a prepared report; returns the paths written.

    Every format renders the same bounded, redacted dict, and each rendered text is redacted once
    more (an encoder may spell a secret anew). Each file is replaced atomically, so a full disk or
    a kill leaves the previous file or none, never a truncated one."""
    from conformance.report import html, json_report, junit, markdown

    return write_formats(report, directory, (("report.json", json_report.render), ("report.md", markdown.render),
                                             ("report.html", html.render), ("junit.xml", junit.render)),
                         (redactor or Redactor()).text)


def write_formats(report: dict[str, Any], directory: Path, formats: Iterable[tuple[str, Callable[[Any], str]]],
                  finish: Callable[[str], str] = str) -> list[Path]:
    """Write each `(file name, render)` of one prepared report into `directory`, each atomically,
    every rendered text passed through `finish` (the run's redaction); returns the paths. The run's,
    the audit's and the dataset command's reports are all written here."""
    directory.mkdir(parents=True, exist_ok=True)
    return [write_atomically(directory / name, finish(render(report))) for name, render in formats]


def write_atomically(path: Path, text: str) -> Path:
    """Write `text` to a temporary file beside `path`, then rename it over `path`."""
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, 0o644)  # mkstemp's 0600 would hide reports from CI artifact uploaders
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path
