"""JSON Schema validation of what an endpoint returns, against the schemas in `schemas/`.

Two sets exist: `strict` (OpenAI's spec as written) and `compatible` (what clients rely on, which
Fireworks-shaped objects also satisfy). A violation names the JSON path and the rule it broke, so
a failure reads like "$.choices[0].message: 'refusal' is a required property (required)".

Most bodies are valid, and a run validates thousands (every response, every stream chunk): each is
first screened by jsonschema-rs's compiled validator (over a hundred times faster), and only one it
finds invalid goes through `jsonschema`, whose errors say where and why. The screen never decides
alone that a body is invalid, and both follow Draft 2020-12 with formats not asserted
(tests/test_schema_screen.py holds them to agreeing).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import jsonschema_rs
from jsonschema import Draft202012Validator

SchemaSet = Literal["strict", "compatible"]


def schema_root() -> Path:
    """Where the schemas are: inside an installed wheel, or the source tree's `schemas/`."""
    packaged = Path(str(resources.files("conformance"))) / "schemas"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent / "schemas"


@dataclass(frozen=True)
class Violation:
    path: str
    rule: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message} ({self.rule})"


@cache
def _schema(name: str, schema_set: SchemaSet) -> dict[str, Any]:
    return json.loads((schema_root() / schema_set / f"{name}.schema.json").read_text(encoding="utf-8"))


@cache
def validator(name: str, schema_set: SchemaSet = "compatible") -> Draft202012Validator:
    return Draft202012Validator(_schema(name, schema_set))


@cache
def screen(name: str, schema_set: SchemaSet = "compatible") -> jsonschema_rs.Validator:
    """The compiled validator of schema `name`: whether an instance is valid, quickly."""
    # offline: a $ref is resolved within the schema, never fetched (ours hold only local ones)
    return jsonschema_rs.Draft202012Validator(_schema(name, schema_set), validate_formats=False, offline=True)


def validate(name: str, instance: Any, schema_set: SchemaSet = "compatible", limit: int = 5) -> list[Violation]:
    """Every way `instance` breaks schema `name` (the most specific first, at most `limit`)."""
    if screen(name, schema_set).is_valid(instance):
        return []
    found = []
    for error in sorted(validator(name, schema_set).iter_errors(instance), key=_specificity):
        leaf = min(error.context, key=_specificity) if error.context else error
        found.append(Violation(leaf.json_path, str(leaf.validator), _short(leaf.message)))
        if len(found) >= limit:
            break
    return found


def _specificity(error) -> tuple[int, str]:
    return (-len(error.absolute_path), error.json_path)


def _short(message: str, limit: int = 240) -> str:
    return message if len(message) <= limit else message[: limit - 3] + "..."


@cache
def file_validator(file_name: str) -> Draft202012Validator:
    """A validator for one of the suite's own file formats (`profile.schema.json`, ...)."""
    return Draft202012Validator(json.loads((schema_root() / file_name).read_text(encoding="utf-8")))


def file_problems(file_name: str, data: Any) -> list[str]:
    """How `data` (a parsed profile or catalog) breaks its format, each naming the key: empty when valid."""
    return [f"{error.json_path}: {_short(error.message)}"
            for error in sorted(file_validator(file_name).iter_errors(data), key=lambda e: e.json_path)]
