"""`conformance audit`'s scanners and mapping rules, on small applications the tests write.

Every rule in `conformance/catalog/audit.toml` has an example here (`RULE_EXAMPLES`), and a test
fails when a rule has none, so a new rule comes with its proof.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from conformance._toml import toml_reader
from conformance.audit.findings import map_uses, read_names
from conformance.audit.javascript_source import scan_javascript
from conformance.audit.python_source import scan_python
from conformance.audit.recordings import scan_cassette, scan_har, scan_jsonl
from conformance.audit.rules import RulesError, load_rules, parse_rules
from conformance.audit.sources import scan_sources
from conformance.catalog import load_catalog

ROOT = Path(__file__).resolve().parent.parent
RULES = load_rules()
READS = read_names(RULES)


def python_uses(source: str):
    uses, errors = scan_python("app.py", source, READS)
    assert errors == []
    return uses


def rule_ids(uses) -> dict[str, list[str]]:
    """Each matched rule with the evidence of its uses."""
    return {finding.rule.id: [use.where for use in finding.uses] for finding in map_uses(uses, RULES)}


HEADER = "from openai import OpenAI\nclient = OpenAI()\n"

#: One application per rule: the Python that makes the rule match, and the line of the use (line 3
#: is the first line after HEADER).
RULE_EXAMPLES: dict[str, tuple[str, int]] = {
    "stop": ('client.chat.completions.create(model=m, messages=ms, stop=["END"])', 3),
    "max-tokens": ("client.completions.create(model=m, prompt=p, max_tokens=limit)", 3),
    "finish-reason-read": ("r = client.chat.completions.create(model=m, messages=ms)\n"
                           "print(r.choices[0].finish_reason)", 4),
    "context-length-exceeded-behavior": (
        'client.chat.completions.create(model=m, messages=ms, '
        'extra_body={"context_length_exceeded_behavior": "error"})', 3),
    "n": ("client.chat.completions.create(model=m, messages=ms, n=3)", 3),
    "penalties": ("client.chat.completions.create(model=m, messages=ms, presence_penalty=0.5)", 3),
    "best-of": ("client.completions.create(model=m, prompt=p, best_of=3)", 3),
    "logit-bias": ('client.chat.completions.create(model=m, messages=ms, logit_bias={"50256": -100})', 3),
    "legacy-functions": ("client.chat.completions.create(model=m, messages=ms, functions=fs)", 3),
    "function-call-read": (("r = client.chat.completions.create(model=m, messages=ms)\n"
                           "call = r.choices[0].message.function_call"), 4),
    "chat-logprobs": ("client.chat.completions.create(model=m, messages=ms, logprobs=True)", 3),
    "chat-logprobs-integer": ("client.chat.completions.create(model=m, messages=ms, logprobs=5)", 3),
    "top-logprobs-range": ("client.chat.completions.create(model=m, messages=ms, logprobs=True, top_logprobs=8)", 3),
    "logprobs-read": ("r = client.chat.completions.create(model=m, messages=ms)\nlp = r.choices[0].logprobs", 4),
    "echo-on-chat": ("client.chat.completions.create(model=m, messages=ms, extra_body={'echo': True})", 3),
    "completion-echo": ("client.completions.create(model=m, prompt=p, echo=True)", 3),
    "raw-output": ("client.chat.completions.create(model=m, messages=ms, extra_body={'raw_output': True})", 3),
    "perf-metrics": ("client.chat.completions.create(model=m, messages=ms, "
                     "extra_body={'perf_metrics_in_response': True})", 3),
    "perf-metrics-read": ("r = client.chat.completions.create(model=m, messages=ms)\nprint(r.perf_metrics)", 4),
    "perf-metrics-headers": (("raw = client.chat.completions.with_raw_response.create(model=m, messages=ms)\n"
                             "tokens = raw.headers.get('Fireworks-Prompt-Tokens')"), 4),
    "sampling-options-header": (("raw = client.chat.completions.with_raw_response.create(model=m, messages=ms)\n"
                                "options = raw.headers['fireworks-sampling-options']"), 4),
    "stream": ("client.chat.completions.create(model=m, messages=ms, stream=True)", 3),
    "stream-options-include-usage": (
        'client.chat.completions.create(model=m, messages=ms, stream=True, stream_options={"include_usage": True})', 3),
    "stream-usage-read": (("for chunk in client.chat.completions.create(model=m, messages=ms, stream=True):\n"
                          "    print(chunk.usage)"), 4),
    "usage-read": ("r = client.completions.create(model=m, prompt=p)\ntotal = r.usage.total_tokens", 4),
    "model-argument": ('client.embeddings.create(model="text-embedding-3-small", input="x")', 3),
    "chat-call": ("client.beta.chat.completions.parse(model=m, messages=ms, response_format=Answer)", 3),
    "completions-call": ("client.completions.create(model=m, prompt=p)", 3),
    "responses-call": ('client.responses.create(model=m, input="hi")', 3),
    "stream-close": (("with client.chat.completions.create(model=m, messages=ms, stream=True) as s:\n"
                     "    for chunk in s:\n        break"), 5),
    "raw-response": ("raw = client.chat.completions.with_raw_response.create(model=m, messages=ms)", 3),
    "tools": ('client.chat.completions.create(model=m, messages=ms, tools=ts, tool_choice="required")', 3),
    "tool-calls-read": ("r = client.chat.completions.create(model=m, messages=ms)\n"
                        "calls = r.choices[0].message.tool_calls", 4),
    "parallel-tool-calls": ("client.chat.completions.create(model=m, messages=ms, tools=ts, parallel_tool_calls=False)",
                            3),
    "response-format": ('client.chat.completions.create(model=m, messages=ms, response_format={"type": "json_object"})',
                        3),
    "max-completion-tokens": ("client.chat.completions.create(model=m, messages=ms, max_completion_tokens=64)", 3),
    "optional-fields": ('client.chat.completions.create(model=m, messages=ms, store=True, user="u1")', 3),
    "sampling-extensions": ("client.chat.completions.create(model=m, messages=ms, extra_body={'top_k': 40})", 3),
    "reasoning-effort": ('client.chat.completions.create(model=m, messages=ms, reasoning_effort="low")', 3),
    "reasoning-read": ("r = client.chat.completions.create(model=m, messages=ms)\n"
                       "thought = r.choices[0].message.reasoning_content", 4),
    "usage-details-read": ("r = client.chat.completions.create(model=m, messages=ms)\n"
                           "cached = r.usage.prompt_tokens_details.cached_tokens", 4),
    "embeddings-call": ('client.embeddings.create(model="e", input="x")', 3),
}


def test_every_rule_has_an_example():
    assert sorted(RULE_EXAMPLES) == sorted(rule.id for rule in RULES)


@pytest.mark.parametrize("rule_id", sorted(RULE_EXAMPLES))
def test_rule_matches_its_example_with_file_and_line(rule_id):
    source, line = RULE_EXAMPLES[rule_id]
    found = rule_ids(python_uses(HEADER + source))
    assert rule_id in found, found
    assert f"app.py:{line}" in found[rule_id]


@pytest.mark.parametrize(("source", "rule_id"), [
    ("client.chat.completions.create(model=m, messages=ms, n=1)", "n"),
    ("client.chat.completions.create(model=m, messages=ms, stop=None)", "stop"),
    ("client.chat.completions.create(model=m, messages=ms, logprobs=False)", "chat-logprobs"),
    ("client.chat.completions.create(model=m, messages=ms, logprobs=True, top_logprobs=5)", "top-logprobs-range"),
    ("client.completions.create(model=m, prompt=p, logprobs=5)", "chat-logprobs-integer"),
    ("client.chat.completions.create(model=m, messages=ms, best_of=2)", "best-of"),
    ("client.completions.create(model=m, prompt=p, echo=True)", "echo-on-chat"),
    ("r = client.chat.completions.create(model=m, messages=ms)\nprint(r.usage)", "stream-usage-read"),
    ("for c in client.chat.completions.create(model=m, messages=ms, stream=True):\n    print(c.usage)", "usage-read"),
    # With stream_options the app asked for usage: the stream-options rule speaks for it, not the default one.
    (("for c in client.chat.completions.create(model=m, messages=ms, stream=True, stream_options=o):\n"
     "    print(c.usage)"), "stream-usage-read"),
    ("for c in client.chat.completions.create(model=m, messages=ms, stream=True):\n    print(c)", "stream-close"),
])
def test_rule_conditions_leave_out_uses_that_do_not_rely_on_the_entry(source, rule_id):
    assert rule_id not in rule_ids(python_uses(HEADER + source))


def test_a_value_that_is_not_literal_still_matches_and_says_so():
    uses = python_uses(HEADER + "client.chat.completions.create(model=m, messages=ms, n=count)")
    [finding] = [f for f in map_uses(uses, RULES) if f.rule.id == "n"]
    assert finding.uses[0].literal is False


# ---------------------------------------------------------------- the rules file

def shipped_data() -> dict:
    return toml_reader.loads((ROOT / "conformance" / "catalog" / "audit.toml").read_text(encoding="utf-8"))


@pytest.mark.parametrize(("change", "message"), [
    (lambda data: data["rule"][0].update(entrys=["x"]), "entrys"),
    (lambda data: data.update(rules=[]), "rules"),
    (lambda data: data["rule"][0].update(entries=["tool-calls-not-in-catalog"]), "tool-calls-not-in-catalog"),
    (lambda data: data["rule"][0].update(assumes=["truncates"]), "truncates"),
    (lambda data: data["rule"][0].update(value={"type": "integr"}), "invalid value schema"),
    (lambda data: data["rule"][0].update(use="attribute"), "attribute"),
    (lambda data: data["rule"].append(dict(data["rule"][0])), "defined twice"),
])
def test_the_rules_file_is_validated_strictly(change, message):
    data = shipped_data()
    change(data)
    with pytest.raises(RulesError, match=message):
        parse_rules(data, load_catalog())


def test_a_new_entry_is_one_line_of_data():
    data = shipped_data()
    data["rule"][0]["entries"].append("usage-in-response")
    [stop] = [rule for rule in parse_rules(data, load_catalog()) if rule.id == "stop"]
    assert stop.entries == ("stop-sequence-in-output", "usage-in-response")


# ---------------------------------------------------------------- the Python scan

def test_reads_are_traced_through_names_loops_and_with():
    uses = python_uses(HEADER + textwrap.dedent("""
    async def main():
        async with client.chat.completions.create(model=m, messages=ms, stream=True) as stream:
            async for chunk in stream:
                delta = chunk.choices[0]
                print(delta.finish_reason)
        response = await client.completions.create(model=m, prompt=p)
        for i, choice in enumerate(response.choices):
            print(choice.finish_reason)
        data = response.model_dump()
        print(data["usage"], data.get("usage"))
    """))
    reads = [(use.name, use.api, use.stream, use.traced) for use in uses if use.kind == "read"]
    assert reads == [("finish_reason", "chat", True, True), ("finish_reason", "completions", False, True),
                     ("usage", "completions", False, True), ("usage", "completions", False, True)]


def test_an_untraced_read_counts_only_in_a_file_that_uses_the_sdk():
    untraced = "def show(response):\n    return response.usage\n"
    assert python_uses(untraced) == []
    [use] = python_uses("import openai\n" + untraced)
    assert (use.name, use.traced, use.where) == ("usage", False, "app.py:3")


def test_arguments_keep_literal_values_and_read_extra_body_and_double_star():
    uses = python_uses(HEADER + 'client.chat.completions.create(model=m, messages=ms, stop=["a", "b"], '
                                '**{"top_logprobs": 3}, extra_body={"raw_output": True}, temperature=t)')
    arguments = {use.name: (use.literal, use.value) for use in uses if use.kind == "argument"}
    assert arguments == {"model": (False, None), "messages": (False, None), "stop": (True, ["a", "b"]),
                         "top_logprobs": (True, 3), "raw_output": (True, True), "temperature": (False, None)}


def test_the_code_is_never_run(tmp_path):
    marker = tmp_path / "ran"
    (tmp_path / "evil.py").write_text(f"import openai\nopen({str(marker)!r}, 'w').write('x')\nraise SystemExit(3)\n"
                                      "openai.chat.completions.create(model='m', stop=['x'])\n")
    scan = scan_sources([tmp_path], READS)
    assert not marker.exists()
    assert [use.name for use in scan.uses if use.kind == "argument"] == ["model", "stop"]


def test_syntax_errors_are_findings_and_the_rest_of_the_file_is_audited(tmp_path):
    (tmp_path / "app.py").write_text(HEADER + "def broken(:\n    pass\n"
                                     "client.chat.completions.create(model=m, messages=ms, stop=['x'])\n"
                                     "class Also(broken:\n    x = 1\n"
                                     "client.completions.create(model=m, prompt=p, best_of=2)\n")
    (tmp_path / "nul.py").write_bytes(b"import openai\x00\n")
    (tmp_path / "latin.py").write_bytes(b"# caf\xe9 openai\n")
    scan = scan_sources([tmp_path], READS)
    problems = {(p["where"], p["message"].split(";")[0]) for p in scan.problems}
    assert (f"{tmp_path / 'app.py'}:3", "syntax error: invalid syntax") in problems
    assert (f"{tmp_path / 'app.py'}:6", "syntax error: invalid syntax") in problems
    assert any(where == str(tmp_path / "latin.py") and "not UTF-8" in message for where, message in problems)
    assert any(where.startswith(str(tmp_path / "nul.py")) for where, _ in problems)
    assert {"stop", "best-of"} <= set(rule_ids(scan.uses))


def test_vendored_and_hidden_directories_are_not_walked(tmp_path):
    for directory in ("node_modules/openai", ".venv/lib", "site-packages/openai"):
        (tmp_path / directory).mkdir(parents=True)
        (tmp_path / directory / "client.py").write_text(HEADER + "client.chat.completions.create(stop=['x'])\n")
    assert scan_sources([tmp_path], READS).uses == []


# ---------------------------------------------------------------- the JavaScript/TypeScript scan

TYPESCRIPT = """\
import OpenAI from "openai";
const client = new OpenAI();
const note = "openai.chat.completions.create({ stop: 1 })"; /* { unbalanced in a comment */
export async function run(messages: Message[], rest: object) {
  const stream = await client.chat.completions.create({
    model: 'gpt-4o-mini',   // a comment with a brace }
    messages,
    stop: ["}", '\\n'],
    max_tokens: limits.max,
    ...rest,
    ["computed"]: 1,
    "top_logprobs": 7, logprobs: true,
    stream: true,
    stream_options: { include_usage: true },
  });
  for await (const chunk of stream) { total += chunk.usage?.total_tokens ?? 0; }
  return client.responses.create(params);
}
export const prompted = (response: Response) => response.headers.get("Fireworks-Prompt-Tokens");
"""


def test_typescript_request_literals_are_read_by_key_with_literal_values():
    uses = scan_javascript("app.ts", TYPESCRIPT, READS)
    calls = [(use.name, use.where, use.stream) for use in uses if use.kind == "call"]
    assert calls == [("chat.completions.create", "app.ts:5", True), ("responses.create", "app.ts:17", False)]
    arguments = {use.name: (use.where, use.literal, use.value) for use in uses if use.kind == "argument"}
    assert arguments == {
        "model": ("app.ts:6", True, "gpt-4o-mini"), "messages": ("app.ts:7", False, None),
        "stop": ("app.ts:8", True, ["}", "\n"]), "max_tokens": ("app.ts:9", False, None),
        "top_logprobs": ("app.ts:12", True, 7), "logprobs": ("app.ts:12", True, True),
        "stream": ("app.ts:13", True, True), "stream_options": ("app.ts:14", True, {"include_usage": True})}
    found = rule_ids(uses)
    assert {"stop", "max-tokens", "top-logprobs-range", "stream-options-include-usage", "responses-call"} <= set(found)
    assert [(use.name, use.where) for use in uses if use.kind == "read"] == [
        ("usage", "app.ts:16"), ("total_tokens", "app.ts:16")]
    assert [(use.name, use.where) for use in uses if use.kind == "header"] == [("fireworks-prompt-tokens", "app.ts:19")]
    assert "perf-metrics-headers" in found


def test_an_unterminated_object_ends_at_the_end_of_the_file():
    uses = scan_javascript("x.js", 'openai.completions.create({ best_of: 2, prompt: "unterminated', READS)
    assert [(use.name, use.value) for use in uses if use.kind == "argument"] == [("best_of", 2), ("prompt", None)]


# ---------------------------------------------------------------- recordings

def test_the_projects_own_cassettes_are_audited_with_request_numbers():
    directory = ROOT / "cassettes" / "reference-openai"
    scan = scan_sources([directory], READS)
    assert scan.problems == []
    found = rule_ids(scan.uses)
    assert found["best-of"] == [f"{directory / 'best-of__completions.yaml'}#1"]
    assert f"{directory / 'stop-sequence-in-output__chat.yaml'}#1" in found["stop"]
    assert {"stream-options-include-usage", "chat-logprobs-integer", "legacy-functions", "raw-output",
            "context-length-exceeded-behavior", "responses-call"} <= set(found)


def test_a_cassette_file_alone_reads_every_interaction():
    path = ROOT / "cassettes" / "reference-openai" / "n-choices__chat.yaml"
    uses = scan_cassette(str(path), path.read_text(encoding="utf-8"))
    assert {(use.name, use.value) for use in uses if use.kind == "argument" and use.name == "n"} == {("n", 2)}


def test_har_files_give_the_entry_number():
    har = {"log": {"entries": [
        {"request": {"method": "GET", "url": "https://api.openai.com/v1/models"}},
        {"request": {"method": "POST", "url": "https://api.openai.com/v1/chat/completions",
                     "postData": {"mimeType": "application/json",
                                  "text": json.dumps({"model": "gpt-4o", "messages": [], "stop": ["x"], "n": 2})}}},
    ]}}
    found = rule_ids(scan_har("app.har", json.dumps(har)))
    assert found["stop"] == ["app.har#2"] and found["n"] == ["app.har#2"]


def test_jsonl_batch_files_and_plain_body_logs_give_the_line():
    batch = "\n".join([
        json.dumps({"custom_id": "a", "method": "POST", "url": "/v1/chat/completions",
                    "body": {"model": "gpt-4o-mini", "messages": [], "logit_bias": {"1": 5}}}),
        "",
        "not json",
        json.dumps({"model": "gpt-3.5-turbo-instruct", "prompt": "x", "best_of": 3, "echo": True}),
    ])
    found = rule_ids(scan_jsonl("batch.jsonl", batch))
    assert found["logit-bias"] == ["batch.jsonl:1"]
    assert found["best-of"] == ["batch.jsonl:4"] and found["completion-echo"] == ["batch.jsonl:4"]


def test_a_broken_recording_is_a_problem_not_a_crash(tmp_path):
    (tmp_path / "broken.har").write_text("{not json")
    (tmp_path / "broken.yaml").write_text("interactions: [unclosed\n")
    scan = scan_sources([tmp_path], READS)
    assert sorted(Path(p["where"]).name for p in scan.problems) == ["broken.har", "broken.yaml"]


def test_long_literal_values_are_cut_in_the_report():
    [use] = [u for u in python_uses(HEADER + f"client.completions.create(model=m, prompt={'x' * 5000!r})")
             if u.name == "prompt"]
    shown = use.to_dict()["value"]
    assert use.value == "x" * 5000 and shown.endswith("... (cut)") and len(shown) < 300
    assert next(u for u in python_uses(HEADER + "client.completions.create(model=m, prompt=b'bytes')")
            if u.name == "prompt").to_dict()["value"] == "b'bytes'"


def test_the_audit_schemas_are_valid_and_shipped_in_the_wheel():
    from jsonschema import Draft202012Validator

    pyproject = toml_reader.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    shipped = pyproject["tool"]["hatch"]["build"]["targets"]["wheel"]["force-include"]
    for name in ("audit-rules.schema.json", "audit-report.schema.json"):
        Draft202012Validator.check_schema(json.loads((ROOT / "schemas" / name).read_text(encoding="utf-8")))
        assert shipped[f"schemas/{name}"] == f"conformance/schemas/{name}"


def test_the_pre_1_0_sdks_are_recognised():
    python = python_uses("import openai\nr = openai.ChatCompletion.create(model='gpt-4', messages=ms, stop=['x'])\n"
                         "e = await openai.Completion.acreate(engine='davinci', prompt=p, best_of=2)\n"
                         "print(r.choices[0].finish_reason)\n")
    assert {"stop", "best-of", "finish-reason-read", "chat-call", "completions-call"} <= set(rule_ids(python))
    [read] = [use for use in python if use.kind == "read"]
    assert (read.api, read.traced) == ("chat", True)
    javascript = scan_javascript("v3.js", "const r = await openai.createChatCompletion({ model: 'gpt-4', n: 2 });",
                                 READS)
    assert [(use.kind, use.name, use.api) for use in javascript] == [
        ("call", "chat.completions.create", "chat"), ("argument", "model", "chat"), ("argument", "n", "chat")]


def test_a_request_built_as_a_dict_in_the_same_scope_is_read():
    uses = python_uses(HEADER + "def ask():\n"
                                "    params = {'model': 'gpt-4o', 'stop': ['x']}\n"
                                "    options = dict(n=2, stream=True)\n"
                                "    for chunk in client.chat.completions.create(**params, **options, messages=ms):\n"
                                "        print(chunk.usage)\n")
    arguments = {use.name: (use.where, use.value) for use in uses if use.kind == "argument"}
    assert arguments == {"model": ("app.py:4", "gpt-4o"), "stop": ("app.py:4", ["x"]), "n": ("app.py:5", 2),
                         "stream": ("app.py:5", True), "messages": ("app.py:6", None)}
    assert {"stop", "n", "stream", "stream-usage-read"} <= set(rule_ids(uses))
