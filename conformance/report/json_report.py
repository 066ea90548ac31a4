"""report.json: the machine-readable report, valid against schemas/report.schema.json.

Evidence holds what servers sent, parsed, so `bounded` first makes it writable whatever it is:
JSON has no NaN or Infinity (a body's `1e400` parses to one), a lone surrogate (`"\\ud800"`)
cannot be encoded, and nesting deeper than `MAX_DEPTH` is cut to a marker, so no writer or reader
of the report recurses deeper than that.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

#: Containers nested deeper than this are replaced by a marker saying what was cut.
MAX_DEPTH = 40


def _text(value: str) -> str:
    """The string with each lone surrogate replaced by U+FFFD, so it can be written as UTF-8."""
    return value.encode("utf-8", "surrogatepass").decode("utf-8", "replace")


def _leaf(value: Any, finish: Callable[[str], str]) -> Any:
    if isinstance(value, str):
        return finish(_text(value))
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)  # 'nan', 'inf', '-inf': seen, and said, but not a number JSON can hold
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return finish(_text(str(value)))


def bounded(value: Any, finish: Callable[[str], str] = str) -> Any:
    """A copy of `value` that `json.dumps(..., allow_nan=False)` always accepts; without recursion.
    Every string of it, keys included, goes through `finish` (the run's redaction): one copy, not two."""
    root: list[Any] = [None]
    pending: list[tuple[Any, Any, Any, int]] = [(root, 0, value, 0)]
    while pending:
        parent, slot, item, depth = pending.pop()
        if isinstance(item, (dict, list, tuple)) and depth >= MAX_DEPTH:
            parent[slot] = f"<{type(item).__name__} nested deeper than {MAX_DEPTH} levels: not kept>"
        elif isinstance(item, dict):
            copy: dict[str, Any] = {}
            for key, child in item.items():
                key = finish(_text(key)) if isinstance(key, str) else str(_leaf(key, finish))
                copy[key] = None
                pending.append((copy, key, child, depth + 1))
            parent[slot] = copy
        elif isinstance(item, (list, tuple)):
            copied: list[Any] = [None] * len(item)
            pending.extend((copied, index, child, depth + 1) for index, child in enumerate(item))
            parent[slot] = copied
        else:
            parent[slot] = _leaf(item, finish)
    return root[0]


#: Pieces of encoded JSON joined at a time while rendering.
JOINED = 4096


def render(report: dict[str, Any]) -> str:
    """The report as indented JSON. `json.dumps` would hold every small piece its encoder yields
    (millions for a matrix of hundreds of models, several times the text's size) until the end:
    they are joined as they come."""
    pieces, batch = [], []
    for piece in json.JSONEncoder(indent=2, ensure_ascii=False, allow_nan=False).iterencode(report):
        batch.append(piece)
        if len(batch) == JOINED:
            pieces.append("".join(batch))
            batch.clear()
    return "".join([*pieces, *batch, "\n"])
