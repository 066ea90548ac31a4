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


def render(report: dict[str, Any]) -> str:
    endpoint = report["endpoint"]
    profile = report["profile"] or {"name": "-"}
    lines = [
        "# Conformance report",
        "",
        f"- Endpoint: {code(endpoint['base_url'])}"
        + (" (embedded reference server)" if endpoint.get("embedded") else ""),
        f"- Model: {code(report['model'])}",
        f"- Profile: {code(profile['name'])}",
        f"- Started: {report['started_at']}, took {report['duration_s']:.1f}s, status **{report['status']}**",
        f"- Traffic: {traffic(report)}",
        f"- conformance {report['tool']['version']}",
    ]
    if report.get("message"):
        lines += ["", f"> {code(report['message'], in_table=False)}"]
    summary = ", ".join(f"{n} {outcome}" for outcome, n in report["summary"].items() if n)
    lines += ["", f"**{summary or 'no checks ran'}**", ""]
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
