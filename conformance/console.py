"""Text from a server, made safe to print: no terminal escapes, no CI workflow commands.

A server's message can hold ESC sequences (which repaint or hide a terminal's lines), line
breaks, and GitHub Actions' `::command::` syntax, which the runner obeys when a line of a step's
output starts with it. Every line the suite prints that may carry server text goes through
`printable` (one line) or `printable_lines` (a block such as changes.md).
"""

from __future__ import annotations

import re

#: C0 and C1 controls (ESC, CR, LF, ...), DEL, and the Unicode line and paragraph separators.
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
#: GitHub Actions reads `::name ...::` at the start of a line (after any blanks) as a command.
WORKFLOW_COMMAND = re.compile(r"^(\s*)::", re.MULTILINE)


def _shown(match: re.Match[str]) -> str:
    return repr(match.group())[1:-1]


def printable(text: str) -> str:
    """One line: every control character shown as its escape (`\\x1b`, `\\n`, `\\u2028`), and a
    leading `::` defused."""
    return WORKFLOW_COMMAND.sub(r"\1:\\:", CONTROL.sub(_shown, text))


def printable_lines(text: str) -> str:
    """Several lines (split on `\\n` only): each made `printable`."""
    return "\n".join(printable(line) for line in text.split("\n"))
