"""`conformance merge REPORT...`: the shards of one run (`--shard K/N`) joined into one report.

Shards are joined only when they are of one run: the same endpoint, models, profile, tool
version, catalog and cases (`configuration`: the digest of every check x model before
sharding), each of the N shards exactly once, and no case judged twice. Anything else is refused
with one line (exit 2): a merged report must say what the unsharded run would have said.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from conformance.compare import ReportError, endpoint_identity, load_report
from conformance.report.matrix import PER_MODEL, is_matrix, summary_of

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class MergeError(ValueError):
    """Shards that cannot be joined; the message is one line."""


#: What shards of one run share, and how a refusal names it.
IDENTITY = (("endpoint", endpoint_identity), ("endpoints", lambda r: r.get("endpoints")),
            ("models", lambda r: [section["id"] for section in r["models"]]),
            ("profile", lambda r: (r["profile"] or {}).get("origin") or (r["profile"] or {}).get("name")),
            ("tool version", lambda r: r["tool"]["version"]),
            ("catalog", lambda r: r["configuration"]["catalog"]),
            ("checks", lambda r: r["configuration"]["cases"]),
            ("mode", lambda r: r.get("mode")))


def check_shards(shards: list[tuple[str, dict[str, Any]]]) -> None:
    """MergeError unless `shards` (path, report) are every shard of one run, once each."""
    for path, report in shards:
        if not is_matrix(report) or report["shard"] is None:
            raise MergeError(f"{path} is not a shard's report (run with --shard K/N)")
    first_path, first = shards[0]
    for path, report in shards[1:]:
        for what, key in IDENTITY:
            if key(report) != key(first):
                raise MergeError(f"{path} is a shard of another run than {first_path}: its {what} differs "
                                 f"({str(key(report))[:80]!r}, not {str(key(first))[:80]!r})")
    count = first["shard"]["count"]
    seen: dict[int, str] = {}
    for path, report in shards:
        shard = report["shard"]
        if shard["count"] != count:
            raise MergeError(f"{path} is shard {shard['index']}/{shard['count']}, not one of {count}")
        if shard["index"] in seen:
            raise MergeError(f"shard {shard['index']}/{count} is given twice: {seen[shard['index']]} and {path}")
        seen[shard["index"]] = path
    missing = [f"{index}/{count}" for index in range(1, count + 1) if index not in seen]
    if missing:
        raise MergeError(f"shard(s) {', '.join(missing)} missing: merge needs all {count}")
    judged: dict[tuple[str, str], str] = {}
    for path, report in shards:
        for section in report["models"]:
            for result in section["results"]:
                case = (result["check_id"], section["id"])
                if case in judged:
                    raise MergeError(f"{case[0]}@{case[1]} is in two shards: {judged[case]} and {path}")
                judged[case] = path
    planned = first["configuration"]["planned"]
    if len(judged) != planned:
        raise MergeError(f"the shards hold {len(judged)} of the run's {planned} cases")


def merged_entries(rows: list[dict[str, Any]], order: list[str]) -> list[dict[str, Any]]:
    """One model's entry rows from its shards' (an entry's checks may be in several shards): what
    each observed, the worst outcome, every document matched."""
    from conformance.report import worst

    by_entry: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_entry.setdefault(row["id"], []).append(row)
    ranked = sorted(by_entry, key=lambda entry: order.index(entry) if entry in order else len(order))
    return [{**by_entry[entry][0],
             "observed": sorted({word for row in by_entry[entry] for word in row["observed"]}),
             "outcome": worst([row["outcome"] for row in by_entry[entry]]),
             "matches": sorted({label for row in by_entry[entry] for label in row["matches"]})} for entry in ranked]


def spent(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """The requests, retries and tokens of several reports (or model sections), summed."""
    return {"requests": sum(part["requests"] for part in parts), "retries": sum(part["retries"] for part in parts),
            "tokens": {kind: sum(part["tokens"][kind] for part in parts) for kind in ("prompt", "completion", "total")}}


def merge(shards: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """The one report of the run the shards are parts of, as if it had not been sharded: results
    in check order per model, counts summed, the earliest start and the longest shard's time."""
    from conformance.catalog import load_catalog
    from conformance.checks import REGISTRY

    check_shards(shards)
    reports = [report for _, report in sorted(shards, key=lambda shard: shard[1]["shard"]["index"])]
    checks = [check.id for check in REGISTRY]
    entries = [entry.id for entry in load_catalog()]
    sections = []
    for index, section in enumerate(reports[0]["models"]):
        parts = [report["models"][index] for report in reports]
        results = sorted((r for part in parts for r in part["results"]),
                         key=lambda r: checks.index(r["check_id"]) if r["check_id"] in checks else len(checks))
        sections.append({**section, "results": results, "summary": summary_of(results), **spent(parts),
                         "entries": merged_entries([row for part in parts for row in part["entries"]], entries)})
    statuses = {report["status"] for report in reports}
    messages = [f"shard {r['shard']['index']}/{r['shard']['count']}: {r['message']}" for r in reports if r["message"]]
    header = {key: value for key, value in reports[0].items() if key not in PER_MODEL}
    return {**header, "shard": None, "models": sections,
            "started_at": min(report["started_at"] for report in reports),
            "duration_s": max(report["duration_s"] for report in reports),
            "status": "completed" if statuses == {"completed"} else "interrupted",
            "complete": all(report["complete"] for report in reports),
            "message": "; ".join(messages) or None, **spent(reports),
            "summary": summary_of([r for section in sections for r in section["results"]])}


def command_merge(args: argparse.Namespace) -> int:
    from conformance.report import write_report_files

    try:
        shards = [(str(path), load_report(path)) for path in args.reports]
        report = merge(shards)
    except (ReportError, MergeError) as problem:
        print(f"conformance: error: {problem}", file=sys.stderr)
        return EXIT_USAGE
    try:
        written = write_report_files(report, Path(args.report_dir))
    except OSError as problem:
        print(f"conformance: error: cannot write to {args.report_dir!r}: {problem.strerror or problem}",
              file=sys.stderr)
        return EXIT_USAGE
    print("\n".join(str(path) for path in written))
    return EXIT_FAILED if gate_fails(report) else EXIT_OK


def gate_fails(report: dict[str, Any]) -> bool:
    """What `conformance run` exits 1 on: a case failed or errored, or one the profile expects was
    not judged (a skip with an expectation: out of budget, interrupted, its model unusable)."""
    return any(r["outcome"] in ("fail", "error") or (r["outcome"] == "skip" and r["expected"] is not None)
               for section in report["models"] for r in section["results"])
