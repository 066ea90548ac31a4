"""The audit's mapping rules as data: `conformance/catalog/audit.toml`, validated strictly on load.

The file is checked against `schemas/audit-rules.schema.json` (unknown keys are errors); every
entry a rule names must exist in the catalog, and every behaviour it assumes must be one of that
entry's behaviours, so a rule can never point at a check that does not exist.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache, lru_cache
from importlib import resources
from typing import Any

from conformance._toml import toml_reader
from conformance.audit.uses import Use
from conformance.catalog import Catalog, load_catalog
from conformance.schemas import file_problems

SHIPPED_RULES = "conformance/catalog/audit.toml"


class RulesError(ValueError):
    """The rules file breaks its schema or names what the catalog does not have."""


@dataclass(frozen=True)
class Rule:
    id: str
    use: str
    names: tuple[str, ...]
    entries: tuple[str, ...]
    assumes: tuple[str, ...]
    assumption: str
    fix: str
    apis: tuple[str, ...] | None = None
    stream: bool | None = None
    value: dict[str, Any] | None = None
    unless: tuple[str, ...] = ()

    def matches(self, use: Use) -> bool:
        """Whether `use` is one this rule speaks of. What the scan could not tell (the API, whether
        the request streams, a value that is not a literal) does not exclude it: an audit that
        misses a relied-on difference is worse than one that lists one too many."""
        if use.kind != self.use or use.name not in self.names:
            return False
        if self.apis is not None and use.api is not None and use.api not in self.apis:
            return False
        if self.stream is not None and use.stream is not None and use.stream != self.stream:
            return False
        if use.request_fields is not None and use.request_fields.intersection(self.unless):
            return False
        return self.value is None or not use.literal or value_matches(self.value, use.value)


def value_matches(schema: dict[str, Any], value: Any) -> bool:
    return value_validator(json.dumps(schema, sort_keys=True)).is_valid(value)


@cache
def value_validator(schema: str) -> Any:
    """One compiled validator per distinct `value` schema: a large code base has thousands of uses."""
    from jsonschema import Draft202012Validator

    return Draft202012Validator(json.loads(schema))


def value_schema_problem(origin: str, rule_id: str, schema: dict[str, Any]) -> None:
    """A rule's `value` must itself be a valid JSON Schema: a typo there would match nothing, silently."""
    from jsonschema import Draft202012Validator, SchemaError

    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as error:
        raise RulesError(f"{origin}: rule {rule_id!r} has an invalid value schema: {error.message}") from None


def parse_rules(data: dict[str, Any], catalog: Catalog, origin: str = SHIPPED_RULES) -> list[Rule]:
    problems = file_problems("audit-rules.schema.json", data)
    if problems:
        raise RulesError(f"{origin}: {'; '.join(problems[:3])} (see schemas/audit-rules.schema.json)")
    rules: list[Rule] = []
    seen: set[str] = set()
    for raw in data["rule"]:
        rule_id = raw["id"]
        if rule_id in seen:
            raise RulesError(f"{origin}: rule {rule_id!r} is defined twice")
        seen.add(rule_id)
        assumes = tuple(raw.get("assumes", ["openai"]))
        if "value" in raw:
            value_schema_problem(origin, rule_id, raw["value"])
        for entry_id in raw["entries"]:
            if entry_id not in catalog.entries:
                raise RulesError(f"{origin}: rule {rule_id!r} names {entry_id!r}, which is not a catalog entry "
                                 "(conformance/catalog/differences.toml)")
            unknown = [word for word in assumes if word not in catalog[entry_id].behaviours]
            if unknown:
                raise RulesError(f"{origin}: rule {rule_id!r} assumes {unknown} of {entry_id!r}, whose behaviours "
                                 f"are {sorted(catalog[entry_id].behaviours)}")
        rules.append(Rule(rule_id, raw["use"], tuple(raw["names"]), tuple(raw["entries"]), assumes,
                          raw["assumption"], raw["fix"], tuple(raw["apis"]) if "apis" in raw else None,
                          raw.get("stream"), raw.get("value"), tuple(raw.get("unless", ()))))
    return rules


@lru_cache(maxsize=1)
def load_rules() -> tuple[Rule, ...]:
    """The packaged rules, in the file's order."""
    text = resources.files("conformance.catalog").joinpath("audit.toml").read_text(encoding="utf-8")
    return tuple(parse_rules(toml_reader.loads(text), load_catalog()))
