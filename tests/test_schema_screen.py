"""The compiled screen (jsonschema-rs) and the full validator (jsonschema) agree on which bodies are
valid: the screen alone lets a body through (schemas.validate), so a body it passed and jsonschema
would fail would be a check passing on nothing checked."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from conformance.schemas import SchemaSet, schema_root, screen, validator

ROOT = Path(__file__).resolve().parent.parent
SETS: tuple[SchemaSet, ...] = ("compatible", "strict")
SCHEMAS = sorted((schema_set, path.name.removesuffix(".schema.json"))
                 for schema_set in SETS
                 for path in (schema_root() / schema_set).glob("*.schema.json"))


@cache
def recorded_bodies() -> list[Any]:
    """Every JSON body and stream event the reference recordings hold, one of each shape of keys."""
    bodies: dict[str, Any] = {}
    for cassette in sorted(ROOT.glob("cassettes/reference-*/*.yaml")):
        for interaction in yaml.safe_load(cassette.read_text(encoding="utf-8"))["interactions"]:
            text = interaction["response"]["body"]["string"]
            lines = [line.removeprefix("data:").strip() for line in text.splitlines() if line.startswith("data:")]
            for piece in lines or [text]:
                try:
                    body = json.loads(piece)
                except ValueError:
                    continue
                bodies.setdefault(json.dumps(shape(body), sort_keys=True), body)
    return list(bodies.values())


def shape(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: shape(child) for key, child in value.items()}
    if isinstance(value, list):
        return [shape(child) for child in value[:2]]
    return type(value).__name__


def agree(schema_set: SchemaSet, name: str, instance: Any) -> None:
    full = not any(True for _ in validator(name, schema_set).iter_errors(instance))
    assert screen(name, schema_set).is_valid(instance) == full, (schema_set, name, instance)


def test_the_screen_agrees_with_jsonschema_on_every_recorded_body_under_every_schema():
    bodies = recorded_bodies()
    assert len(bodies) > 20
    for schema_set, name in SCHEMAS:
        for body in bodies:
            agree(schema_set, name, body)


JSON_VALUES = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
                           | st.text(max_size=5), lambda inner: st.lists(inner, max_size=2)
                           | st.dictionaries(st.text(max_size=5), inner, max_size=2), max_leaves=4)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_the_screen_agrees_with_jsonschema_on_bodies_broken_anywhere(data):
    """A recorded body with one value replaced or one key removed, anywhere in it."""
    body = json.loads(json.dumps(data.draw(st.sampled_from(recorded_bodies()))))
    node = body
    while isinstance(node, (dict, list)) and node and data.draw(st.booleans()):
        keys = list(node) if isinstance(node, dict) else list(range(len(node)))
        key = data.draw(st.sampled_from(keys))
        if not isinstance(node[key], (dict, list)) or not node[key] or data.draw(st.booleans()):
            if isinstance(node, dict) and data.draw(st.booleans()):
                del node[key]
            else:
                node[key] = data.draw(JSON_VALUES)
            break
        node = node[key]
    for schema_set, name in SCHEMAS:
        agree(schema_set, name, body)
