"""What each target does for the entries an application relies on, and whether that breaks it.

Two kinds of target:
- documented: a profile (shipped or a file) says which behaviours a provider promises, so the
  verdict is what its documents imply: `holds`, `breaks`, `may-break` (its documents disagree, one
  revision breaks the app) or `undocumented`;
- observed: a live endpoint (a base URL, or the embedded reference server) on which only the
  relevant checks are run, in process, through `conformance run --profile none -k ...`; the verdict
  is `holds`, `breaks`, or `not-judged` (the check errored, was inconclusive or skipped, or the run
  could not start: never read as `holds`).
"""

from __future__ import annotations

import io
import tempfile
from contextlib import redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from conformance.catalog import Catalog
from conformance.profiles import Profile

NOT_JUDGED_OUTCOMES = ("error", "skip", "inconclusive")


@dataclass
class Target:
    """One target: its name, kind, and (observed) where its run's own reports went and the run's results."""

    name: str
    kind: str  # "documented" | "observed"
    profile: Profile | None = None
    base_url: str | None = None
    report_dir: str | None = None
    message: str | None = None
    unusable: bool = False  # an observed target whose run could not start (a usage error, an endpoint unusable)
    results: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "base_url": self.base_url, "report_dir": self.report_dir,
                "profile": self.profile.origin if self.profile else None, "message": self.message}


def observed_targets(args: Any) -> list[tuple[Target, list[str]]]:
    """The live targets the command line names (`--base-url`, `--embedded`), each with the
    `conformance run` options that reach it (`--api-key` and `--model` passed on)."""
    passed = [option for flag in ("api_key", "model") if getattr(args, flag)
              for option in (f"--{flag.replace('_', '-')}", getattr(args, flag))]
    observed = [(Target(url, "observed", base_url=url), ["--base-url", url, *passed]) for url in args.base_urls]
    observed += [(Target(f"embedded-{behaviour}", "observed"), ["--embedded-behavior", behaviour, *passed])
                 for behaviour in args.embedded]
    return observed


def verdict(target: Target, catalog: Catalog, entry_id: str, assumes: tuple[str, ...],
            check_ids: list[str]) -> dict[str, Any]:
    """Per target and entry: what the target does (`does`, `behaviours`), and the verdict for the app."""
    if target.kind == "documented":
        assert target.profile is not None
        expected = target.profile.expected(entry_id)
        if expected is None:
            return {"target": target.name, "behaviours": [], "verdict": "undocumented",
                    "does": f"{target.name}'s profile does not say"}
        breaking = [word for word in expected if word not in assumes]
        word = "holds" if not breaking else "breaks" if len(breaking) == len(expected) else "may-break"
        return {"target": target.name, "behaviours": expected, "verdict": word,
                "does": "; or ".join(describe(catalog, entry_id, behaviour) for behaviour in expected)}
    rows = [target.results[check_id] for check_id in check_ids if check_id in target.results]
    if not rows:
        reason = target.message or "no relevant check ran"
        return {"target": target.name, "behaviours": [], "verdict": "not-judged", "does": reason, "checks": []}
    judged = [row for row in rows if row["outcome"] not in NOT_JUDGED_OUTCOMES and row["observed"]]
    broken = [row for row in judged if row["observed"] not in assumes]
    word = "breaks" if broken else "not-judged" if len(judged) < len(rows) else "holds"
    return {"target": target.name, "behaviours": sorted({row["observed"] for row in judged}), "verdict": word,
            "does": "; ".join(f"{row['check_id']}: {observed_words(row)}" for row in rows),
            "checks": [row["check_id"] for row in rows]}


def observed_words(row: dict[str, Any]) -> str:
    if row["outcome"] in NOT_JUDGED_OUTCOMES or not row["observed"]:
        return f"not judged ({row['outcome']}: {row['reason']})"
    return f"{row['observed']}: {row['reason']}"


def describe(catalog: Catalog, entry_id: str, behaviour: str) -> str:
    """A behaviour word with the catalog's words for it: `fireworks` (the text ends with the stop string)."""
    meaning = catalog[entry_id].behaviours.get(behaviour)
    return f"{behaviour} ({meaning})" if meaning else behaviour


def keyword_expression(check_ids: list[str]) -> str:
    """A pytest -k expression selecting exactly these checks: `[id]` matches only its own parameter id."""
    return " or ".join(f"[{check_id}]" for check_id in sorted(check_ids))


def observe(target: Target, check_ids: list[str], run_options: list[str], report_dir: Path | None) -> None:
    """Run the checks on the target (its own reports into `report_dir`, or a temporary directory),
    and keep each check's result row. The run's console output is kept, not printed; its usage
    errors (on stderr) are not."""
    from conformance import cli

    if not check_ids:
        target.message = "no check to run"
        return
    with tempfile.TemporaryDirectory(prefix="conformance-audit-") as scratch:
        directory = report_dir if report_dir is not None else Path(scratch)
        if report_dir is not None:
            target.report_dir = str(directory)
        output = io.StringIO()
        with redirect_stdout(output):
            finished = cli.invoke(["run", *run_options, "--profile", "none", "-k", keyword_expression(check_ids),
                                   "--report-dir", str(directory)])
    report = finished.report
    if report is None or report.get("status") == "not-started":
        target.message = (report or {}).get("message") or f"the run did not start (exit {finished.code})"
        target.unusable = True
        return
    target.base_url = report["endpoint"]["base_url"]
    target.message = report.get("message")
    target.results = {row["check_id"]: row for row in report["results"]}
