"""Many models in one run (issue 19): the matrix run, per-model reports and baselines, recording
and replay, the reference server serving many models, shards and `conformance merge`.

Every run here is against a fleet of reference models on loopback, each behaving as told
(`--model-behaviour`), so each model's verdicts are known in advance.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from xml.etree import ElementTree

import httpx
import jsonschema
import pytest

from conformance import workers
from conformance.accounting import RunStats, SharedTokenLedger, TokenLedger
from conformance.catalog import load_catalog
from conformance.cli import main
from conformance.compare import load_report
from conformance.exceptions import BudgetExhausted
from conformance.exchange import Exchange
from conformance.options import ModelSelection
from conformance.reference_server import RunningServer
from conformance.reference_server.config import ConfigError, ServerConfig
from conformance.reference_server.embedded import start_fleet, start_in_thread
from conformance.reference_server.fleet import Fleet, fleet_configs, model_names, parse_model_behaviour
from conformance.shards import assign
from conformance.workers import parts, shares

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = jsonschema.Draft202012Validator(json.loads((ROOT / "schemas" / "report.schema.json").read_text()))
KEY = "sk-matrix-test-key"
FIRST, SECOND, THIRD = model_names(3)
#: The second model puts the stop string in its output (Fireworks' older page), the third serves
#: no embeddings: the first meets OpenAI's documents everywhere.
BEHAVIOURS = [parse_model_behaviour(f"{SECOND}=openai+stop-sequence-in-output=fireworks"),
              parse_model_behaviour(f"{THIRD}=openai+embeddings=unsupported")]
#: A few checks, enough to show the differences, fast enough to run several times.
SOME = "stop-sequence or embeddings or usage-in-response"


@pytest.fixture(autouse=True)
def no_endpoint_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in ("OPENAI_BASE_URL", "OPENAI_API_BASE"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", KEY)


@pytest.fixture(scope="module")
def fleet() -> Iterator[RunningServer]:
    server = start_fleet(fleet_configs(3, "openai", {}, BEHAVIOURS, api_key=KEY))
    yield server
    server.stop()


def run(*argv: str | Path) -> int:
    return main(["run", *(str(a) for a in argv)])


def verdicts(report: dict) -> dict[str, dict[str, tuple[str, str | None]]]:
    """Per model, per check: (outcome, observed)."""
    return {section["id"]: {r["check_id"]: (r["outcome"], r["observed"]) for r in section["results"]}
            for section in report["models"]}


def test_the_fleet_lists_every_model_and_serves_each_as_configured(fleet) -> None:
    listed = httpx.get(f"{fleet.base_url}/models", headers={"authorization": f"Bearer {KEY}"}, timeout=10).json()
    assert [model["id"] for model in listed["data"]] == [FIRST, SECOND, THIRD]
    assert httpx.get(f"{fleet.base_url}/models", timeout=10).status_code == 401  # the key is still required
    answer = httpx.post(f"{fleet.base_url}/embeddings", json={"model": THIRD, "input": "x"},
                        headers={"authorization": f"Bearer {KEY}"}, timeout=10)
    assert answer.status_code == 404  # the third model serves no embeddings; the others do
    assert httpx.post(f"{fleet.base_url}/embeddings", json={"model": FIRST, "input": "x"},
                      headers={"authorization": f"Bearer {KEY}"}, timeout=10).status_code == 200


def test_fleet_configuration_errors_are_named() -> None:
    with pytest.raises(ConfigError, match="no model 'reference-model-009'"):
        fleet_configs(3, "openai", {}, [parse_model_behaviour("reference-model-009=fireworks")])
    with pytest.raises(ValueError, match="MODEL=VENDOR"):
        parse_model_behaviour("reference-model-001=acme")
    assert model_names(200)[-1] == "reference-model-200" and len(set(model_names(200))) == 200


def test_one_run_judges_every_model_with_its_own_verdicts(fleet, tmp_path: Path) -> None:
    code = run("--base-url", fleet.base_url, "--models", "all", "-k", SOME, "--report-dir", tmp_path)
    assert code == 1  # the second and third models deviate from OpenAI's documents
    report = load_report(tmp_path)
    SCHEMA.validate(report)
    assert report["format"] == 2 and [s["id"] for s in report["models"]] == [FIRST, SECOND, THIRD]
    seen = verdicts(report)
    assert all(outcome == "pass" for outcome, _ in seen[FIRST].values())
    assert seen[SECOND]["stop-sequence-in-output/chat"] == ("fail", "fireworks")
    assert seen[SECOND]["embeddings/embeddings"] == ("pass", "openai")
    assert seen[THIRD]["embeddings/embeddings"] == ("fail", "unsupported")  # unsupported, not an error of the run
    assert seen[THIRD]["stop-sequence-in-output/chat"] == ("pass", "openai")
    # Per model: what its checks cost; with the listing, the three models' preflights and the Messages
    # family's (with the first model), the run's total.
    assert all(section["requests"] > 0 and section["tokens"]["total"] > 0 for section in report["models"])
    assert sum(section["requests"] for section in report["models"]) + 1 + 3 + 1 == report["requests"]
    assert report["summary"] == dict(Counter(o for model in seen.values() for o, _ in model.values()),
                                     **{o: 0 for o in ("inconclusive", "skip", "error")
                                        if o not in Counter(o for m in seen.values() for o, _ in m.values())})
    # junit: a testcase per check and model, named by both
    names = {case.get("name") for case in ElementTree.parse(tmp_path / "junit.xml").getroot().iter("testcase")}
    assert f"stop-sequence-in-output/chat@{SECOND}" in names and len(names) == 3 * len(seen[FIRST])
    markdown = (tmp_path / "report.md").read_text()
    assert "| Entry | G1 | G2 | G3 |" in markdown and f"`{SECOND}`" in markdown


def test_models_named_and_matched(fleet, tmp_path: Path) -> None:
    assert run("--base-url", fleet.base_url, "--model", FIRST, "--model", THIRD, "-k", "usage-in-response",
               "--report-dir", tmp_path / "named") == 0
    assert [s["id"] for s in load_report(tmp_path / "named")["models"]] == [FIRST, THIRD]
    assert run("--base-url", fleet.base_url, "--models", "all", "--models-match", "*-00[23]", "-k",
               "usage-in-response", "--report-dir", tmp_path / "matched") == 0
    assert [s["id"] for s in load_report(tmp_path / "matched")["models"]] == [SECOND, THIRD]
    assert ModelSelection(listed=True, match="*-001").chosen([FIRST, SECOND, FIRST]) == [FIRST]


def test_a_model_that_cannot_be_used_is_reported_and_fails_the_gate(fleet, tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    code = run("--base-url", fleet.base_url, "--model", FIRST, "--model", "no-such-model", "-k", "usage-in-response",
               "--report-dir", tmp_path)
    out = capsys.readouterr().out
    assert code == 1, out  # its checks, which the profile expects, were not judged
    report = load_report(tmp_path)
    unusable = report["models"][1]
    assert not unusable["usable"] and "'no-such-model' is not served" in unusable["problem"]
    assert {r["outcome"] for r in unusable["results"]} == {"skip"}
    assert all("cannot be used" in r["reason"] for r in unusable["results"]) and unusable["requests"] == 0
    assert report["models"][0]["summary"]["pass"] == len(report["models"][0]["results"]) > 0
    assert "model no-such-model: cannot be used" in out


def test_an_endpoint_listing_nothing_that_matches_is_a_usage_error(fleet, tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert run("--base-url", fleet.base_url, "--models", "all", "--models-match", "gpt-*",
               "--report-dir", tmp_path) == 2
    assert "lists no model matching 'gpt-*'" in capsys.readouterr().err


@pytest.mark.parametrize(("flags", "says"), [
    (["--models", "all", "--model", "a"], "exclude each other"),
    (["--models-match", "x*"], "--models-match needs --models all"),
    (["--shard", "9/8"], "1 <= K <= N"),
    (["--shard", "x"], "K/N"),
])
def test_matrix_flags_are_validated(flags: list[str], says: str, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    assert run(*flags, "--report-dir", tmp_path) == 2
    assert says in capsys.readouterr().err


def test_each_model_is_compared_with_itself_in_the_baseline(tmp_path: Path) -> None:
    """A baseline recorded when every model met OpenAI's documents; then the second model flips:
    only its check is a regression, named with its model."""
    calm = start_fleet(fleet_configs(2, "openai", {}, [], api_key=KEY))
    flipped = start_fleet(fleet_configs(2, "openai", {}, [BEHAVIOURS[0]], api_key=KEY))
    try:
        assert run("--base-url", calm.base_url, "--models", "all", "--profile", "none", "-k", "stop-sequence",
                   "--report-dir", tmp_path / "before") == 0
        code = run("--base-url", flipped.base_url, "--models", "all", "--profile", "none", "-k", "stop-sequence",
                   "--baseline", tmp_path / "before", "--report-dir", tmp_path / "after")
    finally:
        calm.stop()
        flipped.stop()
    changes = (tmp_path / "after" / "changes.md").read_text()
    assert code == 1 and "Behaviour flips" in changes
    assert f"`stop-sequence-in-output/chat@{SECOND}`" in changes and f"@{FIRST}`" not in changes


def test_a_one_model_report_is_a_baseline_for_that_model_of_a_matrix(fleet, tmp_path: Path) -> None:
    assert run("--base-url", fleet.base_url, "--model", SECOND, "-k", "stop-sequence", "--profile", "none",
               "--report-dir", tmp_path / "one") == 0
    assert load_report(tmp_path / "one")["format"] == 1  # a one-model run keeps its format
    assert run("--base-url", fleet.base_url, "--models", "all", "-k", "stop-sequence", "--profile", "none",
               "--baseline", tmp_path / "one", "--report-dir", tmp_path / "matrix") == 0
    changes = (tmp_path / "matrix" / "changes.md").read_text()
    assert "Checks added" in changes and "New failures" not in changes and "Behaviour flips" not in changes
    # compare reads a matrix as a column per model
    assert main(["compare", str(tmp_path / "one"), str(tmp_path / "matrix"), "--out", str(tmp_path / "cmp")]) == 0
    assert f"· {THIRD}" in (tmp_path / "cmp" / "compare.md").read_text()


def test_a_matrix_run_records_a_folder_per_model_and_replays_the_same_verdicts(fleet, tmp_path: Path) -> None:
    cassettes = tmp_path / "cassettes"
    assert run("--base-url", fleet.base_url, "--models", "all", "-k", SOME, "--record", cassettes,
               "--report-dir", tmp_path / "live") == 1
    assert {path.name for path in cassettes.iterdir() if path.is_dir()} == {FIRST, SECOND, THIRD}
    assert (cassettes / SECOND / "stop-sequence-in-output__chat.yaml").is_file()
    assert KEY not in "".join(path.read_text() for path in cassettes.rglob("*.yaml"))
    assert run("--replay", cassettes, "--report-dir", tmp_path / "replayed") == 1
    live, replayed = load_report(tmp_path / "live"), load_report(tmp_path / "replayed")
    assert replayed["mode"] == "replay"
    judged = {model: {check: verdict for check, verdict in checks.items() if check in verdicts(live)[model]}
              for model, checks in verdicts(replayed).items()}
    assert judged == verdicts(live)


# ---- shards and merge -------------------------------------------------------------------------


def test_shards_are_balanced_and_stable_when_a_check_is_added() -> None:
    cases = [(f"check-{number}", model) for number in range(71) for model in model_names(3)]
    shards = assign(cases, 8)
    sizes = Counter(shards.values())
    assert set(sizes) == set(range(1, 9)) and max(sizes.values()) - min(sizes.values()) <= 1
    grown = assign([*cases, *(("check-new", model) for model in model_names(3))], 8)
    assert sum(shards[case] != grown[case] for case in cases) <= 10  # a few cases move, not most
    assert assign(list(reversed(cases)), 8) == shards  # whatever order the cases come in


def test_merging_eight_shards_gives_the_unsharded_report(fleet, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert run("--base-url", fleet.base_url, "--models", "all", "--report-dir", tmp_path / "whole") == 1
    whole = load_report(tmp_path / "whole")
    for index in range(1, 9):
        run("--base-url", fleet.base_url, "--models", "all", "--shard", f"{index}/8",
            "--report-dir", tmp_path / f"shard{index}")
        SCHEMA.validate(load_report(tmp_path / f"shard{index}"))
    shards = [tmp_path / f"shard{index}" for index in range(1, 9)]
    sizes = [sum(len(s["results"]) for s in load_report(path)["models"]) for path in shards]
    assert sum(sizes) == whole["configuration"]["planned"] and max(sizes) - min(sizes) <= 1
    capsys.readouterr()
    assert main(["merge", *map(str, shards), "--report-dir", str(tmp_path / "merged")]) == 1
    merged = load_report(tmp_path / "merged")
    SCHEMA.validate(merged)
    assert verdicts(merged) == verdicts(whole)
    assert merged["summary"] == whole["summary"] and merged["shard"] is None
    for mine, theirs in zip(merged["models"], whole["models"], strict=True):
        assert [r["check_id"] for r in mine["results"]] == [r["check_id"] for r in theirs["results"]]
        assert (mine["summary"], mine["requests"], mine["tokens"]) == \
            (theirs["summary"], theirs["requests"], theirs["tokens"])
        assert [(e["id"], e["observed"], e["outcome"]) for e in mine["entries"]] == \
            [(e["id"], e["observed"], e["outcome"]) for e in theirs["entries"]]
    assert {path.name for path in (tmp_path / "merged").iterdir()} == {"report.json", "report.md", "report.html",
                                                                       "junit.xml"}
    # refusals: one line, exit 2
    for argv, says in ((shards[:7], "shard(s) 8/8 missing"),
                       ([*shards, shards[0]], "shard 1/8 is given twice"),
                       ([tmp_path / "whole"], "is not a shard's report")):
        capsys.readouterr()
        assert main(["merge", *map(str, argv), "--report-dir", str(tmp_path / "refused")]) == 2
        err = capsys.readouterr().err
        assert says in err and len(err.strip().splitlines()) == 1, err
    run("--base-url", fleet.base_url, "--models", "all", "-k", "usage", "--shard", "1/8",
        "--report-dir", tmp_path / "other")
    capsys.readouterr()
    assert main(["merge", str(tmp_path / "other"), *map(str, shards[1:]), "--report-dir",
                 str(tmp_path / "refused")]) == 2
    assert "another run" in capsys.readouterr().err


def test_the_html_of_many_models_folds_identical_ones(tmp_path: Path) -> None:
    many = start_fleet(fleet_configs(12, "openai", {}, [BEHAVIOURS[0]], api_key=KEY))
    try:
        run("--base-url", many.base_url, "--models", "all", "-k", "stop-sequence", "--report-dir", tmp_path)
    finally:
        many.stop()
    page = (tmp_path / "report.html").read_text()
    assert "Conformance report: 12 models" in page and "in 2 group(s) of identical behaviour" in page
    assert page.count("<details") < 40  # folded: an entry and a group each, not a column per model
    assert "reference-model-001, reference-model-003, reference-model-004 and 8 more" in page
    assert len(load_catalog().entries) > 0


def test_a_matrix_recording_with_broken_models_is_a_usage_error(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "run.json").write_text(json.dumps({"endpoint": "e", "base_url": "http://127.0.0.1:9/v1", "model": "m",
                                                   "context_window": None, "models": [{"id": 5}]}))
    assert run("--replay", tmp_path, "--report-dir", tmp_path / "out") == 2
    assert "not a recorded run's metadata" in capsys.readouterr().err


def test_a_run_that_stops_short_is_never_completed(reference_server) -> None:
    """Whatever ended the session (an interrupt pytest reported as another error, say), a run with
    cases still in flight is `interrupted`, never `completed` (failed before: `completed`, with
    the unfinished cases as not judged)."""
    from conformance.endpoint import resolve
    from conformance.profiles import load_profile
    from conformance.runner import ConformanceRun

    server = reference_server("openai", latency_ms=300)
    catalog = load_catalog()
    stopped = ConformanceRun(resolve(server.base_url, server.config.api_key, None, timeout=10), catalog,
                             load_profile("openai", catalog), timeout=10, concurrency=2)
    stopped.start(["usage-in-response/chat", "usage-in-response/completions", "stop-sequence-in-output/chat"])
    stopped.finish("completed")
    assert stopped.status == "interrupted" and "before every check was judged" in (stopped.message or "")


# ---- several endpoints ------------------------------------------------------------------------


def test_the_same_matrix_across_endpoints_each_with_its_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    east_key, west_key = "sk-east-endpoint-key", "sk-west-endpoint-key"
    east = start_fleet(fleet_configs(2, "openai", {}, [], api_key=east_key))
    west = start_fleet(fleet_configs(2, "openai", {}, [BEHAVIOURS[0]], api_key=west_key))
    monkeypatch.setenv("EAST_KEY", east_key)
    monkeypatch.setenv("WEST_KEY", west_key)
    try:
        code = run("--endpoint", f"east={east.base_url}", "--endpoint", f"west={west.base_url}",
                   "--endpoint-key", "east=EAST_KEY", "--endpoint-key", "west=WEST_KEY", "--models", "all",
                   "-k", "stop-sequence-in-output/chat", "--report-dir", tmp_path)
    finally:
        east.stop()
        west.stop()
    assert code == 1
    report = load_report(tmp_path)
    SCHEMA.validate(report)
    assert [e["name"] for e in report["endpoints"]] == ["east", "west"]
    seen = verdicts(report)
    assert list(seen) == [f"east/{FIRST}", f"east/{SECOND}", f"west/{FIRST}", f"west/{SECOND}"]
    assert {model: checks["stop-sequence-in-output/chat"][0] for model, checks in seen.items()} == {
        f"east/{FIRST}": "pass", f"east/{SECOND}": "pass", f"west/{FIRST}": "pass", f"west/{SECOND}": "fail"}
    written = "".join(path.read_text() for path in tmp_path.iterdir())
    assert east_key not in written and west_key not in written  # each key went to its endpoint only


@pytest.mark.parametrize(("flags", "says"), [
    (["--endpoint", "a=http://127.0.0.1:9/v1", "--base-url", "http://127.0.0.1:9/v1"], "exclude each other"),
    (["--endpoint", "a=http://127.0.0.1:9/v1", "--endpoint-key", "b=X"], "no --endpoint named 'b'"),
    (["--endpoint", "a=http://127.0.0.1:9/v1", "--endpoint-key", "a=NO_SUCH_VARIABLE_H19"], "$NO_SUCH_VARIABLE_H19"),
    (["--endpoint", "a=http://127.0.0.1:9/v1", "--endpoint", "a=http://127.0.0.1:8/v1"], "a name of its own"),
    (["--endpoint", "a b=http://x/v1"], "NAME=VALUE"),
    (["--endpoint", "a=http://127.0.0.1:9/v1"], "endpoint a: cannot reach http://127.0.0.1:9/v1"),
])
def test_endpoint_flags_are_validated(flags: list[str], says: str, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert run(*flags, "--report-dir", tmp_path) == 2
    assert says in capsys.readouterr().err


def test_the_report_is_built_once_and_kept_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every format, the console and the CLI read one copy: built once (three times before),
    bounded and redacted as written (the stashed copy was neither bounded nor the written one)."""
    import conformance.report as report_module
    from conformance.cli import invoke

    built = []
    build = report_module.build_report

    def counted(*args, **kwargs):
        built.append(1)
        return build(*args, **kwargs)

    monkeypatch.setattr(report_module, "build_report", counted)
    finished = invoke(["run", "-k", "usage-in-response/chat", "--report-dir", str(tmp_path)])
    assert finished.code == 0 and len(built) == 1
    assert finished.report == json.loads((tmp_path / "report.json").read_text())


# ---- worker processes (workers.py): a live matrix judged on every core ---------------------------


@pytest.fixture
def forks(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The pids of the worker processes the runs fork (counted in this process only)."""
    forked: list[int] = []
    real_fork = os.fork

    def counting_fork() -> int:
        pid = real_fork()
        if pid:
            forked.append(pid)
        return pid
    monkeypatch.setattr(workers.os, "fork", counting_fork)
    return forked


def spent_per_model(report: dict) -> dict[str, tuple]:
    return {section["id"]: (section["summary"], section["requests"], section["tokens"]) for section in report["models"]}


def test_worker_processes_give_the_verdicts_and_counts_of_one_process(fleet, tmp_path: Path,
                                                                      forks: list[int]) -> None:
    assert run("--base-url", fleet.base_url, "--models", "all", "--workers", "1", "--report-dir",
               tmp_path / "one") == 1
    assert forks == []
    assert run("--base-url", fleet.base_url, "--models", "all", "--workers", "3", "--report-dir",
               tmp_path / "three") == 1
    assert len(forks) == 2  # the run's own process judges the first of three shares
    one, three = load_report(tmp_path / "one"), load_report(tmp_path / "three")
    SCHEMA.validate(three)
    assert verdicts(three) == verdicts(one) and three["summary"] == one["summary"]
    assert (three["requests"], three["retries"], three["tokens"]) == (one["requests"], one["retries"], one["tokens"])
    assert spent_per_model(three) == spent_per_model(one)
    assert [[r["check_id"] for r in s["results"]] for s in three["models"]] == \
        [[r["check_id"] for r in s["results"]] for s in one["models"]]


def test_a_worker_that_dies_leaves_errors_never_passes(fleet, tmp_path: Path, forks: list[int],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(workers, "judge_in_worker", lambda *arguments: os._exit(3))
    assert run("--base-url", fleet.base_url, "--models", "all", "-k", SOME, "--workers", "2",
               "--report-dir", tmp_path) == 1
    assert len(forks) == 1
    results = [r for section in load_report(tmp_path)["models"] for r in section["results"]]
    lost = [r for r in results if "worker process judging it ended (exit code 3)" in r["reason"]]
    assert len(lost) == len(parts(list(range(len(results))), 2)[1])  # type: ignore[arg-type]
    assert lost and all(r["outcome"] == "error" for r in lost)


def test_the_token_budget_is_one_for_every_worker() -> None:
    """The budget's books are in shared memory: what a worker charges, the run sees at once, and a
    request that no longer fits is refused in any process."""
    stats = RunStats(token_budget=150, ledger=SharedTokenLedger(TokenLedger()))
    body = {"messages": [{"role": "user", "content": "x" * 20}], "max_tokens": 20}  # reserves 105
    pid = os.fork()
    if pid == 0:  # a worker: reserves, and is charged the usage its answer reports
        code = 1
        try:
            reserved = stats.reserve(body)
            usage = {"usage": {"prompt_tokens": 50, "completion_tokens": 20}}
            stats.record(Exchange("POST", "http://x/v1/chat/completions", {}, body, status=200,
                                  body=json.dumps(usage).encode()), reserved)
            code = 0
        finally:
            os._exit(code)
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
    assert (stats.charged, stats.reserved) == (70, 0)
    with pytest.raises(BudgetExhausted, match="80 left"):  # alone, 105 would have fit
        stats.reserve(body)


def test_the_requests_in_flight_never_exceed_the_concurrency_across_workers(tmp_path: Path, forks: list[int]) -> None:
    assert shares(64, 2) == [32, 32] and shares(5, 3) == [2, 2, 1] and sum(shares(7, 4)) == 7
    in_flight = InFlight(Fleet(fleet_configs(3, "openai", {}, [], api_key=KEY, latency_ms=20)))
    server = start_in_thread(ServerConfig.for_vendor("openai", api_key=KEY), app=in_flight)
    try:
        assert run("--base-url", server.base_url, "--models", "all", "-k", SOME, "--concurrency", "3",
                   "--workers", "2", "--report-dir", tmp_path) == 0
    finally:
        server.stop()
    assert len(forks) == 1 and 1 < in_flight.most <= 3


class InFlight:
    """An ASGI app counting the requests it is answering at once, and the most ever."""

    def __init__(self, app):
        self.app, self.now, self.most = app, 0, 0

    async def __call__(self, scope, receive, send) -> None:
        self.now += 1
        self.most = max(self.most, self.now)
        try:
            await self.app(scope, receive, send)
        finally:
            self.now -= 1


def test_forked_workers_share_the_sdks_imported_in_the_run(fleet, tmp_path: Path, forks: list[int],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A matrix run that forks serves the SDK calls from its own processes (sdk_worker/relay.py,
    HostedWorker): no SDK worker process of its own, whose memory no fork would share."""
    from conformance.sdk_worker import relay

    def no_worker_process(package: str) -> None:
        raise AssertionError(f"a worker process was started for {package}")
    monkeypatch.setattr(relay, "SdkWorker", no_worker_process)
    relay.stop()
    code = run("--base-url", fleet.base_url, "--models", "all", "-k",
               "openai-sdk or anthropic-sdk or stream-error-frame", "--workers", "2", "--report-dir", tmp_path)
    report = load_report(tmp_path)
    assert len(forks) == 1
    outcomes = {r["outcome"] for section in report["models"] for r in section["results"]}
    assert outcomes <= {"pass", "fail", "inconclusive"} and code in (0, 1), report["models"][0]["results"]
