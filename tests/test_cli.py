"""The `conformance` command: exit codes 0/1/2, one-line messages, never a traceback.

Most runs are in-process (`conformance.cli.main`); a few subprocesses prove the entry points: the
console script, `python -m conformance`, pytest's `pytest11` plugin, and `conformance serve`.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path

import httpx
import jsonschema
import pytest

from conformance.catalog import load_catalog
from conformance.checks import REGISTRY
from conformance.cli import main

ROOT = Path(__file__).resolve().parents[1]
SCHEMA_PATH = ROOT / "schemas" / "report.schema.json"
UNREACHABLE = "http://127.0.0.1:9/v1"  # the discard port on loopback: nothing listens there
REPORT_FILES = {"report.json", "report.md", "report.html", "junit.xml"}


@pytest.fixture(autouse=True)
def no_endpoint_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in ("OPENAI_BASE_URL", "OPENAI_API_BASE", "OPENAI_API_KEY"):
        monkeypatch.delenv(variable, raising=False)


def subprocess_env() -> dict[str, str]:
    """The environment for child processes: no endpoint from ours, plugins autoloaded as usual, and
    this checkout's `conformance` first on the path (whichever copy is installed)."""
    drop = {"OPENAI_BASE_URL", "OPENAI_API_BASE", "OPENAI_API_KEY", "PYTEST_ADDOPTS",
            "PYTEST_DISABLE_PLUGIN_AUTOLOAD", "PYTEST_PLUGINS"}
    env = {name: value for name, value in os.environ.items() if name not in drop}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    return env


def console_script() -> str:
    found = Path(sysconfig.get_path("scripts")) / "conformance"
    if found.is_file():
        return str(found)
    which = shutil.which("conformance")
    assert which, "the `conformance` console script is not installed (pip install -e .)"
    return which


class Outcome:
    def __init__(self, code: int, out: str, err: str):
        self.code, self.out, self.err = code, out, err

    def assert_one_line_error(self, *mentions: str) -> None:
        """Exit 2, exactly one line on stderr naming what is wrong, and no traceback anywhere."""
        assert self.code == 2, (self.code, self.out, self.err)
        assert "Traceback" not in self.out + self.err
        lines = [line for line in self.err.splitlines() if line.strip()]
        assert len(lines) == 1, f"expected one line on stderr, got:\n{self.err}"
        for mention in mentions:
            assert mention in lines[0], (mention, lines[0])


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]):
    def invoke(*argv: str | Path) -> Outcome:
        code = main([str(a) for a in argv])
        out, err = capsys.readouterr()
        assert isinstance(code, int)
        return Outcome(code, out, err)
    return invoke


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(json.loads(SCHEMA_PATH.read_text(encoding="utf-8")))


def report_of(directory: Path) -> dict:
    return json.loads((directory / "report.json").read_text(encoding="utf-8"))


def check_ids_matching(text: str) -> set[str]:
    """The checks `-k TEXT` selects (a plain word matches a substring of the test id)."""
    return {check.id for check in REGISTRY if text.lower() in check.id.lower()}


# --- exit codes: 0 when the endpoint meets the profile, 1 when it does not ------------------------


@pytest.mark.parametrize(("vendor", "profile", "expected_code"), [
    ("fireworks", "fireworks", 0),
    ("fireworks", "openai", 1),
    ("fireworks", "none", 0),
    ("openai", "openai", 0),
    ("openai", "fireworks", 1),
    ("openai", "none", 0),
])
def test_exit_code_follows_the_profile(reference_server, cli, tmp_path: Path, validator,
                                       vendor: str, profile: str, expected_code: int) -> None:
    result = cli("run", "--base-url", reference_server(vendor).base_url, "--profile", profile,
                 "--report-dir", tmp_path)
    assert result.code == expected_code, result.out + result.err
    assert "Traceback" not in result.out + result.err
    report = report_of(tmp_path)
    assert validator.is_valid(report)
    assert report["profile"]["name"] == profile
    failing = report["summary"]["fail"] + report["summary"]["error"]
    assert (failing > 0) == (expected_code == 1)
    if profile == "none":
        assert all(result["expected"] is None for result in report["results"])


# --- an endpoint that cannot be used: exit 2, one line, a report that says why --------------------


@pytest.mark.parametrize("flags", [[], ["--model", "some-model"]], ids=["model-from-listing", "model-given"])
def test_unreachable_endpoint(cli, tmp_path: Path, validator, flags: list[str]) -> None:
    result = cli("run", "--base-url", UNREACHABLE, "--report-dir", tmp_path, *flags)
    result.assert_one_line_error(UNREACHABLE)
    report = report_of(tmp_path)
    assert validator.is_valid(report), list(validator.iter_errors(report))
    assert report["status"] == "not-started" and UNREACHABLE in report["message"]
    assert set(os.listdir(tmp_path)) == REPORT_FILES


@pytest.mark.parametrize("flags", [[], ["--model", "reference-model"]], ids=["model-from-listing", "model-given"])
def test_wrong_api_key(reference_server, cli, tmp_path: Path, flags: list[str]) -> None:
    server = reference_server("openai", api_key="sk-the-right-key-0000")
    result = cli("run", "--base-url", server.base_url, "--api-key", "sk-a-wrong-key-1111",
                 "--report-dir", tmp_path, *flags)
    result.assert_one_line_error("refused the API key")
    assert "sk-a-wrong-key-1111" not in result.out + result.err
    assert report_of(tmp_path)["status"] == "not-started"


def test_right_api_key_is_accepted(reference_server, cli, tmp_path: Path) -> None:
    server = reference_server("openai", api_key="sk-the-right-key-0000")
    result = cli("run", "--base-url", server.base_url, "--api-key", "sk-the-right-key-0000",
                 "--profile", "none", "-k", "stream-usage", "--report-dir", tmp_path)
    assert result.code == 0, result.err


# --- usage errors: exit 2, one line, no traceback -------------------------------------------------


@pytest.mark.parametrize(("flags", "mention"), [
    (["--timeout", "0"], "--timeout"),
    (["--timeout", "abc"], "--timeout"),
    (["--timeout", "inf"], "--timeout"),
    (["--timeout", "1e12"], "--timeout"),
    (["--timeout", "nan"], "--timeout"),
    (["--timeout", "-5"], "--timeout"),
    (["--concurrency", "-1"], "--concurrency"),
    (["--profile", "nosuch"], "nosuch"),
    (["--no-such-flag"], "--no-such-flag"),
    (["--base-url", "ftp://x"], "ftp://x"),
    (["--base-url", ""], "--base-url"),
    (["--base-url", "  "], "--base-url"),
    (["--embedded-behavior", "azure"], "azure"),
    (["--header", "no-colon"], "--header"),
    (["--header", "bad name:x"], "--header"),
    (["--name", ""], "--name"),
    (["--model", ""], "--model"),
    (["--api-key", " "], "--api-key"),
    (["--accept-behaviour-changes"], "--baseline"),
    (["--replay", "no-such-dir"], "--replay"),
    (["--record", "x", "--replay", "."], "--record"),
], ids=["timeout-zero", "timeout-text", "timeout-inf", "timeout-huge", "timeout-nan", "timeout-negative",
        "concurrency-negative", "unknown-profile", "unknown-flag", "ftp-url", "empty-url", "blank-url",
        "unknown-behaviour", "header-no-colon", "header-bad-name", "empty-name", "empty-model", "blank-key",
        "accept-without-baseline",
        "replay-missing", "record-and-replay"])
def test_bad_flags(cli, tmp_path: Path, flags: list[str], mention: str) -> None:
    """Every option is validated before anything is sent or written: one line naming the flag."""
    reports = tmp_path / "reports"
    cli("run", "--report-dir", reports, *flags).assert_one_line_error(mention)
    assert not reports.exists()


@pytest.mark.parametrize("variable", ["OPENAI_BASE_URL", "OPENAI_API_BASE"])
@pytest.mark.parametrize("value", ["", "   "], ids=["empty", "blank"])
def test_an_empty_base_url_variable_is_a_usage_error(cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     variable: str, value: str) -> None:
    """An unset CI secret arrives as an empty variable: that must not quietly test the embedded server."""
    monkeypatch.setenv(variable, value)
    reports = tmp_path / "reports"
    cli("run", "--report-dir", reports, "-k", "stream-usage").assert_one_line_error(f"${variable}", "empty")
    assert not reports.exists()


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A loopback socket that listens but never answers: a connection attempt lands in its backlog."""
    with socket.create_server(("127.0.0.1", 0)) as sock:
        sock.setblocking(False)
        yield sock


def connected(sock: socket.socket) -> bool:
    try:
        sock.accept()[0].close()
    except BlockingIOError:
        return False
    return True


def test_recording_into_a_regular_file_is_refused_before_any_request(listener, cli, tmp_path: Path) -> None:
    base_url = f"http://127.0.0.1:{listener.getsockname()[1]}/v1"
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    for target in (blocker, blocker / "cassettes"):
        cli("run", "--base-url", base_url, "--record", target, "--report-dir", tmp_path / "reports") \
            .assert_one_line_error("--record", "a-file")
    assert not connected(listener) and not (tmp_path / "reports").exists()


@pytest.mark.parametrize(("content", "says"), [(None, "cannot read"), ("{not json", "is not JSON"),
                                               ('{"format": 1}', "is not a conformance report")],
                         ids=["missing", "not-json", "not-a-report"])
def test_a_baseline_that_is_not_a_report_is_refused_before_the_run(cli, tmp_path: Path, content, says) -> None:
    baseline = tmp_path / "baseline.json"
    if content is not None:
        baseline.write_text(content, encoding="utf-8")
    reports = tmp_path / "reports"
    cli("run", "--baseline", baseline, "--report-dir", reports).assert_one_line_error("--baseline", says)
    assert not reports.exists()


def test_record_alone_records_into_cassettes_per_endpoint(reference_server, cli, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    base_url = reference_server("openai").base_url
    result = cli("run", "--base-url", base_url, "--profile", "none", "-k", "n-choices", "--record",
                 "--report-dir", "reports")
    assert result.code == 0, result.out + result.err
    endpoint = base_url.split("://")[1].split("/")[0].replace(":", "_")
    assert sorted(path.name for path in (tmp_path / "cassettes" / endpoint).iterdir()) == \
        sorted(["run.json", *(f"{check_id.replace('/', '__')}.yaml" for check_id in check_ids_matching("n-choices"))])


def test_a_baseline_in_the_report_dir_is_read_before_it_is_overwritten(cli, tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    reports.mkdir()
    shutil.copy(ROOT / "reports" / "reference-openai" / "report.json", reports / "report.json")
    result = cli("run", "--replay", ROOT / "cassettes" / "reference-fireworks", "--profile", "none",
                 "--baseline", reports / "report.json", "--report-dir", reports)
    assert result.code == 1, result.out + result.err  # the fireworks behaviours flipped against the openai baseline
    changes = (reports / "changes.md").read_text(encoding="utf-8")
    assert "No changes" not in changes and "## Behaviour flips" in changes
    assert "## Behaviour flips" in result.out
    assert report_of(reports)["endpoint"]["name"] == "reference-fireworks"


def test_headers_and_the_base_url_query_go_with_every_request_and_stay_secret(reference_server, cli,
                                                                             tmp_path: Path) -> None:
    """Azure-style endpoints: `?api-version=` on the base URL and an `api-key` header, on every request
    (the SDK's too); the header's value never reaches a report, a cassette or the console."""
    import yaml

    secret = "azure-secret-0123456789"
    base_url = reference_server("openai").base_url + "?api-version=2024-06-01"
    result = cli("run", "--base-url", base_url, "--header", f"api-key: {secret}", "--header", "X-Team:blue",
                 "--profile", "none", "-k", "stream-usage or openai-sdk", "--record", tmp_path / "cassettes",
                 "--report-dir", tmp_path / "reports")
    assert result.code == 0, result.out + result.err
    requests = [interaction["request"] for cassette in (tmp_path / "cassettes").glob("*.yaml")
                for interaction in yaml.safe_load(cassette.read_text(encoding="utf-8"))["interactions"]]
    assert len(requests) > 5 and any("openai-sdk" in path.name for path in (tmp_path / "cassettes").iterdir())
    for request in requests:
        assert "api-version=2024-06-01" in request["uri"], request["uri"]
        assert request["headers"]["x-team"] == ["<redacted>"] and "api-key" not in request["headers"]
    written = [*tmp_path.joinpath("cassettes").iterdir(), *tmp_path.joinpath("reports").iterdir()]
    assert all(secret not in path.read_text(encoding="utf-8") for path in written)
    assert secret not in result.out + result.err
    assert report_of(tmp_path / "reports")["endpoint"]["base_url"].endswith("/v1?api-version=2024-06-01")


def test_a_named_run_is_named_in_its_report_and_its_compare_column(reference_server, cli, tmp_path: Path) -> None:
    for name in ("staging", "production"):
        result = cli("run", "--base-url", reference_server("openai").base_url, "--name", name, "--profile", "none",
                     "-k", "stream-usage", "--report-dir", tmp_path / name)
        assert result.code == 0, result.err
        assert report_of(tmp_path / name)["name"] == name
    result = cli("compare", tmp_path / "staging", tmp_path / "production")
    assert "| Entry | staging | production |" in result.out


def test_the_embedded_server_is_named_plainly(cli, tmp_path: Path) -> None:
    result = cli("run", "--profile", "none", "-k", "stream-usage", "--report-dir", tmp_path)
    assert result.code == 0, result.err
    assert "the EMBEDDED reference server (openai behaviour)" in result.out
    assert "no endpoint of yours was tested" in result.out


def test_other_bad_invocations(cli) -> None:
    cli().assert_one_line_error()  # no command
    cli("nosuchcommand").assert_one_line_error("nosuchcommand")
    cli("serve", "--port", "99999").assert_one_line_error("--port")
    cli("serve", "--set", "no-such-entry=openai").assert_one_line_error("no-such-entry")
    cli("catalog", "--format", "yaml").assert_one_line_error("yaml")


def test_unwritable_report_dir(cli, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    cli("run", "--base-url", UNREACHABLE, "--report-dir", blocker / "reports").assert_one_line_error(
        "--report-dir", "a-file")


def test_version_and_help_return_zero(cli) -> None:
    result = cli("--version")
    assert result.code == 0 and result.out.startswith("conformance ")
    result = cli("run", "--help")
    assert result.code == 0 and "--base-url" in result.out and "--profile" in result.out


# --- selecting checks and profiles ---------------------------------------------------------------


def test_keyword_matching_nothing(reference_server, cli, tmp_path: Path) -> None:
    result = cli("run", "--base-url", reference_server("openai").base_url, "-k", "no-check-is-called-this",
                 "--report-dir", tmp_path)
    result.assert_one_line_error("no-check-is-called-this")


def test_keyword_selects_checks(reference_server, cli, tmp_path: Path, validator) -> None:
    selected = check_ids_matching("stream-usage")
    assert selected, "no registered check has stream-usage in its id"
    result = cli("run", "--base-url", reference_server("fireworks").base_url, "--profile", "fireworks",
                 "-k", "stream-usage", "--report-dir", tmp_path)
    assert result.code == 0, result.out + result.err
    report = report_of(tmp_path)
    assert validator.is_valid(report)
    assert {row["check_id"] for row in report["results"]} == selected
    assert {row["entry_id"] for row in report["results"]} == {REGISTRY[c].entry for c in selected}


def test_user_profile_file(reference_server, cli, tmp_path: Path) -> None:
    profile = tmp_path / "mine.toml"
    profile.write_text('name = "mine"\ndescription = "only stream usage"\nextends = "none"\n\n'
                       '[expect]\nstream-usage-default = ["fireworks"]\n', encoding="utf-8")
    surface = {entry.id for entry in load_catalog() if entry.area == "surface"}  # judged whatever the profile
    fireworks_dir, openai_dir = tmp_path / "fireworks", tmp_path / "openai"
    result = cli("run", "--base-url", reference_server("fireworks").base_url, "--profile", profile,
                 "--report-dir", fireworks_dir)
    assert result.code == 0, result.out + result.err
    report = report_of(fireworks_dir)
    assert report["profile"]["name"] == "mine" and report["profile"]["origin"] == str(profile)
    for row in report["results"]:
        assert row["expected"] == (["fireworks"] if row["entry_id"] == "stream-usage-default" else
                                   ["openai"] if row["entry_id"] in surface else None)
    # The same profile against an OpenAI-behaving server fails exactly that entry.
    result = cli("run", "--base-url", reference_server("openai").base_url, "--profile", profile,
                 "--report-dir", openai_dir)
    assert result.code == 1
    failed = {row["entry_id"] for row in report_of(openai_dir)["results"] if row["outcome"] == "fail"}
    assert failed == {"stream-usage-default"}


@pytest.mark.parametrize(("text", "mention"), [
    ('name = "mine"\n[expect]\nno-such-entry = ["openai"]\n', "no-such-entry"),
    ('name = "mine"\n[expect]\nstream-usage-default = ["sometimes"]\n', "sometimes"),
    ('name = "mine"\n[expect\n', "TOML"),
    ('[expect]\nstream-usage-default = ["openai"]\n', "name"),
], ids=["unknown-entry", "unknown-behaviour", "bad-toml", "no-name"])
def test_bad_profile_file(cli, tmp_path: Path, text: str, mention: str) -> None:
    profile = tmp_path / "bad.toml"
    profile.write_text(text, encoding="utf-8")
    cli("run", "--base-url", UNREACHABLE, "--profile", profile, "--report-dir", tmp_path / "r") \
        .assert_one_line_error(mention)


# --- catalog -------------------------------------------------------------------------------------


def test_catalog_lists_every_entry(cli) -> None:
    ids = [entry.id for entry in load_catalog()]
    result = cli("catalog")
    assert result.code == 0
    listed = [line.split()[0] for line in result.out.splitlines() if line and not line.startswith(" ")]
    assert listed == ids
    result = cli("catalog", "--format", "json")
    assert result.code == 0
    entries = json.loads(result.out)
    assert [entry["id"] for entry in entries] == ids
    assert all(entry["documents"] and entry["behaviours"] for entry in entries)


# --- the entry points, as real processes ---------------------------------------------------------


def test_console_script_unreachable(tmp_path: Path) -> None:
    """The installed `conformance` script: one line on the real stderr, no traceback, exit 2, a report."""
    completed = subprocess.run(
        [console_script(), "run", "--base-url", UNREACHABLE, "--report-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=120, env=subprocess_env(), cwd=tmp_path, check=False)
    Outcome(completed.returncode, completed.stdout, completed.stderr).assert_one_line_error(UNREACHABLE)
    assert report_of(tmp_path)["status"] == "not-started"


def test_pytest_plugin_entry_point(reference_server, tmp_path: Path, validator) -> None:
    """`pytest --pyargs conformance.suites`: the plugin comes from the pytest11 entry point alone."""
    reports = tmp_path / "reports"
    completed = subprocess.run(
        [sys.executable, "-m", "pytest", "--pyargs", "conformance.suites", "--conformance-base-url",
         reference_server("fireworks").base_url, "--conformance-report-dir", str(reports), "-p", "no:cacheprovider",
         "--conformance-profile", "fireworks", "-q"],
        capture_output=True, text=True, timeout=120, env=subprocess_env(), cwd=tmp_path, check=False)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert set(os.listdir(reports)) == REPORT_FILES
    report = report_of(reports)
    assert validator.is_valid(report)
    assert report["profile"]["name"] == "fireworks"
    assert {row["check_id"] for row in report["results"]} == {check.id for check in REGISTRY}
    assert "conformance" in completed.stdout  # the plugin's terminal summary


def test_a_run_leaves_nothing_in_the_working_directory_but_its_reports(tmp_path: Path) -> None:
    """Hypothesis' cache (./.hypothesis/) and other plugins' files (pytest-benchmark's ./.benchmarks/)
    do not belong in the user's directory; the Hypothesis-driven checks must really have run."""
    completed = subprocess.run(
        [sys.executable, "-m", "conformance", "run", "--profile", "none", "-k", "parameter-validation",
         "--report-dir", "out"], capture_output=True, text=True, timeout=120, env=subprocess_env(), cwd=tmp_path,
         check=False)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert os.listdir(tmp_path) == ["out"]
    assert {row["check_id"] for row in report_of(tmp_path / "out")["results"]} == check_ids_matching(
        "parameter-validation")


def test_serve_prints_its_url_and_serves(tmp_path: Path) -> None:
    """`python -m conformance serve --port 0`: the base URL first on stdout, then it serves."""
    process = subprocess.Popen([sys.executable, "-m", "conformance", "serve", "--port", "0", "--behavior", "fireworks"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=subprocess_env(),
                               cwd=tmp_path)
    try:
        base_url = process.stdout.readline().strip()
        assert base_url.startswith("http://127.0.0.1:") and base_url.endswith("/v1"), base_url
        assert not base_url.endswith(":0/v1")
        response = httpx.get(f"{base_url}/models", timeout=10)
        assert response.status_code == 200
        assert response.json()["object"] == "list" and response.json()["data"]
    finally:
        process.terminate()  # only the process this test started, by its pid
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        process.stdout.close()
        process.stderr.close()


# --- the plugin is a good citizen in other projects' pytest sessions ------------------------------

#: What an unrelated pytest session must not pay for (about a second of imports, all told).
HEAVY_MODULES = ("openai", "hypothesis", "starlette", "uvicorn", "jsonschema", "httpx", "conformance.checks",
                 "conformance.client", "conformance.runner", "conformance.reference_server")

UNRELATED_TEST = f"""
import sys

def test_an_unrelated_project(base_url):  # pytest-base-url's fixture, from its --base-url
    assert base_url == "http://app.example"
    loaded = [name for name in {HEAVY_MODULES!r} if name in sys.modules]
    assert not loaded, loaded
"""


def test_an_unrelated_session_with_other_plugins_that_take_the_same_words(tmp_path: Path) -> None:
    """pytest-base-url owns `--base-url`, pytest-profiling `--profile`, pytest-timeout `--timeout`:
    with them installed beside ours (the `test` extra installs them), another project's tests run."""
    from importlib.util import find_spec

    missing = [name for name in ("pytest_base_url", "pytest_profiling", "pytest_timeout") if find_spec(name) is None]
    assert not missing, f"install the test extra (pip install -e '.[test]'): {missing} missing"
    (tmp_path / "test_unrelated.py").write_text(UNRELATED_TEST, encoding="utf-8")
    completed = subprocess.run(
        [sys.executable, "-m", "pytest", "test_unrelated.py", "-p", "no:cacheprovider", "-q",
         "--base-url", "http://app.example", "--timeout", "60"],
        capture_output=True, text=True, timeout=120, env=subprocess_env(), cwd=tmp_path, check=False)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "ValueError" not in completed.stdout + completed.stderr
    listed = subprocess.run([sys.executable, "-m", "pytest", "--help"], capture_output=True, text=True, timeout=120,
                            env=subprocess_env(), cwd=tmp_path, check=True).stdout
    assert "--conformance-base-url" in listed and "--profile-svg" in listed  # both plugins were loaded


def test_importing_the_plugin_is_cheap() -> None:
    probe = f"import sys, conformance.pytest_plugin; print([m for m in {HEAVY_MODULES!r} if m in sys.modules])"
    completed = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60,
                               env=subprocess_env(), check=True)
    assert completed.stdout.strip() == "[]"


def test_the_pytest_front_end_validates_like_the_cli(tmp_path: Path) -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "pytest", "--pyargs", "conformance.suites", "-p", "no:cacheprovider", "-q",
         "--conformance-timeout", "inf", "--conformance-report-dir", str(tmp_path / "reports")],
        capture_output=True, text=True, timeout=120, env=subprocess_env(), cwd=tmp_path, check=False)
    assert completed.returncode == pytest.ExitCode.USAGE_ERROR, completed.stdout + completed.stderr
    assert "argument --conformance-timeout: must be a number of seconds" in completed.stderr
    assert "Traceback" not in completed.stderr
    assert not (tmp_path / "reports").exists()


def test_catalog_and_help_import_nothing_heavy() -> None:
    """`conformance catalog` prints a data file: no pytest, SDK, Hypothesis, httpx or server imports.
    (jsonschema is allowed: the catalog is validated against its schema whenever it is loaded.)"""
    heavy = tuple(module for module in (*HEAVY_MODULES, "pytest") if module != "jsonschema")
    probe = ("import sys, io, contextlib\nfrom conformance.cli import main\n"
             "with contextlib.redirect_stdout(io.StringIO()):\n    main(['catalog']); main(['run', '--help'])\n"
             f"print([m for m in {heavy!r} if m in sys.modules])")
    completed = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60,
                               env=subprocess_env(), check=True)
    assert completed.stdout.strip() == "[]"


def test_both_front_ends_take_the_same_options(cli) -> None:
    """Each run option is declared once (conformance/options.py): `conformance run --NAME` and
    `pytest --conformance-NAME` are the same list, with the same defaults and validation."""
    import re

    from conformance.options import RUN_OPTIONS

    cli_help = cli("run", "--help").out
    pytest_help = subprocess.run([sys.executable, "-m", "pytest", "--help"], capture_output=True, text=True,
                                 timeout=120, env=subprocess_env(), check=True).stdout
    assert set(re.findall(r"(?<![\w-])--[a-z][a-z-]+", cli_help)) - {"--help", "--verbose"} == \
        {option.flag() for option in RUN_OPTIONS}
    assert set(re.findall(r"--conformance-[a-z-]+",
                          pytest_help)) == {option.flag("conformance-") for option in RUN_OPTIONS}


@pytest.mark.parametrize("argv", [
    ["run", "--baseline", "/nonexistent/sk-echoed-0123456789.json"],       # refused by argparse
    ["run", "--profile", "/nonexistent/sk-echoed-0123456789.toml"],
    ["run", "--header", "x-extra:sk-echoed-0123456789", "--baseline", "/nonexistent/sk-echoed-0123456789"],
])
def test_a_usage_error_that_quotes_a_secret_prints_it_redacted(capsys, monkeypatch, argv) -> None:
    """The key (flag or environment) and header values are secrets in the one-line usage errors too."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    if "--header" not in argv:
        argv = ["run", "--api-key", "sk-echoed-0123456789", *argv[1:]]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "sk-echoed-0123456789" not in err and "<redacted>" in err and err.count("\n") == 1


# --- the Messages API family ---------------------------------------------------------------------


@pytest.mark.parametrize(("vendor", "profile", "expected_code"), [
    ("anthropic", "anthropic", 0),
    ("anthropic", "fireworks", 1),
    ("fireworks", "anthropic", 1),
])
def test_the_anthropic_and_fireworks_profiles_judge_the_messages_family(reference_server, cli, tmp_path: Path,
                                                                        vendor: str, profile: str,
                                                                        expected_code: int) -> None:
    """A server serving only the Messages API is judged on it alone by the anthropic profile (its
    OpenAI-family checks left out, said per check); Fireworks documents both families, so its
    profile fails that server, and the anthropic profile fails Fireworks' Messages differences."""
    result = cli("run", "--base-url", reference_server(vendor, api_key="sk-cli-0123456789").base_url,
                 "--api-key", "sk-cli-0123456789", "--profile", profile, "--report-dir", tmp_path)
    assert result.code == expected_code, result.out + result.err
    results = {row["check_id"]: row for row in report_of(tmp_path)["results"]}
    if vendor == "anthropic" and profile == "anthropic":
        assert results["chat-completion-schema/chat"]["outcome"] == "skip"
        assert "does not serve the openai API family" in results["chat-completion-schema/chat"]["reason"]
        assert results["messages-schema/message"]["outcome"] == "pass"
    if vendor == "fireworks":
        assert {row["entry_id"] for row in results.values() if row["outcome"] == "fail"} == {
            "messages-usage", "messages-max-tokens-required", "anthropic-version-header",
            "messages-unsupported-tool-fields", "messages-count-tokens"}


def test_the_embedded_run_judges_both_families(cli, tmp_path: Path) -> None:
    result = cli("run", "--profile", "fireworks", "--embedded-behavior", "fireworks", "-k",
                 "chat-completion-schema or messages-schema", "--report-dir", tmp_path)
    assert result.code == 0, result.out + result.err
    observed = {row["check_id"]: (row["outcome"], row["observed"]) for row in report_of(tmp_path)["results"]}
    assert observed == {"chat-completion-schema/chat": ("pass", "fireworks"),
                        "messages-schema/message": ("pass", "anthropic")}


def test_a_recorded_messages_run_writes_no_spelling_of_the_key(reference_server, cli, tmp_path: Path) -> None:
    """x-api-key is dropped from cassettes and every spelling of the key redacted, as Authorization is."""
    import base64
    from urllib.parse import quote

    key = "sk-messages-secret-0123456789"
    result = cli("run", "--base-url", reference_server("anthropic", api_key=key).base_url, "--api-key", key,
                 "--api", "anthropic", "--profile", "anthropic", "--record", tmp_path / "cassettes",
                 "--report-dir", tmp_path / "reports")
    assert result.code == 0, result.out + result.err
    written = [path for path in tmp_path.rglob("*") if path.is_file()]
    assert any(path.name.startswith("anthropic-sdk") for path in written)
    spellings = [key, quote(key, safe=""), key.encode().hex(), base64.b64encode(key.encode()).decode().rstrip("=")]
    for path in written:
        text = path.read_text(encoding="utf-8")
        assert not [spelling for spelling in spellings if spelling in text], path
    assert "x-api-key" not in (tmp_path / "cassettes" / "messages-schema__message.yaml").read_text(encoding="utf-8")
    assert key not in result.out + result.err


def test_the_api_option_names_the_families(cli, tmp_path: Path) -> None:
    cli("run", "--api", "messages", "--report-dir", tmp_path).assert_one_line_error("--api", "openai, anthropic or all")


def test_a_run_collects_garbage_less_often_and_leaves_the_collector_as_it_was(monkeypatch) -> None:
    import gc

    from conformance import cli as cli_module

    seen = []
    monkeypatch.setattr(cli_module, "run_suite", lambda args: seen.append(gc.get_threshold()) or "done")
    before = gc.get_threshold()
    assert cli_module.execute_run(None) == "done"  # type: ignore[arg-type]
    assert seen == [(cli_module.RUN_GC_THRESHOLD, *before[1:])] and gc.get_threshold() == before
