"""What a hostile or broken endpoint can do to what the suite writes and prints, and cannot.

A small loopback server answers every request with what one test wants (echoes of the key in
every spelling, NaN counts, deep nesting, status 999, Markdown/HTML/ANSI in model ids and
messages) and can hold `GET /models` until the test has sent a signal. The suite then runs for real
(`python3 -m conformance run` in a subprocess where the console matters) and the tests read every
file it wrote.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import quote

import jsonschema
import pytest

from conformance.checks import REGISTRY
from conformance.cli import main
from tests.hostile_server import LoopbackServer

ROOT = Path(__file__).resolve().parents[1]
REPORT_SCHEMA = jsonschema.Draft202012Validator(
    json.loads((ROOT / "schemas" / "report.schema.json").read_text(encoding="utf-8")),
    format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
KEY = "sk-sentinel-0123456789abcdef"
PASSWORD = "pw-sentinel-9876543210"
#: How long a test waits for anything at all before it fails (never a pacing sleep).
PATIENCE_S = 60

Answer = tuple[int, list[tuple[str, str]], bytes]


def json_answer(body: object, status: int = 200, headers: list[tuple[str, str]] | None = None) -> Answer:
    return status, [("content-type", "application/json"), *(headers or [])], json.dumps(body).encode()


class HostileServer(LoopbackServer):
    """Answers `GET .../models` with `models` and everything else with `answer(path, body)`;
    with `hold_models`, it signals `models_requested` and keeps that request open until `release`."""

    def __init__(self, models: Answer, answer: Callable[[str, bytes], Answer], hold_models: bool = False):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.models, self.answer, self.hold_models = models, answer, hold_models
        self.models_requested, self.release = threading.Event(), threading.Event()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


class _Handler(BaseHTTPRequestHandler):
    server: HostileServer

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        if self.path.endswith("/models"):
            if self.server.hold_models:
                self.server.models_requested.set()
                self.server.release.wait(PATIENCE_S)
            self._send(self.server.models)
        else:
            self._send(self.server.answer(self.path, b""))

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        self._send(self.server.answer(self.path, body))

    def _send(self, answer: Answer) -> None:
        status, headers, body = answer
        try:
            self.send_response(status)
            for name, value in headers:
                self.send_header(name, value)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except OSError:  # the client went away (a stream-abort probe, an interrupted run)
            pass


@pytest.fixture
def hostile() -> Iterator[Callable[..., HostileServer]]:
    started: list[HostileServer] = []

    def start(models: Answer, answer: Callable[[str, bytes], Answer], hold_models: bool = False) -> HostileServer:
        server = HostileServer(models, answer, hold_models)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.release.set()
        server.shutdown()
        server.server_close()


@pytest.fixture(autouse=True)
def no_endpoint_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in ("OPENAI_BASE_URL", "OPENAI_API_BASE", "OPENAI_API_KEY"):
        monkeypatch.delenv(variable, raising=False)


def models_listing(model: str = "m", **extra: object) -> Answer:
    return json_answer({"object": "list", "data": [{"id": model, "object": "model", **extra}]})


def conformance_process(*arguments: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    """`python3 -m conformance ...` from this checkout, with no endpoint from the environment."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "GITHUB_"))}
    return subprocess.Popen([sys.executable, "-m", "conformance", *arguments], cwd=ROOT,
                            env={**environment, **(env or {})}, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def written_files(*directories: Path) -> list[Path]:
    return [path for directory in directories for path in directory.rglob("*") if path.is_file()]


def assert_valid_report(directory: Path) -> dict:
    text = (directory / "report.json").read_text(encoding="utf-8")
    report = json.loads(text, parse_constant=lambda name: pytest.fail(f"report.json holds {name}"))
    problems = [f"{e.json_path}: {e.message[:200]}" for e in REPORT_SCHEMA.iter_errors(report)]
    assert not problems, "report.json does not match its schema:\n" + "\n".join(problems)
    ElementTree.parse(directory / "junit.xml")  # well-formed
    return report


# --- The key never leaves the process ---------------------------------------------------------

def spellings_of(secret: str) -> list[str]:
    """How the echoing server spells a secret: as sent, JSON-escaped, URL-encoded, hex, and base64
    (standard and URL-safe, padded and not, after 0, 1 and 2 bytes of prefix)."""
    raw = secret.encode()
    forms = [secret, "".join(f"\\u{ord(c):04x}" for c in secret), quote(secret, safe=""),
             "".join(f"%{byte:02x}" for byte in raw), raw.hex(), raw.hex().upper(), repr(f"Bearer {secret}\n".encode())]
    for prefix in (b"", b"B", b"Be", b"Bearer "):
        encoded = base64.b64encode(prefix + raw).decode()
        forms += [encoded, encoded.rstrip("="), base64.urlsafe_b64encode(prefix + raw).decode().rstrip("=")]
    return forms


def core_of(form: str) -> str:
    """What of a spelling must not survive: the part only the secret determines (a base64 form's
    first and last characters also depend on its neighbours)."""
    return form[4:-4] if len(form) > 16 else form


def after_preflight(answer: Callable[[str, bytes], Answer]) -> Callable[[str, bytes], Answer]:
    """`answer` for every request but the run's preflight (its first chat completion), which gets a
    plain completion, so the run starts and its checks meet what `answer` sends."""
    chats = itertools.count()

    def answering(path: str, body: bytes) -> Answer:
        if path.endswith("/chat/completions") and next(chats) == 0:
            return json_answer({"id": "c", "object": "chat.completion", "created": 0, "model": "m", "choices": [
                {"index": 0, "message": {"role": "assistant", "content": "OK"}, "finish_reason": "length"}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})
        return answer(path, body)

    return answering


def echo_everything(path: str, body: bytes) -> Answer:
    forms = spellings_of(KEY) + spellings_of(PASSWORD)
    message = f"Incorrect API key provided: Bearer {KEY} (password {PASSWORD}); seen as " + " ".join(forms)
    envelope = {"error": {"message": message, "type": "invalid_request_error", "code": "invalid_api_key",
                          "param": forms}}
    text = json.dumps(envelope, ensure_ascii=True).replace(KEY, "".join(f"\\u{ord(c):04x}" for c in KEY), 1)
    headers = [("x-echo", KEY), ("x-echo-b64", base64.b64encode(KEY.encode()).decode()),
               ("set-cookie", f"session={KEY}; Path=/"), ("set-cookie", f"pw={quote(PASSWORD)}")]
    return 400, [("content-type", "application/json"), *headers], text.encode()


def test_no_spelling_of_a_secret_reaches_any_file_or_stream(hostile, tmp_path):
    """The whole suite, recorded, against a server echoing the key and the URL's password in every
    spelling: no file written and neither output stream holds any of them."""
    server = hostile(models_listing(owned_by=" ".join(spellings_of(KEY))), after_preflight(echo_everything))
    run = conformance_process("run", "--base-url", server.base_url, "--header", f"x-second-secret:{PASSWORD}",
                              "--profile", "none", "--report-dir",
                              str(tmp_path / "reports"), "--record", str(tmp_path / "cassettes"),
                              env={"OPENAI_API_KEY": KEY})
    out, err = run.communicate(timeout=PATIENCE_S * 3)
    assert run.returncode in (0, 1), err.decode()
    files = written_files(tmp_path)
    assert {"report.json", "report.md", "report.html", "junit.xml", "run.json"} <= {p.name for p in files}
    assert len(files) > 20
    sources = {str(path): path.read_bytes() for path in files} | {"stdout": out, "stderr": err}
    leaks = sorted({(name, core_of(form)) for name, content in sources.items()
                    for form in spellings_of(KEY) + spellings_of(PASSWORD)
                    if core_of(form).lower().encode() in content.lower()})
    assert leaks == []
    report = assert_valid_report(tmp_path / "reports")
    assert any("<redacted>" in json.dumps(result) for result in report["results"])


# --- The report is always written, always valid -----------------------------------------------

NESTED = "[" * 500 + "]" * 500
BROKEN_MESSAGE = "bad\x00 \x07request\x0b\x1b[2J\ud800 \ufffe"


def broken_answers(path: str, body: bytes) -> Answer:
    """Bodies a JSON parser accepts but JSON may not hold (NaN, 1e400, lone surrogates, deep
    nesting), counts no one can sum, a status HTTP does not have, and XML-illegal characters."""
    if "responses" in path:
        return 999, [("content-type", "application/json")], b'{"error": {"message": "nine nine nine"}}'
    if "chat/completions" in path:
        usage = ('{"prompt_tokens": NaN, "completion_tokens": -5, "total_tokens": 1e400}' if b'"n"' in body
                 else '{"prompt_tokens": true, "completion_tokens": 1000000000000000000000000000000}')
        text = ('{"id": "c", "object": "chat.completion", "created": 1, "model": "m", "choices": [{"index": 0, '
                '"message": {"role": "assistant", "content": "hi \\ud800"}, "finish_reason": "stop"}], '
                f'"usage": {usage}, "extra": {{"nan": NaN, "inf": -Infinity, "deep": {NESTED}}}}}')
        return 200, [("content-type", "application/json")], text.encode()
    return json_answer({"error": {"message": BROKEN_MESSAGE, "type": "invalid_request_error"}}, status=400)


def test_whatever_the_server_sends_every_report_is_valid(hostile, tmp_path, capsys):
    server = hostile(models_listing(), broken_answers)
    code = main(["run", "--base-url", server.base_url, "--api-key", KEY, "--profile", "none",
                 "--report-dir", str(tmp_path)])
    out, err = capsys.readouterr()
    assert code in (0, 1), err
    assert "Traceback" not in out + err and "INTERNALERROR" not in out + err
    report = assert_valid_report(tmp_path)
    assert report["tokens"] == {"prompt": 0, "completion": 0, "total": 0}  # nothing countable was sent
    assert len(report["results"]) > 20
    evidence = json.dumps(report["results"])
    assert "nested deeper than" in evidence and "'nan'" not in evidence and '"nan"' in evidence
    assert "999" in evidence  # what the server said is kept, as an observation
    assert "bad" in (tmp_path / "junit.xml").read_text("utf-8")  # the message is there, escaped


def test_a_deeply_nested_models_listing_is_a_one_line_usage_error(hostile, tmp_path, capsys):
    server = hostile((200, [("content-type", "application/json")],
                      b'{"data": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"),
                     broken_answers)
    code = main(["run", "--base-url", server.base_url, "--report-dir", str(tmp_path)])
    out, err = capsys.readouterr()
    assert code == 2 and "Traceback" not in out + err and "INTERNALERROR" not in out + err
    assert "did not list a model" in err
    assert assert_valid_report(tmp_path)["status"] == "not-started"


FULL_DISK = """
import resource, signal, sys
from pathlib import Path
from conformance.report import write_reports
write_reports(None, Path(sys.argv[1]), setup_failure="first", base_url="http://127.0.0.1:9/v1")
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
try:
    write_reports(None, Path(sys.argv[1]), setup_failure="second " * 2000, base_url="http://127.0.0.1:9/v1")
except OSError as problem:
    print(problem.errno)
"""


def test_a_full_disk_leaves_the_previous_reports_whole(tmp_path):
    """No more room after the first run (a file size limit stands in for a full disk): every
    report of the first run is still there, whole, and no temporary file is left behind."""
    written = subprocess.run([sys.executable, "-c", FULL_DISK, str(tmp_path)], cwd=ROOT, capture_output=True,
                             text=True, timeout=PATIENCE_S)
    assert written.stdout.strip() == "27", written.stderr  # EFBIG
    assert sorted(path.name for path in tmp_path.iterdir()) == ["junit.xml", "report.html", "report.json",
                                                                "report.md"]
    assert assert_valid_report(tmp_path)["message"] == "first"


@pytest.mark.parametrize("content", ["{not json", "[]", '{"endpoint": "e", "base_url": 1, "model": "m"}',
                                     "[" * 100_000, '{"endpoint": "e", "base_url": "u", "model": "m", '
                                                    '"context_window": "big"}'])
def test_a_broken_recording_is_a_one_line_usage_error(tmp_path, capsys, content):
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "run.json").write_text(content, encoding="utf-8")
    code = main(["run", "--replay", str(tmp_path / "c"), "--report-dir", str(tmp_path / "r")])
    out, err = capsys.readouterr()
    assert code == 2 and "Traceback" not in out + err and "INTERNALERROR" not in out + err
    assert "run.json" in err and "re-record" in err
    assert assert_valid_report(tmp_path / "r")["status"] == "not-started"


# --- Nothing a server says can inject into what people read -----------------------------------

INJECTION = ("x\r# Injected heading\n![tracker](http://127.0.0.1:9/pixel.png)<img src=x onerror=alert(1)>"
             "\r\n::set-output name=verdict::pass\n\x1b[2J\x1b]8;;http://127.0.0.1:9\x07link\u2028## also | cell ```")


def inject_everywhere(path: str, body: bytes) -> Answer:
    return json_answer({"error": {"message": INJECTION, "type": INJECTION, "code": INJECTION}}, status=400,
                       headers=[("x-injection", "::warning::from a header")])


def test_server_text_stays_inert_in_markdown_and_on_the_console(hostile, tmp_path):
    from markdown_it import MarkdownIt

    server = hostile(models_listing(INJECTION), after_preflight(inject_everywhere))
    run = conformance_process("run", "--base-url", server.base_url, "--profile", "openai", "-v",
                              "--report-dir", str(tmp_path))
    out, err = run.communicate(timeout=PATIENCE_S * 3)
    assert run.returncode == 1, err.decode()
    tokens = MarkdownIt("commonmark").enable("table").parse((tmp_path / "report.md").read_text(encoding="utf-8"))
    kinds = {token.type for token in tokens} | {child.type for token in tokens for child in token.children or []}
    assert not kinds & {"image", "link_open", "html_inline", "html_block"}
    headings = [tokens[i + 1].content for i, token in enumerate(tokens) if token.type == "heading_open"]
    assert headings[:2] == ["Conformance report", "By catalog entry"] and "Injected heading" not in str(headings)
    rows = [i for i, token in enumerate(tokens) if token.type == "tr_open"]
    for start in rows:  # every row of both tables keeps its five cells
        cells = [t for t in tokens[start:] if t.type in ("td_open", "th_open", "tr_close")]
        assert [t.type for t in cells].index("tr_close") == 5
    assert "::set-output" in (tmp_path / "report.md").read_text(encoding="utf-8")  # shown, as code
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "<img src=x" not in page and "&lt;img src=x" in page
    for stream in (out, err):
        assert b"\x1b" not in stream and b"\x07" not in stream
        lines = stream.decode().splitlines()
        assert not [line for line in lines if line.lstrip().startswith("::")]
    assert "set-output" in out.decode()  # the text is shown, escaped, not dropped


# --- Every signal, at any moment, ends promptly with a valid report ----------------------------

def stalling_after(answered: int, events: dict[str, threading.Event]) -> Callable[[str, bytes], Answer]:
    """The first `answered` requests get a 400 at once; every later one is held open (as a stalled
    endpoint does) after telling the test it arrived."""
    count = iter(range(1, 1_000_000))
    lock = threading.Lock()

    def answer(path: str, body: bytes) -> Answer:
        with lock:
            number = next(count)
        if number > answered:
            events["arrived"].set()
            events["release"].wait(PATIENCE_S)
        return json_answer({"error": {"message": "no", "type": "invalid_request_error"}}, status=400)
    return answer


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_during_start_up_leaves_a_report(hostile, tmp_path, signum):
    """`GET /models` is pending when the signal comes: exit 128+signal, and a report saying so."""
    server = hostile(models_listing(), echo_everything, hold_models=True)
    run = conformance_process("run", "--base-url", server.base_url, "--report-dir", str(tmp_path))
    assert server.models_requested.wait(PATIENCE_S)
    run.send_signal(signum)
    out, err = run.communicate(timeout=PATIENCE_S)
    assert run.returncode == 128 + signum, err.decode()
    assert b"Traceback" not in out + err
    report = assert_valid_report(tmp_path)
    assert report["status"] == "not-started" and "interrupted" in report["message"]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_while_a_check_waits_on_a_stalled_endpoint_ends_promptly(hostile, tmp_path, signum):
    """Checks run one at a time; the first ones are answered, then the endpoint stalls under a long
    timeout. The process still ends now (the test's patience is far shorter than the timeout), and
    the report holds the checks finished by then and names the others."""
    events = {"arrived": threading.Event(), "release": threading.Event()}
    server = hostile(models_listing(), after_preflight(stalling_after(3, events)))
    run = conformance_process("run", "--base-url", server.base_url, "--timeout", str(PATIENCE_S * 10),
                              "--concurrency", "1", "--report-dir", str(tmp_path))
    assert events["arrived"].wait(PATIENCE_S)
    run.send_signal(signum)
    try:
        out, err = run.communicate(timeout=PATIENCE_S / 2)
    finally:
        run.kill()
        events["release"].set()
    assert run.returncode == 128 + signum, err.decode()
    assert b"Traceback" not in out + err
    report = assert_valid_report(tmp_path)
    assert report["status"] == "interrupted" and not report["complete"]
    judged = [r for r in report["results"] if not r["reason"].startswith("not judged")]
    assert len(report["results"]) == len(REGISTRY) and 0 < len(judged) < len(REGISTRY)
    assert "not judged" in report["message"]


SIGNAL_BEFORE_PYTEST = """
import os, signal, sys
import pytest
from conformance import cli

def signalled_main(*arguments, **options):
    os.kill(os.getpid(), signal.SIGTERM)  # delivered before pytest has even parsed its arguments
    return pytest_main(*arguments, **options)

def failing_report_main(*arguments, **options):
    try:
        os.kill(os.getpid(), signal.SIGTERM)
    except KeyboardInterrupt:  # pytest's interrupt report then fails, as it does for a frozen frame
        raise TypeError("unsupported operand type(s) for -: 'NoneType' and 'int'") from None

if sys.argv[2] == "report-fails":
    signalled_main = failing_report_main

pytest_main, pytest.main = pytest.main, signalled_main
sys.exit(cli.main(["run", "--base-url", "http://127.0.0.1:9/v1", "--report-dir", sys.argv[1]]))
"""


@pytest.mark.parametrize("pytest_reports", ["the-interrupt", "report-fails"])
def test_a_signal_before_the_plugin_starts_still_leaves_a_report(tmp_path, pytest_reports):
    """Also when pytest's own report of the interrupt crashes (seen under load: a SIGINT landing in
    a frozen module's frame leaves pytest's traceback printer a line number of None)."""
    run = subprocess.run([sys.executable, "-c", SIGNAL_BEFORE_PYTEST, str(tmp_path), pytest_reports], cwd=ROOT,
                         capture_output=True, timeout=PATIENCE_S)
    assert run.returncode == 143 and b"Traceback" not in run.stdout + run.stderr, run.stderr.decode()
    report = assert_valid_report(tmp_path)
    assert report["status"] == "not-started" and "interrupted" in report["message"]
