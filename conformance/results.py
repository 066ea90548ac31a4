"""What a check saw (`Observation`) and what the run concludes from it (`CheckResult`).

Outcomes beyond pass/fail, as in test262 and WPT: `inconclusive` (the probe's precondition did
not hold, so no verdict is honest), `skip` (not applicable or out of budget) and `error` (the
endpoint broke the probe: refused, timed out, answered garbage).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from conformance.accounting import Spend

Outcome = Literal["pass", "fail", "inconclusive", "skip", "error"]
#: The reason of a check an interrupted run never judged (report.json and junit.xml list it so).
INTERRUPTED = "not judged: the run was interrupted before this check finished"
OUTCOMES: tuple[Outcome, ...] = ("pass", "fail", "inconclusive", "skip", "error")


@dataclass
class Observation:
    """One word for what the endpoint did (from the entry's vocabulary), and why."""

    behaviour: str
    reason: str
    details: dict[str, Any] = field(default_factory=dict)


def observe(behaviour: str, reason: str, **details: Any) -> Observation:
    return Observation(behaviour, reason, details)


def inconclusive(reason: str, **details: Any) -> Observation:
    return Observation("inconclusive", reason, details)


@dataclass
class CheckResult:
    """One report row: a check's verdict with the evidence that decided it."""

    check_id: str
    entry_id: str
    title: str
    outcome: Outcome
    expected: list[str] | None
    observed: str | None
    reason: str
    matches: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    evidence: list[dict[str, Any]] = field(default_factory=list)
    curl: list[str] = field(default_factory=list)
    duration_s: float = 0.0
    #: What the check's requests cost (a matrix report sums it per model); not a report column.
    spent: Spend | None = field(default=None, repr=False, compare=False, metadata={"reported": False})

    def to_dict(self) -> dict[str, Any]:
        """The row as a dict. Shallow, unlike `asdict`: evidence nests as deep as a server's JSON
        did, deeper than recursion allows; the report writers copy it with a depth bound."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.metadata.get("reported", True)}

    def headline(self) -> str:
        """One line for terminals and JUnit: what was expected, what was seen, why."""
        expected = "any" if self.expected is None else " or ".join(self.expected)
        observed = self.observed or "nothing"
        return f"[{self.outcome}] {self.check_id}: expected {expected}, observed {observed} - {self.reason}"

    def explain(self) -> str:
        """The failure message: headline, the documents matched, and curl lines to reproduce."""
        lines = [self.headline()]
        if self.matches:
            lines.append("matches: " + "; ".join(self.matches))
        lines += [f"reproduce: {line}" for line in self.curl]
        return "\n".join(lines)
