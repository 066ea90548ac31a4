"""report.html: one self-contained page for people (inline CSS, no scripts, no external assets)."""

from __future__ import annotations

import json
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

_environment = Environment(loader=PackageLoader("conformance.report", "templates"),
                           autoescape=select_autoescape(["html", "j2"]), trim_blocks=True, lstrip_blocks=True)
_environment.filters["pretty"] = lambda value: json.dumps(value, indent=2, ensure_ascii=False) \
    if not isinstance(value, str) else value


def render(report: dict[str, Any]) -> str:
    return _environment.get_template("report.html.j2").render(report=report)
