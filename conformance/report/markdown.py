"""report.md: the compatibility table, fit for a pull request or $GITHUB_STEP_SUMMARY.

Text a server controls (model ids, messages in reasons) and text a user typed (URL, profile) is
only ever shown inside a code span, on one line: there it cannot become a heading, a link, an
image, HTML or a new table row, however it is spelled (see `code`). Only the catalog's own titles
and document labels are plain Markdown.
"""

from __future__ import annotations

import re
from typing import Any

from conformance.console import printable
from conformance.report import traffic

MARK = {"pass": "✅ pass", "fail": "❌ fail", "error": "💥 error", "inconclusive": "❔ inconclusive", "skip": "⏭️ skip"}
BACKTICKS = re.compile(r"`+")
#: Backslashes right before a `|`: GFM parsers disagree on whether they escape it, so none is left there.
BACKSLASHES_BEFORE_PIPE = re.compile(r"\\+(?=\|)")


def code(text: Any, in_table: bool = True) -> str:
    """`text` as an inline code span on one line: control characters and line breaks (including a
    lone CR and U+2028/2029) shown escaped, a fence longer than any backtick run inside, and in a
    table each `|` escaped (GFM splits cells before it finds code spans)."""
    if text is None or text == "":
        return "-"
    shown = printable(str(text))
    if in_table:
        shown = BACKSLASHES_BEFORE_PIPE.sub(lambda run: "\u29f5" * len(run.group()), shown).replace("|", "\\|")
    fence = "`" * (1 + max((len(run) for run in BACKTICKS.findall(shown)), default=0))
    pad = " " if shown.startswith(("`", " ")) or shown.endswith(("`", " ")) else ""
    return f"{fence}{pad}{shown}{pad}{fence}"


def cell(text: Any) -> str:
    """Our own text (labels, timestamps) as plain Markdown in a table cell, on one line. Not for
    server text: Markdown and HTML in it stay live; `code` is the inert form."""
    return printable(str(text)).replace("|", "\\|")


def words(values: list[str] | None, joiner: str, empty: str) -> str:
    """A list of vocabulary words or labels, each as code."""
    return joiner.join(code(value) for value in values) if values else empty


def fenced(lines: list[str], language: str) -> list[str]:
    """A fenced block whose fence no line can close: longer than any backtick run in it."""
    shown = [printable(line) for line in lines]
    fence = "`" * max(3, 1 + max((len(run) for line in shown for run in BACKTICKS.findall(line)), default=0))
    return [f"{fence}{language}", *shown, fence]


def header(report: dict[str, Any], models: str) -> list[str]:
    """The run's facts, its message and its summary line (both report formats open with them)."""
    endpoint = report["endpoint"]
    profile = report["profile"] or {"name": "-"}
    shard = report.get("shard")
    lines = [
        "# Conformance report",
        "",
        f"- Endpoint: {code(endpoint['base_url'])}"
        + (" (embedded reference server)" if endpoint.get("embedded") else ""),
        models,
        f"- Profile: {code(profile['name'])}",
        f"- Started: {report['started_at']}, took {report['duration_s']:.1f}s, status **{report['status']}**"
        + (f", shard {shard['index']}/{shard['count']}" if shard else ""),
        f"- Traffic: {traffic(report)}",
        f"- conformance {report['tool']['version']}",
    ]
    if report.get("message"):
        lines += ["", f"> {code(report['message'], in_table=False)}"]
    return lines + ["", f"**{summary_text(report['summary'])}**", ""]


def summary_text(summary: dict[str, int]) -> str:
    return ", ".join(f"{n} {outcome}" for outcome, n in summary.items() if n) or "no checks ran"


def render(report: dict[str, Any]) -> str:
    from conformance.report.matrix import is_matrix

    if is_matrix(report):
        return render_matrix(report)
    lines = header(report, f"- Model: {code(report['model'])}")
    if report["entries"]:
        lines += ["## By catalog entry", "", "| Entry | Expected | Observed | Outcome | Matches documents |",
                  "|---|---|---|---|---|"]
        for row in report["entries"]:
            expected = words(row['expected'], ' or ', 'any')
            if row.get("expected_from"):
                expected += f" ({cell(row['expected_from'])})"
            lines.append(f"| {code(row['id'])} {cell(row['title'])} | {expected} "
                         f"| {words(row['observed'], ', ', '-')} | {MARK[row['outcome']]} "
                         f"| {cell('; '.join(row['matches'])) or '-'} |")
        lines.append("")
    if report["results"]:
        lines += ["## Checks", "", "| Check | Expected | Observed | Outcome | Why |", "|---|---|---|---|---|"]
        for result in report["results"]:
            lines.append(f"| {code(result['check_id'])} | {words(result['expected'], ' or ', 'any')} "
                         f"| {code(result['observed'])} | {MARK[result['outcome']]} | {code(result['reason'])} |")
        problems = [r for r in report["results"] if r["outcome"] in ("fail", "error")]
        if problems:
            lines += ["", "## Failures and errors", ""]
            for result in problems:
                lines += [f"### {code(result['check_id'], in_table=False)}", "",
                          code(result["reason"], in_table=False), "", *fenced(result["curl"], "sh"), ""]
    return "\n".join(lines) + "\n"


def render_matrix(report: dict[str, Any]) -> str:
    """A matrix report: the models (usability, outcomes, spend), then entries down and models
    across, models that behaved identically folded into one column, then each column's failures."""
    from conformance.report.matrix import groups, matrix_rows

    folded = groups(report)
    lines = header(report, f"- Models: {len(report['models'])}, in {len(folded)} group(s) of identical behaviour")
    lines += ["## Models", "", "| Model | Group | Outcomes | Requests | Tokens |", "|---|---|---|---|---|"]
    number = {model: index for index, group in enumerate(folded, 1) for model in group.models}
    for section in report["models"]:
        outcomes = summary_text(section["summary"]) if section["usable"] else f"cannot be used: {section['problem']}"
        lines.append(f"| {code(section['id'])} | G{number[section['id']]} | {code(outcomes)} "
                     f"| {section['requests']} | {section['tokens']['total']} |")
    lines += ["", "## By catalog entry", ""]
    lines += [f"- **G{index}** ({len(group.models)}): {', '.join(code(m, in_table=False) for m in group.models)}"
              for index, group in enumerate(folded, 1)]
    lines += ["", "| Entry | " + " | ".join(f"G{index}" for index in range(1, len(folded) + 1)) + " |",
              "|---" * (len(folded) + 1) + "|"]
    for row in matrix_rows(report, folded):
        cells = [f"{MARK[c['outcome']]} {words(c['observed'], ', ', '-')}" if c else "not run" for c in row["cells"]]
        lines.append(f"| {code(row['id'])}{' ≠' if row['differs'] else ''} | " + " | ".join(cells) + " |")
    for index, group in enumerate(folded, 1):
        problems = [r for r in group.section["results"] if r["outcome"] in ("fail", "error")]
        if problems:
            lines += ["", f"## Failures and errors of G{index}", ""]
            lines += [f"- {code(r['check_id'], in_table=False)}: {code(r['reason'], in_table=False)}" for r in problems]
    return "\n".join(lines) + "\n"
