"""The checks, one module per area; importing this package registers them all in REGISTRY.

The import order is the report's order.
"""

from conformance.checks import (  # noqa: F401, I001  (registration by import, in the report's order)
    basics, streaming, generation, parameters, extensions, logprobs, prompt_inspection, responses, surface,
    requests, models, usage, embeddings, reasoning, tools, messages, anthropic_sdk,
)
from conformance.checks.base import REGISTRY, Check

__all__ = ["REGISTRY", "Check"]
