"""The audit report as one dict (audit-report.json, schema `schemas/audit-report.schema.json`),
rendered to Markdown, HTML and JUnit, each file written atomically.

Text from the audited code or a target (paths, values, model ids, a run's reasons) appears in
Markdown only inside code spans (`conformance.report.markdown.code`), in HTML through jinja2's
autoescape, in JUnit through ElementTree's escaping; only the rules' and catalog's own words are
plain text.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

from conformance import __version__
from conformance.audit.findings import Finding, registered_checks
from conformance.audit.sources import Scan
from conformance.audit.targets import Target, verdict
from conformance.catalog import Catalog
from conformance.datasets.report import plural
from conformance.report import json_report

REPORT_FORMAT = 1
#: Uses kept per finding in the report (all are counted): a rule matched at 10,000 places is one finding.
MAX_USES = 50
FILES = {"json": "audit-report.json", "markdown": "audit-report.md", "html": "audit-report.html",
         "junit": "audit-junit.xml"}
#: Problems printed on the console; the reports list them all.
MAX_PRINTED_PROBLEMS = 20
VERDICTS = ("holds", "breaks", "may-break", "not-judged", "undocumented")
MARK = {"holds": "✅ holds", "breaks": "❌ breaks", "may-break": "⚠️ may break", "not-judged": "❔ not judged",
        "undocumented": "➖ undocumented"}
#: The report page's colour for each verdict (the outcome colours `_page.html.j2` defines).
COLOUR = {"holds": "pass", "breaks": "fail", "may-break": "error", "not-judged": "inconclusive", "undocumented": "skip"}


def finding_row(finding: Finding, catalog: Catalog, targets: list[Target]) -> dict[str, Any]:
    entries = []
    for entry_id in finding.rule.entries:
        entry = catalog[entry_id]
        checks = finding.relevant_checks(registered_checks(entry_id))
        entries.append({"id": entry_id, "title": entry.title, "assumes": list(finding.rule.assumes),
                        "checks": checks,
                        "verdicts": [verdict(target, catalog, entry_id, finding.rule.assumes, checks)
                                     for target in targets]})
    return {"rule": finding.rule.id, "use": finding.rule.use, "names": list(finding.rule.names),
            "assumption": finding.rule.assumption, "fix": finding.rule.fix,
            "use_count": len(finding.uses), "uses": [use.to_dict() for use in finding.uses[:MAX_USES]],
            "entries": entries}


def build_report(sources: list[str], scan: Scan, findings: list[dict[str, Any]], targets: list[Target],
                 started_at: str, duration_s: float) -> dict[str, Any]:
    summary = {target.name: {word: 0 for word in VERDICTS} for target in targets}
    for finding in findings:
        for entry in finding["entries"]:
            for row in entry["verdicts"]:
                summary[row["target"]][row["verdict"]] += 1
    relied_on = list(dict.fromkeys(entry["id"] for finding in findings for entry in finding["entries"]))
    failing = [target.name for target in targets if target.kind == "observed"
               and (summary[target.name]["breaks"] or summary[target.name]["not-judged"])]
    return {
        "format": REPORT_FORMAT,
        "tool": {"name": "conformance", "version": __version__},
        "started_at": started_at,
        "duration_s": round(duration_s, 3),
        "sources": sources,
        "files_seen": scan.files_seen,
        "files_parsed": scan.files_parsed,
        "uses_found": len(scan.uses),
        "problems": scan.problems,
        "targets": [target.to_dict() for target in targets],
        "relied_on": relied_on,
        "summary": summary,
        "failing_targets": failing,
        "findings": findings,
    }


# ---------------------------------------------------------------- Markdown

def where_shown(use: dict[str, Any]) -> str:
    from conformance.report.markdown import code

    value = f" = {code(json.dumps(use['value'], ensure_ascii=False))}" if use["literal"] else ""
    traced = "" if use["traced"] else " (not traced to a call)"
    return f"{code(use['where'])} {code(use['name'])}{value}{traced}"


def target_shown(target: dict[str, Any]) -> str:
    from conformance.report.markdown import code

    where = target["base_url"] if target["base_url"] not in (None, target["name"]) else None
    return (f"{code(target['name'], in_table=False)} ({target['kind']}"
            + (f", {code(where, in_table=False)}" if where else "") + ")")


def render_markdown(report: dict[str, Any]) -> str:
    from conformance.report.markdown import cell, code

    targets = report["targets"]
    lines = ["# Migration audit", "",
             f"- Sources: {', '.join(code(source, in_table=False) for source in report['sources'])}",
             (f"- Files: {report['files_seen']:,} seen, {report['files_parsed']:,} parsed; "
             f"{plural(report['uses_found'], 'use')} of the API; {plural(len(report['problems']), 'problem')}"),
             "- Targets: " + (", ".join(target_shown(target) for target in targets) or "none"),
             f"- Took {report['duration_s']:.1f}s; conformance {report['tool']['version']}", ""]
    if report["failing_targets"]:
        lines.append("**A relied-on behaviour differs (or could not be judged) on: "
                     + ", ".join(code(name, in_table=False) for name in report["failing_targets"]) + "**")
    else:
        lines.append(f"**{len(report['relied_on'])} catalog entries are relevant to this code**")
    if report["findings"]:
        lines += ["", "## What this code relies on", "",
                  "| Use | Entry | " + " | ".join(code(t["name"]) for t in targets) + " |",
                  "|---|---|" + "---|" * len(targets)]
        for finding in report["findings"]:
            for entry in finding["entries"]:
                marks = " | ".join(MARK[row["verdict"]] for row in entry["verdicts"])
                lines.append(f"| {code(finding['rule'])} ({finding['use_count']}) | {code(entry['id'])} | {marks} |")
        lines += ["", "## Findings"]
        for finding in report["findings"]:
            names = ", ".join(code(name, in_table=False) for name in finding["names"])
            lines += ["", f"### {code(finding['rule'], in_table=False)}: {finding['use']} {names}", "",
                      f"- Assumes: {cell(finding['assumption'])}", f"- Fix: {cell(finding['fix'])}",
                      f"- Used at ({finding['use_count']}"
                      + (f", first {len(finding['uses'])} shown" if finding["use_count"] > len(finding["uses"]) else "")
                      + "): " + "; ".join(where_shown(use) for use in finding["uses"])]
            rows = [(entry, row) for entry in finding["entries"] for row in entry["verdicts"]]
            if rows:
                lines += ["", "| Entry | Target | What the target does | Verdict |", "|---|---|---|---|"]
                lines += [f"| {code(entry['id'])} | {code(row['target'])} | {code(row['does'])} "
                          f"| {MARK[row['verdict']]} |" for entry, row in rows]
    if report["problems"]:
        lines += ["", "## Problems (not audited)", "", "| Where | Problem |", "|---|---|"]
        lines += [f"| {code(p['where'])} | {code(p['message'])} |" for p in report["problems"]]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- HTML

def render_html(report: dict[str, Any]) -> str:
    from conformance.report.html import render_page

    return render_page("audit.html.j2", report=report, colour=COLOUR, mark=MARK)


# ---------------------------------------------------------------- JUnit

def render_junit(report: dict[str, Any]) -> str:
    """One testsuite per target, one testcase per (rule, entry): `breaks` and an observed
    `not-judged` fail it, `may-break` and `undocumented` are its output."""
    from conformance.report.junit import xml_text

    suites = ElementTree.Element("testsuites", {"name": "conformance audit"})
    for target in report["targets"]:
        suite = ElementTree.SubElement(suites, "testsuite", {"name": xml_text(target["base_url"] or target["name"]),
                                                             "timestamp": report["started_at"]})
        for finding in report["findings"]:
            for entry in finding["entries"]:
                row = next(row for row in entry["verdicts"] if row["target"] == target["name"])
                case = ElementTree.SubElement(suite, "testcase", {"classname": f"audit.{finding['rule']}",
                                                                  "name": entry["id"]})
                detail = xml_text(f"{row['verdict']}: {row['does']}\nassumes: {finding['assumption']}\n"
                                  f"fix: {finding['fix']}\nused at: "
                                  + ", ".join(use["where"] for use in finding["uses"]))
                failing = row["verdict"] == "breaks" or (row["verdict"] == "not-judged"
                                                         and target["kind"] == "observed")
                if failing:
                    ElementTree.SubElement(case, "failure", {"message": detail.splitlines()[0][:1000]}).text = detail
                else:
                    ElementTree.SubElement(case, "system-out").text = detail
        cases = suite.findall("testcase")
        suite.attrib.update({"tests": str(len(cases)),
                             "failures": str(sum(1 for c in cases if c.find("failure") is not None)),
                             "errors": "0"})
    ElementTree.indent(suites)
    return ElementTree.tostring(suites, encoding="unicode", xml_declaration=True) + "\n"


# ---------------------------------------------------------------- writing

def write_reports(report: dict[str, Any], directory: Path) -> list[Path]:
    """Write every format into `directory`, each atomically, all from one copy of the report that
    any writer can hold (a literal 1e400 in the audited source is no number JSON can hold)."""
    from conformance.report import write_formats

    return write_formats(json_report.bounded(report), directory,
                         ((FILES["json"], json_report.render), (FILES["markdown"], render_markdown),
                          (FILES["html"], render_html), (FILES["junit"], render_junit)))


def summary_lines(report: dict[str, Any]) -> Iterable[str]:
    """What the command prints: the relied-on entries, then per target the verdicts that matter."""
    yield (f"scanned {plural(report['files_seen'], 'file')} ({report['files_parsed']:,} parsed): "
           f"{plural(report['uses_found'], 'use')}, {plural(len(report['findings']), 'finding')}, "
           f"{plural(len(report['problems']), 'problem')}")
    for problem in report["problems"][:MAX_PRINTED_PROBLEMS]:
        yield f"  problem: {problem['where']}: {problem['message']}"
    if len(report["problems"]) > MAX_PRINTED_PROBLEMS:
        yield f"  ... and {len(report['problems']) - MAX_PRINTED_PROBLEMS} more problems (all are in the reports)"
    for finding in report["findings"]:
        first = finding["uses"][0]["where"]
        more = f" (+{finding['use_count'] - 1} more)" if finding["use_count"] > 1 else ""
        yield f"{finding['rule']}: {', '.join(e['id'] for e in finding['entries'])}  at {first}{more}"
        for entry in finding["entries"]:
            for row in entry["verdicts"]:
                if row["verdict"] != "holds":
                    yield f"  {row['target']}: {entry['id']} {row['verdict']}: {row['does']}"
        if any(row["verdict"] in ("breaks", "may-break", "not-judged")
               for entry in finding["entries"] for row in entry["verdicts"]):
            yield f"  fix: {finding['fix']}"
