"""Which endpoint a run talks to: the URL the user gave (or the environment's), else an embedded
reference server on a free loopback port; and which model, when none was named."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from conformance.client import EndpointClient, EndpointError, normalize_base_url
from conformance.options import base_url_from_environment
from conformance.reference_server import RunningServer, ServerConfig, start_in_thread


class EndpointUnusable(Exception):
    """The run cannot start: bad URL, nothing listening, key refused, no model to use."""


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
            embedded_behaviour: str = "openai", headers: dict[str, str] | None = None) -> Endpoint:
    """Find the endpoint and model, starting the embedded server when no URL is known."""
    base_url = base_url or base_url_from_environment()
    embedded = None
    if base_url is None:
        # A key is always required, so the run can check that a missing or wrong one is refused.
        api_key = api_key or f"sk-embedded-{secrets.token_urlsafe(12)}"
        embedded = start_in_thread(ServerConfig.for_vendor(embedded_behaviour, api_key=api_key))
        base_url = embedded.base_url
    try:
        base_url = normalize_base_url(base_url)
        listed, window = read_models(base_url, api_key, timeout, model, headers)
        return Endpoint(base_url, api_key, listed, embedded, context_window=window, headers=dict(headers or {}))
    except (ValueError, EndpointUnusable) as problem:
        if embedded:
            embedded.stop()
        raise EndpointUnusable(str(problem)) from None


#: Where listings state a model's context window: Fireworks' `context_length`, vLLM's `max_model_len`.
WINDOW_KEYS = ("context_length", "max_model_len", "context_window")


def read_models(base_url: str, api_key: str | None, timeout: float, model: str | None,
                headers: dict[str, str] | None = None) -> tuple[str, int | None]:
    """The run's model (`model`, else the first id `GET /models` lists) and its context window,
    if the listing states it.

    Sent even when the model is known: it is how an unreachable endpoint or a refused key is told
    apart from a check's failure. With a model given, a missing listing is no problem."""
    client = EndpointClient(base_url, api_key, timeout, headers=headers)
    try:
        listing = client.get("models")
    except EndpointError as error:
        raise EndpointUnusable(f"cannot reach {base_url}: {error.exchange.failure if error.exchange else error}") from None
    finally:
        client.close()
    if listing.status in (401, 403):
        raise EndpointUnusable(f"{base_url} refused the API key (HTTP {listing.status}); set OPENAI_API_KEY or --api-key")
    data = listing.json.get("data") if isinstance(listing.json, dict) else None
    models = [m for m in data or [] if isinstance(m, dict) and isinstance(m.get("id"), str)]
    if not model and (not listing.ok or not models):
        raise EndpointUnusable(f"{base_url}/models did not list a model ({listing.describe_status()}); pass --model")
    chosen = model or models[0]["id"]
    for listed in models:
        if listed["id"] == chosen:
            windows = [listed[key] for key in WINDOW_KEYS if type(listed.get(key)) is int]
            return chosen, windows[0] if windows else None
    return chosen, None
