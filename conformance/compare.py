"""`conformance compare` and `conformance diff`: pure functions over loaded report.json dicts.

- `matrix(reports)`: catalog entries down, one column per report (endpoint), the observed
  behaviours and the outcome in each cell; `render_markdown` and `render_html` draw it.
- `diff(baseline, current)`: what changed between two runs, check by check; `Changes.regressed`
  is what a release gate fails on (a check that passed, was inconclusive or skipped now fails or
  errors; a behaviour that flipped, unless flips are accepted; or the current run could not start).
- `command_compare` / `command_diff` run the two commands (cli.py declares their arguments);
  `run --baseline` diffs the run's in-memory report in the pytest plugin.

Reports are read with `load_report`, which validates them against `schemas/report.schema.json`
and raises `ReportError` (one line) for anything that is not a report.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

from conformance.catalog import load_catalog
from conformance.report.markdown import MARK, cell
from conformance.report.matrix import is_matrix, views
from conformance.schemas import schema_root

EXIT_OK, EXIT_REGRESSED, EXIT_USAGE = 0, 1, 2
FAILING = ("fail", "error")
#: A mark before a cell's behaviours for every outcome but pass (a plain cell is a pass).
SYMBOL = {"pass": "", "fail": "❌", "error": "💥", "inconclusive": "❔", "skip": "⏭️"}


class ReportError(ValueError):
    """A file that cannot be read as a conformance report; the message is one line."""


@lru_cache(maxsize=1)
def _report_validator() -> Draft202012Validator:
    return Draft202012Validator(json.loads((schema_root() / "report.schema.json").read_text(encoding="utf-8")))


def load_report(path: str | Path) -> dict[str, Any]:
    """Read and validate one report.json (a directory means its report.json)."""
    path = Path(path)
    if path.is_dir():
        path = path / "report.json"
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except OSError as problem:
        raise ReportError(f"cannot read {str(path)!r}: {problem.strerror or problem}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as problem:
        raise ReportError(f"{str(path)!r} is not JSON: {problem}") from None
    error = next(iter(sorted(_report_validator().iter_errors(report), key=lambda e: e.json_path)), None)
    if error is not None:
        message = error.message if len(error.message) <= 160 else error.message[:157] + "..."
        raise ReportError(f"{str(path)!r} is not a conformance report: {error.json_path}: {message}")
    return report


# -------------------------------------------------------------------------------------- the matrix


@dataclass(frozen=True)
class Column:
    """One report, as a matrix column."""

    label: str
    base_url: str | None
    model: str | None
    profile: str | None
    started_at: str
    status: str
    summary: dict[str, int]


@dataclass(frozen=True)
class Cell:
    """One entry as one report saw it: the entry row of that report.json."""

    observed: tuple[str, ...]
    outcome: str
    expected: tuple[str, ...] | None
    matches: tuple[str, ...]

    @property
    def text(self) -> str:
        return ", ".join(self.observed) or "-"


@dataclass(frozen=True)
class Row:
    entry_id: str
    title: str
    cells: tuple[Cell | None, ...]  # None: that report has no check of this entry

    @property
    def differs(self) -> bool:
        """The endpoints were not seen to behave alike on this entry."""
        return len({c.observed if c else None for c in self.cells}) > 1


#: What tells apart reports of one endpoint, in the order tried, and how a label shows it.
DISTINGUISHERS = ((lambda r: (r["profile"] or {}).get("name"), "{label}, profile {value}"),
                  (lambda r: model_of(r), "{label} · {value}"),
                  (lambda r: r["started_at"], "{label} @ {value}"))


def model_of(report: dict[str, Any]) -> str | None:
    """The model a report judged; for a matrix report, how many."""
    return f"{len(report['models'])} models" if is_matrix(report) else report["model"]


def columns(reports: list[dict[str, Any]]) -> list[Column]:
    """A column per report, labelled by the run's name (`--name`), else its endpoint's; reports of
    one label are told apart by profile, else model, else start time, else a number."""
    labels = [r.get("name") or r["endpoint"]["name"] or r["endpoint"]["base_url"] or "(no endpoint)"
              for r in reports]
    for label in {label for label in labels if labels.count(label) > 1}:
        group = [i for i, other in enumerate(labels) if other == label]
        for key, form in DISTINGUISHERS:  # noqa: B007  (the form that broke the loop is used after it)
            values = [key(reports[i]) for i in group]
            if len(set(values)) == len(values):
                break
        else:
            form, values = "{label} #{value}", list(range(1, len(group) + 1))
        for i, value in zip(group, values, strict=True):
            labels[i] = form.format(label=label, value=value)
    return [Column(label, r["endpoint"]["base_url"], model_of(r), (r["profile"] or {}).get("name"),
                   r["started_at"], r["status"], dict(r["summary"])) for label, r in zip(labels, reports, strict=True)]


def matrix(reports: list[dict[str, Any]]) -> list[Row]:
    """Catalog entries down (catalog order; unknown entries after, as first seen), reports across."""
    by_report = [{entry["id"]: entry for entry in report["entries"]} for report in reports]
    order = [entry.id for entry in load_catalog()]
    seen = {entry_id for entries in by_report for entry_id in entries}
    extra = [entry_id for entries in by_report for entry_id in entries if entry_id not in order]
    rows = []
    for entry_id in [i for i in order if i in seen] + list(dict.fromkeys(extra)):
        found = [entries.get(entry_id) for entries in by_report]
        title = next(entry["title"] for entry in found if entry)
        rows.append(Row(entry_id, title, tuple(
            Cell(tuple(e["observed"]), e["outcome"], None if e["expected"] is None else tuple(e["expected"]),
                 tuple(e["matches"])) if e else None for e in found)))
    return rows


def cell_markdown(c: Cell | None) -> str:
    if c is None:
        return "not run"
    mark = SYMBOL[c.outcome]
    return cell(f"{mark} {c.outcome}: {c.text}" if mark else c.text)


def render_markdown(reports: list[dict[str, Any]]) -> str:
    reports = [view for report in reports for view in views(report)]  # a matrix: a column per model
    cols, rows = columns(reports), matrix(reports)
    lines = ["# Conformance comparison", ""]
    for col in cols:
        summary = ", ".join(f"{n} {outcome}" for outcome, n in col.summary.items() if n) or "no checks ran"
        lines.append(f"- **{cell(col.label)}**: `{col.base_url}`, model `{col.model}`, profile `{col.profile}`, "
                     f"{col.started_at}, {col.status}; {summary}")
    lines += ["", "Each cell: the behaviours observed. ❌ fail, 💥 error, ❔ inconclusive, ⏭️ skip; "
                  "≠ marks an entry where the endpoints differ.", ""]
    if not rows:
        return "\n".join(lines + ["No catalog entry was checked in any of these reports."]) + "\n"
    lines += ["| Entry | " + " | ".join(cell(c.label) for c in cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for row in rows:
        name = f"`{row.entry_id}`" + (" ≠" if row.differs and len(cols) > 1 else "")
        lines.append(f"| {name} | " + " | ".join(cell_markdown(c) for c in row.cells) + " |")
    return "\n".join(lines) + "\n"


def render_html(reports: list[dict[str, Any]]) -> str:
    from conformance.report.html import render_page

    reports = [view for report in reports for view in views(report)]
    return render_page("compare.html.j2", columns=columns(reports), rows=matrix(reports))


# ---------------------------------------------------------------------------------------- the diff


@dataclass(frozen=True)
class Change:
    """One check in both runs (or in one: added / removed), as its report rows."""

    check_id: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None


@dataclass
class Changes:
    """What changed from `baseline` to `current`, check by check, in the categories a gate reads."""

    baseline: Column
    current: Column
    new_failures: list[Change] = field(default_factory=list)      # pass/inconclusive/skip → fail/error
    fixes: list[Change] = field(default_factory=list)             # fail/error → pass
    new_inconclusives: list[Change] = field(default_factory=list)  # anything else → inconclusive
    flips: list[Change] = field(default_factory=list)             # same outcome, another behaviour
    other: list[Change] = field(default_factory=list)             # any other change of outcome
    added: list[Change] = field(default_factory=list)
    removed: list[Change] = field(default_factory=list)
    lost: str | None = None  # the current run could not start, while the baseline judged checks
    #: What makes the two runs hard to compare (another endpoint, model or profile, an interruption).
    warnings: list[str] = field(default_factory=list)
    #: Behaviour flips were accepted explicitly (--accept-behaviour-changes): they do not regress.
    flips_accepted: bool = False

    CATEGORIES = (("new_failures", "New failures"), ("fixes", "Fixes"), ("flips", "Behaviour flips"),
                  ("new_inconclusives", "New inconclusives"), ("other", "Other outcome changes"),
                  ("added", "Checks added"), ("removed", "Checks removed"))

    @property
    def gating_flips(self) -> list[Change]:
        """Flips that fail the gate: what users of the endpoint see changed, unless accepted."""
        return [] if self.flips_accepted else self.flips

    @property
    def regressed(self) -> bool:
        return bool(self.new_failures) or bool(self.gating_flips) or self.lost is not None

    @property
    def empty(self) -> bool:
        return self.lost is None and not any(getattr(self, name) for name, _ in self.CATEGORIES)


def endpoint_identity(report: dict[str, Any]) -> str | None:
    """Which endpoint a report judged: its base URL, or for the embedded server (a new port on
    every run) its name."""
    endpoint = report["endpoint"]
    return endpoint["name"] if endpoint.get("embedded") else endpoint["base_url"]


def judged_rows(report: dict[str, Any], by_model: bool) -> dict[str, dict[str, Any]]:
    """A report's result rows by check id; `by_model`, by `check@model` (a matrix's every model)."""
    if not by_model:
        return {r["check_id"]: r for r in report["results"]}
    return {f"{r['check_id']}@{view['model']}": r for view in views(report) for r in view["results"]}


def diff(baseline: dict[str, Any], current: dict[str, Any], *, accept_behaviour_changes: bool = False) -> Changes:
    """What changed, check by check. When either side is a matrix report, each model is compared
    with the same model in the other (`check@model`): a model new to the baseline only adds checks."""
    by_model = is_matrix(baseline) or is_matrix(current)
    before, after = judged_rows(baseline, by_model), judged_rows(current, by_model)
    (base_column,), (current_column,) = columns([baseline]), columns([current])
    changes = Changes(base_column, current_column, flips_accepted=accept_behaviour_changes)
    for check_id in list(before) + [i for i in after if i not in before]:
        old, new = before.get(check_id), after.get(check_id)
        change = Change(check_id, old, new)
        if new is None:
            changes.removed.append(change)
        elif old is None:
            changes.added.append(change)
        elif old["outcome"] not in FAILING and new["outcome"] in FAILING:
            changes.new_failures.append(change)
        elif old["outcome"] in FAILING and new["outcome"] == "pass":
            changes.fixes.append(change)
        elif new["outcome"] == "inconclusive" and old["outcome"] != "inconclusive":
            changes.new_inconclusives.append(change)
        elif old["outcome"] != new["outcome"]:
            changes.other.append(change)
        elif old["observed"] != new["observed"]:
            changes.flips.append(change)
    if current["status"] == "not-started" and before:
        changes.lost = current["message"] or "the current run did not start"
    if current["status"] != "not-started":
        identities = [("endpoints", endpoint_identity), ("profiles", lambda r: (r["profile"] or {}).get("name"))]
        if not by_model:
            identities.insert(1, ("models", lambda r: r["model"]))
        for what, key in identities:
            if key(baseline) != key(current):
                changes.warnings.append(f"the runs are of different {what} (`{key(baseline)}` → `{key(current)}`), "
                                        "so checks may differ for that reason alone")
    for label, column in (("baseline", base_column), ("current", current_column)):
        if column.status == "interrupted":
            changes.warnings.append(f"the {label} run was interrupted; checks it did not finish count as "
                                    f"{'added' if label == 'baseline' else 'removed'}")
    return changes


def _side(row: dict[str, Any] | None) -> str:
    if row is None:
        return "-"
    return f"{MARK[row['outcome']]} · {row['observed'] or 'nothing'}"


def verdict_line(changes: Changes) -> str:
    """Why the gate fails, or that it does not."""
    if changes.lost is not None:
        return f"**Regression: the current run did not start**: {cell(changes.lost)}"
    if changes.regressed:
        found = [f"{len(changes.new_failures)} new failure(s)" if changes.new_failures else "",
                 (f"{len(changes.gating_flips)} behaviour flip(s) (accept them with --accept-behaviour-changes)"
                  if changes.gating_flips else "")]
        return f"**Regression: {', '.join(part for part in found if part)}.**"
    if changes.flips:
        return "No regression (behaviour flips accepted with --accept-behaviour-changes)."
    return "No regression."


def render_changes(changes: Changes) -> str:
    """The changes as Markdown: a verdict line, then one table per non-empty category."""
    lines = ["# Changes since the baseline", "",
             f"Baseline **{cell(changes.baseline.label)}** ({changes.baseline.started_at}, profile "
             f"`{changes.baseline.profile}`) → current **{cell(changes.current.label)}** "
             f"({changes.current.started_at}, profile `{changes.current.profile}`).", ""]
    lines += [f"> **Warning**: {warning}." for warning in changes.warnings] + ([""] if changes.warnings else [])
    if changes.empty:
        return "\n".join(lines + ["No changes: every check has the same outcome and behaviour."]) + "\n"
    lines += [verdict_line(changes), ""]
    for name, heading in Changes.CATEGORIES:
        found = getattr(changes, name)
        if not found:
            continue
        lines += [f"## {heading} ({len(found)})", "", "| Check | Baseline | Current | Why |",
                  "|---|---|---|---|"]
        for change in found:
            why = (change.after or change.before)["reason"]
            lines.append(f"| `{change.check_id}` | {_side(change.before)} | {_side(change.after)} | {cell(why)} |")
        lines.append("")
    return "\n".join(lines).rstrip("\n") + "\n"


# -------------------------------------------------------------------------------------- commands


def _problem(message: str) -> int:
    print(f"conformance: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def command_compare(args: argparse.Namespace) -> int:
    try:
        reports = [load_report(path) for path in args.reports]
    except ReportError as problem:
        return _problem(str(problem))
    markdown = render_markdown(reports)
    if args.out is None:
        sys.stdout.write(markdown)
        return EXIT_OK
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / "compare.md").write_text(markdown, encoding="utf-8")
        (out / "compare.html").write_text(render_html(reports), encoding="utf-8")
    except OSError as problem:
        return _problem(f"cannot write to {str(out)!r}: {problem.strerror or problem}")
    print(f"{out / 'compare.md'}\n{out / 'compare.html'}")
    return EXIT_OK


def command_diff(args: argparse.Namespace) -> int:
    try:
        changes = diff(load_report(args.baseline), load_report(args.current),
                       accept_behaviour_changes=args.conformance_accept_behaviour_changes)
    except ReportError as problem:
        return _problem(str(problem))
    sys.stdout.write(render_changes(changes))
    return EXIT_REGRESSED if changes.regressed else EXIT_OK
