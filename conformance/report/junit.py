"""junit.xml: one testcase per check, for CI systems (inconclusive and skip become <skipped>).

The suite's counts are those of the testcases written, so they always agree with report.json: a
run that never started is one errored testcase saying why, and checks an interrupted run never
judged are there too, as skipped "not judged" (report.json lists them the same way).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ElementTree
from typing import Any

#: How each outcome shows in JUnit (pass: no child element).
TAGS = {"fail": "failure", "error": "error", "inconclusive": "skipped", "skip": "skipped"}
#: Characters XML 1.0 does not allow in a document at all, escaped or not (a server's message may hold them).
NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def xml_text(value: Any) -> str:
    """`value` as text XML can hold: each character XML forbids shown as its escape (`\\x1b`)."""
    return NOT_XML.sub(lambda match: repr(match.group())[1:-1], str(value))


def render(report: dict[str, Any]) -> str:
    """One testcase per check, and in a matrix report per check x model (named `check@model`)."""
    from conformance.report.matrix import is_matrix

    suite = ElementTree.Element("testsuite", {"name": "conformance", "time": f"{report['duration_s']:.3f}",
                                              "timestamp": report["started_at"]})
    properties = ElementTree.SubElement(suite, "properties")
    models = ", ".join(s["id"] for s in report["models"]) if is_matrix(report) else report["model"]
    for name, value in (("endpoint", report["endpoint"]["base_url"]), ("model", models),
                        ("profile", (report["profile"] or {}).get("name")), ("status", report["status"])):
        ElementTree.SubElement(properties, "property", {"name": name, "value": xml_text(value)})
    if report["status"] == "not-started":
        case = ElementTree.SubElement(suite, "testcase", {"classname": "conformance", "name": "run", "time": "0.000"})
        ElementTree.SubElement(case, "error", {"message": xml_text(report.get("message") or "the run did not start")})
    judged = ([(f"{r['check_id']}@{s['id']}", r) for s in report["models"] for r in s["results"]]
              if is_matrix(report) else [(r["check_id"], r) for r in report["results"]])
    for name, result in judged:
        case = ElementTree.SubElement(suite, "testcase", {
            "classname": f"conformance.{result['entry_id']}", "name": xml_text(name),
            "time": f"{result['duration_s']:.3f}"})
        headline = xml_text(f"expected {' or '.join(result['expected']) if result['expected'] else 'any'}, "
                            f"observed {result['observed'] or 'nothing'}: {result['reason']}")
        tag = TAGS.get(result["outcome"])
        if tag:
            element = ElementTree.SubElement(case, tag, {"message": headline[:1000]})
            element.text = "\n".join([headline, *(xml_text(f"reproduce: {line}") for line in result["curl"])])
    cases = suite.findall("testcase")
    suite.attrib.update({
        "tests": str(len(cases)),
        **{f"{tag}s" if tag != "skipped" else tag: str(sum(1 for case in cases if case.find(tag) is not None))
           for tag in ("failure", "error", "skipped")},
    })
    ElementTree.indent(suite)
    return ElementTree.tostring(suite, encoding="unicode", xml_declaration=True) + "\n"
