"""One hierarchy for what the suite raises about a run: everything derives from ConformanceError,
so a caller can catch the suite's own failures without catching a bug's.

Transport-level ones (BudgetExhausted, and the cassettes' CassetteMiss) are also httpx transport
errors, so that third-party clients sending through our transport (the openai SDK) report them as
a request that could not be made instead of judging them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx

if TYPE_CHECKING:
    from conformance.exchange import Exchange


class ConformanceError(Exception):
    """Base of every error the suite raises on purpose."""


class BudgetExhausted(ConformanceError, httpx.TransportError):
    """The run's token budget cannot pay for a request, which is therefore not sent. A transport
    error, so third-party clients (the openai SDK) report it as a request that could not be made
    instead of judging it; the runner finds it behind their wrappers and makes the check a skip."""


class EndpointError(ConformanceError):
    """The endpoint could not be talked to (refused, timed out, broke the connection)."""

    def __init__(self, message: str, exchange: Exchange | None = None):
        super().__init__(message)
        self.exchange = exchange


class RequestTimeout(EndpointError):
    """No complete response within the timeout: the endpoint's fault, or our own load on it."""
