"""Replay a committed recording and hold it to its committed report, tolerating checks added since.

The verdicts a recording stands for are the ones in `reports/<name>/report.json`, written by the
same run that recorded `cassettes/<name>/`: no test keeps a copy of them. A check added after the
recording has no cassette; its replay row is `skip`, "not recorded", and fails nothing until the
recording is redone. A cassette that no longer matches what its check sends is stale: an error.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from conformance.cli import main

ROOT = Path(__file__).resolve().parent.parent


def results(report_dir: Path) -> dict[str, dict[str, Any]]:
    """A report's rows by check id."""
    return {row["check_id"]: row for row in json.loads((report_dir / "report.json").read_text())["results"]}


def replay(name: str, profile: str, report_dir: Path, root: Path = ROOT) -> dict[str, dict[str, Any]]:
    """Replay `cassettes/<name>` offline under `profile`; the rows by check id (the exit code is the
    caller's to judge: a replay with checks not recorded leaves them unjudged)."""
    assert main(["run", "--replay", str(root / "cassettes" / name), "--profile", profile,
                 "--report-dir", str(report_dir)]) in (0, 1)
    return results(report_dir)


def assert_replay_agrees_with_report(name: str, report_dir: Path, root: Path = ROOT) -> dict[str, dict[str, Any]]:
    """Replay `cassettes/<name>` under --profile none and compare it with `reports/<name>/report.json`:
    every check in both agrees on what was observed, a check only the replay has is not recorded,
    and no row is an error (a stale cassette names its file in an error row). Returns the rows."""
    replayed = replay(name, "none", report_dir, root)
    committed = results(root / "reports" / name)
    errors = {check: row["reason"] for check, row in replayed.items() if row["outcome"] == "error"}
    assert errors == {}, f"errors replaying cassettes/{name} (a stale cassette: re-record it)"
    differ = {check: (committed[check]["observed"], row["observed"]) for check, row in replayed.items()
              if check in committed and row["observed"] != committed[check]["observed"]}
    assert differ == {}, f"verdicts (committed, replayed) that changed since reports/{name}/report.json"
    added = {check: row for check, row in replayed.items() if check not in committed}
    unexplained = {check: row["reason"] for check, row in added.items()
                   if row["outcome"] != "skip" or not row["reason"].startswith("not recorded in ")}
    assert unexplained == {}, f"checks missing from reports/{name}/report.json that replayed anyway"
    return replayed
