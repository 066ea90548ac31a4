"""The request shapes of issue 15 beyond what tests/test_checks.py proves for every check: what an
embeddings request costs the token budget, the reference server's embeddings and prompt cache, and
the verdicts a check gives where the server leaves nothing to judge."""

from __future__ import annotations

import base64
import struct

import httpx
import pytest

from conformance.accounting import RunStats
from conformance.catalog import load_catalog
from conformance.checks import REGISTRY
from conformance.checks.reasoning import joined, place_of
from conformance.client import EndpointClient
from conformance.profiles import Profile
from conformance.reference_server.config import ServerConfig
from conformance.reference_server.embeddings import (
    NATURAL_DIMENSIONS,
    create_embeddings,
)
from conformance.reference_server.shapes import PromptCache
from conformance.runner import execute

EMBEDDING = {"model": "m", "input": "hello"}


def test_an_embeddings_request_reserves_its_prompt_not_the_whole_budget():
    # It generates nothing, so it has no length cap: it must not be taken for an uncapped generation.
    stats = RunStats(token_budget=1000)
    reserved = stats.reserve(EMBEDDING, generates=False)
    assert 0 < reserved < 100
    assert stats.reserve({**EMBEDDING, "max_output_tokens": 4}) < 100  # nothing waits for it


def test_an_uncapped_generation_still_takes_what_remains():
    assert RunStats(token_budget=1000).reserve(EMBEDDING) == 1000


def test_reference_embeddings_base64_is_the_float_vector_and_dimensions_shorten_it():
    config = ServerConfig.for_vendor("openai")
    floats = create_embeddings(config, EMBEDDING)["data"][0]["embedding"]
    encoded = create_embeddings(config, {**EMBEDDING, "encoding_format": "base64"})["data"][0]["embedding"]
    assert len(floats) == NATURAL_DIMENSIONS
    assert list(struct.unpack(f"<{NATURAL_DIMENSIONS}f", base64.b64decode(encoded))) == \
        [struct.unpack("<f", struct.pack("<f", x))[0] for x in floats]
    assert len(create_embeddings(config, {**EMBEDDING, "dimensions": 8})["data"][0]["embedding"]) == 8


def test_the_reference_cache_hits_only_a_prompt_sent_again_in_one_session():
    """Requests without a session never hit it, so no other check's usage depends on what ran before."""
    config, cache = ServerConfig.for_vendor("fireworks"), PromptCache()
    assert [cache.cached_tokens(config, None, "p", 5, {}) for _ in range(2)] == [0, 0]
    assert [cache.cached_tokens(config, "s", "p", 5, {}) for _ in range(2)] == [0, 5]
    assert cache.cached_tokens(config, "s", "p", 5, {"prompt_cache_max_len": 0}) == 0
    assert cache.cached_tokens(config, "s", "p", 5, {"prompt_cache_max_len": 3}) == 3
    assert cache.cached_tokens(ServerConfig.for_vendor("fireworks", {"prompt-cache-max-len": "ignored"}), "s", "p",
                               5, {"prompt_cache_max_len": 0}) == 5


def test_a_server_that_reports_no_cached_tokens_leaves_prompt_cache_max_len_inconclusive(reference_server):
    server = reference_server("fireworks", {"usage-details": "absent", "perf-metrics-headers": "openai"})
    client = EndpointClient(server.base_url, None, timeout=10)
    try:
        result = execute(REGISTRY["prompt-cache-max-len/chat"], load_catalog()["prompt-cache-max-len"],
                         Profile("none", ""), client, server.config.model_id, None)
    finally:
        client.close()
    assert result.outcome == "inconclusive" and "no cache to turn off" in result.reason, result.explain()
    assert len(result.evidence) == 4


def test_streamed_reasoning_is_found_however_its_deltas_are_cut():
    cut = [{"role": "assistant"}, {"content": "<th"}, {"content": "ink>2+3"}, {"content": "</think>5"}]
    assert place_of(joined(cut)) == "<think>"
    assert place_of(joined([{"reasoning_content": "2+3"}, {"reasoning_content": " is 5"}, {"content": "5"}])) \
        == "reasoning_content"
    assert place_of(joined([{"role": "assistant", "content": ""}, {"content": "5"}, None])) is None


@pytest.mark.parametrize(("frame", "behaviour"), [
    (b'data: {"error": {"message": "bad temperature", "type": "invalid_request_error"}}\n\n', "in-band"),
    # vLLM's error object sent bare: the SDK yields it as a chunk
    (b'data: {"object": "error", "message": "bad temperature", "code": 400}\n\n', "unraised"),
    (b'event: error\ndata: {"message": "bad temperature"}\n\n', "unraised"),
])
def test_an_error_frame_the_sdk_iterates_past_is_unraised(frame, behaviour):
    stream = httpx.MockTransport(lambda request: httpx.Response(200, content=frame,
                                                                headers={"content-type": "text/event-stream"}))
    client = EndpointClient("http://stream-error.invalid/v1", None, 5, transport=stream)
    try:
        result = execute(REGISTRY["stream-error-frame/chat"], load_catalog()["stream-error-frame"],
                         Profile("none", ""), client, "m", None)
    finally:
        client.close()
    assert result.observed == behaviour, result.explain()
    assert ("raised APIError" in result.reason) == (behaviour == "in-band"), result.reason
