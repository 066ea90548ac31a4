"""Judging one dataset file line by line with the rules narrowed to the chosen targets.

Memory stays flat: a line is dropped once judged; findings are counted per rule, but at most
`max_stored` per rule are kept with their details; conversion advice is counted per target, rule
and subject (at most `MAX_SUBJECTS` subjects per rule, the rest counted as "other").
Lines are parsed by the standard library's json (decoded as UTF-8 first, so invalid UTF-8 is its
own finding): one parser, one set of error messages; orjson saved about a quarter of the CPU time
on a million lines, which the speed target does not need.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from conformance.datasets.catalog import Rule
from conformance.datasets.formats import FORMATS, detect
from conformance.datasets.reader import EarlyEnd, Oversize, open_dataset, read_lines
from conformance.datasets.rules import REGISTRY, dpo_input, message_shape, messages_nonempty

BOM = b"\xef\xbb\xbf"
#: A file whose first this many lines hold no JSON object is not JSONL at all (a usage error).
GIVE_UP_AFTER = 100
MAX_SUBJECTS = 20
#: Parameters the rule functions use as sets (membership tests on every message).
SET_PARAMS = frozenset({"roles", "keys"})


def reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


DECODER = json.JSONDecoder(parse_constant=reject_constant)
UNPARSED = object()


class NotJsonl(Exception):
    """The file holds no JSON object at all: not a dataset (a usage error, exit 2)."""


@dataclass(frozen=True)
class Finding:
    file: str
    line: int  # 0: the file as a whole
    pointer: str
    rule: str
    severity: str
    targets: tuple[str, ...]
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "line": self.line, "pointer": self.pointer, "rule": self.rule,
                "severity": self.severity, "targets": list(self.targets), "message": self.message}


@dataclass
class SampleWeights:
    with_weight: int = 0
    without_weight: int = 0
    first_with: int = 0
    first_without: int = 0


@dataclass
class Dispatch:
    """The active rule functions by scope, so a line pays only for rules that can fire."""

    always: list[Callable] = field(default_factory=list)
    triggered: dict[str, list[Callable]] = field(default_factory=dict)
    conversation: list[Callable] = field(default_factory=list)
    example: dict[str, list[Callable]] = field(default_factory=lambda: {fmt: [] for fmt in FORMATS})
    file: list[Callable] = field(default_factory=list)

    @classmethod
    def of(cls, rules: dict[str, Rule]) -> Dispatch:
        dispatch = cls()
        for rule_id in rules:
            registered = REGISTRY[rule_id]
            function, scope, trigger = registered.function, registered.scope, registered.trigger
            if function is None:  # a line rule: judged while parsing
                continue
            if scope == "message" and trigger is None:
                dispatch.always.append(function)
            elif scope == "message" and trigger is not None:
                dispatch.triggered.setdefault(trigger, []).append(function)
            elif scope == "conversation":
                dispatch.conversation.append(function)
            elif scope in dispatch.example:
                dispatch.example[scope].append(function)
            elif scope == "file":
                dispatch.file.append(function)
        return dispatch


@cache
def compiled(pattern: str) -> re.Pattern:
    return re.compile(pattern)


class FileJudge:
    """The state of judging one file: counters, kept findings, and the emit sink rules call."""

    compiled = staticmethod(compiled)

    def __init__(self, path: str, rules: dict[str, Rule], max_stored: int = 100):
        self.path = path
        self.rules = rules
        self.targets = tuple(dict.fromkeys(t for rule in rules.values() for t in rule.severities))
        self.params: dict[str, dict[str, dict[str, Any]]] = {
            rule_id: {target: {name: frozenset(value) if name in SET_PARAMS else value
                               for name, value in params.items()}
                      for target, params in rule.params.items()}
            for rule_id, rule in rules.items()}
        #: Per set parameter, the values every chosen target accepts: the common case's fast path.
        self.common = {(rule_id, name): frozenset.intersection(*(params[name] for params in by_target.values()))
                       for rule_id, by_target in self.params.items() for name in SET_PARAMS
                       if name in next(iter(by_target.values()))}
        self.dispatch = Dispatch.of(rules)
        self.max_stored = max_stored
        self.line = 0
        self.lines_read = 0
        self.objects = 0
        self.compressed = False
        self.format: str | None = None
        self.examples = {fmt: 0 for fmt in FORMATS}
        self.first_line: dict[str, int] = {}
        self.sample_weights = SampleWeights()
        self.counts: Counter[str] = Counter()
        self.stored: dict[str, list[Finding]] = {}
        self.failures: dict[str, Counter[str]] = {target: Counter() for target in self.targets}  # severity -> count
        self.conversions: Counter[tuple[str, str, str]] = Counter()
        self.subjects: dict[str, set[str]] = {}
        self.by_format = {"sft": self.judge_sft, "dpo": self.judge_dpo, "completion": self.judge_completion}

    # ------------------------------------------------------------ findings

    def emit(self, rule_id: str, pointer: str, message: str, targets: list[str] | None = None,
             subject: str = "") -> None:
        self.emit_at(self.line, rule_id, pointer, message, targets, subject)

    def emit_at(self, line: int, rule_id: str, pointer: str, message: str, targets: list[str] | None = None,
                subject: str = "", count: int = 1) -> None:
        rule = self.rules.get(rule_id)
        if rule is None:  # the rule binds none of the chosen targets
            return
        broken = tuple(rule.severities) if targets is None else tuple(t for t in targets if t in rule.severities)
        if not broken:
            return
        severity = "error" if any(rule.severities[t] == "error" for t in broken) else "warning"
        self.counts[rule_id] += count
        seen = self.subjects.setdefault(rule_id, set())
        if subject not in seen and len(seen) >= MAX_SUBJECTS:
            subject = "other"
        seen.add(subject)
        for target in broken:
            self.failures[target][rule.severities[target]] += count
            self.conversions[(target, rule_id, subject)] += count
        kept = self.stored.setdefault(rule_id, [])
        if len(kept) < self.max_stored:
            kept.append(Finding(self.path, line, pointer, rule_id, severity, broken, message))

    def note_sample_weight(self, present: bool) -> None:
        state = self.sample_weights
        if present:
            state.with_weight += 1
            state.first_with = state.first_with or self.line
        else:
            state.without_weight += 1
            state.first_without = state.first_without or self.line

    def valid(self, target: str) -> bool:
        return not self.failures[target]["error"]

    # ------------------------------------------------------------ reading

    def judge_path(self, path: Path) -> None:
        """Judge the whole file; raises reader.UnreadableFile or NotJsonl for usage errors."""
        raw, self.compressed = open_dataset(path)
        max_bytes = next(iter(self.params["line-size"].values()))["max_bytes"]
        with raw:
            for number, data in read_lines(raw, self.compressed, max_bytes):
                self.line = number
                if isinstance(data, bytes):
                    self.lines_read += 1
                    self.judge_line(data)
                elif isinstance(data, Oversize):
                    self.lines_read += 1
                    self.emit("line-size", "", f"the line is {data.size:,} bytes, over the {max_bytes:,}-byte bound; "
                                               f"not judged further")
                elif isinstance(data, EarlyEnd):
                    self.emit("file-complete", "", f"{data.reason}: line {number} and after are lost")
                if not self.objects and self.lines_read >= GIVE_UP_AFTER:
                    raise NotJsonl(f"{str(path)!r} is not JSONL: "
                                   f"none of its first {GIVE_UP_AFTER} lines is a JSON object")
        if not self.objects and self.lines_read > self.counts["line-blank"]:
            raise NotJsonl(f"{str(path)!r} is not JSONL: none of its {self.lines_read} lines is a JSON object")
        self.line = 0
        for function in self.dispatch.file:
            function(self)

    def judge_line(self, data: bytes) -> None:
        if data.startswith(BOM):
            self.emit("line-bom", "", "the line starts with a UTF-8 byte order mark")
            data = data[3:]
        value = self.parse(data)
        if value is UNPARSED:
            return
        if type(value) is not dict:
            self.emit("line-object", "", f"the line holds {describe(value)}, not an object")
            return
        self.objects += 1
        fmt = detect(value)
        if fmt is None:
            self.emit("format-known", "", f"keys {show_keys(value)} match no training format")
            return
        self.examples[fmt] += 1
        if fmt not in self.first_line:
            self.first_line[fmt] = self.line
        if self.format is None:
            self.format = fmt
        elif fmt != self.format:
            self.emit("format-consistent", "", f"a {fmt} example in a file of {self.format} examples "
                                              f"(line {self.first_line[self.format]})", subject=fmt)
        self.by_format[fmt](value)

    def parse(self, data: bytes) -> Any:
        """The line's JSON value, or UNPARSED after emitting why it has none."""
        if not data or data.isspace():  # no stripped copy of every line
            self.emit("line-blank", "", "a blank line")
            return UNPARSED
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as problem:
            self.emit("line-utf8", "", f"invalid UTF-8 at byte {problem.start + 1} of the line")
            return UNPARSED
        try:
            return DECODER.decode(text)
        except json.JSONDecodeError as problem:
            self.emit("line-json", "", f"not JSON: {problem.msg} at character {problem.pos + 1}")
        except (ValueError, RecursionError) as problem:
            self.emit("line-json", "", f"not JSON: {str(problem)[:80] or 'nested too deeply'}")
        return UNPARSED

    # ------------------------------------------------------------ examples

    def judge_sft(self, example: dict) -> None:
        if not messages_nonempty(self, example):
            return
        self.judge_conversation(example["messages"], example.get("tools"), "")
        for function in self.dispatch.example["sft"]:
            function(self, example)

    def judge_dpo(self, example: dict) -> None:
        if dpo_input(self, example):
            self.judge_conversation(example["input"]["messages"], example["input"].get("tools"), "/input")
        for key in ("preferred_output", "non_preferred_output"):
            output = example.get(key)
            if isinstance(output, list):
                for index, message in enumerate(output):
                    self.judge_message(message, f"/{key}/{index}")
        for function in self.dispatch.example["dpo"]:
            function(self, example)

    def judge_completion(self, example: dict) -> None:
        for function in self.dispatch.example["completion"]:
            function(self, example)

    def judge_conversation(self, messages: list, tools: Any, base: str) -> None:
        for position, message in enumerate(messages):
            self.judge_message(message, f"{base}/messages/{position}")
        for function in self.dispatch.conversation:
            function(self, messages, tools, base)

    def judge_message(self, message: Any, pointer: str) -> None:
        role = message_shape(self, message, pointer)
        if role is None:
            return
        for function in self.dispatch.always:
            function(self, message, role, pointer)
        triggered = self.dispatch.triggered
        for key in message:
            functions = triggered.get(key)
            if functions:
                for function in functions:
                    function(self, message, role, pointer)


def describe(value: Any) -> str:
    return {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(type(value), "a number")


def show_keys(value: dict) -> str:
    keys = list(value)[:5]
    return json.dumps(keys, ensure_ascii=True)[:80] if keys else "(none)"
