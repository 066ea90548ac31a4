"""junit.xml: one testcase per check, for CI systems (inconclusive and skip become <skipped>)."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ElementTree
from typing import Any

#: Characters XML 1.0 does not allow in a document at all, escaped or not (a server's message may hold them).
NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def xml_text(value: Any) -> str:
    """`value` as text XML can hold: each character XML forbids shown as its escape (`\\x1b`)."""
    return NOT_XML.sub(lambda match: repr(match.group())[1:-1], str(value))


def render(report: dict[str, Any]) -> str:
    summary = report["summary"]
    suite = ElementTree.Element("testsuite", {
        "name": "conformance", "tests": str(len(report["results"])), "failures": str(summary["fail"]),
        "errors": str(summary["error"]), "skipped": str(summary["skip"] + summary["inconclusive"]),
        "time": f"{report['duration_s']:.3f}", "timestamp": report["started_at"],
    })
    properties = ElementTree.SubElement(suite, "properties")
    for name, value in (("endpoint", report["endpoint"]["base_url"]), ("model", report["model"]),
                        ("profile", (report["profile"] or {}).get("name")), ("status", report["status"])):
        ElementTree.SubElement(properties, "property", {"name": name, "value": xml_text(value)})
    if report.get("message") and not report["results"]:
        error = ElementTree.SubElement(ElementTree.SubElement(suite, "testcase", {"classname": "conformance",
                                                                                  "name": "run"}), "error")
        error.set("message", xml_text(report["message"]))
    for result in report["results"]:
        case = ElementTree.SubElement(suite, "testcase", {
            "classname": f"conformance.{result['entry_id']}", "name": result["check_id"],
            "time": f"{result['duration_s']:.3f}"})
        headline = xml_text(f"expected {' or '.join(result['expected']) if result['expected'] else 'any'}, "
                            f"observed {result['observed'] or 'nothing'}: {result['reason']}")
        tag = {"fail": "failure", "error": "error", "inconclusive": "skipped", "skip": "skipped"}.get(result["outcome"])
        if tag:
            element = ElementTree.SubElement(case, tag, {"message": headline[:1000]})
            element.text = "\n".join([headline, *(xml_text(f"reproduce: {line}") for line in result["curl"])])
    ElementTree.indent(suite)
    return ElementTree.tostring(suite, encoding="unicode", xml_declaration=True) + "\n"
