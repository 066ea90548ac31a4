"""The `conformance` command: `run` (drives pytest with the plugin), `serve`, `catalog`, `compare`, `diff`.

Exit codes of `run`: 0 every check met the profile; 1 a check failed or errored; 2 a usage error
or an endpoint that cannot be used (always with a one-line message, never a traceback).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from conformance import __version__
from conformance.audit import command as audit_command
from conformance.console import printable
from conformance.datasets import command as dataset_command
from conformance.options import (
    API_KEY_VARIABLE,
    BASE_URL_VARIABLES,
    OPTIONS,
    RUN_OPTIONS,
    OptionError,
    Settings,
    argparse_type,
    positive_int,
    settings,
)
from conformance.redaction import Redactor, run_redactor

if TYPE_CHECKING:
    from concurrent.futures import Future

    import pytest

    from conformance.accounting import RunStats
    from conformance.compare import Changes
    from conformance.pytest_plugin import Opened

# `conformance catalog` and `--help` must start fast: the client, SDK, pytest, Hypothesis and the
# reference server are imported by the commands that use them, not here.

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
EXIT_INTERRUPTED = 130


class UsageProblem(Exception):
    """A flag's value is unusable; reported as one line with exit 2."""


class Interrupted(Exception):
    """A signal stopped the run after its reports were written; `code` is the exit code."""

    def __init__(self, code: int):
        super().__init__(code)
        self.code = code


class FlagError(Exception):
    """A flag argparse could not take; `invoke` prints it as one line, redacted, with exit 2."""


class Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line (argparse's default adds a usage block), and our exit code
        raise FlagError(f"{self.prog}: error: {message} (see `{self.prog} --help`)")


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
    for option in RUN_OPTIONS:
        option.add_to(run.add_argument)
    run.add_argument("-k", dest="keyword", help="only checks whose id matches this pytest -k expression")
    run.add_argument("-v", "--verbose", action="store_true",
                     help="one line per check: outcome, check id, behaviour observed, reason")

    serve = commands.add_parser("serve", help="run the reference server in the foreground")
    serve.add_argument("--behavior", choices=("openai", "fireworks", "anthropic"), default="openai")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=port, default=0, help="0 picks a free port (default)")
    serve.add_argument("--api-key", help="require this key (401 otherwise)")
    serve.add_argument("--context-window", type=argparse_type(positive_int), default=4096)
    serve.add_argument("--latency-ms", type=int, default=0, help="delay every response by this many ms")
    serve.add_argument("--token-delay-ms", type=float, default=None,
                       help="pause before each streamed chunk, in ms (default: the reference server's, 2; "
                            "0: stream at once)")
    serve.add_argument("--fault", dest="faults", action="append", default=[], metavar="NAME",
                       help="commit a transport fault on generation requests (repeatable; an unknown NAME "
                            "is refused with the list of faults)")
    serve.add_argument("--set", dest="overrides", type=override, action="append", default=[],
                       metavar="ENTRY=BEHAVIOUR", help="deviate on one catalog entry (repeatable)")
    serve.add_argument("--models", type=argparse_type(positive_int), default=None, metavar="N",
                       help="serve N models, reference-model-001 ... (each behaving as --behavior and --set say, "
                            "unless --model-behaviour says otherwise)")
    serve.add_argument("--model-behaviour", dest="model_behaviours", type=argparse_type(parse_model_behaviour),
                       action="append", default=[], metavar="MODEL=VENDOR[+ENTRY=BEHAVIOUR...]",
                       help="with --models: how one model behaves, e.g. reference-model-002=fireworks or "
                            "reference-model-003=openai+embeddings=unsupported (repeatable)")

    catalog = commands.add_parser("catalog", help="list the documented differences with their sources")
    catalog.add_argument("--format", choices=("text", "json"), default="text")

    compare = commands.add_parser(
        "compare", help="one matrix of several reports: entries down, endpoints across",
        description="Render the observed behaviours of several runs side by side, as Markdown and HTML.")
    compare.add_argument("reports", nargs="+", metavar="REPORT.json", help="report.json files (or their directories)")
    compare.add_argument("--out", metavar="DIR", help="write compare.md and compare.html here "
                                                     "(default: print the Markdown)")
    changed = commands.add_parser(
        "diff", help="what changed between two runs; exit 1 on a regression",
        description="List new failures, fixes, behaviour flips and new inconclusives between two runs. "
                    "Exit 0: no regression; 1: a check that did not fail before fails or errors now, or a "
                    "behaviour flipped (unless accepted); 2: a file is not a readable report.")
    changed.add_argument("baseline", metavar="BASELINE.json")
    changed.add_argument("current", metavar="CURRENT.json")
    OPTIONS["accept-behaviour-changes"].add_to(changed.add_argument)
    merging = commands.add_parser(
        "merge", help="join the shards of one run (--shard K/N) into one report",
        description="Join the report.json of every shard of one run into one report (report.json, report.md, "
                    "report.html, junit.xml). Exit 0 or 1 as the unsharded run would; 2 (one line) for shards of "
                    "different runs, a shard given twice, a missing shard or a case in two shards.")
    merging.add_argument("reports", nargs="+", metavar="REPORT.json", help="each shard's report.json (or directory)")
    merging.add_argument("--report-dir", default="reports", metavar="DIR", help="where to write (default: reports)")
    dataset_command.add_command(commands)
    audit_command.add_command(commands)
    return parser


def pytest_arguments(args: argparse.Namespace) -> list[str]:
    """pytest's own arguments for the suite; the run's options reach the plugin as `Settings`.

    No other installed plugin is loaded: the run is ours alone, and plugins such as
    pytest-benchmark would otherwise leave directories in the user's working directory. Built-in
    plugins that cost time and do nothing for checks that never print are left out too: output
    capturing (two dup2 per item), and the unraisable-exception hunt (five full garbage
    collections at exit, about 0.3 s with the SDK loaded).

    pytest's console is silenced down to its errors (`-qq`: no header, no collection count, no
    counts line; `--tb=no -rN`: no failure sections): `progress.RunConsole` shows progress, `-v`
    lines, and the plugin's one summary line, in our outcomes' names."""
    suites = Path(str(resources.files("conformance.suites")))
    arguments = [str(suites), "-c", str(suites / "pytest.ini"), "--rootdir", str(suites),
                 "--disable-plugin-autoload", "-p", "no:cacheprovider", "-p", "no:unraisableexception",
                 "--capture=no", "--no-header", "-rN", "--tb=no", "-qq"]
    if args.keyword:
        arguments += ["-k", args.keyword]
    return arguments


@contextmanager
def sigterm_as_interrupt() -> Iterator[list[int]]:
    """Treat SIGTERM like Ctrl-C, so a stopped run still writes its partial report; yields the
    signals received. After the first, further SIGINT/SIGTERM are only noted: the run is already
    stopping, and a second KeyboardInterrupt would cut the report being written."""
    received: list[int] = []

    def interrupt(signum, frame):
        received.append(signum)
        if len(received) == 1:
            raise KeyboardInterrupt

    try:
        previous = {signum: signal.signal(signum, interrupt) for signum in (signal.SIGINT, signal.SIGTERM)}
    except ValueError:  # not the main thread (an in-process caller): leave signals alone
        yield received
        return
    try:
        yield received
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def exit_code_of(received: list[int]) -> int:
    """128 + the first signal's number, as shells report a process a signal stopped: 130, 143."""
    return 128 + (received[0] if received else signal.SIGINT)


class SessionLink:
    """A pytest plugin object that hands the CLI's validated settings, and the endpoint being
    opened meanwhile, to the conformance plugin, and keeps the session's config, so the run's
    report and changes stay in memory."""

    def __init__(self, chosen: Settings, stats: RunStats, opening: Future[Opened]):
        self.settings, self.stats, self.opening = chosen, stats, opening
        self.config: pytest.Config | None = None

    def pytest_configure(self, config: pytest.Config) -> None:
        from conformance.pytest_plugin import OPENING, SETTINGS, STATS

        config.stash[SETTINGS] = self.settings
        config.stash[STATS] = self.stats
        config.stash[OPENING] = self.opening
        self.config = config

    def reported(self) -> bool:
        """Whether the conformance plugin wrote (or tried to write) this session's reports."""
        from conformance.pytest_plugin import reported

        return self.config is not None and reported(self.config)

    def close_unused_endpoint(self) -> None:
        """No run took the endpoint over (nothing collected, interrupted): stop its embedded server."""
        from conformance.pytest_plugin import RUN

        if self.config is None or RUN not in self.config.stash:
            self.opening.add_done_callback(close_opened)


def close_opened(opening: Future[Opened]) -> None:
    if opening.exception() is None:
        endpoint, _, _ = opening.result()
        endpoint.close()


@dataclass
class Finished:
    """A `conformance run`, after the fact: its exit code, its report and changes since --baseline."""

    code: int
    report: dict[str, Any] | None = None
    changes: Changes | None = None


#: glibc's mallopt parameter: the most heaps (arenas) threads allocate from.
M_ARENA_MAX = -8


def fewer_malloc_arenas() -> None:
    """glibc gives threads heaps of their own, up to eight per core, and what one frees no other
    reuses: a run's 64 check threads held tens of megabytes more than they used (a 200-model
    matrix: 555 MB against 499 MB with two arenas, and less CPU). Two, unless $MALLOC_ARENA_MAX
    says otherwise; before the run starts any thread, and inherited by its worker processes."""
    if not sys.platform.startswith("linux") or "MALLOC_ARENA_MAX" in os.environ:
        return
    import ctypes

    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to tune
        ctypes.CDLL(None).mallopt(M_ARENA_MAX, 2)


#: Allocations between two collections of the youngest generation during a run (Python's default:
#: 700). A 200-model matrix spent 7.5 s of its process's 48 s of CPU in the collector at the
#: default, 3 s at this, and held no more memory.
RUN_GC_THRESHOLD = 20_000


@contextmanager
def fewer_collections() -> Iterator[None]:
    """The garbage collector off during start-up (imports and collection allocate much and free
    little: about 0.2 s of CPU), its youngest generation collected less often while the checks run
    (millions of short-lived objects, few in cycles); as it was afterwards. The plugin turns it on
    as the checks start, having frozen what start-up made (`gc.freeze`: no collection walks it)."""
    before = gc.get_threshold()
    gc.set_threshold(max(before[0], RUN_GC_THRESHOLD), *before[1:])
    gc.disable()
    try:
        yield
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()  # what the run froze is collectable again (a process may run many)
        gc.enable()


def execute_run(args: argparse.Namespace) -> Finished:
    """Validate every option (before anything is sent or written), then run the suite under pytest."""
    fewer_malloc_arenas()
    with fewer_collections():
        return run_suite(args)


def run_suite(args: argparse.Namespace) -> Finished:
    """`execute_run`'s work: the options, the endpoint being opened, pytest, the outcome."""
    from concurrent.futures import ThreadPoolExecutor

    import pytest

    import conformance.endpoint  # noqa: F401  # imported in this thread; the opener below only talks
    from conformance import pytest_plugin
    from conformance.accounting import RunStats
    from conformance.progress import RunConsole
    from conformance.pytest_plugin import CHANGES, INTERRUPTED_START, REPORT, redactor_of_settings

    try:
        chosen = settings(vars(args), lambda option: option.flag())
    except OptionError as problem:
        raise UsageProblem(str(problem)) from None
    # The endpoint is opened (embedded server started, /models listed) while pytest imports the
    # checks: the round trip to a distant endpoint costs no time of its own.
    # Every request is counted and budgeted in one RunStats, the listing and preflight included.
    stats = RunStats(token_budget=chosen.max_tokens_budget)
    opener = ThreadPoolExecutor(max_workers=1, thread_name_prefix="endpoint")
    link = SessionLink(chosen, stats, opener.submit(pytest_plugin.open_endpoint, chosen, stats))
    opener.shutdown(wait=False)
    try:
        with sigterm_as_interrupt() as received:
            try:
                code = pytest.main(pytest_arguments(args), plugins=[pytest_plugin, link, RunConsole(args.verbose)])
            except KeyboardInterrupt:  # before pytest took over
                code = pytest.ExitCode.INTERRUPTED
            except Exception:
                # pytest's own report of an interrupt can fail (a KeyboardInterrupt raised inside a
                # frozen module's frame has no line number for its traceback printer): the run was
                # still interrupted, and still gets its report below.
                if not received:
                    raise
                code = pytest.ExitCode.INTERRUPTED
            if code == pytest.ExitCode.INTERRUPTED:
                if not link.reported():  # stopped before the plugin's session began
                    unwritable = pytest_plugin.write_start_report(chosen, INTERRUPTED_START,
                                                                  redactor_of_settings(chosen), stats)
                    if unwritable:
                        print(f"conformance: error: interrupted{unwritable}", file=sys.stderr)
                raise Interrupted(exit_code_of(received))
    finally:
        link.close_unused_endpoint()
    stash = link.config.stash if link.config is not None else None
    finished = Finished(EXIT_USAGE, stash.get(REPORT, None) if stash else None,
                        stash.get(CHANGES, None) if stash else None)
    if code == pytest.ExitCode.OK:
        finished.code = EXIT_OK
    elif code == pytest.ExitCode.TESTS_FAILED:
        finished.code = EXIT_FAILED
    elif code == pytest.ExitCode.NO_TESTS_COLLECTED:
        raise UsageProblem(f"no check matches -k {args.keyword!r}; `conformance catalog` lists the entries")
    elif code != pytest.ExitCode.USAGE_ERROR:  # a usage error: pytest already printed the one-line reason
        raise UsageProblem(f"the test run stopped with pytest exit code {int(code)}")
    return finished


def parse_model_behaviour(text: str) -> tuple[str, str, dict[str, str]]:
    from conformance.reference_server.fleet import parse_model_behaviour as parse

    return parse(text)


def command_serve(args: argparse.Namespace) -> int:
    from conformance.reference_server.config import ConfigError, ServerConfig
    from conformance.reference_server.embedded import base_url_of, bind, uvicorn_server
    from conformance.reference_server.fleet import Fleet, fleet_configs

    if args.model_behaviours and args.models is None:
        raise UsageProblem("--model-behaviour needs --models N")
    try:
        delay = {} if args.token_delay_ms is None else {"token_delay_ms": max(0.0, args.token_delay_ms)}
        knobs = {"api_key": args.api_key, "context_window": args.context_window,
                 "latency_ms": max(0, args.latency_ms), "faults": frozenset(args.faults), **delay}
        fleet = None
        if args.models is None:
            config = ServerConfig.for_vendor(args.behavior, dict(args.overrides), **knobs)
        else:
            configs = fleet_configs(args.models, args.behavior, dict(args.overrides), args.model_behaviours, **knobs)
            config, fleet = configs[0], Fleet(configs)
        sock = bind(args.host, args.port)
    except ConfigError as problem:
        raise UsageProblem(str(problem)) from None
    except OSError as problem:
        raise UsageProblem(f"cannot listen on {args.host}:{args.port}: {problem.strerror}") from None
    print(base_url_of(sock), flush=True)
    uvicorn_server(config, app=fleet).run(sockets=[sock])
    return EXIT_OK


def command_catalog(args: argparse.Namespace) -> int:
    from conformance.catalog import load_catalog

    catalog = load_catalog()
    if args.format == "json":
        print(json.dumps([{
            "id": e.id, "title": e.title, "area": e.area, "api": e.api, "openai": e.openai,
            **({"anthropic": e.anthropic} if e.anthropic else {}), "fireworks": e.fireworks,
            "behaviours": e.behaviours,
            "documents": [{"source": c.source.key, "says": c.says, "citation": c.source.cite(c.section)}
                          for c in e.documents],
        } for e in catalog], indent=2))
        return EXIT_OK
    for entry in catalog:
        print(f"{entry.id}  [{entry.area}]  {entry.title}")
        print(f"  OpenAI:    {entry.openai}")
        if entry.anthropic:
            print(f"  Anthropic: {entry.anthropic}")
        print(f"  Fireworks: {entry.fireworks}")
        for claim in entry.documents:
            print(f"  - {claim.says:<12} {claim.source.cite(claim.section)}")
        print()
    return EXIT_OK


def command_compare(args: argparse.Namespace) -> int:
    from conformance import compare

    return compare.command_compare(args)


def command_diff(args: argparse.Namespace) -> int:
    from conformance import compare

    return compare.command_diff(args)


def command_merge(args: argparse.Namespace) -> int:
    from conformance import merge

    return merge.command_merge(args)


#: The commands besides `run` (`execute_run`, whose outcome is more than an exit code).
COMMANDS = {"serve": command_serve, "catalog": command_catalog, "compare": command_compare, "diff": command_diff,
            "merge": command_merge,
            "dataset": dataset_command.run, "audit": audit_command.run}


def invoke(argv: list[str] | None = None) -> Finished:
    """Run one command; `conformance run` also hands back its report and changes (the Action's use)."""
    arguments = sys.argv[1:] if argv is None else argv
    if arguments[:1] == ["run"] and (wanted := sdk_workers_wanted(arguments[1:])):
        from conformance.sdk_worker import relay

        # Before anything else: the SDKs' workers import them on other cores while this process gets ready.
        relay.prestart(wanted)
    redactor = console_redactor(arguments)
    try:
        args = build_parser().parse_args(arguments)
    except FlagError as problem:  # a flag's message may quote its value, and so a secret beside it
        print(printable(redactor.text(str(problem))), file=sys.stderr)
        return Finished(EXIT_USAGE)
    except SystemExit as stop:  # --help, --version, or a flag's one-line error: return the code, as for the rest
        return Finished(stop.code if isinstance(stop.code, int) else (EXIT_OK if stop.code is None else EXIT_USAGE))
    try:
        if args.command == "run":
            return execute_run(args)
        return Finished(COMMANDS[args.command](args))
    except UsageProblem as problem:
        print(f"conformance: error: {printable(redactor.text(str(problem)))}", file=sys.stderr)
        return Finished(EXIT_USAGE)
    except (KeyboardInterrupt, Interrupted) as stop:
        print("conformance: interrupted", file=sys.stderr)
        sys.stdout.flush()
        sys.stderr.flush()
        # Checks still waiting on the endpoint would hold the exit until their timeouts (the
        # interpreter joins worker threads); the reports are written, so leave now.
        os._exit(stop.code if isinstance(stop, Interrupted) else EXIT_INTERRUPTED)
    except BrokenPipeError:  # e.g. `conformance catalog | head`: the reader left, which is no error
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the final flush cannot fail again
        return Finished(EXIT_OK)


def sdk_workers_wanted(arguments: list[str]) -> list[str]:
    """The SDKs a `run` with these words will surely drive, read off the words before they are parsed
    (a guess made only to start their workers early: a worker not started here starts on first use).
    None for help, a -k selection or a matrix (whose forked case workers share SDKs imported in the
    run's process: sdk_worker/relay.py); with --api, that family's."""
    flags = [word.partition("=")[0] for word in arguments]
    if {"-h", "--help", "--models", "--endpoint"} & set(flags) or flags.count("--model") > 1 \
            or any(word.startswith("-k") for word in arguments):
        return []
    api = next((word.partition("=")[2] or (arguments[index + 1:index + 2] or [""])[0]
                for index, word in enumerate(arguments) if word.partition("=")[0] == "--api"), "all")
    from conformance.families import API_FAMILIES

    return [family for family in API_FAMILIES if api in (family, "all")]  # each family's SDK has its name


#: The flags whose values are secrets, or may carry them, as the command line spells them.
SECRET_FLAGS = ("--api-key", "--header", "--base-url", "--endpoint-key")


def console_redactor(argv: list[str]) -> Redactor:
    """The secrets a command's own messages may echo: the key, header values and base-URL
    credentials as given on the command line (read from the words themselves, so even a message
    about a flag argparse refused is redacted) or in the environment."""
    given: dict[str, list[str]] = {flag: [] for flag in SECRET_FLAGS}
    for index, word in enumerate(argv):
        flag, equals, value = word.partition("=")
        if flag in given:
            given[flag] += [value] if equals else argv[index + 1:index + 2]
    environ_url = next((os.environ[name] for name in BASE_URL_VARIABLES if os.environ.get(name)), None)
    endpoint_keys = [os.environ.get(word.partition("=")[2], "") for word in given["--endpoint-key"]]
    return run_redactor(next(iter(given["--api-key"]), None) or os.environ.get(API_KEY_VARIABLE),
                        next(iter(given["--base-url"]), None) or environ_url,
                        [header.partition(":")[2].strip() for header in given["--header"]]
                        + [key.strip() for key in endpoint_keys if key.strip()])


def main(argv: list[str] | None = None) -> int:
    return invoke(argv).code


if __name__ == "__main__":
    sys.exit(main())
