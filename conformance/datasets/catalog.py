"""The dataset rules as data: `conformance/catalog/datasets.toml`, validated strictly on load.

The file is checked against `schemas/dataset-rules.schema.json` (unknown keys are errors), every
cited source must exist, ids are unique, and each rule's parameters must be exactly those its
function in `rules.py` reads, so a rule cannot be documented without being judged, or the reverse.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

from conformance._toml import toml_reader
from conformance.datasets import TARGETS


class RulesError(ValueError):
    """The rules file is inconsistent with its schema, its sources or the rule functions."""


@dataclass(frozen=True)
class Source:
    key: str
    title: str
    url: str | None  # None only for this tool's own bounds
    revision: str
    on_disk: str | None

    def cite(self, section: str) -> str:
        where = f"; on disk: {self.on_disk}" if self.on_disk else "; not on disk"
        return f"{self.title}, {self.revision}, {section}" + (f" <{self.url}>" if self.url else "") + where


@dataclass(frozen=True)
class Citation:
    source: Source
    section: str

    def __str__(self) -> str:
        return self.source.cite(self.section)


@dataclass(frozen=True)
class Rule:
    """One documented rule: which targets it binds, how badly, with which documented values."""

    id: str
    title: str
    fix: str
    severities: Mapping[str, str]  # target -> "error" | "warning"; absent target: not a rule there
    params: Mapping[str, Mapping[str, Any]]  # target -> the values the rule's function compares with
    citations: tuple[Citation, ...]

    def conversion(self, count: int, subject: str) -> str:
        return self.fix.format(count=count, subject=subject)


def parse_rules(data: dict[str, Any], expected_params: Mapping[str, frozenset[str]]) -> dict[str, Rule]:
    """Rules from the TOML's data; `expected_params` maps each rule id to the parameters its function reads."""
    from conformance.schemas import file_problems

    problems = file_problems("dataset-rules.schema.json", data)
    if problems:
        raise RulesError("datasets.toml: " + "; ".join(problems[:5]))
    sources = {key: Source(key, value["title"], value.get("url"), value["revision"], value.get("on_disk"))
               for key, value in data["sources"].items()}
    rules: dict[str, Rule] = {}
    for entry in data["rule"]:
        rule_id = entry["id"]
        if rule_id in rules:
            raise RulesError(f"datasets.toml: rule {rule_id!r} is defined twice")
        if rule_id not in expected_params:
            raise RulesError(f"datasets.toml: rule {rule_id!r} has no function in conformance/datasets/rules.py")
        dangling = [c["source"] for c in entry["sources"] if c["source"] not in sources]
        if dangling:
            raise RulesError(f"datasets.toml: rule {rule_id!r} cites unknown sources {dangling}")
        target_params = entry.get("target_params", {})
        if set(target_params) - set(entry["targets"]):
            raise RulesError(f"datasets.toml: rule {rule_id!r} has parameters for a target it does not bind")
        params = {target: {**entry.get("params", {}), **target_params.get(target, {})} for target in entry["targets"]}
        for target, values in params.items():
            if set(values) != expected_params[rule_id]:
                raise RulesError(f"datasets.toml: rule {rule_id!r} for {target} has parameters {sorted(values)}, "
                                 f"its function reads {sorted(expected_params[rule_id])}")
        rules[rule_id] = Rule(rule_id, entry["title"], entry["fix"], dict(entry["targets"]), params,
                              tuple(Citation(sources[c["source"]], c["section"]) for c in entry["sources"]))
    missing = sorted(set(expected_params) - set(rules))
    if missing:
        raise RulesError(f"datasets.toml: no rule documents the functions {missing}")
    return rules


@lru_cache(maxsize=1)
def load_rules() -> dict[str, Rule]:
    """The packaged rules, in the file's order."""
    from conformance.datasets.rules import PARAMETERS

    text = resources.files("conformance.catalog").joinpath("datasets.toml").read_text(encoding="utf-8")
    return parse_rules(toml_reader.loads(text), PARAMETERS)


def for_targets(rules: Mapping[str, Rule], targets: tuple[str, ...]) -> dict[str, Rule]:
    """The rules narrowed to `targets`: a rule binding none of them is left out (it is never run)."""
    unknown = set(targets) - set(TARGETS)
    if unknown:
        raise RulesError(f"unknown targets {sorted(unknown)}")
    narrowed = {}
    for rule in rules.values():
        severities = {t: s for t, s in rule.severities.items() if t in targets}
        if severities:
            narrowed[rule.id] = Rule(rule.id, rule.title, rule.fix, severities,
                                     {t: rule.params[t] for t in severities}, rule.citations)
    return narrowed
