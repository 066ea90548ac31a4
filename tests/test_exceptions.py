"""One exception hierarchy: everything the suite raises about a run is a ConformanceError, and the
transport-level ones stay httpx transport errors so the openai SDK reports them as requests not made."""

from __future__ import annotations

import httpx
import pytest

from conformance.cassettes import CassetteMiss
from conformance.checks.base import CheckDeclarationError, ProbeFailed
from conformance.endpoint import EndpointUnusable
from conformance.exceptions import BudgetExhausted, ConformanceError, EndpointError, RequestTimeout
from conformance.transport import ResponseLimit


@pytest.mark.parametrize("error", [EndpointError, RequestTimeout, BudgetExhausted, CassetteMiss, ResponseLimit,
                                   ProbeFailed, CheckDeclarationError, EndpointUnusable])
def test_every_error_of_a_run_is_a_conformance_error(error):
    assert issubclass(error, ConformanceError)


@pytest.mark.parametrize("error", [BudgetExhausted, CassetteMiss, ResponseLimit])
def test_transport_level_errors_stay_httpx_transport_errors(error):
    assert issubclass(error, httpx.TransportError)
