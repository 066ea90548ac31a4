"""Every option of a conformance run, declared once: name, type, default, validation and help.

Both front ends are derived from `RUN_OPTIONS`: `conformance run --NAME` (argparse, in cli.py) and
`pytest --conformance-NAME` (the plugin; the prefix keeps it clear of other plugins' `--base-url`,
`--profile`, `--timeout` ...). Either way the values become one `Settings`, validated before the
first request, and every problem is one line naming the flag (or the environment variable).

This module is imported by the pytest plugin in every pytest session, so it imports nothing
heavy at module level: parsers that need the client, profiles or reports import them when called.
"""

from __future__ import annotations

import argparse
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from conformance.families import API_FAMILIES

if TYPE_CHECKING:
    from conformance.profiles import Profile

#: Where an endpoint comes from when no --base-url is given, in this order.
BASE_URL_VARIABLES = ("OPENAI_BASE_URL", "OPENAI_API_BASE")
API_KEY_VARIABLE = "OPENAI_API_KEY"
#: The prefix of the pytest options: no plugin a user is likely to have uses it.
PYTEST_PREFIX = "conformance-"
#: Longest per-request timeout accepted: past it a run is stuck, not patient.
MAX_TIMEOUT_S = 3600.0
#: Cassettes go to cassettes/<endpoint>/ when `--record` names no directory.
DEFAULT_CASSETTE_ROOT = Path("cassettes")
#: `--models all`: every model the endpoint lists.
ALL_MODELS = "all"
HEADER_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")  # an HTTP token (RFC 9110 5.6.2)


class PerEndpoint:
    """The value of `--record` given alone: cassettes go to cassettes/<endpoint>/. Not a string,
    so argparse does not pass it through the option's parser."""


PER_ENDPOINT = PerEndpoint()


class OptionError(ValueError):
    """An option's value is unusable; the message is one line naming the flag or variable."""


# ----------------------------------------------------------------------------- value parsers
# Each takes the text given on the command line and returns the value, or raises ValueError with
# what is wrong (the front end prefixes the flag).


def given(text: str) -> str:
    """Any text but an empty one: an empty value (an unset CI secret, typically) is not a default."""
    if not text.strip():
        raise ValueError("is empty; leave it out for the default")
    return text.strip()


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"not a whole number: {text!r}") from None
    if value <= 0:
        raise ValueError(f"must be greater than 0: {text!r}")
    return value


def timeout_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"not a number: {text!r}") from None
    if not math.isfinite(value) or not 0 < value <= MAX_TIMEOUT_S:
        raise ValueError(f"must be a number of seconds above 0 and at most {MAX_TIMEOUT_S:g}: {text!r}")
    return value


def base_url(text: str) -> str:
    """An http(s) URL (its query string, e.g. Azure's `api-version`, is kept). Empty is an error:
    only the absence of a base URL means the embedded server."""
    from conformance.urls import normalize_base_url

    if not text.strip():
        raise ValueError("is empty; leave it out to run against the embedded reference server")
    return normalize_base_url(text)


def writable_directory(text: str) -> Path:
    """A directory that exists or can be created, and can be written to. Checked without creating
    anything, so a usage error leaves the disk as it was."""
    path = Path(text)
    if not text.strip():
        raise ValueError("is empty")
    probe = path
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        raise ValueError(f"{str(probe)!r} is a file, not a directory")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ValueError(f"{str(probe)!r} is not writable")
    return path


def existing_directory(text: str) -> Path:
    path = Path(text)
    if not path.is_dir():
        raise ValueError(f"no directory {text!r}")
    return path


@dataclass(frozen=True)
class Baseline:
    """An earlier report, read when the options are parsed: before this run writes anything, so a
    report directory that holds the baseline cannot overwrite it first."""

    path: Path
    report: dict[str, Any]


def baseline_report(text: str) -> Baseline:
    from conformance.compare import ReportError, load_report

    try:
        return Baseline(Path(text), load_report(text))
    except ReportError as problem:
        raise ValueError(str(problem)) from None


def profile(text: str) -> Profile:
    from conformance.catalog import load_catalog
    from conformance.profiles import ProfileError, load_profile

    try:
        return load_profile(text, load_catalog())
    except ProfileError as problem:
        raise ValueError(str(problem)) from None


def header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition(":")
    name, value = name.strip(), value.strip()
    if not sep or not HEADER_NAME.match(name) or not value:
        raise ValueError(f"expected NAME:VALUE, got {text!r}")
    return name, value


def api_families(text: str) -> tuple[str, ...]:
    """`openai`, `anthropic` or `all`: the families a run must judge."""
    if text == "all":
        return API_FAMILIES
    if text not in API_FAMILIES:
        raise ValueError(f"expected {', '.join(API_FAMILIES)} or all, got {text!r}")
    return (text,)


@dataclass(frozen=True)
class Shard:
    """`--shard K/N`: this process judges the K-th of N parts of the run's checks x models."""

    index: int
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def shard(text: str) -> Shard:
    index, sep, count = text.partition("/")
    try:
        parsed = Shard(int(index), int(count)) if sep else None
    except ValueError:
        parsed = None
    if parsed is None or not 1 <= parsed.index <= parsed.count:
        raise ValueError(f"expected K/N with 1 <= K <= N, e.g. 3/8, got {text!r}")
    return parsed


ENDPOINT_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,40}$")


def named(text: str) -> tuple[str, str]:
    """`NAME=VALUE` with NAME a short label (letters, digits, `_.-`): an endpoint and its URL, or
    its key variable."""
    name, sep, value = text.partition("=")
    if not sep or not ENDPOINT_NAME.match(name) or not value.strip():
        raise ValueError(f"expected NAME=VALUE with NAME of letters, digits, '_', '.', '-', got {text!r}")
    return name, value.strip()


def endpoint(text: str) -> tuple[str, str]:
    name, url = named(text)
    return name, base_url(url)


def glob(text: str) -> str:
    """An fnmatch pattern over model ids (`*llama*`, `accounts/fireworks/models/*`)."""
    return given(text)


def run_name(text: str) -> str:
    if not text.strip() or len(text) > 100 or "\n" in text:
        raise ValueError(f"a run name is one line of 1 to 100 characters, got {text!r}")
    return text.strip()


def argparse_type(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """`parse` as an argparse `type` (argparse, and so pytest, then says "argument FLAG: problem")."""
    def convert(text: str) -> Any:
        try:
            return parse(text)
        except ValueError as problem:
            raise argparse.ArgumentTypeError(str(problem)) from None
    return convert


# ----------------------------------------------------------------------------- the declarations


@dataclass(frozen=True)
class Option:
    """One option of a run. `default` is the value when it is not given (a string default goes
    through `parse` like a given value)."""

    name: str
    help: str
    parse: Callable[[str], Any] = str
    default: Any = None
    metavar: str | None = None
    choices: tuple[str, ...] | None = None
    #: Given several times, it collects every value (`--header`).
    repeatable: bool = False
    #: A switch: present or not, no value.
    switch: bool = False
    #: May be given without a value, which means `bare` (`--record` alone).
    bare: PerEndpoint | None = None

    @property
    def dest(self) -> str:
        """The attribute name in argparse's namespace and in pytest's `config.option`."""
        return "conformance_" + self.name.replace("-", "_")

    def flag(self, prefix: str = "") -> str:
        return f"--{prefix}{self.name}"

    def add_to(self, add_option: Callable[..., Any], prefix: str = "") -> None:
        """Declare this option through `add_option` (argparse's add_argument or pytest's addoption)."""
        flag = self.flag(prefix)
        default = f" (default: {self.default})" if self.default not in (None, False, ()) else ""
        kwargs: dict[str, Any] = {"dest": self.dest, "help": self.help + default}
        if self.switch:
            kwargs.update(action="store_true", default=False)
        else:
            kwargs.update(type=argparse_type(self.parse), default=None, metavar=self.metavar, choices=self.choices)
            if self.repeatable:
                kwargs["action"] = "append"
            if self.bare is not None:
                kwargs.update(nargs="?", const=self.bare)
        add_option(flag, **kwargs)


RUN_OPTIONS: tuple[Option, ...] = (
    Option("base-url", "endpoint base URL, e.g. https://api.fireworks.ai/inference/v1 (default: $OPENAI_BASE_URL, "
                       "then $OPENAI_API_BASE; with neither, the embedded reference server)",
           base_url, metavar="URL"),
    Option("api-key", f"API key (default: ${API_KEY_VARIABLE}); never written to disk", given, metavar="KEY"),
    Option("model", "model id (default: the first model /models lists); repeated, every model named is judged "
                    "in one run (a matrix)", given, metavar="NAME", repeatable=True),
    Option("models", "`all`: judge every model GET /models lists, in one run (a matrix)", choices=(ALL_MODELS,)),
    Option("models-match", "with --models all: only the listed models whose id matches this glob", glob,
           metavar="GLOB"),
    Option("endpoint", "judge this endpoint too, named NAME (repeatable, instead of --base-url): the same checks x "
                       "models on every endpoint, in one run", endpoint, metavar="NAME=URL", repeatable=True),
    Option("endpoint-key", f"the environment variable holding endpoint NAME's key (repeatable; default: "
                           f"--api-key or ${API_KEY_VARIABLE}); redacted like the key", named,
           metavar="NAME=VARIABLE", repeatable=True),
    Option("shard", "judge only the K-th of N deterministic parts of the checks x models (merge the N reports "
                    "with `conformance merge`)", shard, metavar="K/N"),
    Option("profile", "openai, fireworks, anthropic, none (observe only), or a profile file", profile, "openai",
           metavar="NAME|PATH"),
    Option("report-dir", "directory for report.json/.md/.html and junit.xml", writable_directory, "reports",
           metavar="DIR"),
    Option("timeout", "seconds allowed per request, including reading the whole response", timeout_seconds, 30.0,
           metavar="SECONDS"),
    Option("context-window", "the model's context window in tokens, if /models does not say", positive_int,
           metavar="N"),
    Option("concurrency", "checks in flight at once (a full run has about 50: by default all start together, "
                          "so a slow endpoint's run lasts about its longest chain of dependent requests)",
           positive_int, 64, metavar="N"),
    Option("workers", "processes judging a matrix run's cases, each with its share of --concurrency and the one "
                      "--max-tokens-budget (default: one per core on Linux; 1: all in this process)",
           positive_int, metavar="N"),
    Option("embedded-behavior", "how the embedded server behaves when no base URL is given", default="openai",
           choices=("openai", "fireworks", "anthropic")),
    Option("max-tokens-budget", "stop sending once N tokens are spent; the remaining checks are skipped",
           positive_int, metavar="N"),
    Option("record", "record every interaction into cassettes in DIR (alone: cassettes/<endpoint>/)",
           writable_directory, metavar="DIR", bare=PER_ENDPOINT),
    Option("replay", "re-run offline from the cassettes in DIR (the profile may differ from the recording's)",
           existing_directory, metavar="DIR"),
    Option("baseline", "an earlier report.json (or its directory): list the changes, exit 1 on a regression",
           baseline_report, metavar="REPORT.json"),
    Option("accept-behaviour-changes", "with a baseline: a behaviour that flipped (same outcome, another "
                                       "observed behaviour) does not fail the run", switch=True),
    Option("name", "a name for this run, shown in the reports and as its column in `conformance compare`",
           run_name, metavar="NAME"),
    Option("header", "send this header on every request (repeatable); its value is redacted like the key",
           header, metavar="NAME:VALUE", repeatable=True),
    Option("api", "the API families to judge: openai (chat, completions...), anthropic (Messages), or all; "
                  "one asked for that the endpoint does not serve stops the run (default: the families the "
                  "endpoint serves, and those the profile judges)", api_families, metavar="openai|anthropic|all"),
)
OPTIONS = {option.name: option for option in RUN_OPTIONS}


# ----------------------------------------------------------------------------- the settings


@dataclass(frozen=True)
class Settings:
    """A run's validated options, whichever front end they came from."""

    base_url: str | None  # None: the embedded reference server
    api_key: str | None
    model: str | None
    profile: Profile
    report_dir: Path
    timeout: float
    context_window: int | None
    concurrency: int
    embedded_behavior: str
    max_tokens_budget: int | None
    record: Path | None  # with `record_per_endpoint`, the root under which cassettes/<endpoint>/ goes
    record_per_endpoint: bool
    replay: Path | None
    baseline: Baseline | None
    accept_behaviour_changes: bool
    name: str | None
    headers: dict[str, str]
    #: The models of a matrix run (several judged in one run), or None: one model, `model`.
    matrix: ModelSelection | None = None
    shard: Shard | None = None
    #: Several endpoints judged in one run (`--endpoint`), each with its key; empty: `base_url` alone.
    endpoints: tuple[EndpointSpec, ...] = ()
    #: The API families asked for (--api); None: those the endpoint serves and the profile judges.
    api: tuple[str, ...] | None = None
    #: Worker processes for a live matrix run (--workers); None: one per core (workers.default_workers).
    workers: int | None = None


@dataclass(frozen=True)
class EndpointSpec:
    """One endpoint of a run of several: its name, base URL and key (from its variable)."""

    name: str
    base_url: str
    api_key: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class ModelSelection:
    """Which models a matrix run judges: those `named`, or every one listed (`listed`), narrowed
    by `match` (a glob)."""

    named: tuple[str, ...] = ()
    listed: bool = False
    match: str | None = None

    def chosen(self, listing: list[str]) -> list[str]:
        """The models judged, given the ids the endpoint lists (in its order)."""
        from fnmatch import fnmatchcase

        if not self.listed:
            return list(self.named) or listing[:1]  # a shard of a one-model run: the first listed
        return [model for model in dict.fromkeys(listing) if self.match is None or fnmatchcase(model, self.match)]


def base_url_from_environment(environ: Mapping[str, str] | None = None) -> str | None:
    """The first of OPENAI_BASE_URL / OPENAI_API_BASE that is set. One set to an empty string (an
    unset CI secret, typically) is an error, not a wish for the embedded server."""
    environ = os.environ if environ is None else environ
    for variable in BASE_URL_VARIABLES:
        if variable in environ:
            try:
                return base_url(environ[variable])
            except ValueError as problem:
                raise OptionError(f"${variable} {problem}") from None
    return None


def settings(values: Mapping[str, Any], flag: Callable[[Option], str],
             environ: Mapping[str, str] | None = None) -> Settings:
    """Settings from parsed option values (keyed by `Option.dest`; None: not given). `flag` names
    an option in messages, as the front end spells it."""
    environ = os.environ if environ is None else environ

    def value(name: str) -> Any:
        option = OPTIONS[name]
        given = values.get(option.dest)
        if given is not None and given is not False:
            return given
        if isinstance(option.default, str):
            try:
                return option.parse(option.default)
            except ValueError as problem:
                raise OptionError(f"{flag(option)}: {problem}") from None
        return option.default

    record, replay = value("record"), value("replay")
    if record is not None and replay is not None:
        raise OptionError(f"{flag(OPTIONS['record'])} and {flag(OPTIONS['replay'])} exclude each other")
    if replay is not None and (value("base-url") or value("model")):
        raise OptionError(f"{flag(OPTIONS['replay'])} runs against the recorded endpoint and model; "
                          f"drop {flag(OPTIONS['base-url'])}/{flag(OPTIONS['model'])}")
    if value("accept-behaviour-changes") and value("baseline") is None:
        raise OptionError(f"{flag(OPTIONS['accept-behaviour-changes'])} needs {flag(OPTIONS['baseline'])}")
    models = list(dict.fromkeys(value("model") or ()))
    listed = value("models") == ALL_MODELS
    if listed and models:
        raise OptionError(f"{flag(OPTIONS['models'])} {ALL_MODELS} and {flag(OPTIONS['model'])} exclude each other")
    if value("models-match") is not None and not listed:
        raise OptionError(f"{flag(OPTIONS['models-match'])} needs {flag(OPTIONS['models'])} {ALL_MODELS}")
    if replay is not None and listed:
        raise OptionError(f"{flag(OPTIONS['replay'])} replays the recorded models; drop {flag(OPTIONS['models'])}")
    endpoints = endpoint_specs(value("endpoint") or [], value("endpoint-key") or [], value, flag, environ)
    matrix = None
    if listed or len(models) > 1 or value("shard") is not None or endpoints:
        matrix = ModelSelection(tuple(models), listed, value("models-match"))
    per_endpoint = record is PER_ENDPOINT
    if per_endpoint:
        try:
            writable_directory(str(DEFAULT_CASSETTE_ROOT))
        except ValueError as problem:
            raise OptionError(f"{flag(OPTIONS['record'])}: {problem}") from None
    return Settings(
        base_url=value("base-url") or (None if replay is not None else base_url_from_environment(environ)),
        api_key=value("api-key") or environ.get(API_KEY_VARIABLE) or None,
        model=models[0] if models else None, profile=value("profile"), report_dir=value("report-dir"),
        timeout=value("timeout"),
        context_window=value("context-window"), concurrency=value("concurrency"),
        embedded_behavior=value("embedded-behavior"), max_tokens_budget=value("max-tokens-budget"),
        record=DEFAULT_CASSETTE_ROOT if per_endpoint else record, record_per_endpoint=per_endpoint,
        replay=replay, baseline=value("baseline"), accept_behaviour_changes=bool(value("accept-behaviour-changes")),
        name=value("name"), headers=dict(value("header") or ()), matrix=matrix, shard=value("shard"),
        endpoints=endpoints, api=value("api"), workers=value("workers"),
    )


def endpoint_specs(given: list[tuple[str, str]], keys: list[tuple[str, str]], value: Callable[[str], Any],
                   flag: Callable[[Option], str], environ: Mapping[str, str]) -> tuple[EndpointSpec, ...]:
    """The endpoints of `--endpoint NAME=URL`, each keyed by its `--endpoint-key NAME=VARIABLE`
    (else the run's key); every problem a usage error naming the flag or the variable."""
    names = [name for name, _ in given]
    problem = None
    if given and value("base-url"):
        problem = f"{flag(OPTIONS['endpoint'])} and {flag(OPTIONS['base-url'])} exclude each other"
    elif given and (value("record") is not None or value("replay") is not None):
        problem = f"{flag(OPTIONS['endpoint'])} cannot be recorded or replayed yet: record each endpoint on its own"
    elif len(set(names)) < len(names):
        problem = f"{flag(OPTIONS['endpoint'])}: each endpoint needs a name of its own"
    elif any(name not in names for name, _ in keys):
        unknown = next(name for name, _ in keys if name not in names)
        problem = f"{flag(OPTIONS['endpoint-key'])}: no --endpoint named {unknown!r}"
    if problem:
        raise OptionError(problem)
    variables = dict(keys)
    for variable in variables.values():
        if not environ.get(variable, "").strip():
            raise OptionError(f"{flag(OPTIONS['endpoint-key'])}: ${variable} is not set or empty")
    default_key = value("api-key") or environ.get(API_KEY_VARIABLE) or None
    return tuple(EndpointSpec(name, url, environ[variables[name]].strip() if name in variables else default_key)
                 for name, url in given)
