"""What the console shows of a run, and text from a server made safe to print there.

A server's message can hold ESC sequences (which repaint or hide a terminal's lines), line
breaks, and GitHub Actions' `::command::` syntax, which the runner obeys when a line of a step's
output starts with it. Every line the suite prints that may carry server text goes through
`printable` (one line) or `printable_lines` (a block such as changes.md), after the run's redactor.

The lines themselves (the one summary, a `-v` line per check, a failure with the curl lines that
reproduce it, where an unjudged endpoint differs from each API family's documents) are built here
from `CheckResult`s, so `conformance run` and `pytest --pyargs conformance.suites` say the same thing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from conformance.catalog import Catalog
    from conformance.results import CheckResult

#: C0 and C1 controls (ESC, CR, LF, ...), DEL, and the Unicode line and paragraph separators.
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
#: GitHub Actions reads `::name ...::` at the start of a line (after any blanks) as a command.
WORKFLOW_COMMAND = re.compile(r"^(\s*)::", re.MULTILINE)
#: The outcomes, failures first, as the summary line names them (report.json's `summary` keys).
SUMMARY_ORDER = ("fail", "error", "inconclusive", "skip", "pass")
#: A check the profile expects that got no verdict (out of budget, or the run stopped first).
NOT_JUDGED = "not judged"
#: The verdicts `pytest_plugin.enforce` turns into a pytest failure; any other failure is a defect.
VERDICTS_PYTEST_FAILS = ("fail", "error", NOT_JUDGED)
#: Characters of a reason a `-v` line shows (the report has all of it).
SHORT_REASON = 100
#: Curl lines shown per failure, and the longest shown whole; the rest are in report.md.
SHOWN_CURL_LINES = 3
LONGEST_CURL_LINE = 2000


def _shown(match: re.Match[str]) -> str:
    return repr(match.group())[1:-1]


def printable(text: str) -> str:
    """One line: every control character shown as its escape (`\\x1b`, `\\n`, `\\u2028`), and a
    leading `::` defused."""
    return WORKFLOW_COMMAND.sub(r"\1:\\:", CONTROL.sub(_shown, text))


def printable_lines(text: str) -> str:
    """Several lines (split on `\\n` only): each made `printable`."""
    return "\n".join(printable(line) for line in text.split("\n"))


def label(result: CheckResult) -> str:
    """The outcome as the console names it: a skip the profile expected a verdict for is `not judged`."""
    return NOT_JUDGED if result.outcome == "skip" and result.expected is not None else result.outcome


def tally(results: Sequence[CheckResult]) -> str:
    """The counts of the run's one summary line, e.g. `27 fail, 2 inconclusive, 2 skip (not judged),
    20 pass`: the same numbers as report.json's `summary`, zeros left out."""
    parts = []
    for outcome in SUMMARY_ORDER:
        count = sum(1 for result in results if result.outcome == outcome)
        if not count:
            continue
        unjudged = sum(1 for result in results if result.outcome == outcome and label(result) == NOT_JUDGED)
        note = "" if not unjudged else f" ({NOT_JUDGED})" if unjudged == count else f" ({unjudged} {NOT_JUDGED})"
        parts.append(f"{count} {outcome}{note}")
    return ", ".join(parts) or "no checks finished"


def shortened(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


def verbose_line(result: CheckResult, id_width: int, model: str | None = None) -> str:
    """One `-v` line: outcome, check id (`check@model` in a matrix run), the behaviour observed
    (and the one expected, when they differ), and the reason, shortened."""
    observed = "" if result.observed in (None, "inconclusive") else f"observed {result.observed}"
    if observed and result.outcome == "fail" and result.expected is not None:
        observed += f", expected {' or '.join(result.expected)}"
    judged = result.check_id if model is None else f"{result.check_id}@{model}"
    return (f"{label(result):<12} {judged:<{id_width}}  {observed}{': ' if observed else ''}"
            f"{shortened(result.reason, SHORT_REASON)}")


def failure_lines(result: CheckResult) -> list[str]:
    """A failed or errored check: its headline, the documents its observation matches, and the
    curl lines that reproduce it (the key as `$OPENAI_API_KEY`), as many as a console can hold."""
    lines = [result.headline()]
    if result.matches:
        lines.append("    matches: " + "; ".join(result.matches))
    shown = [line for line in result.curl[:SHOWN_CURL_LINES] if len(line) <= LONGEST_CURL_LINE]
    lines += [f"    reproduce: {line}" for line in shown]
    if len(shown) < len(result.curl):
        lines.append(f"    reproduce: {len(result.curl) - len(shown)} more curl line(s) in report.md")
    return lines


#: Whose documents each API family is measured against when no profile judges it.
FAMILY_AUTHORS = {"openai": "OpenAI", "anthropic": "Anthropic"}


def differences_from_documents(results: Iterable[CheckResult], catalog: Catalog) -> list[str]:
    """Where an endpoint differs from what each API family's own documents promise (OpenAI's for
    the OpenAI family, Anthropic's for Messages), over the checks the profile does not judge (all of
    them under `--profile none`, where every such row is a pass): one line per family observed, none
    when the profile judges every check, so that nothing would be said the verdicts do not say."""
    unjudged = [r for r in results if r.expected is None and r.observed not in (None, "inconclusive")]
    observed: dict[str, set[str]] = {}
    differing: dict[str, dict[str, list[str]]] = {}
    for result in unjudged:
        family = catalog[result.entry_id].api
        documented = catalog[result.entry_id].vendor_behaviours(family)
        if not documented:  # no document of the family's own to differ from
            continue
        observed.setdefault(family, set()).add(result.entry_id)
        if result.observed not in documented:
            seen = differing.setdefault(family, {}).setdefault(result.entry_id, [])
            if result.observed not in seen:
                seen.append(result.observed)  # type: ignore[arg-type]
    lines = []
    for family, entries in observed.items():
        author, found = FAMILY_AUTHORS.get(family, family), differing.get(family, {})
        lines.append(f"matches {author}'s documented behaviour on all {len(entries)} entries observed" if not found
                     else f"differs from {author}'s documented behaviour on {len(found)} of {len(entries)} entries "
                          "observed: " + ", ".join(f"{entry} ({', '.join(words)})" for entry, words in found.items()))
    return lines
