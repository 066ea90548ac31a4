"""junit.xml: one testcase per check, for CI systems (inconclusive and skip become <skipped>)."""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from typing import Any


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
        ElementTree.SubElement(properties, "property", {"name": name, "value": str(value)})
    if report.get("message") and not report["results"]:
        error = ElementTree.SubElement(ElementTree.SubElement(suite, "testcase", {"classname": "conformance",
                                                                                  "name": "run"}), "error")
        error.set("message", report["message"])
    for result in report["results"]:
        case = ElementTree.SubElement(suite, "testcase", {
            "classname": f"conformance.{result['entry_id']}", "name": result["check_id"],
            "time": f"{result['duration_s']:.3f}"})
        headline = (f"expected {' or '.join(result['expected']) if result['expected'] else 'any'}, "
                    f"observed {result['observed'] or 'nothing'}: {result['reason']}")
        tag = {"fail": "failure", "error": "error", "inconclusive": "skipped", "skip": "skipped"}.get(result["outcome"])
        if tag:
            element = ElementTree.SubElement(case, tag, {"message": headline[:1000]})
            element.text = "\n".join([headline, *(f"reproduce: {line}" for line in result["curl"])])
    ElementTree.indent(suite)
    return ElementTree.tostring(suite, encoding="unicode", xml_declaration=True) + "\n"
