"""The checks, one module per area; importing this package registers them all in REGISTRY."""

from conformance.checks import core, streaming  # noqa: F401  (registration by import)
from conformance.checks.base import REGISTRY, Check

__all__ = ["REGISTRY", "Check"]
