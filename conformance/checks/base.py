"""What a check is: a small named function from a `ProbeContext` to an `Observation`.

Modelled on schemathesis: a check knows the catalog entry it covers, sends its requests through
the context (which keeps every exchange as evidence), and returns one word for what it saw. It
never knows which profile is in force or which CLI flag was used; judging is done elsewhere.
"""

from __future__ import annotations

import inspect
import json
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from conformance.client import EndpointClient
from conformance.exceptions import ConformanceError
from conformance.exchange import Exchange
from conformance.families import COUNT_TOKENS_PATH, MESSAGES_PATH
from conformance.results import Observation
from conformance.schemas import SchemaSet, Violation, validate

#: Schema violations a check keeps for its report; the rest are only counted.
VIOLATIONS_KEPT = 20

#: The key a probe sends to see a wrong one refused, in either API family's header.
WRONG_API_KEY = "sk-conformance-not-a-valid-key"

#: Every probe samples greedily; the endpoint's own defaults may not be deterministic.
DETERMINISTIC = {"temperature": 0, "top_p": 1}


@dataclass(frozen=True)
class Api:
    """The two text-generation APIs, as far as a probe cares about their differences."""

    name: str
    path: str
    response_schema: str
    chunk_schema: str

    def body(self, model: str, prompt: str | list[dict[str, Any]], params: dict[str, Any]) -> dict[str, Any]:
        key = "messages" if self is CHAT else "prompt"
        if self is CHAT and isinstance(prompt, str):
            prompt = [{"role": "user", "content": prompt}]
        return {"model": model, key: prompt, **DETERMINISTIC, **params}

    def text(self, choice: dict[str, Any]) -> str | None:
        """The generated text of a non-streaming choice."""
        if self is CHAT:
            message = choice.get("message")
            return message.get("content") if isinstance(message, dict) else None
        return choice.get("text")

    def delta_text(self, choice: dict[str, Any]) -> str:
        """The text a streaming choice adds ('' when it adds none)."""
        if self is CHAT:
            delta = choice.get("delta")
            content = delta.get("content") if isinstance(delta, dict) else None
        else:
            content = choice.get("text")
        return content if isinstance(content, str) else ""


CHAT = Api("chat", "chat/completions", "chat_completion", "chat_completion_chunk")
COMPLETIONS = Api("completions", "completions", "completion", "completion_chunk")
APIS = (CHAT, COMPLETIONS)


#: Which schemas judge what a path answers: (the whole body, one stream chunk or event, an error
#: body). The error envelope is the API family's: OpenAI's `error`, or Anthropic's for Messages.
RESPONSE_SCHEMAS = {
    CHAT.path: (CHAT.response_schema, CHAT.chunk_schema, "error"),
    COMPLETIONS.path: (COMPLETIONS.response_schema, COMPLETIONS.chunk_schema, "error"),
    "responses": ("response", "response_stream_event", "error"),
    "models": ("model_list", "model_list", "error"),
    MESSAGES_PATH: ("anthropic_message", "anthropic_message_stream_event", "anthropic_error"),
    COUNT_TOKENS_PATH: ("anthropic_count_tokens", "anthropic_count_tokens", "anthropic_error"),
}


class ProbeFailed(ConformanceError):
    """The endpoint broke the probe in a way that is an `error`, not a behaviour (e.g. a 500)."""


@dataclass
class ProbeContext:
    """What a check may use: the endpoint, the model, and a log of what it sent."""

    client: EndpointClient
    model: str
    context_window: int | None = None
    check_id: str | None = None
    exchanges: list[Exchange] = field(default_factory=list)
    #: The first VIOLATIONS_KEPT distinct schema violations seen, and how many more there were.
    violations: list[str] = field(default_factory=list)
    #: Control requests sent (`refused_for`), by request: one control serves every refusal it explains.
    _controls: dict[str, Exchange] = field(default_factory=dict, repr=False)
    violations_dropped: int = 0
    #: Validations done, by (schema, set, object): a body is judged once however many ask.
    _validated: dict[tuple[str, str, int], list[Violation]] = field(default_factory=dict, repr=False)

    def send(self, path: str, body: Any = None, method: str = "POST", **options: Any) -> Exchange:
        """Send one request as part of this check; it becomes evidence whatever happens, and its
        body (or every chunk of its stream) is validated against the compatible schemas."""
        exchange = self.client.request(method, path, body, check=self.check_id, **options)
        self.exchanges.append(exchange)
        self.validate_exchange(path, exchange)
        return exchange

    def validate_exchange(self, path: str, exchange: Exchange) -> None:
        """Schema violations go on the report of the check that saw them; they never stop it."""
        schemas = RESPONSE_SCHEMAS.get(path.strip("/"))
        if schemas is None or exchange.status is None:
            return
        whole, chunk, error = schemas
        if not exchange.ok:
            if exchange.json is not None:
                self.schema_violations(error, exchange.json, "compatible")
        elif exchange.is_event_stream:
            for position, event in enumerate(exchange.stream.chunks):
                self.schema_violations(chunk, event, "compatible", where=f"chunk #{position} ")
        elif exchange.json is not None:
            self.schema_violations(whole, exchange.json, "compatible")

    def send_all(self, requests: Sequence[tuple[str, Any] | tuple[str, Any, dict[str, Any]]],
                 **options: Any) -> list[Exchange]:
        """Send independent requests at once, each `(path, body)` with `options` (as `send` takes
        them) or `(path, body, its own options)` over them; evidence keeps their order. A transport
        failure of any of them raises, as `send` does."""
        with ThreadPoolExecutor(max_workers=max(1, len(requests))) as pool:
            futures = [pool.submit(self.client.request, "POST", path, body, check=self.check_id,
                                   **{**options, **(own[0] if own else {})})
                       for path, body, *own in requests]
            exchanges = [future.result() for future in futures]
        self.exchanges.extend(exchanges)
        for (path, *_), exchange in zip(requests, exchanges, strict=True):
            self.validate_exchange(path, exchange)
        return exchanges

    def control(self, path: str, body: dict[str, Any] | None, method: str = "POST", **options: Any) -> Exchange:
        """The answer to a control request (one that must succeed for a refusal to mean anything):
        sent once per check, however many refusals it explains. `options` go to `send` (a Messages
        request's headers)."""
        key = json.dumps([method, path, body, options], sort_keys=True, default=str)
        if key not in self._controls:
            self._controls[key] = self.send(path, body, method=method, **options)
        return self._controls[key]

    def path_of(self, exchange: Exchange) -> str:
        """The path an exchange was sent to, relative to the base URL (`chat/completions`)."""
        base = urlsplit(self.client.base_url).path.rstrip("/")
        return urlsplit(exchange.url).path[len(base):].lstrip("/")

    def generate(self, api: Api, prompt: str | list[dict[str, Any]], **params: Any) -> Exchange:
        """One chat or completions request with deterministic sampling and the given params."""
        return self.send(api.path, api.body(self.model, prompt, params))

    def schema_violations(self, name: str, instance: Any, schema_set: SchemaSet = "compatible",
                          where: str = "") -> list[Violation]:
        """Validate and remember violations, so the report shows them whatever the verdict.

        Instances are the parsed bodies and chunks the exchanges keep alive, so their identity is
        a safe key for the duration of a check."""
        key = (name, schema_set, id(instance))
        if key not in self._validated:
            self._validated[key] = validate(name, instance, schema_set)
            for violation in self._validated[key]:
                self._note(f"{name} ({schema_set}) {where}{violation}")
        return self._validated[key]

    def _note(self, violation: str) -> None:
        if violation in self.violations:
            return
        if len(self.violations) < VIOLATIONS_KEPT:
            self.violations.append(violation)
        else:
            self.violations_dropped += 1

    def reported_violations(self) -> list[str]:
        """The violations as the report lists them: the first few, and how many were left out."""
        more = [f"... and {self.violations_dropped} more"] if self.violations_dropped else []
        return self.violations + more

    def require_success(self, exchange: Exchange, what: str) -> dict[str, Any]:
        """The JSON body of a 2xx response, or ProbeFailed saying what came instead."""
        if not exchange.ok:
            raise ProbeFailed(f"{what}: {exchange.describe_status()}")
        body = exchange.json
        if not isinstance(body, dict):
            raise ProbeFailed(f"{what}: the body is not a JSON object: {exchange.text[:200]!r}")
        return body

    def require_stream(self, exchange: Exchange, what: str, expect_done: bool = True) -> list[dict[str, Any]]:
        """The JSON chunks of a complete 2xx event stream, or ProbeFailed saying what is broken
        (not a stream, truncated before `[DONE]`, undecodable events, events after `[DONE]`)."""
        if not exchange.ok:
            raise ProbeFailed(f"{what}: {exchange.describe_status()}")
        stream = exchange.stream
        if not stream.events:
            raise ProbeFailed(f"{what}: not an event stream: {exchange.text[:200]!r}")
        problems = stream.problems(expect_done)
        if problems:
            raise ProbeFailed(f"{what}: broken stream: {'; '.join(problems)}")
        return [chunk for chunk in stream.chunks if isinstance(chunk, dict)]


Probe = Callable[[ProbeContext], Observation]


@dataclass(frozen=True)
class Check:
    """A named probe covering one catalog entry."""

    id: str
    entry: str
    title: str
    probe: Probe


class CheckDeclarationError(ConformanceError, ValueError):
    """A check declared wrongly (an unknown entry, a duplicate id, arguments its probe does not
    take): raised when its module is imported, naming the file to edit."""


class Registry:
    """Checks by id, in registration order (which is the report's order). `check` validates a
    declaration before it registers; a duplicate id fails here, at import too."""

    def __init__(self) -> None:
        self._checks: dict[str, Check] = {}
        self._lock = threading.Lock()

    def add(self, check: Check, where: str = "the module that declares it") -> Check:
        with self._lock:
            if check.id in self._checks:
                raise CheckDeclarationError(f"duplicate check id {check.id!r} in {where}")
            self._checks[check.id] = check
        return check

    def remove(self, check_id: str) -> None:
        """Unregister a check (a test's throwaway one)."""
        with self._lock:
            del self._checks[check_id]

    def __iter__(self) -> Iterator[Check]:
        return iter(list(self._checks.values()))

    def __getitem__(self, check_id: str) -> Check:
        return self._checks[check_id]

    def __len__(self) -> int:
        return len(self._checks)


REGISTRY = Registry()

#: `variants=PER_API`: one check per text-generation API (`<entry>/chat`, `<entry>/completions`),
#: probed as `probe(ctx, api)`.
PER_API: dict[str, tuple[Any, ...]] = {api.name: (api,) for api in APIS}

ProbeFunction = TypeVar("ProbeFunction", bound=Callable[..., Observation])


def check(entry: str, *positional: Any, variant: str | None = None,
          variants: Mapping[str, tuple[Any, ...]] | None = None) -> Callable[[ProbeFunction], ProbeFunction]:
    """The one way to declare checks: register the decorated probe as the checks of catalog entry
    `entry`, one per variant, each with the id `<entry>/<variant>` and the title `<entry's catalog
    title> (<variant>)`.

        @check("logit-bias", variant="chat")              # one check, probe(ctx)
        @check("usage-in-response", variants=PER_API)     # probe(ctx, api), per API
        @check("stop-sequence-in-output", variants={"chat-stream": (CHAT, True), ...})  # probe(ctx, *args)

    Validated as it registers: an entry the catalog lacks, a duplicate id, or variant arguments the
    probe cannot take raise CheckDeclarationError at import, naming the file to edit."""
    if positional or (variant is None) == (variants is None):
        raise CheckDeclarationError(
            f"@check({entry!r}, {', '.join(map(repr, positional))}{', ...' if positional else ''}): declare a check "
            "as @check(ENTRY, variant=NAME) or @check(ENTRY, variants={NAME: (ARGS, ...)}); the id is ENTRY/NAME "
            "and the title comes from the catalog (the old check(ID, ENTRY, TITLE) and check_per_api forms are gone)")
    declared = {variant: ()} if variant is not None else dict(variants or {})

    def register(probe: ProbeFunction) -> ProbeFunction:
        where = _declared_in(probe)
        from conformance.catalog import SHIPPED_CATALOG, load_catalog

        if entry not in load_catalog().entries:
            raise CheckDeclarationError(
                f"@check({entry!r}) in {where}: {entry!r} is not a catalog entry: add the entry to "
                f"{SHIPPED_CATALOG} first, or fix the name (CONTRIBUTING.md, 'Adding a difference')")
        title = load_catalog().entries[entry].title
        for name, arguments in declared.items():
            try:
                inspect.signature(probe).bind(None, *arguments)
            except TypeError as problem:
                raise CheckDeclarationError(f"check {entry}/{name} in {where}: {probe.__name__} cannot take "
                                            f"(ctx, *{arguments!r}): {problem}") from None
            REGISTRY.add(Check(f"{entry}/{name}", entry, f"{title} ({name})", _bound(probe, arguments)), where)
        return probe

    return register


def _bound(probe: Callable[..., Observation], arguments: tuple[Any, ...]) -> Probe:
    """`probe` with its variant's arguments: what the runner calls with the context alone."""
    return lambda ctx: probe(ctx, *arguments)


def _declared_in(probe: Callable[..., Any]) -> str:
    """The file a probe is written in, relative to the project when it is inside it."""
    path = Path(inspect.getsourcefile(probe) or probe.__module__)
    root = Path(__file__).resolve().parents[2]
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)


def is_refused(exchange: Exchange) -> bool:
    """A 4xx answer: the endpoint refused the request (a 5xx is a fault, not a refusal). Says
    nothing about why: to blame a parameter, use `refused_for`."""
    if exchange.status is not None and exchange.status >= 500:
        raise ProbeFailed(f"server error instead of an answer: {exchange.describe_status()}")
    return exchange.status is not None and 400 <= exchange.status < 500


def refused_for(ctx: ProbeContext, exchange: Exchange, *params: str, **options: Any) -> bool:
    """Whether the endpoint refused `exchange` because of `params`: a 4xx, and the same request
    without them (the control, sent with `options` as `send` takes them) succeeds. When the control
    fails too, the refusal is not the parameters' (an unserved model, a wrong base URL, a refused
    key): ProbeFailed naming both.

    The control is sent only on a refusal, and once per distinct request in a check."""
    if not is_refused(exchange):
        return False
    body = exchange.request_body if isinstance(exchange.request_body, dict) else {}
    control = ctx.control(ctx.path_of(exchange), {key: value for key, value in body.items() if key not in params},
                          exchange.method, **options)
    require_control(control, f"{', '.join(params)} {rejection_reason(exchange)}",
                    f"the same request without {'it' if len(params) == 1 else 'them'}")
    return True


def require_control(control: Exchange, refusal: str, what: str) -> None:
    """ProbeFailed naming both answers when the control request did not succeed either."""
    if not control.ok:
        raise ProbeFailed(f"{refusal}; but {what} failed too ({control.describe_status()}), "
                          "so the refusal says nothing about the parameter")


def as_dict(value: Any) -> dict[str, Any]:
    """`value` if it is a JSON object, else {}: endpoints send anything, classifiers must not crash."""
    return value if isinstance(value, dict) else {}


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def choices_of(chunk: dict[str, Any]) -> list[dict[str, Any]]:
    """The choice objects of a response or chunk (whatever else `choices` holds is ignored)."""
    return [choice for choice in as_list(chunk.get("choices")) if isinstance(choice, dict)]


def usage_problem(usage: dict[str, Any]) -> str | None:
    """What is wrong with a usage object's counts (non-negative integers, prompt + completion =
    total), or None. Shared by every check that reads usage, streamed or not."""
    counts: list[Any] = [usage.get(key) for key in ("prompt_tokens", "completion_tokens", "total_tokens")]
    if not all(type(count) is int and count >= 0 for count in counts):
        return f"usage counts are not non-negative integers: {usage}"
    if counts[0] + counts[1] != counts[2]:
        return f"usage does not add up: {counts[0]} + {counts[1]} != {counts[2]}"
    return None


def first_choice(body: dict[str, Any]) -> dict[str, Any]:
    choices = body.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise ProbeFailed(f"the response has no choices: {str(body)[:200]}")
    return choices[0]


def streamed_text(api: Api, chunks: list[dict[str, Any]], index: int = 0) -> str:
    """The text of choice `index`, concatenated from its deltas."""
    return "".join(api.delta_text(choice) for chunk in chunks for choice in choices_of(chunk)
                   if choice.get("index", 0) == index)


def streamed_finish_reason(chunks: list[dict[str, Any]], index: int = 0) -> str | None:
    reasons = [choice.get("finish_reason") for chunk in chunks for choice in choices_of(chunk)
               if choice.get("index", 0) == index and choice.get("finish_reason")]
    return reasons[-1] if reasons else None


def rejection_reason(exchange: Exchange) -> str:
    return f"rejected: {exchange.describe_status()}"
