"""The common OpenAI surface every compatible endpoint must get right whatever its profile: stream
framing, chunk shapes, error envelopes, parameter validation, and the official SDK end to end.

Each rule has a name; a check that finds rules broken names every one of them, so a failure reads
"broken: done-last (an event follows data: [DONE])".
"""

from __future__ import annotations

import json
import os
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import quote

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from conformance.checks.base import (
    CHAT,
    PER_API,
    WRONG_API_KEY,
    Api,
    ProbeContext,
    ProbeFailed,
    as_dict,
    check,
    choices_of,
    require_control,
)
from conformance.checks.sdk import Sdk, Step
from conformance.checks.sdk import sdk_exchange as exchange_of_step
from conformance.checks.sdk import sdk_steps as run_sdk_steps
from conformance.exchange import Exchange
from conformance.results import Observation, inconclusive, observe
from conformance.sdk_worker.relay import Raised

FRAMING_PROMPT = {"chat": "Count from 1 to 5, separated by commas.", "completions": "1, 2, 3,"}
FRAMING_RULES = {
    "content-type": "Content-Type is text/event-stream",
    "blank-line-separation": "events are separated by a blank line",
    "json-events": "every event's data is JSON, or [DONE]",
    "done-last": "data: [DONE] ends the stream and nothing follows it",
    "one-id": "one id across the stream",
    "role-first-only": "the role appears only in a choice's first delta",
    "one-finish-per-choice": "exactly one finish_reason per choice",
}


def framing_violations(exchange: Exchange, api: Api) -> dict[str, str]:
    """Every framing rule the stream breaks, with what was seen."""
    broken: dict[str, str] = {}
    content_type = exchange.response_headers.get("content-type", "")
    if not content_type.startswith("text/event-stream"):
        broken["content-type"] = f"Content-Type is {content_type!r}"
    stream = exchange.stream
    data_lines = sum(1 for line in exchange.body.splitlines() if line.startswith(b"data:"))
    data_events = sum(1 for event in stream.events if event.data)
    if data_lines > data_events:
        broken["blank-line-separation"] = f"{data_lines} data lines arrived as {data_events} events"
    if stream.undecodable:
        broken["json-events"] = f"{len(stream.undecodable)} event(s) are not JSON: {stream.undecodable[0][:60]!r}"
    if not stream.done:
        broken["done-last"] = "no data: [DONE]"
    elif stream.events_after_done:
        broken["done-last"] = f"{stream.events_after_done} event(s) follow data: [DONE]"
    chunks = [chunk for chunk in stream.chunks if isinstance(chunk, dict)]
    ids = {repr(chunk["id"]) for chunk in chunks if chunk.get("id") is not None}
    if len(ids) > 1:
        broken["one-id"] = f"{len(ids)} different ids, e.g. {sorted(ids)[:2]}"
    roles: dict[Any, list[int]] = defaultdict(list)
    finishes: Counter = Counter()
    seen: Counter = Counter()
    for chunk in chunks:
        for choice in choices_of(chunk):
            index = repr(choice.get("index", 0))
            delta = choice.get("delta")
            if api is CHAT and isinstance(delta, dict) and "role" in delta:
                roles[index].append(seen[index])
            seen[index] += 1
            if choice.get("finish_reason"):
                finishes[index] += 1
    repeated = {index: positions for index, positions in roles.items() if positions != [0]}
    if repeated:
        broken["role-first-only"] = f"role in deltas {dict(repeated)} (choice: positions)"
    wrong = {index: finishes[index] for index in seen if finishes[index] != 1}
    if wrong:
        broken["one-finish-per-choice"] = f"finish_reason count per choice: {wrong}"
    return broken


@check("sse-framing", variants=PER_API)
def sse_framing(ctx: ProbeContext, api: Api) -> Observation:
    exchange = ctx.generate(api, FRAMING_PROMPT[api.name], stream=True, max_tokens=8)
    if not exchange.ok:
        raise ProbeFailed(f"stream request: {exchange.describe_status()}")
    broken = framing_violations(exchange, api)
    if broken:
        return observe("other", "broken: " + "; ".join(f"{rule} ({seen})" for rule, seen in broken.items()),
                       broken_rules=sorted(broken))
    return observe("openai", f"all {len(FRAMING_RULES)} framing rules hold over {len(exchange.stream.events)} events")


@check("chunk-schema", variants=PER_API)
def chunk_schema(ctx: ProbeContext, api: Api) -> Observation:
    chunks = ctx.require_stream(ctx.generate(api, FRAMING_PROMPT[api.name], stream=True, max_tokens=8), "stream")
    for position, chunk in enumerate(chunks):
        violations = ctx.schema_violations(api.chunk_schema, chunk, "compatible")
        if violations:
            return observe("other", f"chunk #{position}: " + "; ".join(map(str, violations)))
    return observe("openai", f"all {len(chunks)} chunks are valid `{api.chunk_schema}` objects")


# ---- errors -------------------------------------------------------------------------------------

def expect_error(ctx: ProbeContext, exchange: Exchange, status: int, situation: str) -> Observation:
    """openai when the answer is `status` with a valid error envelope; otherwise say what came."""
    if exchange.ok:
        return observe("other", f"{situation}: answered HTTP {exchange.status} instead of refusing with {status}")
    problems = (["the body is not JSON: " + repr(exchange.text[:80])] if exchange.json is None
                else [str(v) for v in ctx.schema_violations("error", exchange.json, "compatible")])
    if exchange.status == status and not problems:
        envelope = as_dict(exchange.error_envelope)
        return observe("openai", f"{situation}: HTTP {status} with the error envelope "
                       f"(type {envelope.get('type')!r}, code {envelope.get('code')!r})")
    wrong = [] if exchange.status == status else [f"HTTP {exchange.status} instead of {status}"]
    return observe("other", f"{situation}: " + "; ".join(wrong + [f"error envelope: {p}" for p in problems]))


#: The two ways to come without the right key: (Authorization header, what the check calls it).
WRONG_KEY = (f"Bearer {WRONG_API_KEY}", "a wrong API key")
NO_KEY = (None, "no Authorization header")


def _key_test(ctx: ProbeContext, tried: tuple[str | None, str], other: tuple[str | None, str]) -> Observation:
    """A 401 envelope for `tried` is openai. When it is served, the other way in decides what that
    means: also served, the endpoint does not authenticate at all (a deployment choice this run
    cannot see past: inconclusive); refused, the endpoint checks keys yet lets this one in (other)."""

    def send(authorization: str | None) -> Exchange:
        return ctx.send(CHAT.path, CHAT.body(ctx.model, "Reply with only the word OK.", {"max_tokens": 1}),
                        authorization=authorization)

    exchange = send(tried[0])
    if not exchange.ok:
        return expect_error(ctx, exchange, 401, tried[1])
    contrast = send(other[0])
    if contrast.ok:
        return inconclusive(f"{tried[1]} and {other[1]} were both served (HTTP {exchange.status}, "
                            f"{contrast.status}): the endpoint does not authenticate, so there is no refusal to check")
    return observe("other", f"{tried[1]}: answered HTTP {exchange.status} instead of refusing with 401, although "
                   f"{other[1]} is refused ({contrast.describe_status()}): keys are checked, but not this way")


@check("error-envelope", variant="bad-key")
def error_bad_key(ctx: ProbeContext) -> Observation:
    return _key_test(ctx, WRONG_KEY, NO_KEY)


@check("error-envelope", variant="missing-key")
def error_missing_key(ctx: ProbeContext) -> Observation:
    return _key_test(ctx, NO_KEY, WRONG_KEY)


UNKNOWN_MODEL = "conformance-no-such-model"


@check("error-envelope", variant="unknown-model")
def error_unknown_model(ctx: ProbeContext) -> Observation:
    """A refusal is the unknown model's only when the same request naming the served model is
    answered: a wrong base path or a refused key refuses both."""
    exchange = ctx.send(CHAT.path, {**CHAT.body(UNKNOWN_MODEL, "Hi", {}), "max_tokens": 1})
    if not exchange.ok:
        require_control(ctx.control(CHAT.path, {**CHAT.body(ctx.model, "Hi", {}), "max_tokens": 1}),
                        f"an unknown model: {exchange.describe_status()}", "the same request naming the served model")
    return expect_error(ctx, exchange, 404, "an unknown model")


@check("error-envelope", variant="unknown-model-lookup")
def error_unknown_model_lookup(ctx: ProbeContext) -> Observation:
    """As unknown-model, with `GET /models/{served}` as the control; when that is not found either,
    the route is not served (models-object-shape says so) and a 404 says nothing about the id."""
    exchange = ctx.send(f"models/{UNKNOWN_MODEL}", method="GET")
    if exchange.ok:
        return expect_error(ctx, exchange, 404, "GET /models/{id} of an unknown model")
    served = ctx.control(f"models/{quote(ctx.model, safe='/')}", None, method="GET")
    if served.status in (404, 405):
        return inconclusive(f"GET /models/{{id}} of an unknown model: {exchange.describe_status()}; but "
                            f"GET /models/{ctx.model} of the served model answered {served.describe_status()} too, "
                            "so the route is not served and the 404 says nothing about the model")
    require_control(served, f"GET /models/{{id}} of an unknown model: {exchange.describe_status()}",
                    "GET /models/{id} of the served model")
    return expect_error(ctx, exchange, 404, "GET /models/{id} of an unknown model")


@check("error-envelope", variant="invalid-json")
def error_invalid_json(ctx: ProbeContext) -> Observation:
    exchange = ctx.send(CHAT.path, content=b'{"model": "' + ctx.model.encode() + b'", "messages": [',
                        headers={"content-type": "application/json"})
    return expect_error(ctx, exchange, 400, "a truncated JSON body")


@check("error-envelope", variant="missing-messages")
def error_missing_messages(ctx: ProbeContext) -> Observation:
    return expect_error(ctx, ctx.send(CHAT.path, {"model": ctx.model, "max_tokens": 1}), 400, "no `messages`")


# ---- parameter validation, generated with Hypothesis under a fixed request budget ---------------

INVALID_BUDGET = 8
VALID_BUDGET = 5
#: Hypothesis keeps per-thread state that is not meant to be shared, and sets it up in each new
#: thread with a full garbage collection (tenths of a second with the SDK loaded): explorations
#: take turns on one thread of their own.
_HYPOTHESIS = ThreadPoolExecutor(max_workers=1, thread_name_prefix="conformance-hypothesis")


def _hypothesis_thread_of_its_own() -> None:
    """In a process forked from one whose explorations had started (a matrix run's workers,
    workers.py), the executor's thread is the parent's and does not run here: explorations would
    wait for it for ever. The child gets an executor, and a thread, of its own."""
    global _HYPOTHESIS
    _HYPOTHESIS = ThreadPoolExecutor(max_workers=1, thread_name_prefix="conformance-hypothesis")


os.register_at_fork(after_in_child=_hypothesis_thread_of_its_own)

INVALID_PARAMETERS = st.one_of(
    st.tuples(st.just("temperature"), st.floats(2.5, 100) | st.floats(-100, -0.5) | st.just("hot")),
    st.tuples(st.just("top_p"), st.floats(1.5, 10) | st.floats(-10, -0.5)),
    st.tuples(st.just("n"), st.integers(-5, 0) | st.integers(129, 10_000)),
    st.tuples(st.just("max_tokens"), st.integers(-1000, -1) | st.just("many")),
    st.tuples(st.just("messages"), st.just([]) | st.just([{"role": "wizard", "content": "hi"}])),
    st.tuples(st.just("stop"), st.integers() | st.lists(st.sampled_from(["a", "b", "c"]), min_size=5, max_size=6)),
    st.tuples(st.just("stream"), st.sampled_from(["yes", 1, [True]])),
    st.tuples(st.just("logprobs"), st.sampled_from(["yes", [1]])),
)
MISSING = object()
#: Every required field of a chat request (OpenAI's `CreateChatCompletionRequest` and its user
#: message), with the wrong type, null and absent: a fixed list sent besides the drawn cases, since
#: whatever the field, a malformed body is a 400 `invalid_request_error` on any server, never a 500,
#: a 200 or a 404 for a model named None.
REQUIRED_FIELDS = {("model",): 5, ("messages",): 1, ("messages", 0, "role"): 5, ("messages", 0, "content"): 5}
MALFORMED_BODIES = [(path, value) for path, wrong in REQUIRED_FIELDS.items() for value in (wrong, None, MISSING)]
VALID_PARAMETERS = st.fixed_dictionaries({"max_tokens": st.integers(1, 4)}, optional={
    "temperature": st.floats(0, 2),
    "top_p": st.floats(0.01, 1),
    "n": st.integers(1, 2),
    "stop": st.sampled_from(["\n", "END"]) | st.lists(st.sampled_from(["\n", "###", "END"]), max_size=4),
})


def draw_cases(strategy: st.SearchStrategy, budget: int) -> list[Any]:
    """`budget` examples drawn deterministically (the same ones every run, so a recording replays),
    without shrinking: Hypothesis as a generator of cases, never as a judge. Drawn once per
    process: a matrix run asks for the same cases on every model."""
    return list(_HYPOTHESIS.submit(_drawn, strategy, budget).result())


_DRAWN: dict[tuple[st.SearchStrategy, int], tuple[Any, ...]] = {}


def _drawn(strategy: st.SearchStrategy, budget: int) -> tuple[Any, ...]:
    """The cases, drawn on the first request: runs on Hypothesis' one thread, so the others (other
    models' checks) wait for its cases and the cache needs no lock."""
    if (strategy, budget) not in _DRAWN:
        _DRAWN[strategy, budget] = _draw(strategy, budget)
    return _DRAWN[strategy, budget]


def _draw(strategy: st.SearchStrategy, budget: int) -> tuple[Any, ...]:
    cases: list[Any] = []

    @settings(max_examples=budget, database=None, derandomize=True, phases=[Phase.generate], deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def draw(example) -> None:
        cases.append(example)

    draw()
    return tuple(cases[:budget])


def malformed(body: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    """A deep copy of `body` with the field at `path` set to `value`, or removed for MISSING."""
    copy = json.loads(json.dumps(body))
    *parents, last = path
    target = copy
    for key in parents:
        target = target[key]
    if value is MISSING:
        del target[last]
    else:
        target[last] = value
    return copy


def describe_malformed(path: tuple[Any, ...], value: Any) -> str:
    field = "".join(f"[{key}]" if isinstance(key, int) else f".{key}" for key in path).lstrip(".")
    return f"{field} missing" if value is MISSING else f"{field}={json.dumps(value)}"


@check("parameter-validation", variant="invalid")
def invalid_parameters(ctx: ProbeContext) -> Observation:
    """Drawn out-of-range or wrong-typed parameters must get a 4xx envelope; a required field
    wrong-typed, null or absent must get exactly a 400 (not a 404 for the model `None`)."""
    cases = draw_cases(INVALID_PARAMETERS, INVALID_BUDGET)
    base = CHAT.body(ctx.model, "Reply with only the word OK.", {"max_tokens": 1})
    requests = [(f"{name}={value!r}", {**base, name: value}, range(400, 500)) for name, value in cases]
    requests += [(describe_malformed(path, value), malformed(base, path, value), range(400, 401))
                 for path, value in MALFORMED_BODIES]
    exchanges = ctx.send_all([(CHAT.path, body) for _, body, _ in requests])
    accepted = [f"{label} -> {exchange.describe_status() if not exchange.ok else 'accepted'}"
                f"{'' if exchange.error_envelope or exchange.ok else ' (no error envelope)'}"
                for (label, _, due), exchange in zip(requests, exchanges, strict=True)
                if exchange.status not in due or exchange.error_envelope is None]
    if accepted:
        return observe("other", f"{len(accepted)} of {len(ctx.exchanges)} invalid requests not refused with a 4xx "
                       "envelope (400 for a malformed required field): " + "; ".join(accepted[:4]))
    require_control(ctx.control(CHAT.path, base), f"all {len(exchanges)} invalid requests were refused (HTTP "
                    f"{', '.join(sorted({str(e.status) for e in exchanges}))})",
                    "the same request with valid parameters only")
    return observe("openai", f"all {len(exchanges)} invalid requests refused with a 4xx error envelope "
                   f"(400 for each of the {len(MALFORMED_BODIES)} malformed required fields), "
                   "and the same request without them succeeded")


@check("parameter-validation", variant="valid")
def valid_parameters(ctx: ProbeContext) -> Observation:
    cases = draw_cases(VALID_PARAMETERS, VALID_BUDGET)
    exchanges = ctx.send_all([(CHAT.path, CHAT.body(ctx.model, "Reply with only the word OK.", params))
                              for params in cases])
    refused = []
    for params, exchange in zip(cases, exchanges, strict=True):
        problems = [] if not exchange.ok else ctx.schema_violations("chat_completion", exchange.json, "compatible")
        if not exchange.ok or problems:
            refused.append(f"{params} -> {exchange.describe_status() if not exchange.ok else problems[0]}")
    if refused:
        return observe("other",
                       f"{len(refused)} of {len(ctx.exchanges)} valid requests failed: " + "; ".join(refused[:3]))
    return observe("openai", f"all {len(ctx.exchanges)} valid parameter combinations answered with a valid completion")


# ---- the official SDK ------------------------------------------------------------------------------

#: The openai SDK's base URL is the run's.
OPENAI_SDK = Sdk("openai", "openai", lambda base_url: base_url)


def sdk_exchange(ctx: ProbeContext, step: Step) -> tuple[Exchange, Raised | None]:
    """One openai SDK call and the request it sent (checks/sdk.py)."""
    return exchange_of_step(ctx, OPENAI_SDK, step)


def sdk_steps(ctx: ProbeContext, steps: list[Step]) -> tuple[Observation, list[str]]:
    """The openai SDK's calls, judged as every SDK's are (checks/sdk.py)."""
    return run_sdk_steps(ctx, OPENAI_SDK, steps)


@check("openai-sdk", variant="chat")
def sdk_chat(ctx: ProbeContext) -> Observation:
    request: dict[str, Any] = {"model": ctx.model,
                               "messages": [{"role": "user", "content": "Reply with only the word OK."}],
                               "max_tokens": 4, "temperature": 0}
    # The raw response has a body of its own (one token less): the steps run at once, and a replay
    # matches answers to requests by body, so two identical bodies could swap their recorded answers.
    observation, _ = sdk_steps(ctx, [
        ("chat.completions.create", "chat_create", {"request": request}),
        ("with_raw_response.create", "chat_raw_response", {"request": {**request, "max_tokens": 3}}),
        ("create(stream=True) + close()", "chat_stream_and_close", {"request": request})])
    return observation


@check("openai-sdk", variant="completions")
def sdk_completions(ctx: ProbeContext) -> Observation:
    request: dict[str, Any] = {"model": ctx.model, "prompt": "The quick brown fox", "max_tokens": 4, "temperature": 0}
    observation, _ = sdk_steps(ctx, [("completions.create", "completions_create", {"request": request}),
                                     ("completions.create(stream=True)", "completions_stream", {"request": request})])
    return observation

