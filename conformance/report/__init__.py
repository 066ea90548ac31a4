"""Report writers: they read a finished run's results and never send requests or change verdicts.

`build_report` makes the one dict every format is rendered from (and which `report.json` is);
`write_reports` writes report.json, report.md, report.html and junit.xml into a directory.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from conformance import __version__
from conformance.results import OUTCOMES

if TYPE_CHECKING:
    from conformance.runner import ConformanceRun

REPORT_FORMAT = 1


def build_report(run: "ConformanceRun | None", setup_failure: str | None = None,
                 base_url: str | None = None, name: str | None = None) -> dict[str, Any]:
    """The report as data. With no run (it could not start), a complete report of why."""
    if run is None:
        return {
            "format": REPORT_FORMAT, "tool": {"name": "conformance", "version": __version__}, "name": name,
            "endpoint": {"base_url": base_url, "name": None, "embedded": False}, "model": None,
            "profile": None, "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "duration_s": 0.0, "status": "not-started", "complete": False, "message": setup_failure,
            "requests": 0, "retries": 0, "tokens": {"prompt": 0, "completion": 0, "total": 0},
            "summary": {outcome: 0 for outcome in OUTCOMES}, "entries": [], "results": [],
        }
    results = run.ordered_results()
    summary = {outcome: sum(1 for r in results if r.outcome == outcome) for outcome in OUTCOMES}
    missing = [check_id for check_id in run.selected if check_id not in run.results]
    complete = run.status == "completed" and not missing
    return {
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
        "message": run.message if not missing else f"{run.message or 'incomplete'}: not judged: {', '.join(missing)}",
        "requests": run.stats.requests,
        "retries": run.stats.retries,
        "tokens": {"prompt": run.stats.prompt_tokens, "completion": run.stats.completion_tokens,
                   "total": run.stats.total_tokens},
        "summary": summary,
        "entries": entry_rows(run, results),
        "results": [result.to_dict() for result in results],
    }


def entry_rows(run: "ConformanceRun", results) -> list[dict[str, Any]]:
    """Per catalog entry: what was observed across its checks, and which documents that matches."""
    rows = []
    for entry in run.catalog:
        mine = [r for r in results if r.entry_id == entry.id]
        if not mine:
            continue
        observed = sorted({r.observed for r in mine if r.observed})
        rows.append({
            "id": entry.id, "title": entry.title, "expected": run.profile.expected(entry.id),
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


def write_reports(run: "ConformanceRun | None", directory: Path, setup_failure: str | None = None,
                  base_url: str | None = None, name: str | None = None) -> list[Path]:
    """Write every format; returns the paths written."""
    from conformance.report import html, json_report, junit, markdown

    report = build_report(run, setup_failure, base_url, name)
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, render in (("report.json", json_report.render), ("report.md", markdown.render),
                         ("report.html", html.render), ("junit.xml", junit.render)):
        path = directory / name
        path.write_text(render(report), encoding="utf-8")
        written.append(path)
    return written
