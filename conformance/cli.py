"""The `conformance` command: `run` (drives pytest with the plugin), `serve`, `catalog`, `compare`, `diff`.

Exit codes of `run`: 0 every check met the profile; 1 a check failed or errored; 2 a usage error
or an endpoint that cannot be used (always with a one-line message, never a traceback).
"""

from __future__ import annotations

import argparse
import signal
from contextlib import contextmanager
import json
import os
import sys
from importlib import resources
from pathlib import Path

from conformance import __version__, compare
from conformance import pytest_plugin as plugin
from conformance.catalog import load_catalog
from conformance.datasets import command as dataset_command
from conformance.profiles import ProfileError, load_profile
from conformance.reference_server.faults import FAULTS

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
EXIT_INTERRUPTED = 130


class UsageProblem(Exception):
    """A flag's value is unusable; reported as one line with exit 2."""


class Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line (argparse's default adds a usage block), and our exit code
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0: {text!r}")
    return value


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0: {text!r}")
    return value


def port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"not a port (0-65535): {text!r}")
    return value


def override(text: str) -> tuple[str, str]:
    entry, sep, behaviour = text.partition("=")
    if not sep or not entry or not behaviour:
        raise argparse.ArgumentTypeError(f"expected ENTRY=BEHAVIOUR, got {text!r}")
    return entry, behaviour


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="conformance", description=__doc__.split("\n")[0])
    parser.add_argument("--version", action="version", version=f"conformance {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    run = commands.add_parser("run", help="run the conformance suite and write reports")
    run.add_argument("--base-url", help="endpoint base URL, e.g. https://api.fireworks.ai/inference/v1 "
                                        "(default: $OPENAI_BASE_URL or $OPENAI_API_BASE; else the embedded server)")
    run.add_argument("--api-key", help="API key (default: $OPENAI_API_KEY)")
    run.add_argument("--model", help="model id (default: the first model /models lists)")
    run.add_argument("--profile", default="openai", help="openai, fireworks, none, or a profile file (default: openai)")
    run.add_argument("--report-dir", default="reports", help="directory for the reports (default: reports)")
    run.add_argument("--timeout", type=positive_float, default=plugin.DEFAULT_TIMEOUT,
                     help=f"seconds allowed per request (default: {plugin.DEFAULT_TIMEOUT:g})")
    run.add_argument("--context-window", type=positive_int, help="the model's context window in tokens, if known")
    run.add_argument("--concurrency", type=positive_int, default=plugin.DEFAULT_CONCURRENCY,
                     help=f"requests in flight at once (default: {plugin.DEFAULT_CONCURRENCY})")
    run.add_argument("--embedded-behavior", choices=("openai", "fireworks"), default="openai",
                     help="how the embedded server behaves when no base URL is given (default: openai)")
    run.add_argument("--max-tokens-budget", type=positive_int, metavar="N",
                     help="stop sending requests once N tokens are spent; the remaining checks are skipped")
    cassettes = run.add_mutually_exclusive_group()
    cassettes.add_argument("--record", nargs="?", const="", metavar="DIR",
                           help="record every interaction into cassettes (default DIR: cassettes/<endpoint>/)")
    cassettes.add_argument("--replay", metavar="DIR",
                           help="re-run offline from recorded cassettes; --profile may differ from the recording's")
    run.add_argument("-k", dest="keyword", help="only checks whose id matches this pytest -k expression")
    run.add_argument("-v", "--verbose", action="store_true", help="one line per check")
    run.add_argument("--baseline", metavar="REPORT.json",
                     help="compare with an earlier report.json (or its directory); exit 1 on a regression")

    serve = commands.add_parser("serve", help="run the reference server in the foreground")
    serve.add_argument("--behavior", choices=("openai", "fireworks"), default="openai")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=port, default=0, help="0 picks a free port (default)")
    serve.add_argument("--api-key", help="require this key (401 otherwise)")
    serve.add_argument("--context-window", type=positive_int, default=4096)
    serve.add_argument("--latency-ms", type=int, default=0, help="delay every response by this many ms")
    serve.add_argument("--fault", dest="faults", action="append", default=[], metavar="NAME",
                       help="commit a transport fault on generation requests (repeatable): "
                            + ", ".join(FAULTS))
    serve.add_argument("--set", dest="overrides", type=override, action="append", default=[],
                       metavar="ENTRY=BEHAVIOUR", help="deviate on one catalog entry (repeatable)")

    catalog = commands.add_parser("catalog", help="list the documented differences with their sources")
    catalog.add_argument("--format", choices=("text", "json"), default="text")
    compare.add_commands(commands)
    dataset_command.add_command(commands)
    return parser


def pytest_arguments(args: argparse.Namespace) -> list[str]:
    suites = Path(str(resources.files("conformance.suites")))
    arguments = [str(suites), "-c", str(suites / "pytest.ini"), "--rootdir", str(suites),
                 "-p", "no:cacheprovider", "-p", "no:hypothesispytest", "--no-header", "-rN", "--tb=no" if not args.verbose else "--tb=short",
                 "-v" if args.verbose else "-q",
                 plugin.OPT_PROFILE, args.profile, plugin.OPT_REPORT_DIR, str(Path(args.report_dir).resolve()),
                 plugin.OPT_TIMEOUT, str(args.timeout), plugin.OPT_CONCURRENCY, str(args.concurrency),
                 plugin.OPT_EMBEDDED, args.embedded_behavior]
    for option, value in ((plugin.OPT_BASE_URL, args.base_url), (plugin.OPT_API_KEY, args.api_key),
                          (plugin.OPT_MODEL, args.model), (plugin.OPT_CONTEXT_WINDOW, args.context_window),
                          (plugin.OPT_RECORD, args.record), (plugin.OPT_REPLAY, args.replay),
                          (plugin.OPT_BUDGET, args.max_tokens_budget)):
        if value is not None:
            arguments += [option, str(value)]
    if args.keyword:
        arguments += ["-k", args.keyword]
    return arguments


@contextmanager
def sigterm_as_interrupt():
    """Treat SIGTERM like Ctrl-C, so a stopped run still writes its partial report."""
    def interrupt(signum, frame):
        raise KeyboardInterrupt
    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread (an in-process caller): leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def command_run(args: argparse.Namespace) -> int:
    import pytest

    try:
        load_profile(args.profile, load_catalog())
    except ProfileError as problem:
        raise UsageProblem(str(problem)) from None
    if args.baseline is not None:
        try:
            compare.load_report(args.baseline)
        except compare.ReportError as problem:
            raise UsageProblem(f"--baseline: {problem}") from None
    if args.replay is not None and (args.base_url or args.model):
        raise UsageProblem("--replay runs against the recorded endpoint and model; drop --base-url/--model")
    report_dir = Path(args.report_dir)
    try:
        report_dir.mkdir(parents=True, exist_ok=True)
        if not os.access(report_dir, os.W_OK):
            raise PermissionError(13, "not writable")
    except OSError as problem:
        raise UsageProblem(f"cannot write reports to {str(report_dir)!r}: {problem.strerror or problem}") from None
    with sigterm_as_interrupt():
        code = pytest.main(pytest_arguments(args))
    if args.baseline is not None and code in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED):
        current = json.loads((report_dir / "report.json").read_text(encoding="utf-8"))
        changes, regressed = compare.baseline_verdict(args.baseline, current)
        (report_dir / "changes.md").write_text(changes, encoding="utf-8")
        print(changes, end="")
        if regressed:
            code = pytest.ExitCode.TESTS_FAILED
    if code == pytest.ExitCode.OK:
        return EXIT_OK
    if code == pytest.ExitCode.TESTS_FAILED:
        return EXIT_FAILED
    if code == pytest.ExitCode.INTERRUPTED:
        return EXIT_INTERRUPTED
    if code == pytest.ExitCode.NO_TESTS_COLLECTED:
        raise UsageProblem(f"no check matches -k {args.keyword!r}; `conformance catalog` lists the entries")
    if code == pytest.ExitCode.USAGE_ERROR:
        return EXIT_USAGE  # pytest already printed the one-line reason
    raise UsageProblem(f"the test run stopped with pytest exit code {int(code)}")


def command_serve(args: argparse.Namespace) -> int:
    from conformance.reference_server.config import ConfigError, ServerConfig
    from conformance.reference_server.embedded import base_url_of, bind, uvicorn_server

    try:
        config = ServerConfig.for_vendor(args.behavior, dict(args.overrides), api_key=args.api_key,
                                         context_window=args.context_window, latency_ms=max(0, args.latency_ms),
                                         faults=frozenset(args.faults))
        sock = bind(args.host, args.port)
    except ConfigError as problem:
        raise UsageProblem(str(problem)) from None
    except OSError as problem:
        raise UsageProblem(f"cannot listen on {args.host}:{args.port}: {problem.strerror}") from None
    print(base_url_of(sock), flush=True)
    uvicorn_server(config).run(sockets=[sock])
    return EXIT_OK


def command_catalog(args: argparse.Namespace) -> int:
    catalog = load_catalog()
    if args.format == "json":
        print(json.dumps([{
            "id": e.id, "title": e.title, "area": e.area, "openai": e.openai, "fireworks": e.fireworks,
            "behaviours": e.behaviours,
            "documents": [{"source": c.source.key, "says": c.says, "citation": c.source.cite(c.section)}
                          for c in e.documents],
        } for e in catalog], indent=2))
        return EXIT_OK
    for entry in catalog:
        print(f"{entry.id}  [{entry.area}]  {entry.title}")
        print(f"  OpenAI:    {entry.openai}")
        print(f"  Fireworks: {entry.fireworks}")
        for claim in entry.documents:
            print(f"  - {claim.says:<12} {claim.source.cite(claim.section)}")
        print()
    return EXIT_OK


COMMANDS = {"run": command_run, "serve": command_serve, "catalog": command_catalog,
            "compare": compare.command_compare, "diff": compare.command_diff, "dataset": dataset_command.run}


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as stop:  # --help, --version, or a flag's one-line error: return the code, as for the rest
        return stop.code if isinstance(stop.code, int) else (EXIT_OK if stop.code is None else EXIT_USAGE)
    try:
        return COMMANDS[args.command](args)
    except UsageProblem as problem:
        print(f"conformance: error: {problem}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("conformance: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # e.g. `conformance catalog | head`: the reader left, which is no error
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the final flush cannot fail again
        except (OSError, ValueError):
            pass
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
