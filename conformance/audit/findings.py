"""Uses mapped through the rules: one finding per rule that matched, with every use as evidence.

A finding names the catalog entries it makes relevant, and, per entry, the checks that matter to
the application: a check bound to one API (`stop-sequence-in-output/completions`) is relevant only
when the application uses that API (or the scan could not tell), and a streamed variant
(`.../chat-stream`) only when it streams (or might).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from conformance.audit.rules import Rule
from conformance.audit.uses import Use


@dataclass(frozen=True)
class Finding:
    rule: Rule
    uses: tuple[Use, ...]

    def relevant_checks(self, check_ids: Iterable[str]) -> list[str]:
        apis = {use.api for use in self.uses}
        may_stream = any(use.stream is not False for use in self.uses)
        chosen = []
        for check_id in check_ids:
            api, streamed = check_scope(check_id)
            if api is not None and None not in apis and api not in apis:
                continue
            if streamed and not may_stream:
                continue
            chosen.append(check_id)
        return chosen


def check_scope(check_id: str) -> tuple[str | None, bool]:
    """The API a check's variant is bound to (None: any) and whether it is the streamed variant."""
    variant = check_id.partition("/")[2]
    api = next((api for api in ("chat", "completions") if variant.startswith(api)), None)
    return api, variant.endswith("-stream")


def map_uses(uses: Iterable[Use], rules: Iterable[Rule]) -> list[Finding]:
    """The findings, in the rules' order, each use listed in file order."""
    ordered = sorted(uses, key=lambda use: natural_where(use.where))
    findings = []
    for rule in rules:
        matched = tuple(use for use in ordered if rule.matches(use))
        if matched:
            findings.append(Finding(rule, matched))
    return findings


def natural_where(where: str) -> tuple[str, int]:
    """`app.py:12` before `app.py:100`: the file, then the line or request number as a number."""
    for separator in (":", "#"):
        head, sep, tail = where.rpartition(separator)
        if sep and tail.isdigit():
            return head, int(tail)
    return where, 0


def registered_checks(entry_id: str) -> list[str]:
    """The ids of the suite's checks of one catalog entry, in the suite's order."""
    from conformance.checks import REGISTRY

    return [check.id for check in REGISTRY if check.entry == entry_id]


def read_names(rules: Iterable[Rule]) -> frozenset[str]:
    """Every field name a read rule speaks of: what the source scanners look for."""
    return frozenset(name for rule in rules if rule.use == "read" for name in rule.names)
