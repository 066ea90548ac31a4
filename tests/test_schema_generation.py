"""Checks for the generated JSON Schemas in ``schemas/`` (see ``tools/generate_schemas.py``).

Why: the schemas are the suite's yardstick, so they must (1) be exactly what the generator makes
from the pinned OpenAI spec -- no hand edits, no stale output --, (2) be valid draft 2020-12
schemas, and (3) judge real recorded provider bytes the way we claim: real OpenAI bodies pass the
strict set, real Fireworks / Groq / vLLM bodies pass the compatible set, and the strict set keeps
rejecting the documented Fireworks differences (otherwise "compatible" would be relaxing nothing).
"""

from __future__ import annotations

import filecmp
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

REPO_ROOT = Path(__file__).resolve().parent.parent
SCHEMAS = REPO_ROOT / "schemas"
GENERATOR = REPO_ROOT / "tools" / "generate_schemas.py"
TRAFFIC = Path(__file__).resolve().parent / "data" / "real_traffic"

NAMES = (
    "chat_completion",
    "chat_completion_chunk",
    "completion",
    "completion_chunk",
    "error",
    "usage",
    "model_list",
    "response",
    "response_stream_event",
    "anthropic_message",
    "anthropic_message_stream_event",
    "anthropic_error",
    "anthropic_count_tokens",
)


def schema(kind: str, name: str) -> dict[str, Any]:
    """Load a committed generated schema."""
    return json.loads((SCHEMAS / kind / f"{name}.schema.json").read_text(encoding="utf-8"))


def validator(kind: str, name: str) -> Draft202012Validator:
    """Return a 2020-12 validator for a committed schema."""
    return Draft202012Validator(schema(kind, name))


def body(filename: str) -> Any:
    """Load one recorded JSON response body."""
    return json.loads((TRAFFIC / filename).read_text(encoding="utf-8"))


def sse_events(filename: str) -> list[Any]:
    """Parse the JSON ``data:`` events of a recorded SSE body (``[DONE]`` excluded)."""
    events = []
    for line in (TRAFFIC / filename).read_text(encoding="utf-8").splitlines():
        if line.startswith("data:"):
            data = line[len("data:"):].strip()
            if data != "[DONE]":
                events.append(json.loads(data))
    return events


def error_paths(kind: str, name: str, instance: Any) -> list[str]:
    """Return ``"<json path>: <message>"`` for every validation error, sorted for stable output."""
    return sorted(f"{e.json_path}: {e.message}" for e in validator(kind, name).iter_errors(instance))


def relative_files(root: Path) -> set[str]:
    """Return every file under ``root`` as a posix path relative to it."""
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


# --- (1) the committed files are exactly what the generator writes ------------------------------


def test_regenerating_gives_identical_files(tmp_path: Path) -> None:
    subprocess.run([sys.executable, str(GENERATOR), "--out", str(tmp_path)], check=True,
                   capture_output=True)
    generated = relative_files(tmp_path)
    assert generated, "generator wrote nothing"
    committed = {f for f in relative_files(SCHEMAS) if f.startswith(("strict/", "compatible/"))}
    stale = committed - generated
    assert not stale, f"committed schema files the generator no longer makes: {sorted(stale)}"
    missing = sorted(f for f in generated if not (SCHEMAS / f).is_file())
    differing = sorted(
        f for f in generated
        if (SCHEMAS / f).is_file() and not filecmp.cmp(tmp_path / f, SCHEMAS / f, shallow=False)
    )
    assert not missing and not differing, (
        f"run `python tools/generate_schemas.py`; missing: {missing}; differing: {differing}"
    )


def test_check_mode_reports_clean_tree() -> None:
    result = subprocess.run([sys.executable, str(GENERATOR), "--check"], capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_check_mode_flags_a_drifted_file(tmp_path: Path) -> None:
    subprocess.run([sys.executable, str(GENERATOR), "--out", str(tmp_path)], check=True,
                   capture_output=True)
    (tmp_path / "compatible" / "error.schema.json").write_text("{}\n")
    result = subprocess.run([sys.executable, str(GENERATOR), "--check", "--out", str(tmp_path)],
                            capture_output=True, text=True)
    assert result.returncode == 1
    assert "compatible/error.schema.json" in result.stdout


def test_index_lists_every_schema() -> None:
    index = json.loads((SCHEMAS / "index.json").read_text(encoding="utf-8"))
    assert [entry["name"] for entry in index["schemas"]] == list(NAMES)
    assert index["spec"]["commit"] == "f85dbe223d40e1a31cba812ab2d755c7e98a92a3"
    assert index["anthropic_sdk"] == {"package": "anthropic", "version": "2.12.0"}
    assert all(relaxation["why"] for relaxation in index["compatible_relaxations"])


def test_generator_refuses_another_anthropic_sdk(monkeypatch: pytest.MonkeyPatch) -> None:
    """The Anthropic schemas say which SDK release they describe: another one is refused, not
    silently turned into different files."""
    import anthropic

    sys.path.insert(0, str(GENERATOR.parent))
    try:
        import generate_schemas
    finally:
        sys.path.remove(str(GENERATOR.parent))
    monkeypatch.setattr(anthropic, "__version__", "0.0.1")
    with pytest.raises(SystemExit, match="installed anthropic 0.0.1 != pinned 2.12.0"):
        generate_schemas.anthropic_types()


# --- (2) every schema is a valid draft 2020-12 schema --------------------------------------------


@pytest.mark.parametrize("kind", ["strict", "compatible"])
@pytest.mark.parametrize("name", NAMES)
def test_schema_is_valid_2020_12(kind: str, name: str) -> None:
    doc = schema(kind, name)
    assert doc["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(doc)
    assert "nullable" not in json.dumps(doc), "OpenAPI nullable must have been rewritten"


@pytest.mark.parametrize("name", NAMES)
def test_core_never_forbids_extra_properties(name: str) -> None:
    assert '"additionalProperties": false' not in json.dumps(schema("compatible", name))


# --- (3) real recorded traffic --------------------------------------------------------------------


def test_openai_chat_completion_passes_strict() -> None:
    assert error_paths("strict", "chat_completion", body("openai-chat-nonstream-gpt-4o-mini.json")) == []


@pytest.mark.parametrize(
    ("filename", "expected_strict_errors"),
    [
        # OpenAI itself: system_fingerprint null although the spec types it as a string.
        ("openai-chat-nonstream-gpt-3.5-2025.json",
         ["$.system_fingerprint: None is not of type 'string'"]),
        # OpenAI itself (o3-mini): choices[].logprobs omitted although the spec requires it.
        ("openai-chat-nonstream-o3-mini-stop.json",
         ["$.choices[0]: 'logprobs' is a required property"]),
        ("groq-chat-nonstream-llama3-8b-stop.json",
         ["$.choices[0].message: 'refusal' is a required property"]),
    ],
)
def test_other_real_chat_completions_fail_strict_pass_core(
    filename: str, expected_strict_errors: list[str]
) -> None:
    instance = body(filename)
    assert error_paths("strict", "chat_completion", instance) == expected_strict_errors
    assert error_paths("compatible", "chat_completion", instance) == []


def test_fireworks_chat_completion_passes_core_not_strict() -> None:
    instance = body("fireworks-chat-nonstream-deepseek-r1.json")
    assert error_paths("compatible", "chat_completion", instance) == []
    assert error_paths("strict", "chat_completion", instance) == [
        "$.choices[0].message: 'refusal' is a required property",
        "$.choices[0]: 'logprobs' is a required property",
    ]


@pytest.mark.parametrize(
    ("filename", "passes_strict"),
    [
        ("fireworks-chat-stream-deepseek-r1.sse", True),
        ("vllm-chat-stream-opt-125m.sse", True),
        ("openai-chat-stream-n2-include_usage.sse", False),  # system_fingerprint: null
    ],
)
def test_every_stream_chunk_passes_core(filename: str, passes_strict: bool) -> None:
    chunks = sse_events(filename)
    assert chunks
    core_errors = {e for chunk in chunks for e in error_paths("compatible", "chat_completion_chunk", chunk)}
    assert core_errors == set()
    strict_errors = {e for chunk in chunks for e in error_paths("strict", "chat_completion_chunk", chunk)}
    if passes_strict:
        assert strict_errors == set()
    else:
        assert strict_errors == {"$.system_fingerprint: None is not of type 'string'"}


def test_fireworks_stream_carries_usage_on_finish_chunk() -> None:
    chunks = sse_events("fireworks-chat-stream-deepseek-r1.sse")
    with_usage = [chunk for chunk in chunks if chunk.get("usage") is not None]
    assert len(with_usage) == 1 and with_usage[0]["choices"][0]["finish_reason"] == "stop"


@pytest.mark.parametrize("name", ["completion", "completion_chunk"])
def test_openai_legacy_completion_passes_strict(name: str) -> None:
    assert error_paths("strict", name, body("openai-completion-n2-ada.json")) == []


@pytest.mark.parametrize(
    "filename",
    [
        "openai-error-404-model_not_found.json",
        "openai-error-401-invalid_api_key.json",
        "openai-error-400-context_length_exceeded.json",
    ],
)
def test_openai_error_bodies_pass_strict(filename: str) -> None:
    assert error_paths("strict", "error", body(filename)) == []


def test_groq_error_passes_core_not_strict() -> None:
    instance = body("groq-error-404-model_not_found.json")
    assert error_paths("compatible", "error", instance) == []
    assert error_paths("strict", "error", instance) == ["$.error: 'param' is a required property"]


# --- the compatible set still rejects what no OpenAI client could use ----------------------------------


@pytest.mark.parametrize(
    ("name", "mutate"),
    [
        ("chat_completion", lambda d: d.pop("choices")),
        ("chat_completion", lambda d: d.update(object="chat.completion.chunk")),
        ("chat_completion", lambda d: d["choices"][0]["message"].update(content=42)),
        ("chat_completion", lambda d: d["usage"].pop("prompt_tokens")),
        ("chat_completion", lambda d: d["choices"][0].update(logprobs="yes")),
    ],
)
def test_core_is_not_vacuous(name: str, mutate: Any) -> None:
    instance = body("fireworks-chat-nonstream-deepseek-r1.json")
    mutate(instance)
    assert error_paths("compatible", name, instance) != []


def test_core_error_still_needs_message() -> None:
    assert error_paths("compatible", "error", {"error": {"type": "x"}}) != []
    assert error_paths("compatible", "error", {"error": "Model not found"}) != []


def test_core_accepts_documented_fireworks_extensions() -> None:
    instance = body("fireworks-chat-nonstream-deepseek-r1.json")
    instance["perf_metrics"] = {"prompt-tokens": 15}
    choice = instance["choices"][0]
    choice["raw_output"] = {"prompt_token_ids": [1, 2]}
    choice["finish_reason"] = "error"
    choice["logprobs"] = {"tokens": ["a"], "token_logprobs": [-0.1], "top_logprobs": [{"a": -0.1}],
                          "text_offset": [0], "token_ids": [64]}
    del instance["usage"]["completion_tokens"]
    assert error_paths("compatible", "chat_completion", instance) == []
    assert error_paths("strict", "chat_completion", instance) != []


# --- the Anthropic Messages family, on real llama.cpp bytes (PROVENANCE.md) ----------------------


def test_llama_cpp_messages_pass_strict() -> None:
    for filename in ("llama-cpp-messages-nonstream-max_tokens.json", "llama-cpp-messages-tool-use.json"):
        assert error_paths("strict", "anthropic_message", body(filename)) == []
    assert error_paths("strict", "anthropic_count_tokens", body("llama-cpp-messages-count-tokens.json")) == []
    events = sse_events("llama-cpp-messages-stream.sse")
    assert [event["type"] for event in events][:2] == ["message_start", "content_block_start"]
    assert {e for event in events for e in error_paths("strict", "anthropic_message_stream_event", event)} == set()


def test_llama_cpp_messages_error_passes_compatible_not_strict() -> None:
    instance = body("llama-cpp-messages-error-400.json")
    assert error_paths("compatible", "anthropic_error", instance) == []
    assert error_paths("strict", "anthropic_error", instance) == ["$: 'type' is a required property"]


@pytest.mark.parametrize("event", [{"type": "ping"},
                                   {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}])
def test_documented_stream_events_outside_the_sdk_union_pass_strict(event: dict[str, Any]) -> None:
    assert error_paths("strict", "anthropic_message_stream_event", event) == []


def test_usage_left_out_passes_compatible_not_strict() -> None:
    """An older Fireworks page: usage "Not included in the response Message object"."""
    message = body("llama-cpp-messages-nonstream-max_tokens.json")
    del message["usage"]
    assert error_paths("compatible", "anthropic_message", message) == []
    assert error_paths("strict", "anthropic_message", message) == ["$: 'usage' is a required property"]
    delta = {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None}}
    assert error_paths("compatible", "anthropic_message_stream_event", delta) == []
    assert error_paths("strict", "anthropic_message_stream_event", delta) != []


@pytest.mark.parametrize(
    ("name", "instance"),
    [
        ("anthropic_message", {"id": "m", "type": "message", "role": "assistant", "model": "x"}),  # no content
        ("anthropic_message", {"id": "m", "type": "message", "role": "user", "model": "x", "content": []}),
        ("anthropic_message", {"id": "m", "type": "message", "role": "assistant", "model": "x",
                               "content": [{"type": "text"}]}),  # a text block without text
        ("anthropic_message_stream_event", {"type": "pong"}),
        ("anthropic_message_stream_event", {"type": "content_block_delta", "index": 0}),
        ("anthropic_error", {"error": "Model not found"}),
        ("anthropic_error", {"type": "error", "error": {"type": "invalid_request_error"}}),
        ("anthropic_count_tokens", {"tokens": 3}),
    ],
)
def test_anthropic_compatible_is_not_vacuous(name: str, instance: dict[str, Any]) -> None:
    assert error_paths("compatible", name, instance) != []
