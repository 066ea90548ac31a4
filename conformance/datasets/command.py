"""`conformance dataset FILE [FILE ...] [--profile openai|fireworks|both] [--report-dir DIR]`.

Exit codes: 0 every file is valid for the chosen targets; 1 a finding of severity error; 2 a usage
error (a file that cannot be read, or is not JSONL at all), with one line per problem on stderr.
Module-level imports are only argparse, so registering the command keeps `conformance` fast.
"""

from __future__ import annotations

import argparse
import sys

from conformance.console import printable

PROFILES = {"openai": ("openai",), "fireworks": ("fireworks",), "both": ("openai", "fireworks")}
MAX_STORED = 100
EXIT_OK, EXIT_FINDINGS, EXIT_USAGE = 0, 1, 2


def add_command(commands: argparse._SubParsersAction) -> None:
    dataset = commands.add_parser("dataset", help="validate fine-tuning JSONL datasets for OpenAI and Fireworks")
    dataset.add_argument("files", nargs="+", metavar="FILE", help=".jsonl or .jsonl.gz files")
    dataset.add_argument("--profile", choices=tuple(PROFILES), default="both",
                         help="the target(s) to judge against (default: both)")
    dataset.add_argument("--report-dir", metavar="DIR",
                         help="write dataset-report.{json,md,html} and dataset-junit.xml here")


def run(args: argparse.Namespace) -> int:
    import time
    from datetime import datetime, timezone
    from pathlib import Path

    from conformance.datasets.catalog import for_targets, load_rules
    from conformance.datasets.judge import FileJudge, NotJsonl
    from conformance.datasets.reader import UnreadableFile
    from conformance.datasets.report import build_report, file_section, summary_lines, write_reports

    rules = for_targets(load_rules(), PROFILES[args.profile])
    started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    started = time.perf_counter()
    sections, problems = [], []
    for name in args.files:
        judge = FileJudge(name, rules, MAX_STORED)
        problem = None
        try:
            judge.judge_path(Path(name))
        except (UnreadableFile, NotJsonl) as usage:
            problem = str(usage)
            problems.append(problem)
        sections.append(file_section(judge, problem))
    report = build_report(args.profile, rules, sections, started_at, time.perf_counter() - started, MAX_STORED)
    for line in summary_lines(report):
        print(printable(line))
    if args.report_dir is not None:
        try:
            written = write_reports(report, Path(args.report_dir))
        except OSError as failure:
            print(f"conformance: error: cannot write reports to {args.report_dir!r}: "
                  f"{failure.strerror or failure}", file=sys.stderr)
            return EXIT_USAGE
        print("reports: " + ", ".join(str(path) for path in written))
    for problem in problems:
        print(f"conformance: error: {printable(problem)}", file=sys.stderr)
    if problems:
        return EXIT_USAGE
    return EXIT_OK if all(report["valid"].values()) else EXIT_FINDINGS
