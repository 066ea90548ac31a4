"""`POST /v1/embeddings` of the reference server: a deterministic vector per input, as floats or as
base64 little-endian float32, shortened to `dimensions` and renormalised (as OpenAI's
`text-embedding-3` models do). Deviations drop either option, or the endpoint (config.py)."""

from __future__ import annotations

import base64
import math
import struct
import zlib
from typing import Any

from conformance.reference_server import model as lm
from conformance.reference_server.config import ServerConfig
from conformance.reference_server.errors import ApiError
from conformance.reference_server.validation import expect, invalid_value, require

#: The length of a vector when `dimensions` is not asked for.
NATURAL_DIMENSIONS = 16


def embed(text: str, size: int) -> list[float]:
    """A unit vector that depends only on the text's tokens."""
    tokens = lm.tokenize(text)
    raw = [sum(((zlib.crc32(f"{axis}:{token}".encode()) % 2001) - 1000) / 1000 for token in tokens)
           for axis in range(size)]
    norm = math.sqrt(sum(x * x for x in raw)) or 1.0
    return [x / norm for x in raw]


def create_embeddings(config: ServerConfig, body: dict[str, Any]) -> dict[str, Any]:
    if config.is_("embeddings", "unsupported"):
        raise ApiError(404, "Invalid URL (POST /v1/embeddings)", code="not_found")
    inputs = require(body, "input", "input", "string", "array")
    texts = [inputs] if isinstance(inputs, str) else inputs
    for position, text in enumerate(texts):
        expect(text, f"input[{position}]", "string")
    encoding = body.get("encoding_format", "float")
    if encoding not in ("float", "base64"):
        raise invalid_value("encoding_format", f"expected 'float' or 'base64', but got {encoding!r}.")
    size = body.get("dimensions")
    if size is not None:
        expect(size, "dimensions", "integer")
        if not 1 <= size <= NATURAL_DIMENSIONS:
            raise invalid_value("dimensions", f"expected an integer from 1 to {NATURAL_DIMENSIONS}, but got {size}.")
    if size is None or config.is_("embeddings", "dimensions-ignored"):
        size = NATURAL_DIMENSIONS
    as_base64 = encoding == "base64" and not config.is_("embeddings", "base64-ignored")
    data = []
    for index, text in enumerate(texts):
        vector = embed(text, size)
        shown: Any = base64.b64encode(struct.pack(f"<{size}f", *vector)).decode() if as_base64 else vector
        data.append({"object": "embedding", "index": index, "embedding": shown})
    tokens = sum(lm.count_tokens(text) for text in texts)
    return {"object": "list", "data": data, "model": config.model_id,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}
