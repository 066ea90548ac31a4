"""The report of a matrix run (format 2): one section per model, each shaped like a one-model
report's body, under one run's header.

A one-model run keeps writing format 1 (`build_report`); a run of several models (`--model A
--model B`, `--models all`) or a shard of one (`--shard K/N`) writes format 2, in which
`models` holds, per model, whether it could be used, what its checks cost, its summary, entries
and results. `model_view` turns one model's section back into a format-1 report, so everything
that reads one-model reports (the diff against a baseline, `compare`) reads a matrix model by
model. `groups` folds models that behaved identically, which is how report.md and report.html
stay readable with hundreds of models.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from conformance.accounting import Spend
from conformance.results import INTERRUPTED, OUTCOMES

if TYPE_CHECKING:
    from conformance.endpoint import ModelTarget
    from conformance.results import CheckResult
    from conformance.runner import ConformanceRun

MATRIX_FORMAT = 2
#: The keys a format-1 report has per model, which a format-2 report has per model section.
PER_MODEL = ("requests", "retries", "tokens", "summary", "entries", "results")


def catalog_digest() -> str:
    """What identifies the catalog a run judged against (shards of one run must share it)."""
    from importlib import resources

    text = resources.files("conformance.catalog").joinpath("differences.toml").read_bytes()
    return hashlib.sha256(text).hexdigest()[:16]


def selection_digest(cases: list[tuple[str, str]]) -> str:
    """What identifies a run's whole set of cases (checks x models, before sharding): shards of
    one run share it, shards of runs with other checks, models or `-k` do not."""
    digest = hashlib.sha256()
    for check_id, model in sorted(cases):
        digest.update(f"{check_id}\0{model}\n".encode())
    return digest.hexdigest()[:16]


def summary_of(results: list[dict[str, Any]]) -> dict[str, int]:
    return {outcome: sum(1 for r in results if r["outcome"] == outcome) for outcome in OUTCOMES}


def model_section(run: ConformanceRun, target: ModelTarget, results: list[CheckResult]) -> dict[str, Any]:
    """One model's part of a matrix report: its usability, spend, summary, entries and results."""
    from conformance.report import entry_rows

    spent = Spend()
    for result in results:
        if result.spent is not None:
            spent += result.spent
    rows = [result.to_dict() for result in results]
    window = run.context_window or target.context_window
    return {"id": target.id, "usable": target.problem is None, "problem": target.problem, "context_window": window,
            **spent.to_dict(), "summary": summary_of(rows), "entries": entry_rows(run, results), "results": rows}


def build_matrix_report(run: ConformanceRun, header: dict[str, Any]) -> dict[str, Any]:
    """The format-2 report of a matrix run; `header` holds what a one-model report says of the run."""
    by_model = run.results_by_model()
    sections = [model_section(run, target, by_model[target.id]) for target in run.models]
    results = [r for section in sections for r in section["results"]]
    missing = [r["check_id"] for r in results if r["reason"] == INTERRUPTED]
    report = {key: value for key, value in header.items() if key not in ("model", "entries", "results")}
    report.update({
        "format": MATRIX_FORMAT,
        "summary": summary_of(results),
        "complete": run.status == "completed" and not missing,
        "message": run.message if not missing else f"{run.message or 'incomplete'}: {len(missing)} case(s) not judged",
        "configuration": {"catalog": catalog_digest(), "cases": run.planned_digest, "planned": run.planned},
        "shard": None if run.shard is None else {"index": run.shard.index, "count": run.shard.count},
        "models": sections,
    })
    if run.endpoint.members:  # several endpoints: each model's id is `NAME/MODEL`
        report["endpoints"] = [{"name": name, "base_url": member.base_url}
                               for name, member in run.endpoint.members.items()]
    return report


def is_matrix(report: dict[str, Any]) -> bool:
    return report.get("format") == MATRIX_FORMAT


def model_view(report: dict[str, Any], section: dict[str, Any]) -> dict[str, Any]:
    """One model of a matrix report as a format-1 report (what `diff` and `compare` read), named
    by the run and the model, so `compare` gives it a column of its own."""
    header = {key: value for key, value in report.items()
              if key not in ("format", "models", "configuration", "shard", "endpoints", *PER_MODEL)}
    label = report.get("name") or report["endpoint"]["name"] or report["endpoint"]["base_url"]
    view = {**header, "format": 1, "name": f"{label} · {section['id']}", "model": section["id"],
            **{key: section[key] for key in PER_MODEL}}
    if not section["usable"]:
        view["message"] = f"model {section['id']!r} cannot be used: {section['problem']}"
    return view


def views(report: dict[str, Any]) -> list[dict[str, Any]]:
    """A report as format-1 reports: itself, or one per model of a matrix."""
    if not is_matrix(report):
        return [report]
    return [model_view(report, section) for section in report["models"]]


@dataclass(frozen=True)
class Group:
    """Models that behaved identically: the same outcome and behaviour on every check."""

    models: tuple[str, ...]
    section: dict[str, Any]  # the first model's section: every model of the group reads the same

    @property
    def label(self) -> str:
        shown = ", ".join(self.models[:3])
        return shown + (f" and {len(self.models) - 3} more" if len(self.models) > 3 else "")


def signature(section: dict[str, Any]) -> tuple[Any, ...]:
    return (section["usable"], tuple((r["check_id"], r["outcome"], r["observed"]) for r in section["results"]))


def groups(report: dict[str, Any]) -> list[Group]:
    """The models of a matrix report folded by identical behaviour, in the report's order."""
    found: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for section in report["models"]:
        found.setdefault(signature(section), []).append(section)
    return [Group(tuple(s["id"] for s in sections), sections[0]) for sections in found.values()]


def matrix_rows(report: dict[str, Any], folded: list[Group]) -> list[dict[str, Any]]:
    """Entries down, groups across: per entry, each group's entry row (None: not run there)."""
    order: dict[str, str] = {}
    for group in folded:
        for row in group.section["entries"]:
            order.setdefault(row["id"], row["title"])
    rows = []
    for entry_id, title in order.items():
        cells = [next((row for row in group.section["entries"] if row["id"] == entry_id), None) for group in folded]
        observed = {tuple(c["observed"]) if c else None for c in cells}
        rows.append({"id": entry_id, "title": title, "cells": cells, "differs": len(observed) > 1,
                     "worst": next((o for o in ("error", "fail", "inconclusive", "skip", "pass")
                                    if any(c and c["outcome"] == o for c in cells)), "skip")})
    return rows
