"""One pytest item per registered check, in catalog order; the plugin runs them concurrently."""

import pytest

from conformance.checks import REGISTRY
from conformance.pytest_plugin import CHECK_PARAM, enforce


@pytest.mark.conformance
@pytest.mark.parametrize(CHECK_PARAM, [check.id for check in REGISTRY])
def test_check(check_id: str, conformance_run, pytestconfig: pytest.Config) -> None:
    enforce(conformance_run, check_id, pytestconfig)
