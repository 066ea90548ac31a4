"""The checks judge real provider bytes correctly. Third-party recordings of OpenAI, Fireworks, Groq
and vLLM (tests/data/real_traffic/, provenance there) are served back through a mock transport to the
very check functions a run uses: their verdicts must match what each provider is known to do."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from conformance.catalog import load_catalog
from conformance.checks import REGISTRY
from conformance.checks.generation import classify_stop
from conformance.client import EndpointClient
from conformance.profiles import Profile
from conformance.runner import execute

DATA = Path(__file__).parent / "data" / "real_traffic"
CATALOG = load_catalog()


def answer(name: str, status: int = 200) -> httpx.Response:
    content_type = "text/event-stream" if name.endswith(".sse") else "application/json"
    return httpx.Response(status, content=(DATA / name).read_bytes(), headers={"content-type": content_type})


def observe(check_id: str, *answers: httpx.Response, context_window: int | None = None):
    """Run one check against a fake endpoint that gives these recorded answers, in order."""
    queue = list(answers)
    client = EndpointClient("http://recorded.invalid/v1", "sk-recorded", 5,
                            transport=httpx.MockTransport(lambda request: queue.pop(0)))
    check = REGISTRY[check_id]
    try:
        result = execute(check, CATALOG[check.entry], Profile("none", ""), client, "recorded-model", context_window)
    finally:
        client.close()
    assert not queue, "the check sent fewer requests than expected"
    return result


@pytest.mark.parametrize(("recording", "behaviour"), [
    ("fireworks-chat-stream-deepseek-r1.sse", "fireworks"),  # usage on the finish chunk, null before
    ("openai-chat-stream-no-stream_options-gpt-4.sse", "openai"),  # no usage without stream_options
    ("vllm-chat-stream-opt-125m.sse", "openai"),
])
def test_stream_usage_default_on_real_streams(recording, behaviour):
    result = observe("stream-usage-default/chat", answer(recording))
    assert result.observed == behaviour, result.reason


def test_include_usage_on_a_real_openai_stream():
    result = observe("stream-options-include-usage/chat", answer("openai-chat-stream-n2-include_usage.sse"))
    assert result.observed == "openai", result.reason


@pytest.mark.parametrize("recording", ["fireworks-chat-stream-deepseek-r1.sse",
                                       "openai-chat-stream-no-stream_options-gpt-4.sse",
                                       "openai-chat-stream-n2-include_usage.sse", "vllm-chat-stream-opt-125m.sse"])
def test_real_streams_keep_every_framing_rule_and_chunk_schema(recording):
    for check_id in ("sse-framing/chat", "chunk-schema/chat"):
        result = observe(check_id, answer(recording))
        assert result.observed == "openai", f"{check_id}: {result.reason}"


@pytest.mark.parametrize(("recording", "behaviour"), [
    ("openai-chat-nonstream-gpt-4o-mini.json", "openai"),
    ("fireworks-chat-nonstream-deepseek-r1.json", "fireworks"),  # no refusal / logprobs keys
    ("openai-chat-nonstream-gpt-3.5-2025.json", "fireworks"),  # system_fingerprint null: compatible-valid only
])
def test_chat_completion_schema_on_real_bodies(recording, behaviour):
    result = observe("chat-completion-schema/chat", answer(recording))
    assert result.observed == behaviour, result.reason


@pytest.mark.parametrize("recording", ["openai-chat-nonstream-gpt-4o-mini.json",
                                       "fireworks-chat-nonstream-deepseek-r1.json"])
def test_usage_on_real_bodies(recording):
    assert observe("usage-in-response/chat", answer(recording)).observed == "openai"


@pytest.mark.parametrize("recording", ["openai-chat-nonstream-o3-mini-stop.json",
                                       "groq-chat-nonstream-llama3-8b-stop.json"])
def test_real_stop_answers_exclude_the_stop_word(recording):
    import json

    choice = json.loads((DATA / recording).read_text())["choices"][0]
    verdict = classify_stop(choice["message"]["content"], choice["finish_reason"], "The capital of France is", "Paris")
    assert verdict.behaviour == "openai", verdict.reason


def test_the_real_openai_context_overflow_is_openai_like():
    result = observe("context-overflow-default/chat", answer("openai-chat-nonstream-gpt-4o-mini.json"),
                     answer("openai-error-400-context_length_exceeded.json", 400), context_window=128_000)
    assert result.observed == "openai" and result.details["code"] == "context_length_exceeded"


@pytest.mark.parametrize(("recording", "status"), [("openai-error-404-model_not_found.json", 404),
                                                   ("groq-error-404-model_not_found.json", 404)])
def test_real_unknown_model_errors(recording, status):
    # then the control: the same request naming a served model, answered
    result = observe("error-envelope/unknown-model", answer(recording, status),
                     answer("openai-chat-nonstream-gpt-4o-mini.json"))
    assert result.observed == "openai", result.reason


def test_a_real_401_is_the_envelope():
    assert observe("error-envelope/bad-key", answer("openai-error-401-invalid_api_key.json", 401)).observed == "openai"
