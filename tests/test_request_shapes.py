"""The request shapes of issue 15 beyond what tests/test_checks.py proves for every check: what an
embeddings request costs the token budget, and the reference server's embeddings themselves."""

from __future__ import annotations

import base64
import struct

from conformance.accounting import RunStats
from conformance.reference_server.config import ServerConfig
from conformance.reference_server.embeddings import (
    NATURAL_DIMENSIONS,
    create_embeddings,
)

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
