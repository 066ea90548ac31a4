"""The conformance checks as pytest tests: `pytest --pyargs conformance.suites --base-url URL`."""
