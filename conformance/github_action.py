"""The GitHub Action's entry script: `python -m conformance.github_action` (action.yml runs it).

It runs `conformance run` in-process (with `--baseline` when a baseline is given, so the gate is the
command's own), appends the changes and report.md to `$GITHUB_STEP_SUMMARY` (cut to stay under
GitHub's 1 MiB limit, with a note where it was cut) and writes step outputs to `$GITHUB_OUTPUT`.
Without GitHub (no `$GITHUB_STEP_SUMMARY` / `$GITHUB_OUTPUT`) it only runs and reports.

Inputs are environment variables, named as GitHub names action inputs: `INPUT_` and the input's
name upper-cased, with `-` or `_` (`INPUT_BASE-URL` or `INPUT_BASE_URL`). action.yml sets them.

| input | default | meaning |
|---|---|---|
| base-url | embedded | `embedded`: `$OPENAI_BASE_URL`, else the embedded server; empty (an unset secret): exit 2 |
| api-key | (empty) | sent to the endpoint only; masked in the log; default `$OPENAI_API_KEY` |
| model | (empty) | default: the first model `GET /models` lists |
| models | (empty) | `all`: every model listed (`--models all`); or ids, space- or comma-separated |
| shard | (empty) | `K/N`: judge only that shard of the checks x models (`--shard K/N`) |
| merge | (empty) | instead of a run: `conformance merge` of every report.json under this directory, gated |
| profile | openai | `openai`, `fireworks`, `none` or a profile file |
| baseline | (empty) | a report.json (or its directory), passed as `--baseline`; a regression fails |
| report-dir | conformance-reports | where report.json/.md/.html, junit.xml (and changes.md) go |
| args | (empty) | more `conformance run` flags, split like a shell would (`-k stream --timeout 60`) |

A GitHub Actions job matrix runs the shards in parallel (`shard: ${{ matrix.shard }}/8`), and
one more job merges their uploaded reports (`merge: shards`); docs/github-action.md shows it.

Outputs: `exit-code`, `status`, `pass`, `fail`, `inconclusive`, `skip`, `error`, `requests`,
`regressed` (true/false), `report-dir` (absolute). Exit code: the run's own (0 every check met the
profile, 1 a check failed or errored or the run regressed against the baseline, 2 an unusable
endpoint or input).
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from conformance import cli
from conformance.compare import render_changes

#: GitHub refuses a step summary larger than this (bytes, per step).
SUMMARY_LIMIT = 1024 * 1024
CUT_NOTE = ("\n> **The summary was cut here** to stay under GitHub's 1 MiB step-summary limit; the whole "
            "report is `report.md` in the uploaded artifact.\n")
#: The base-url input that means "no endpoint given": the embedded server, unless $OPENAI_BASE_URL.
EMBEDDED = "embedded"
DEFAULTS = {"base-url": EMBEDDED, "api-key": "", "model": "", "models": "", "shard": "", "merge": "",
            "profile": "openai", "baseline": "", "report-dir": "conformance-reports", "args": ""}
#: Inputs whose empty value is passed on as given, not replaced by the default: a base-url from an
#: unset secret must fail the step, not quietly test the embedded server.
EMPTY_IS_A_VALUE = ("base-url",)


def read_inputs(environ: Mapping[str, str]) -> dict[str, str]:
    """Every input from `INPUT_<NAME>` (either spelling), stripped; its default when it is not set
    (or, but for base-url, empty)."""
    inputs = {}
    for name, default in DEFAULTS.items():
        key = "INPUT_" + name.upper()
        value = environ.get(key, environ.get(key.replace("-", "_")))
        if value is None or (not value.strip() and name not in EMPTY_IS_A_VALUE):
            value = default
        inputs[name] = value.strip()
    return inputs


def fit(markdown: str, budget: int) -> str:
    """`markdown` if it fits in `budget` UTF-8 bytes; else its first whole lines and CUT_NOTE.

    A code fence left open by the cut is closed, so the note is not swallowed by it.
    """
    if len(markdown.encode("utf-8")) <= budget:
        return markdown
    room = budget - len(CUT_NOTE.encode("utf-8")) - len("```\n")
    if room <= 0:
        return ""
    kept = markdown.encode("utf-8")[:room].decode("utf-8", "ignore")
    kept = kept[: kept.rfind("\n") + 1]
    if sum(line.startswith("```") for line in kept.splitlines()) % 2:
        kept += "```\n"
    return kept + CUT_NOTE


def append_summary(path: Path, markdown: str) -> None:
    """Append to the step summary, keeping the whole file under SUMMARY_LIMIT."""
    used = path.stat().st_size if path.exists() else 0
    with path.open("a", encoding="utf-8") as summary:
        summary.write(fit(markdown, SUMMARY_LIMIT - 1 - used))


def write_outputs(path: Path, outputs: dict[str, Any]) -> None:
    with path.open("a", encoding="utf-8") as out:
        for name, value in outputs.items():
            out.write(f"{name}={str(value).lower() if isinstance(value, bool) else value}\n")


def run_arguments(inputs: dict[str, str]) -> list[str]:
    arguments = ["run", "--report-dir", inputs["report-dir"], "--profile", inputs["profile"]]
    if inputs["base-url"] != EMBEDDED:
        arguments += ["--base-url", inputs["base-url"]]  # empty: `conformance run` refuses it, naming the flag
    for flag, name in (("--api-key", "api-key"), ("--model", "model"), ("--baseline", "baseline"),
                       ("--shard", "shard")):
        if inputs[name]:
            arguments += [flag, inputs[name]]
    models = inputs["models"].replace(",", " ").split()
    arguments += ["--models", "all"] if models == ["all"] else [word for model in models for word in ("--model", model)]
    return arguments + shlex.split(inputs["args"])


def merge_shards(inputs: dict[str, str]) -> cli.Finished:
    """`conformance merge` of every report.json under the `merge` directory (the shard jobs'
    downloaded artifacts), then the merged report against the baseline, as `run --baseline` does."""
    from conformance.compare import ReportError, diff, load_report
    from conformance.report import write_atomically

    found = sorted(Path(inputs["merge"]).glob("**/report.json"))
    if not found:
        print(f"conformance: error: merge: no report.json under {inputs['merge']!r}", file=sys.stderr)
        return cli.Finished(cli.EXIT_USAGE)
    finished = cli.invoke(["merge", *map(str, found), "--report-dir", inputs["report-dir"]])
    if finished.code == cli.EXIT_USAGE:
        return finished
    report = load_report(inputs["report-dir"])
    changes = None
    if inputs["baseline"]:
        try:
            changes = diff(load_report(inputs["baseline"]), report)
        except ReportError as problem:
            print(f"conformance: error: baseline: {problem}", file=sys.stderr)
            return cli.Finished(cli.EXIT_USAGE, report)
        write_atomically(Path(inputs["report-dir"]) / "changes.md", render_changes(changes))
    code = cli.EXIT_FAILED if finished.code == cli.EXIT_FAILED or (changes and changes.regressed) else cli.EXIT_OK
    return cli.Finished(code, report, changes)


def main(environ: Mapping[str, str] | None = None) -> int:
    environ = os.environ if environ is None else environ
    inputs = read_inputs(environ)
    report_dir = Path(inputs["report-dir"]).resolve()
    summary_file, output_file = environ.get("GITHUB_STEP_SUMMARY"), environ.get("GITHUB_OUTPUT")
    if inputs["api-key"] and environ.get("GITHUB_ACTIONS") == "true":
        print(f"::add-mask::{inputs['api-key']}", flush=True)

    try:
        finished = merge_shards(inputs) if inputs["merge"] else cli.invoke(run_arguments(inputs))
    except ValueError as problem:  # shlex: an unbalanced quote in `args`
        print(f"conformance: error: args: {problem}", file=sys.stderr)
        finished = cli.Finished(cli.EXIT_USAGE)
    report, code = finished.report, finished.code
    changes = render_changes(finished.changes) if finished.changes is not None else None
    regressed = finished.changes is not None and finished.changes.regressed

    if summary_file:
        markdown = (report_dir / "report.md").read_text(encoding="utf-8") if report is not None else \
            f"**conformance wrote no report** (exit {code}); the job log says why.\n"
        append_summary(Path(summary_file), (changes + "\n" if changes else "") + markdown)
    if output_file:
        counts = report["summary"] if report else {}
        write_outputs(Path(output_file), {
            "exit-code": code, "status": report["status"] if report else "no-report",
            **{outcome: counts.get(outcome, 0) for outcome in ("pass", "fail", "inconclusive", "skip", "error")},
            "requests": report["requests"] if report else 0, "regressed": regressed, "report-dir": report_dir})
    return code


if __name__ == "__main__":
    sys.exit(main())
