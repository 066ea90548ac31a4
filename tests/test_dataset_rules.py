"""Every dataset rule: a violating line is found at its line number and JSON pointer, for the
targets whose documents it breaks, and valid files yield no finding at all."""

from __future__ import annotations

import gzip
import json
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from conformance.datasets.catalog import for_targets, load_rules
from conformance.datasets.judge import FileJudge

PNG = ("data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAA"
       "AElFTkSuQmCC")
SFT = {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Capital of France?"},
                    {"role": "assistant", "content": "Paris.", "weight": 1}]}
DPO = {"input": {"messages": [{"role": "user", "content": "Hi?"}]},
       "preferred_output": [{"role": "assistant", "content": "Hello!"}],
       "non_preferred_output": [{"role": "assistant", "content": "Go away."}]}
COMPLETION = {"prompt": "2+2=", "completion": " 4"}
BASES = {"sft": SFT, "dpo": DPO, "completion": COMPLETION}
BAD_LINE = 3  # every case puts its violation here, among 12 valid lines of the base format


def chat(*messages: dict, **top: Any) -> dict:
    return {"messages": list(messages), **top}


USER = {"role": "user", "content": "Weather in Boston?"}
CALL = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Boston\"}"}}
CALLING = {"role": "assistant", "content": None, "tool_calls": [CALL]}
ANSWER = {"role": "tool", "tool_call_id": "call_1", "content": "12 C"}
REPLY = {"role": "assistant", "content": "It is 12 C."}
TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}


def with_call(**changes: Any) -> dict:
    return chat(USER, {**CALLING, "tool_calls": [{**CALL, **changes}]}, ANSWER, REPLY, tools=[TOOL])


def image(url: str) -> dict:
    return chat({"role": "user", "content": [{"type": "text", "text": "What is it?"},
                                             {"type": "image_url", "image_url": {"url": url}}]}, REPLY)


# (rule, base format, the bad line (bytes, or an object), pointer, targets it breaks)
CASES: list[tuple[str, str, Any, str, tuple[str, ...]]] = [
    ("line-utf8", "sft", b'{"messages": "\xff"}', "", ("openai", "fireworks")),
    ("line-bom", "sft", b"\xef\xbb\xbf" + json.dumps(SFT).encode(), "", ("openai", "fireworks")),
    ("line-json", "sft", b'{"messages": [', "", ("openai", "fireworks")),
    ("line-json", "sft", b'{"weight": NaN, "messages": []}', "", ("openai", "fireworks")),
    ("line-object", "sft", b"[1, 2]", "", ("openai", "fireworks")),
    ("line-blank", "sft", b"   ", "", ("openai", "fireworks")),
    ("format-known", "sft", {"text": "hello"}, "", ("openai", "fireworks")),
    ("format-consistent", "sft", COMPLETION, "", ("openai", "fireworks")),
    ("messages-nonempty", "sft", {"messages": []}, "/messages", ("openai", "fireworks")),
    ("messages-nonempty", "sft", {"messages": "hi"}, "/messages", ("openai", "fireworks")),
    ("assistant-present", "sft", chat(USER), "/messages", ("openai", "fireworks")),
    ("assistant-last", "sft", chat(USER, REPLY, USER), "/messages/2", ("openai", "fireworks")),
    ("system-first", "sft", chat(USER, {"role": "system", "content": "x"}, REPLY), "/messages/1/role", ("fireworks",)),
    ("weight-all-zero", "sft", chat(USER, {**REPLY, "weight": 0}), "/messages", ("openai", "fireworks")),
    ("reasoning-content-partial", "sft", chat(USER, {**REPLY, "reasoning_content": "think"}, USER, REPLY),
     "/messages/3", ("fireworks",)),
    ("sample-weight", "sft", chat(USER, REPLY, weight=0.5), "/weight", ("openai",)),
    ("sample-weight-consistent", "sft", chat(USER, REPLY, weight=2), "/weight", ("fireworks",)),
    ("tools-shape", "sft", chat(USER, REPLY, tools=[{"type": "retrieval"}]), "/tools/0", ("openai", "fireworks")),
    ("tools-shape", "sft", chat(USER, REPLY, tools=[{"type": "function", "function": {"name": "f", "parameters": []}}]),
     "/tools/0/function/parameters", ("openai", "fireworks")),
    ("tool-name-pattern", "sft", chat(USER, REPLY, tools=[{"type": "function", "function": {"name": "get weather"}}]),
     "/tools/0/function/name", ("openai", "fireworks")),
    ("tool-name-pattern", "sft", with_call(function={"name": "x" * 65, "arguments": "{}"}),
     "/messages/1/tool_calls/0/function/name", ("openai", "fireworks")),
    ("tool-call-shape", "sft", with_call(id=""), "/messages/1/tool_calls/0/id", ("openai", "fireworks")),
    ("tool-call-shape", "sft", with_call(type="code"), "/messages/1/tool_calls/0/type", ("openai", "fireworks")),
    ("tool-call-shape", "sft", with_call(function={"name": "get_weather", "arguments": {"city": "Boston"}}),
     "/messages/1/tool_calls/0/function/arguments", ("openai", "fireworks")),
    ("tool-call-arguments", "sft", with_call(function={"name": "get_weather", "arguments": "[1]"}),
     "/messages/1/tool_calls/0/function/arguments", ("openai", "fireworks")),
    ("tool-call-arguments", "sft", with_call(function={"name": "get_weather", "arguments": "{city"}),
     "/messages/1/tool_calls/0/function/arguments", ("openai", "fireworks")),
    ("tool-call-answered", "sft", chat(USER, CALLING, {**ANSWER, "tool_call_id": "call_9"}, REPLY),
     "/messages/2/tool_call_id", ("openai", "fireworks")),
    ("tool-call-answered", "sft", chat(USER, {"role": "tool", "content": "12 C"}, REPLY), "/messages/1",
     ("openai", "fireworks")),
    ("message-shape", "sft", chat("hello", REPLY), "/messages/0", ("openai", "fireworks")),
    ("message-shape", "sft", chat({"role": 1, "content": "x"}, REPLY), "/messages/0/role", ("openai", "fireworks")),
    ("message-role", "sft", chat({"role": "developer", "content": "Be brief."}, USER, REPLY), "/messages/0/role",
     ("fireworks",)),
    ("message-role", "sft", chat({"role": "robot", "content": "beep"}, REPLY), "/messages/0/role",
     ("openai", "fireworks")),
    ("message-content", "sft", chat({"role": "user"}, REPLY), "/messages/0", ("openai", "fireworks")),
    ("message-content", "sft", chat({"role": "user", "content": []}, REPLY), "/messages/0/content",
     ("openai", "fireworks")),
    ("message-content", "sft", chat(USER, {"role": "assistant", "content": None}), "/messages/1/content",
     ("openai", "fireworks")),
    ("content-part-type", "sft", chat(USER, {"role": "assistant", "content": [{"type": "image_url"}]}),
     "/messages/1/content/0/type", ("openai", "fireworks")),
    ("content-part-type", "sft", chat({"role": "user", "content": [{"type": "text", "text": 5}]}, REPLY),
     "/messages/0/content/0", ("openai", "fireworks")),
    ("image-url", "sft", image("https://example.com/cat.png"), "/messages/0/content/1/image_url/url", ("fireworks",)),
    ("image-url", "sft", image("data:image/gif;base64,R0lGODlhAQABAAAAACw="), "/messages/0/content/1/image_url/url",
     ("fireworks",)),
    ("image-url", "sft", image("data:image/png;base64,not*base64"), "/messages/0/content/1/image_url/url",
     ("fireworks",)),
    ("image-url", "sft", image("ftp://example.com/cat.png"), "/messages/0/content/1/image_url/url",
     ("openai", "fireworks")),
    ("image-url", "sft", image("data:text/plain;base64,aGk="), "/messages/0/content/1/image_url/url",
     ("openai", "fireworks")),
    ("weight-role", "sft", chat({**USER, "weight": 1}, REPLY), "/messages/0/weight", ("openai", "fireworks")),
    ("weight-value", "sft", chat(USER, {**REPLY, "weight": 0.5}), "/messages/1/weight", ("openai", "fireworks")),
    ("weight-value", "sft", chat(USER, {**REPLY, "weight": True}), "/messages/1/weight", ("openai", "fireworks")),
    ("weight-value", "sft", chat(USER, {**REPLY, "weight": "1"}), "/messages/1/weight", ("openai", "fireworks")),
    ("message-unknown-key", "sft", chat(USER, {**REPLY, "reasoning_content": "think"}),
     "/messages/1/reasoning_content", ("openai",)),
    ("message-unknown-key", "sft", chat(USER, {**REPLY, "a/b~c": 1}), "/messages/1/a~1b~0c", ("openai", "fireworks")),
    ("reasoning-content-role", "sft", chat({**USER, "reasoning_content": "hmm"}, REPLY),
     "/messages/0/reasoning_content", ("fireworks",)),
    ("reasoning-content-role", "sft", chat(USER, {**REPLY, "reasoning_content": ["a"]}),
     "/messages/1/reasoning_content", ("fireworks",)),
    ("dpo-input", "dpo", {**DPO, "input": {"messages": []}}, "/input/messages", ("openai", "fireworks")),
    ("dpo-outputs", "dpo", {**DPO, "preferred_output": [USER]}, "/preferred_output/0", ("openai", "fireworks")),
    ("dpo-outputs", "dpo", {**DPO, "non_preferred_output": []}, "/non_preferred_output", ("openai", "fireworks")),
    ("dpo-outputs-identical", "dpo", {**DPO, "non_preferred_output": DPO["preferred_output"]},
     "/non_preferred_output", ("openai", "fireworks")),
    ("completion-fields", "completion", {"prompt": 1, "completion": " 4"}, "/prompt", ("openai", "fireworks")),
]

FILE_CASES = {"line-size", "file-complete", "format-documented", "example-count"}


def write(path: Path, lines: list[bytes]) -> Path:
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    return path


def encode(line: Any) -> bytes:
    return line if isinstance(line, bytes) else json.dumps(line).encode()


def judge(path: Path, profile: tuple[str, ...] = ("openai", "fireworks")) -> FileJudge:
    file_judge = FileJudge(str(path), for_targets(load_rules(), profile))
    file_judge.judge_path(path)
    return file_judge


def findings(file_judge: FileJudge) -> list[tuple[str, int, str, tuple[str, ...]]]:
    return sorted((f.rule, f.line, f.pointer, f.targets) for kept in file_judge.stored.values() for f in kept)


def base_file(tmp_path: Path, fmt: str, bad: Any = None, count: int = 12) -> Path:
    lines = [encode(BASES[fmt])] * count
    if bad is not None:
        lines[BAD_LINE - 1] = encode(bad)
    return write(tmp_path / "train.jsonl", lines)


def test_every_rule_has_a_violating_case():
    covered = {case[0] for case in CASES} | FILE_CASES
    assert covered == set(load_rules())


@pytest.mark.parametrize("rule_id, fmt, bad, pointer, targets", CASES,
                         ids=[f"{case[0]}-{n}" for n, case in enumerate(CASES)])
def test_violation_found_at_its_line_and_pointer(tmp_path, rule_id, fmt, bad, pointer, targets):
    found = findings(judge(base_file(tmp_path, fmt, bad)))
    assert (rule_id, BAD_LINE, pointer, targets) in found, found
    others = [f for f in found if f[1] != BAD_LINE and f[0] not in ("example-count", "format-documented")]
    assert others == [], others


@pytest.mark.parametrize("rule_id, fmt, bad, pointer, targets", CASES,
                         ids=[f"{case[0]}-{n}" for n, case in enumerate(CASES)])
def test_violation_only_reported_for_the_chosen_target(tmp_path, rule_id, fmt, bad, pointer, targets):
    for target in ("openai", "fireworks"):
        found = judge(base_file(tmp_path, fmt, bad), (target,))
        hit = any(f.rule == rule_id and f.line == BAD_LINE and f.pointer == pointer for f in found.stored.get(rule_id,
                                                                                                              []))
        assert hit == (target in targets)


@pytest.mark.parametrize("fmt, profile", [("sft", ("openai", "fireworks")), ("dpo", ("openai", "fireworks")),
                                          ("completion", ("openai",))])
def test_valid_files_yield_no_finding(tmp_path, fmt, profile):
    file_judge = judge(base_file(tmp_path, fmt), profile)
    assert findings(file_judge) == []
    assert all(file_judge.valid(target) for target in profile)


def test_a_valid_tool_calling_vision_file_yields_no_finding(tmp_path):
    lines = [encode(chat(USER, CALLING, ANSWER, REPLY, tools=[TOOL])), encode(image(PNG))] * 6
    assert findings(judge(write(tmp_path / "train.jsonl", lines))) == []


def test_fireworks_extensions_are_valid_for_fireworks_only(tmp_path):
    example = chat({"role": "system", "content": "x"}, USER, {**REPLY, "reasoning_content": "think", "weight": 1},
                   weight=0.25)
    path = write(tmp_path / "train.jsonl", [encode(example)] * 12)
    assert findings(judge(path, ("fireworks",))) == []
    assert {rule for rule, *_ in findings(judge(path, ("openai",)))} == {"message-unknown-key", "sample-weight"}


def test_a_per_sample_weight_must_be_a_number_on_fireworks(tmp_path):
    found = findings(judge(base_file(tmp_path, "sft", chat(USER, REPLY, weight=True)), ("fireworks",)))
    assert ("sample-weight", BAD_LINE, "/weight", ("fireworks",)) in found


@pytest.mark.parametrize("present_first", [True, False])
def test_sample_weight_on_some_examples_is_found_at_the_first_line_that_breaks_the_pattern(tmp_path, present_first):
    weighted, plain = encode({**SFT, "weight": 1.0}), encode(SFT)
    lines = [weighted if present_first else plain] * 12
    lines[BAD_LINE - 1] = plain if present_first else weighted
    found = findings(judge(write(tmp_path / "train.jsonl", lines), ("fireworks",)))
    assert found == [("sample-weight-consistent", BAD_LINE, "" if present_first else "/weight", ("fireworks",))]


@pytest.mark.parametrize("count, broken", [(2, ("openai", "fireworks")), (5, ("openai",)), (10, ())])
def test_example_count(tmp_path, count, broken):
    found = findings(judge(base_file(tmp_path, "sft", count=count)))
    assert found == sorted(("example-count", 0, "", (target,)) for target in broken)


def test_a_format_fireworks_does_not_document_is_found_at_its_first_example(tmp_path):
    found = findings(judge(base_file(tmp_path, "completion")))
    assert found == [("format-documented", 1, "", ("fireworks",))]


def test_a_gzip_that_ends_early_is_a_finding_at_the_line_where_it_ends(tmp_path):
    body = b"".join(encode(SFT) + b"\n" for _ in range(2000))
    packed = gzip.compress(body)
    path = tmp_path / "train.jsonl.gz"
    path.write_bytes(packed[: len(packed) // 2])
    file_judge = judge(path)
    (early,) = file_judge.stored["file-complete"]
    assert early.line == file_judge.lines_read + 1 and 0 < file_judge.lines_read < 2000
    assert file_judge.compressed and file_judge.examples["sft"] == file_judge.lines_read


def test_a_complete_gzip_is_judged_like_the_plain_file(tmp_path):
    path = tmp_path / "train.jsonl.gz"
    path.write_bytes(gzip.compress(b"".join(encode(SFT) + b"\n" for _ in range(12))))
    file_judge = judge(path)
    assert findings(file_judge) == [] and file_judge.examples["sft"] == 12


def test_a_100_mb_line_is_a_finding_and_the_rest_is_still_judged(tmp_path):
    path = tmp_path / "train.jsonl"
    with open(path, "wb") as stream:
        stream.write(encode(SFT) + b"\n")
        stream.write(b'{"messages": [{"role": "user", "content": "' + b"a" * (100 << 20) + b'"}]}\n')
        for _ in range(11):
            stream.write(encode({**SFT, "messages": [USER]}) + b"\n")
    tracemalloc.start()
    try:
        file_judge = judge(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 48 << 20  # the 32 MiB bound plus a chunk, never the 100 MB line
    (oversize,) = file_judge.stored["line-size"]
    assert oversize.line == 2 and "104,857,6" in oversize.message
    assert [f.line for f in file_judge.stored["assistant-present"]] == list(range(3, 14))


def test_stored_findings_are_capped_per_rule_but_all_are_counted(tmp_path):
    lines = [encode(chat(USER, {**REPLY, "weight": 2}))] * 250
    file_judge = judge(write(tmp_path / "train.jsonl", lines))
    assert file_judge.counts["weight-value"] == 250 and len(file_judge.stored["weight-value"]) == 100
    assert file_judge.failures["openai"]["error"] == 250


def test_a_function_message_may_have_null_content(tmp_path):
    example = chat(USER, {"role": "function", "name": "get_weather", "content": None}, REPLY)
    assert findings(judge(write(tmp_path / "train.jsonl", [encode(example)] * 12), ("openai",))) == []
