"""The GitHub Action's entry script, run locally: inputs from the environment, a temporary
$GITHUB_STEP_SUMMARY and $GITHUB_OUTPUT, the committed cassettes and reports (no network), and the
embedded server on loopback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conformance import github_action
from conformance.github_action import CUT_NOTE, SUMMARY_LIMIT, fit, main, read_inputs

ROOT = Path(__file__).resolve().parents[1]
CASSETTES = ROOT / "cassettes"
BASELINES = ROOT / "reports"


@pytest.fixture(autouse=True)
def no_endpoint_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in ("OPENAI_BASE_URL", "OPENAI_API_BASE", "OPENAI_API_KEY"):
        monkeypatch.delenv(variable, raising=False)


@pytest.fixture
def github(tmp_path: Path) -> dict[str, str]:
    """The environment a workflow step gives the script, with the report dir in tmp_path."""
    return {"GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md"), "GITHUB_OUTPUT": str(tmp_path / "output"),
            "INPUT_REPORT-DIR": str(tmp_path / "reports")}


def outputs(environ: dict[str, str]) -> dict[str, str]:
    lines = Path(environ["GITHUB_OUTPUT"]).read_text(encoding="utf-8").splitlines()
    return dict(line.split("=", 1) for line in lines)


def summary(environ: dict[str, str]) -> str:
    return Path(environ["GITHUB_STEP_SUMMARY"]).read_text(encoding="utf-8")


def replay(vendor: str, only: str = "") -> str:
    return f"--replay {CASSETTES / f'reference-{vendor}'}" + (f" -k '{only}'" if only else "")


def test_a_run_that_matches_its_committed_baseline(github: dict[str, str]) -> None:
    environ = {**github, "INPUT_PROFILE": "none", "INPUT_ARGS": replay("openai"),
               "INPUT_BASELINE": str(BASELINES / "reference-openai" / "report.json")}
    assert main(environ) == 0
    text = summary(environ)
    assert text.startswith("# Changes since the baseline") and "No changes" in text
    assert "# Conformance report" in text and "| Entry | Expected | Observed | Outcome |" in text
    report = json.loads((Path(github["INPUT_REPORT-DIR"]) / "report.json").read_text(encoding="utf-8"))
    assert outputs(environ) == {
        "exit-code": "0", "status": "completed", "pass": str(report["summary"]["pass"]), "fail": "0",
        "inconclusive": "0", "skip": "0", "error": "0", "requests": str(report["requests"]), "regressed": "false",
        "report-dir": github["INPUT_REPORT-DIR"]}
    assert (Path(github["INPUT_REPORT-DIR"]) / "changes.md").is_file()


def test_profile_failures_and_regressions_fail_the_job(github: dict[str, str]) -> None:
    environ = {**github, "INPUT_PROFILE": "openai", "INPUT_ARGS": replay("fireworks"),
               "INPUT_BASELINE": str(BASELINES / "reference-fireworks")}
    assert main(environ) == 1
    found = outputs(environ)
    assert found["exit-code"] == "1" and int(found["fail"]) > 0 and found["regressed"] == "true"
    assert "**Regression:" in summary(environ) and "## Failures and errors" in summary(environ)


def test_a_run_that_could_not_start_is_a_regression(github: dict[str, str]) -> None:
    environ = {**github, "INPUT_BASE-URL": "http://127.0.0.1:9/v1",  # nothing listens on loopback's discard port
               "INPUT_BASELINE": str(BASELINES / "reference-openai")}
    assert main(environ) == 2
    assert outputs(environ)["regressed"] == "true" and outputs(environ)["status"] == "not-started"
    assert "the current run did not start" in summary(environ)


def test_an_unusable_baseline_stops_before_the_run(github: dict[str, str], tmp_path: Path, capsys) -> None:
    broken = tmp_path / "baseline.json"
    broken.write_text('{"format": 1}', encoding="utf-8")
    environ = {**github, "INPUT_BASELINE": str(broken)}
    assert main(environ) == 2
    assert not Path(github["INPUT_REPORT-DIR"]).exists()
    assert outputs(environ)["exit-code"] == "2"
    assert "wrote no report** (exit 2)" in summary(environ)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--baseline" in err and "is not a conformance report" in err


def test_the_baseline_gate_is_the_run_commands_own(github: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """The Action passes --baseline to `conformance run` rather than diffing on its own."""
    seen: list[list[str]] = []
    invoke = github_action.cli.invoke
    monkeypatch.setattr(github_action.cli, "invoke", lambda argv: seen.append(argv) or invoke(argv))
    environ = {**github, "INPUT_PROFILE": "none", "INPUT_ARGS": replay("fireworks"),
               "INPUT_BASELINE": str(BASELINES / "reference-openai")}
    assert main(environ) == 1  # the same calls, flipped behaviours: a release must not change them silently
    assert seen and seen[0][seen[0].index("--baseline") + 1] == str(BASELINES / "reference-openai")
    assert outputs(environ)["regressed"] == "true" and "behaviour flip(s)" in summary(environ)
    environ["INPUT_ARGS"] += " --accept-behaviour-changes"
    assert main(environ) == 0


def test_a_base_url_from_an_unset_secret_fails_the_step(github: dict[str, str], capsys) -> None:
    """`base-url: ${{ secrets.MISSING }}` arrives empty: that must not test the embedded server."""
    environ = {**github, "INPUT_BASE_URL": ""}
    assert main(environ) == 2
    assert not Path(github["INPUT_REPORT-DIR"]).exists() and outputs(environ)["exit-code"] == "2"
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--base-url" in err and "empty" in err


def test_the_summary_is_cut_to_fit(github: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    limit = 6000
    monkeypatch.setattr(github_action, "SUMMARY_LIMIT", limit)
    Path(github["GITHUB_STEP_SUMMARY"]).write_text("written by an earlier step\n" * 40, encoding="utf-8")
    environ = {**github, "INPUT_PROFILE": "openai", "INPUT_ARGS": replay("fireworks", "stop or context")}
    assert main(environ) == 1
    data = Path(github["GITHUB_STEP_SUMMARY"]).read_bytes()
    assert len(data) < limit
    text = data.decode("utf-8")
    assert text.startswith("written by an earlier step\n" * 40) and text.endswith(CUT_NOTE)
    assert sum(line.startswith("```") for line in text.splitlines()) % 2 == 0


def test_fit_keeps_a_huge_report_under_one_mebibyte() -> None:
    block = "| `check` | ✅ pass | é ü 漢字 |\n" * 40 + "```sh\n" + "curl -d '{\"x\": 1}'\n" * 40 + "```\n"
    markdown = "# Conformance report\n\n" + block * 2000
    assert len(markdown.encode("utf-8")) > 3 * SUMMARY_LIMIT
    cut = fit(markdown, SUMMARY_LIMIT - 1)
    assert len(cut.encode("utf-8")) < SUMMARY_LIMIT and cut.endswith(CUT_NOTE)
    kept = cut[: -len(CUT_NOTE)]
    assert markdown.startswith(kept.removesuffix("```\n")) and kept.endswith("\n")
    assert sum(line.startswith("```") for line in kept.splitlines()) % 2 == 0
    assert fit("short\n", 100) == "short\n"


def test_the_key_is_masked_and_never_written(reference_server, github: dict[str, str], capsys) -> None:
    key = "sk-action-0123456789abcdef"
    server = reference_server("openai", api_key=key)
    environ = {**github, "GITHUB_ACTIONS": "true", "INPUT_BASE-URL": server.base_url, "INPUT_API-KEY": key,
               "INPUT_PROFILE": "none", "INPUT_ARGS": "-k stream-usage"}
    assert main(environ) == 0
    assert capsys.readouterr().out.startswith(f"::add-mask::{key}\n")
    written = [Path(github["GITHUB_OUTPUT"]), Path(github["GITHUB_STEP_SUMMARY"]),
               *Path(github["INPUT_REPORT-DIR"]).iterdir()]
    assert all(key not in path.read_text(encoding="utf-8") for path in written)


def test_without_github_it_only_runs(tmp_path: Path) -> None:
    environ = {"INPUT_REPORT_DIR": str(tmp_path / "out"), "INPUT_PROFILE": "none", "INPUT_ARGS": replay("openai",
                                                                                                        "n-choices")}
    assert main(environ) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["junit.xml", "report.html", "report.json",
                                                                     "report.md"]


def test_inputs_in_either_spelling_and_defaults() -> None:
    inputs = read_inputs({"INPUT_BASE-URL": " http://a/v1 ", "INPUT_REPORT_DIR": "out", "INPUT_MODEL": ""})
    assert inputs == {"base-url": "http://a/v1", "api-key": "", "model": "", "models": "", "shard": "", "merge": "",
                      "profile": "openai", "baseline": "", "report-dir": "out", "args": ""}
    assert read_inputs({})["base-url"] == "embedded" and read_inputs({"INPUT_BASE_URL": " "})["base-url"] == ""
    assert "--base-url" not in github_action.run_arguments(read_inputs({}))
    assert github_action.run_arguments({**inputs, "args": "-k 'stream or stop'", "baseline": "b.json"}) == [
        "run", "--report-dir", "out", "--profile", "openai", "--base-url", "http://a/v1", "--baseline", "b.json",
        "-k", "stream or stop"]


def test_the_action_passes_every_input_to_the_script() -> None:
    """action.yml's inputs, and the env names its run step sets, are the ones the script reads."""
    action = (ROOT / "action.yml").read_text(encoding="utf-8")
    for name in github_action.DEFAULTS:
        assert f"\n  {name}:\n" in action, name
        assert f"INPUT_{name.upper().replace('-', '_')}: ${{{{ inputs.{name} }}}}" in action, name
    assert "python -m conformance.github_action" in action and "actions/upload-artifact@" in action


def test_models_and_shard_inputs_become_flags() -> None:
    inputs = read_inputs({"INPUT_MODELS": "a, b", "INPUT_SHARD": "3/8"})
    assert github_action.run_arguments(inputs)[-6:] == ["--shard", "3/8", "--model", "a", "--model", "b"]
    assert github_action.run_arguments(read_inputs({"INPUT_MODELS": "all"}))[-2:] == ["--models", "all"]


def test_shard_jobs_then_a_merge_job(tmp_path: Path) -> None:
    """What docs/github-action.md's workflow does: each shard job runs with `shard`, the merge job
    merges their reports (as downloaded artifacts, one directory each) and gates the result."""
    for index in (1, 2):
        environ = {"INPUT_SHARD": f"{index}/2", "INPUT_ARGS": "-k usage-in-response",
                   "INPUT_REPORT_DIR": str(tmp_path / "shards" / f"conformance-shard-{index}")}
        assert main(environ) == 0
    output = tmp_path / "output"
    merged = {"INPUT_MERGE": str(tmp_path / "shards"), "INPUT_REPORT_DIR": str(tmp_path / "merged"),
              "GITHUB_OUTPUT": str(output), "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md")}
    assert main(merged) == 0
    outputs = dict(line.split("=", 1) for line in output.read_text().splitlines())
    whole = json.loads((tmp_path / "merged" / "report.json").read_text())
    assert int(outputs["pass"]) == len(whole["models"][0]["results"]) > 1 and outputs["exit-code"] == "0"
    assert "Conformance report" in (tmp_path / "summary.md").read_text()
    assert main({**merged, "INPUT_MERGE": str(tmp_path / "shards" / "conformance-shard-1")}) == 2  # one is missing
