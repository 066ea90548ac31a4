"""One pytest item per registered check, in catalog order; the plugin runs them concurrently."""

import pytest

from conformance.checks import REGISTRY
from conformance.pytest_plugin import CHECK_PARAM, enforce, planned_cases


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """The checks registered when the session collects, not when this module was first imported:
    a process that runs several sessions (the CLI, the tests) sees checks registered in between.
    A matrix run has an item per check and model, named `check@model`."""
    if CHECK_PARAM in metafunc.fixturenames:
        check_ids = [check.id for check in REGISTRY]
        cases = planned_cases(metafunc.config, check_ids)
        if cases is None:
            metafunc.parametrize(CHECK_PARAM, check_ids)
        else:
            metafunc.parametrize(CHECK_PARAM, cases, ids=[str(case) for case in cases])


@pytest.mark.conformance
def test_check(check_id: str, conformance_run, pytestconfig: pytest.Config) -> None:
    enforce(conformance_run, check_id, pytestconfig)
