"""Real traffic from a real server nobody here wrote: the whole suite recorded against llama.cpp
(`nox -s live_llama_cpp`; llama-server 0.5.0-dev, commit 0c1e57098, serving Gemma 3 270M Q4_K_M on
CPU with a 2048-token window). Replayed offline with sockets blocked; a change that flips any
verdict on this real traffic fails here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conformance.cli import main

ROOT = Path(__file__).resolve().parent.parent
CASSETTES = ROOT / "cassettes" / "llama-cpp"
#: What llama.cpp showed, check by check (see the README's "Measured on real servers").
VERDICTS = {
    "chat-completion-schema/chat": "fireworks",
    "completion-schema/completions": "openai",
    "usage-in-response/chat": "openai",
    "usage-in-response/completions": "openai",
    "n-choices/chat": "usage-one-choice",  # usage counts one of the n choices
    "n-choices/completions": "usage-one-choice",
    "multi-turn-history/chat": "openai",
    "model-identifiers/models": "openai",
    "stream-usage-default/chat": "openai",
    "stream-usage-default/completions": "fireworks",
    "stream-options-include-usage/chat": "openai",
    "stream-options-include-usage/completions": "fireworks",
    "stream-abort/chat": "openai",
    "stop-sequence-in-output/chat": "openai",
    "stop-sequence-in-output/chat-stream": "openai",
    "stop-sequence-in-output/completions": "openai",
    "stop-sequence-in-output/completions-stream": "openai",
    "context-overflow-default/chat": "fireworks",
    "context-overflow-default/completions": "fireworks",
    "context-length-exceeded-behavior-param/chat": "other",
    "penalty-parameters/presence_penalty": "openai",
    "penalty-parameters/frequency_penalty": "openai",
    "best-of/completions": "openai",
    "logit-bias/chat": "openai",
    "legacy-functions/chat": "other",
    "perf-metrics-headers/chat": "openai",
    "perf-metrics-in-response/chat": "other",
    "perf-metrics-in-response/chat-stream": "other",
    "sampling-options-header/chat": "openai",
    "chat-logprobs-boolean/chat": "openai",
    "chat-logprobs-integer/chat": "other",
    "top-logprobs-range/chat": "openai",
    "echo-on-chat/chat": "other",
    "completion-echo/completions": "other",
    "raw-output/chat": "other",
    "responses-api/create": "other",
    "responses-api/stream": "other",
    "sse-framing/chat": "openai",
    "sse-framing/completions": "openai",
    "chunk-schema/chat": "openai",
    "chunk-schema/completions": "openai",
    "error-envelope/bad-key": "inconclusive",
    "error-envelope/missing-key": "inconclusive",
    "error-envelope/unknown-model": "other",
    "error-envelope/invalid-json": "other",
    "error-envelope/missing-messages": "openai",
    "error-envelope/unknown-model-lookup": "openai",
    "parameter-validation/invalid": "other",
    "parameter-validation/valid": "openai",
    "openai-sdk/chat": "openai",
    "openai-sdk/completions": "openai",
}


@pytest.mark.block_network
def test_the_llama_cpp_recording_replays_with_its_verdicts(tmp_path):
    assert main(["run", "--replay", str(CASSETTES), "--profile", "none", "--report-dir", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert {row["check_id"]: row["observed"] for row in report["results"]} == VERDICTS
    assert report["summary"]["error"] == 0


def test_the_committed_llama_cpp_report_matches_its_cassettes():
    committed = json.loads((ROOT / "reports" / "llama-cpp" / "report.json").read_text())
    assert {row["check_id"]: row["observed"] for row in committed["results"]} == VERDICTS
    assert committed["tokens"]["total"] < 3000  # a full live run stays frugal


@pytest.mark.block_network
def test_llama_cpp_fails_both_vendor_profiles_where_it_differs(tmp_path):
    """Judged at no cost under the shipped profiles: llama.cpp is neither OpenAI nor Fireworks."""
    for profile in ("openai", "fireworks"):
        assert main(["run", "--replay", str(CASSETTES), "--profile", profile,
                     "--report-dir", str(tmp_path / profile)]) == 1
