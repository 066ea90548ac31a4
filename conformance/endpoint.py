"""Which endpoint a run talks to: the URL the user gave (or the environment's), else an embedded
reference server on a free loopback port; which model, when none was named; and a preflight that
proves the URL, key and model work before any check is allowed to judge anything."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field

from conformance.accounting import RunStats
from conformance.client import EndpointClient
from conformance.exceptions import BudgetExhausted, ConformanceError, EndpointError
from conformance.exchange import Exchange
from conformance.families import API_FAMILIES, MESSAGES_PATH, anthropic_headers
from conformance.options import EndpointSpec, ModelSelection, base_url_from_environment
from conformance.reference_server import RunningServer, ServerConfig, start_in_thread
from conformance.urls import normalize_base_url


class EndpointUnusable(ConformanceError):
    """The run cannot start: bad URL, nothing listening, key refused, no model to use."""


@dataclass(frozen=True)
class ModelTarget:
    """One model of a matrix run: its context window if listed, and why it cannot be judged
    (its preflight said so), or None."""

    id: str
    context_window: int | None = None
    problem: str | None = None
    #: In a run of several endpoints: the endpoint's name (the id is then `NAME/MODEL`) and the
    #: model id sent to it.
    endpoint: str | None = None
    model: str | None = None

    @property
    def sent(self) -> str:
        """The model id requests name."""
        return self.model or self.id


@dataclass
class Endpoint:
    base_url: str
    api_key: str | None
    model: str
    embedded: RunningServer | None = None
    #: The name a replayed run was recorded under.
    label: str | None = None
    context_window: int | None = None
    #: Headers sent with every request (--header), e.g. Azure's `api-key`.
    headers: dict[str, str] = field(default_factory=dict)
    #: A matrix run's models, each preflighted (empty: a one-model run, of `model`).
    models: list[ModelTarget] = field(default_factory=list)
    #: A run of several endpoints (`--endpoint`): each by name (its models are in `models`).
    members: dict[str, Endpoint] = field(default_factory=dict)
    #: The API families the run judges, and why each other one is left out.
    apis: tuple[str, ...] = API_FAMILIES
    left_out: dict[str, str] = field(default_factory=dict)
    #: Families the run judges (its profile names them) that the preflight found not served, and
    #: the answer that showed it: their checks are `unsupported` without sending anything.
    unserved: dict[str, str] = field(default_factory=dict)
    _closed: bool = field(default=False, repr=False, compare=False)

    @property
    def name(self) -> str:
        """A short label for reports and cassette folders."""
        if self.label:
            return self.label
        if self.embedded:
            return f"reference-{self.embedded.config.vendor}"
        return self.base_url.split("://", 1)[1].split("/", 1)[0].replace(":", "_")

    def close(self) -> None:
        # Keep `embedded` set: the report is written after the run is closed and says which it was.
        if self.embedded and not self._closed:
            self.embedded.stop()
        self._closed = True


def resolve(base_url: str | None, api_key: str | None, model: str | None, timeout: float,
            embedded_behaviour: str = "openai", stats: RunStats | None = None,
            headers: dict[str, str] | None = None, matrix: ModelSelection | None = None,
            apis: tuple[str, ...] | None = None, judged: tuple[str, ...] = ()) -> Endpoint:
    """Find the endpoint and model, starting the embedded server when no URL is known, and prove
    with one tiny generation per API family that they work. `stats` counts these requests as part
    of the run. The run judges the families in `apis` (each must be served), or by default those
    the endpoint serves and those the profile judges (`judged`: there, unserved is `unsupported`).

    With `matrix`, every model it selects is preflighted (together, in the OpenAI family): one a
    preflight refuses is kept with its problem, for the report to say, while the others are judged;
    the run cannot start only when the endpoint itself is unusable or no model is selected. The
    other families are preflighted with the first usable model, as for one model."""
    base_url = base_url or base_url_from_environment()
    embedded = None
    if base_url is None:
        # A key is always required, so the run can check that a missing or wrong one is refused.
        api_key = api_key or f"sk-embedded-{secrets.token_urlsafe(12)}"
        embedded = start_in_thread(ServerConfig.for_vendor(embedded_behaviour, api_key=api_key))
        base_url = embedded.base_url
    try:
        base_url = normalize_base_url(base_url)
        client = EndpointClient(base_url, api_key, timeout, stats, headers=headers)
        try:
            targets = open_matrix(client, matrix) if matrix is not None else []
            if matrix is None:
                listed, window = read_models(client, model)
                unserved = preflight_families(client, listed, API_FAMILIES)
            else:
                listed, window = targets[0].id, targets[0].context_window
                usable = [target.id for target in targets if target.problem is None]
                unserved = preflight_families(client, usable[0], API_FAMILIES[1:]) if usable else {}
        finally:
            client.close()
        chosen, left_out = select_families(unserved, apis, judged)
        return Endpoint(base_url, api_key, listed, embedded, context_window=window, headers=dict(headers or {}),
                        models=targets, apis=chosen, left_out=left_out,
                        unserved={family: why for family, why in unserved.items() if family in chosen})
    except (ValueError, EndpointUnusable) as problem:
        if embedded:
            embedded.stop()
        raise EndpointUnusable(str(problem)) from None


def resolve_several(specs: tuple[EndpointSpec, ...], timeout: float, stats: RunStats, headers: dict[str, str],
                    matrix: ModelSelection, apis: tuple[str, ...] | None = None,
                    judged: tuple[str, ...] = ()) -> Endpoint:
    """Several endpoints, each listed and its models preflighted as `resolve` does (an endpoint
    that cannot be used stops the run, naming it); one Endpoint holding them all, whose models
    are every endpoint's, named `NAME/MODEL`. A family is left out only when every endpoint
    leaves it out (elsewhere, its checks observe `unsupported` where it is not served)."""
    members, targets, left_out = {}, [], None
    for spec in specs:
        try:
            member = resolve(spec.base_url, spec.api_key, None, timeout, stats=stats, headers=headers, matrix=matrix,
                             apis=apis, judged=judged)
        except EndpointUnusable as problem:
            raise EndpointUnusable(f"endpoint {spec.name}: {problem}") from None
        members[spec.name] = Endpoint(member.base_url, spec.api_key, member.model, label=spec.name,
                                      headers=dict(headers))
        targets += [ModelTarget(f"{spec.name}/{target.id}", target.context_window, target.problem, spec.name,
                                target.id) for target in member.models]
        left_out = {family: f"{spec.name}: {why}" for family, why in member.left_out.items()
                    if left_out is None or family in left_out}
    first = next(iter(members.values()))
    label = "+".join(members)
    return Endpoint(first.base_url, first.api_key, targets[0].id, label=label if len(label) <= 80 else
                    f"{len(members)} endpoints", headers=dict(headers), models=targets, members=members,
                    apis=tuple(family for family in API_FAMILIES if family not in (left_out or {})),
                    left_out=left_out or {})


#: Where listings state a model's context window: Fireworks' `context_length`, vLLM's `max_model_len`.
WINDOW_KEYS = ("context_length", "max_model_len", "context_window")


def open_matrix(client: EndpointClient, selection: ModelSelection) -> list[ModelTarget]:
    """The matrix's models, each preflighted at once (under the client's one limit on requests in
    flight); a model whose preflight is refused keeps the problem, and is reported, not judged."""
    from concurrent.futures import ThreadPoolExecutor

    listing = list_models(client, required=selection.listed or not selection.named)
    models = selection.chosen([listed["id"] for listed in listing])
    if not models:
        pattern = f" matching {selection.match!r}" if selection.match else ""
        raise EndpointUnusable(f"{client.base_url}/models lists no model{pattern}")

    def target(model: str) -> ModelTarget:
        try:
            unserved = preflight(client, model)
        except EndpointUnusable as problem:
            if "--max-tokens-budget" in str(problem):
                raise
            return ModelTarget(model, window_of(listing, model), str(problem))
        if unserved is not None:
            return ModelTarget(model, window_of(listing, model), f"is the base URL's path right? {unserved}")
        return ModelTarget(model, window_of(listing, model))

    with ThreadPoolExecutor(max_workers=min(len(models), 16), thread_name_prefix="preflight") as pool:
        return list(pool.map(target, models))


def window_of(listing: list[dict], model: str) -> int | None:
    """The context window the listing states for `model`, if any."""
    for listed in listing:
        if listed["id"] == model:
            windows = [listed[key] for key in WINDOW_KEYS if type(listed.get(key)) is int]
            return windows[0] if windows else None
    return None


def list_models(client: EndpointClient, required: bool) -> list[dict]:
    """The models `GET /models` lists (objects with a string id). Sent even when the models are
    known: it is how an unreachable endpoint or a refused key is told apart from a check's
    failure. Unless `required`, a missing listing is no problem."""
    base_url = client.base_url
    try:
        listing = client.get("models")
        if listing.status in (401, 403) and client.api_key:  # an endpoint that takes the key Anthropic's way
            listing = client.request("GET", "models", headers=anthropic_headers(client.api_key), authorization=None)
    except EndpointError as error:
        why = error.exchange.failure if error.exchange else error
        raise EndpointUnusable(f"cannot reach {base_url}: {why}") from None
    if listing.status in (401, 403):
        raise EndpointUnusable(f"{base_url} refused the API key (HTTP {listing.status}); "
                               "set OPENAI_API_KEY or --api-key")
    data = listing.json.get("data") if isinstance(listing.json, dict) else None
    models = [m for m in data or [] if isinstance(m, dict) and isinstance(m.get("id"), str)]
    if required and listing.status == 404:
        raise EndpointUnusable(f"is the base URL's path right? GET {base_url}/models answered "
                               f"{listing.describe_status()[:160]} (the base URL should end where /models and "
                               "/chat/completions can be appended, e.g. /v1)")
    if required and (not listing.ok or not models):
        raise EndpointUnusable(f"{base_url}/models did not list a model ({listing.describe_status()}); pass --model")
    return models


def read_models(client: EndpointClient, model: str | None) -> tuple[str, int | None]:
    """The run's model (`model`, else the first id `GET /models` lists) and its context window,
    if the listing states it."""
    listing = list_models(client, required=not model)
    chosen = model or listing[0]["id"]
    return chosen, window_of(listing, chosen)


#: The cheapest generation there is: whatever the endpoint, it proves the URL, key and model work.
PREFLIGHT_MAX_TOKENS = 1
PREFLIGHT_PROMPT = [{"role": "user", "content": "Reply with only the word OK."}]


def preflight_families(client: EndpointClient, model: str, families: tuple[str, ...]) -> dict[str, str]:
    """The families' preflights, sent at once (they are independent); those not served, and why. A
    preflight that finds the endpoint unusable raises, the first family's first."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=max(1, len(families)), thread_name_prefix="preflight") as pool:
        answers = [pool.submit(preflight, client, model, family) for family in families]
        return {family: why for family, answer in zip(families, answers, strict=True) if (why := answer.result())}


def preflight(client: EndpointClient, model: str, family: str = "openai") -> str | None:
    """One tiny generation in `family`'s API (a chat completion, a message); EndpointUnusable with
    one line when it shows the key or the model is wrong, and why the family is not served (its
    path a 404 or 405 that does not blame the model) or None when it is.

    Only answers that say so stop the run: a 5xx, a timeout or a malformed body is the endpoint's
    fault, which the checks then meet and report as errors with their evidence."""
    body = {"model": model, "messages": PREFLIGHT_PROMPT, "max_tokens": PREFLIGHT_MAX_TOKENS, "temperature": 0}
    try:
        if family == "anthropic":
            answer = client.request("POST", MESSAGES_PATH, body, headers=anthropic_headers(client.api_key),
                                    authorization=None)
        else:
            answer = client.post("chat/completions", body)
    except BudgetExhausted as exhausted:
        if family != API_FAMILIES[0]:
            return None  # another family proved the endpoint usable; its checks meet the budget themselves
        raise EndpointUnusable(f"--max-tokens-budget is too small to judge anything: {exhausted}") from None
    except EndpointError:
        return None
    first = family == API_FAMILIES[0]
    # A second family is judged on its own: its path may sit behind the first one's auth (a Messages
    # request carries the key as x-api-key), or refuse a model the first serves; either way it is not
    # served with this key and model, and any other answer is the checks' to judge.
    refused = answer.status in ((404, 405) if first else (401, 403, 404, 405))
    if blames_model(answer, model) and answer.status is not None and 400 <= answer.status < 500:
        if first:
            raise EndpointUnusable(f"model {model!r} is not served; pass one the endpoint serves with --model "
                                   f"(preflight POST {answer.url}: {answer.describe_status()[:160]})")
        refused = True
    if refused:
        return f"POST {answer.url} answered {answer.describe_status()[:160]}"
    if not first:
        return None
    problem = preflight_problem(answer, model)
    if problem:
        raise EndpointUnusable(f"{problem} (preflight POST {answer.url}: {answer.describe_status()[:160]})")
    return None


def blames_model(answer: Exchange, model: str) -> bool:
    """Whether a refusal is about the model (OpenAI's envelope or Anthropic's) rather than the path."""
    envelope = answer.error_envelope
    return envelope is not None and names_model(envelope, model)


def select_families(unserved: dict[str, str], asked: tuple[str, ...] | None,
                    judged: tuple[str, ...]) -> tuple[tuple[str, ...], dict[str, str]]:
    """The families a run judges, and why each other one is left out. Asked for (`--api`), each must
    be served; by default, those served and those the profile judges (whose checks then observe
    `unsupported` where the endpoint does not serve them). None served at all: the base URL is wrong."""
    if len(unserved) == len(API_FAMILIES):
        raise EndpointUnusable("is the base URL's path right? No API family is served: "
                               + "; ".join(unserved.values())
                               + " (it should end where /chat/completions or /messages can be appended, e.g. /v1)")
    if asked is not None:
        missing = [family for family in asked if family in unserved]
        if missing:
            raise EndpointUnusable(f"--api {missing[0]}: the endpoint does not serve that API family: "
                                   f"{unserved[missing[0]]}")
        chosen = asked
    else:
        chosen = tuple(family for family in API_FAMILIES if family not in unserved or family in judged)
    left_out = {family: (f"the endpoint does not serve the {family} API family ({unserved[family]})"
                         if family in unserved else f"the {family} API family was not asked for (--api)")
                for family in API_FAMILIES if family not in chosen}
    return chosen, left_out


def preflight_problem(answer: Exchange, model: str) -> str | None:
    """What a refused preflight says is wrong (the key, the model, the base URL's path), or None."""
    status = answer.status
    if status is None or not 400 <= status < 500 or status in (408, 429):
        return None
    if status in (401, 403):
        return "the API key was refused; set OPENAI_API_KEY or --api-key"
    envelope = answer.error_envelope
    if envelope is not None and names_model(envelope, model):
        return f"model {model!r} is not served; pass one the endpoint serves with --model"
    if status == 404:
        return "is the base URL's path right? (it should end where /chat/completions can be appended, e.g. /v1)"
    return "the endpoint refused a minimal chat completion"


def names_model(envelope: dict, model: str) -> bool:
    """Whether an error envelope blames the model: OpenAI's code `model_not_found` or param
    `model`, or a message naming it (Fireworks: "Model not found, inaccessible, ...")."""
    message = envelope.get("message")
    if envelope.get("code") == "model_not_found" or envelope.get("param") == "model":
        return True
    return isinstance(message, str) and bool(
        re.search(rf"(?<![\w./-]){re.escape(model)}(?![\w./-])|\bmodel\b", message, re.IGNORECASE))
