"""`conformance audit SOURCE [SOURCE ...] [--base-url URL ...] [--embedded BEHAVIOUR ...] [--profile P ...]
[--report-dir DIR]`.

Exit codes: 0 no relied-on behaviour differs on an observed target (without `--base-url` or
`--embedded` nothing is observed: the documented behaviours are listed, exit 0); 1 a relied-on
behaviour differs on an observed target, or could not be judged there; 2 a usage error (a SOURCE
that does not exist, an unknown profile, a target whose run could not start). Files that cannot be
parsed are problems in the report, not usage errors. Module-level imports are only argparse, so
registering the command keeps `conformance` fast.
"""

from __future__ import annotations

import argparse
import sys

EXIT_OK, EXIT_DIFFERS, EXIT_USAGE = 0, 1, 2
DEFAULT_PROFILES = ("openai", "fireworks")


def add_command(commands: argparse._SubParsersAction) -> None:
    audit = commands.add_parser(
        "audit", help="which catalog differences an application relies on, and whether a target keeps them",
        description="Find the application's uses of the OpenAI API (Python, JavaScript/TypeScript, HAR files, "
                    "VCR cassettes, JSONL request logs), map them to the catalog entries they rely on, and say "
                    "what each documented profile and each target does there.")
    audit.add_argument("sources", nargs="+", metavar="SOURCE", help="files or directories to audit")
    audit.add_argument("--base-url", dest="base_urls", action="append", default=[], metavar="URL",
                       help="run the relevant checks against this endpoint (repeatable)")
    audit.add_argument("--embedded", dest="embedded", action="append", default=[], choices=("openai", "fireworks"),
                       help="run the relevant checks against the embedded reference server in this behaviour "
                            "(repeatable)")
    audit.add_argument("--profile", dest="profiles", action="append", metavar="NAME|PATH",
                       help="a documented target to compare with: openai, fireworks or a profile file "
                            "(repeatable; default: openai and fireworks)")
    audit.add_argument("--api-key", help="API key for --base-url (default: $OPENAI_API_KEY)")
    audit.add_argument("--model", help="model for the checks (default: the first model /models lists)")
    audit.add_argument("--report-dir", metavar="DIR", help="write audit-report.{json,md,html} and audit-junit.xml "
                                                           "here (and each target's run under DIR/target-N)")


def run(args: argparse.Namespace) -> int:
    import os
    import time
    from datetime import datetime, timezone
    from pathlib import Path

    from conformance.audit.findings import map_uses, read_names, registered_checks
    from conformance.audit.report import build_report, finding_row, summary_lines, write_reports
    from conformance.audit.rules import RulesError, load_rules
    from conformance.audit.sources import scan_sources
    from conformance.audit.targets import Target, observe, observed_targets
    from conformance.catalog import load_catalog
    from conformance.console import printable
    from conformance.options import API_KEY_VARIABLE
    from conformance.profiles import ProfileError, load_profile
    from conformance.redaction import run_redactor

    missing = [source for source in args.sources if not Path(source).exists()]
    if missing:
        return usage_error(f"no such file or directory: {', '.join(missing)}")
    catalog = load_catalog()
    try:
        rules = load_rules()
        profiles = [load_profile(spec, catalog) for spec in args.profiles or DEFAULT_PROFILES]
    except (RulesError, ProfileError) as problem:
        return usage_error(str(problem))
    if args.embedded and environment_names_endpoint():
        return usage_error("--embedded runs against the embedded reference server, but $OPENAI_BASE_URL "
                           "(or $OPENAI_API_BASE) is set; unset it, or pass the endpoint with --base-url")
    started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    started = time.perf_counter()
    scan = scan_sources([Path(source) for source in args.sources], read_names(rules))
    findings = map_uses(scan.uses, rules)
    targets = [Target(profile.name, "documented", profile=profile) for profile in profiles]
    observed = observed_targets(args)
    check_ids = sorted({check for finding in findings for entry_id in finding.rule.entries
                        for check in finding.relevant_checks(registered_checks(entry_id))})
    report_root = Path(args.report_dir) if args.report_dir is not None else None
    for index, (target, options) in enumerate(observed, start=1):
        observe(target, check_ids, options, report_root / f"target-{index}" if report_root is not None else None)
        targets.append(target)
    rows = [finding_row(finding, catalog, targets) for finding in findings]
    # The runs' own reports are redacted already; the key is kept out of this one the same way.
    redactor = run_redactor(args.api_key or os.environ.get(API_KEY_VARIABLE), None, [])
    report = redactor.tree(build_report(list(args.sources), scan, rows, targets, started_at,
                                        time.perf_counter() - started))
    for line in summary_lines(report):
        print(printable(line))
    if report_root is not None:
        try:
            written = write_reports(report, report_root)
        except OSError as failure:
            return usage_error(f"cannot write reports to {args.report_dir!r}: {failure.strerror or failure}")
        print("reports: " + ", ".join(printable(str(path)) for path in written))
    unusable = [target.name for target, _ in observed if target.unusable]
    if unusable:
        return usage_error(f"the checks could not run on {', '.join(unusable)}: "
                           + "; ".join(target.message or "" for target, _ in observed if target.unusable))
    return EXIT_DIFFERS if report["failing_targets"] else EXIT_OK


def environment_names_endpoint() -> bool:
    """Whether $OPENAI_BASE_URL / $OPENAI_API_BASE is set (even empty): `conformance run` would then
    use it (or refuse it), never the embedded server."""
    import os

    from conformance.options import BASE_URL_VARIABLES

    return any(variable in os.environ for variable in BASE_URL_VARIABLES)


def usage_error(message: str) -> int:
    from conformance.console import printable

    print(f"conformance: error: {printable(message)}", file=sys.stderr)
    return EXIT_USAGE
