"""A gate that is never green by accident (issue 11): the endpoint is proven usable before any
check judges it, a refusal is only a parameter's when a control request succeeds, every request
sent is counted, a run that did not judge what its profile expects does not exit 0, junit.xml
agrees with report.json, and a replayed report says it is one."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import jsonschema
import pytest

from conformance.cli import main

SCHEMA = jsonschema.Draft202012Validator(json.loads(
    (Path(__file__).resolve().parents[1] / "schemas" / "report.schema.json").read_text(encoding="utf-8")))


@pytest.fixture(autouse=True)
def no_endpoint_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in ("OPENAI_BASE_URL", "OPENAI_API_BASE", "OPENAI_API_KEY"):
        monkeypatch.delenv(variable, raising=False)


def run(tmp_path: Path, *argv: str) -> tuple[int, dict]:
    code = main(["run", "--report-dir", str(tmp_path), *argv])
    report = json.loads((tmp_path / "report.json").read_text(encoding="utf-8"))
    SCHEMA.validate(report)
    return code, report


# ---- point 2: the preflight --------------------------------------------------------------------

@pytest.mark.parametrize(("argv", "words"), [
    (("--model", "no-such-model"), "model 'no-such-model' is not served"),
    (("--base-url-path", "/v2"), "is the base URL's path right?"),
])
def test_an_endpoint_that_cannot_answer_stops_the_run_before_any_check(reference_server, tmp_path, capsys,
                                                                       argv, words):
    server = reference_server("openai")
    base_url = server.base_url
    if argv[0] == "--base-url-path":
        base_url, argv = base_url.rsplit("/", 1)[0] + argv[1], ("--model", server.config.model_id)
    code, report = run(tmp_path, "--base-url", base_url, *argv)
    err = capsys.readouterr().err
    assert code == 2 and words in err and "Traceback" not in err
    assert report["status"] == "not-started" and words in report["message"] and report["results"] == []


def test_every_request_sent_is_counted_the_listing_and_preflight_included(reference_server, tmp_path):
    server = reference_server("openai")
    code, report = run(tmp_path, "--base-url", server.base_url, "-k", "model-identifiers")
    assert code == 0
    # GET /models and the preflight POST before the checks, then the check's own GET /models.
    assert report["requests"] == 3
    assert report["tokens"]["total"] > 0
