"""The dataset report as one dict (report.json), rendered to Markdown, HTML and JUnit.

Everything taken from a dataset (paths, keys, values quoted in explanations) is escaped for the
format it goes into: Markdown gets code spans and backslash escapes, HTML jinja2's autoescape,
XML ElementTree's. Files are written atomically (a temporary file, then os.replace), so a reader
never sees half a report.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from conformance import __version__
from conformance.datasets.catalog import Rule
from conformance.datasets.formats import DESCRIPTIONS
from conformance.datasets.judge import FileJudge
from conformance.report import json_report, write_formats
from conformance.report.junit import xml_text
from conformance.report.markdown import code

REPORT_FORMAT = 1
FILES = {"json": "dataset-report.json", "markdown": "dataset-report.md", "html": "dataset-report.html",
         "junit": "dataset-junit.xml"}


def file_section(judge: FileJudge, problem: str | None) -> dict[str, Any]:
    findings = sorted((f for kept in judge.stored.values() for f in kept), key=lambda f: (f.line, f.pointer, f.rule))
    conversion = {target: [judge.rules[rule_id].conversion(count, subject)
                           for (t, rule_id, subject), count in judge.conversions.items() if t == target]
                  for target in judge.targets}
    return {
        "path": judge.path,
        "compressed": judge.compressed,
        "problem": problem,
        "lines_read": judge.lines_read,
        "format": judge.format,
        "examples": dict(judge.examples),
        "valid": {target: problem is None and judge.valid(target) for target in judge.targets},
        "errors": {target: judge.failures[target]["error"] for target in judge.targets},
        "warnings": {target: judge.failures[target]["warning"] for target in judge.targets},
        "rules": [{"id": rule_id, "count": judge.counts[rule_id], "stored": len(judge.stored.get(rule_id, ())),
                   "severities": dict(judge.rules[rule_id].severities)}
                  for rule_id in judge.rules if judge.counts[rule_id]],
        "conversion": conversion,
        "findings": [finding.to_dict() for finding in findings],
    }


def build_report(profile: str, rules: dict[str, Rule], files: list[dict[str, Any]], started_at: str,
                 duration_s: float, max_stored: int) -> dict[str, Any]:
    targets = list(dict.fromkeys(t for rule in rules.values() for t in rule.severities))
    lines = sum(f["lines_read"] for f in files)
    return {
        "format": REPORT_FORMAT,
        "tool": {"name": "conformance", "version": __version__},
        "profile": profile,
        "targets": targets,
        "started_at": started_at,
        "duration_s": round(duration_s, 3),
        "lines_read": lines,
        "lines_per_second": round(lines / duration_s) if duration_s > 0 else None,
        "max_findings_per_rule": max_stored,
        "valid": {target: all(f["valid"][target] for f in files) for target in targets},
        "rules": [{"id": rule.id, "title": rule.title, "severities": dict(rule.severities),
                   "sources": [str(citation) for citation in rule.citations]} for rule in rules.values()],
        "files": files,
    }


# ---------------------------------------------------------------- Markdown

MARKDOWN_PUNCTUATION = re.compile(r"([\\`*_{}\[\]()<>#+\-.!|~&])")


def text(value: Any) -> str:
    """Plain text safe in Markdown (and in a table cell): every markup character escaped, one line."""
    return MARKDOWN_PUNCTUATION.sub(r"\\\1", " ".join(str(value).split()))


def plural(count: int, word: str) -> str:
    return f"{count:,} {word}" + ("" if count == 1 else "s")


def verdict(valid: bool) -> str:
    return "✅ valid" if valid else "❌ not valid"


def render_markdown(report: dict[str, Any]) -> str:
    lines = ["# Fine-tuning dataset report", "",
             f"- Profile: `{report['profile']}` ({', '.join(report['targets'])})",
             (f"- Files: {len(report['files'])}; lines read: {report['lines_read']:,}; "
              f"took {report['duration_s']:.1f}s"),
             f"- conformance {report['tool']['version']}", ""]
    lines += [f"- **{target}**: {verdict(valid)}" for target, valid in report["valid"].items()]
    titles = {rule["id"]: rule["title"] for rule in report["rules"]}
    for section in report["files"]:
        lines += ["", f"## {code(section['path'])}", ""]
        if section["problem"]:
            lines += [f"> {text(section['problem'])}", ""]
        formats = ", ".join(f"{DESCRIPTIONS[fmt]}: {n:,}" for fmt, n in section["examples"].items() if n)
        lines += [f"- Lines read: {section['lines_read']:,}" + (" (gzip)" if section["compressed"] else ""),
                  f"- Examples: {formats or 'none'}"]
        for target, valid in section["valid"].items():
            lines.append(f"- {target}: {verdict(valid)} ({plural(section['errors'][target], 'error')}, "
                         f"{plural(section['warnings'][target], 'warning')})")
        if section["rules"]:
            lines += ["", "| Rule | What it requires | Severity | Findings |", "|---|---|---|---|"]
            for rule in section["rules"]:
                severities = ", ".join(f"{t}: {s}" for t, s in rule["severities"].items())
                lines.append(f"| `{rule['id']}` | {text(titles[rule['id']])} | {severities} | {rule['count']:,} |")
        advice = [(target, items) for target, items in section["conversion"].items() if items]
        if advice:
            lines += ["", "### What a conversion needs", ""]
            lines += [f"- to make it valid for {target}: " + "; ".join(text(item) for item in items)
                      for target, items in advice]
        if section["findings"]:
            lines += ["", f"### Findings (at most {report['max_findings_per_rule']} kept per rule)", "",
                      "| Line | Pointer | Rule | Severity | Targets | Explanation |", "|---|---|---|---|---|---|"]
            for finding in section["findings"]:
                pointer = code(finding["pointer"]) if finding["pointer"] else "(root)"
                lines.append(f"| {finding['line'] or 'file'} | {pointer} | `{finding['rule']}` | "
                             f"{finding['severity']} | {', '.join(finding['targets'])} | {text(finding['message'])} |")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- HTML

def render_html(report: dict[str, Any]) -> str:
    from conformance.report.html import render_page

    return render_page("dataset.html.j2", report=report, titles={rule["id"]: rule for rule in report["rules"]},
                       descriptions=DESCRIPTIONS)


# ---------------------------------------------------------------- JUnit

def render_junit(report: dict[str, Any]) -> str:
    """One testsuite per file, one testcase per rule judged; errors fail it, warnings are its output."""
    suites = ElementTree.Element("testsuites", {"name": "conformance dataset"})
    for section in report["files"]:
        counts = {rule["id"]: rule["count"] for rule in section["rules"]}
        findings: dict[str, list[dict[str, Any]]] = {}
        for finding in section["findings"]:
            findings.setdefault(finding["rule"], []).append(finding)
        failing = [r for r in report["rules"] if counts.get(r["id"]) and
                   any(f["severity"] == "error" for f in findings.get(r["id"], ()))]
        suite = ElementTree.SubElement(suites, "testsuite", {
            "name": xml_text(section["path"]), "tests": str(len(report["rules"]) + 1), "failures": str(len(failing)),
            "errors": "1" if section["problem"] else "0", "timestamp": report["started_at"]})
        readable = ElementTree.SubElement(suite, "testcase", {"classname": "dataset", "name": "readable"})
        if section["problem"]:
            ElementTree.SubElement(readable, "error", {"message": xml_text(section["problem"])})
        for rule in report["rules"]:
            case = ElementTree.SubElement(suite, "testcase", {"classname": f"dataset.{rule['id']}", "name": rule["id"]})
            kept = findings.get(rule["id"], [])
            if not counts.get(rule["id"]):
                continue
            detail = xml_text("\n".join(
                f"line {f['line']} {f['pointer'] or '/'} [{', '.join(f['targets'])}]: {f['message']}" for f in kept))
            headline = xml_text(f"{plural(counts[rule['id']], 'finding')}: {rule['title']}")
            if rule in failing:
                ElementTree.SubElement(case, "failure", {"message": headline[:1000]}).text = detail
            else:
                ElementTree.SubElement(case, "system-out").text = f"{headline}\n{detail}"
    ElementTree.indent(suites)
    return ElementTree.tostring(suites, encoding="unicode", xml_declaration=True) + "\n"


# ---------------------------------------------------------------- writing

def write_reports(report: dict[str, Any], directory: Path) -> list[Path]:
    """Write every format into `directory`, each atomically, all from one copy of the report that
    any writer can hold (a lone surrogate from a key in the data becomes U+FFFD); returns the paths."""
    return write_formats(json_report.bounded(report), directory,
                         ((FILES["json"], json_report.render), (FILES["markdown"], render_markdown),
                          (FILES["html"], render_html), (FILES["junit"], render_junit)))


def summary_lines(report: dict[str, Any]) -> Iterable[str]:
    """What the command prints: one line per file and target."""
    for section in report["files"]:
        formats = ", ".join(f"{n:,} {fmt}" for fmt, n in section["examples"].items() if n) or "no examples"
        yield f"{section['path']}: {section['lines_read']:,} lines, {formats}"
        if section["problem"]:
            yield f"  unusable: {section['problem']}"
            continue
        for target, valid in section["valid"].items():
            yield (f"  {target}: {'valid' if valid else 'NOT valid'} ({plural(section['errors'][target], 'error')}, "
                   f"{plural(section['warnings'][target], 'warning')})")
