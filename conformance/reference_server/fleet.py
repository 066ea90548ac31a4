"""The reference server serving many models (`conformance serve --models N`): one app per model,
each with its own behaviours, behind one ASGI dispatcher.

A request goes to the app of the model it names (the body's `model`, or the id in
`GET /v1/models/{id}`); one naming no served model (or no model, or a body that is not JSON) goes
to the first model's app, which refuses it as a one-model server does. `GET /v1/models` lists
every model. So each model behaves exactly as a one-model reference server with its config,
and a matrix run can be shown differences between models.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import replace
from typing import Any

from conformance.reference_server.app import create_app
from conformance.reference_server.config import VENDORS, ConfigError, ServerConfig

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
#: Where the models listing and one model's object are served.
MODELS_PATH = "/v1/models"


def model_names(count: int) -> list[str]:
    """`reference-model-001` ... (zero-padded to at least three digits, so they sort)."""
    width = max(3, len(str(count)))
    return [f"reference-model-{number:0{width}d}" for number in range(1, count + 1)]


def parse_model_behaviour(text: str) -> tuple[str, str, dict[str, str]]:
    """`MODEL=VENDOR[+ENTRY=BEHAVIOUR...]` (e.g. `reference-model-002=fireworks`, or
    `reference-model-003=openai+embeddings=unsupported`): a model's vendor and its deviations."""
    name, _, spec = text.partition("=")
    vendor, *deviations = spec.split("+")
    overrides = dict(deviation.partition("=")[::2] for deviation in deviations)
    if not name or vendor not in VENDORS or any(not entry or not behaviour for entry, behaviour in overrides.items()):
        raise ValueError(f"expected MODEL=VENDOR[+ENTRY=BEHAVIOUR...] with VENDOR {' or '.join(VENDORS)}, got {text!r}")
    return name, vendor, overrides


def fleet_configs(count: int, vendor: str, overrides: dict[str, str],
                  behaviours: list[tuple[str, str, dict[str, str]]], **knobs: Any) -> list[ServerConfig]:
    """One config per model: `vendor` with `overrides` (the server's `--behavior` and `--set`),
    but for the models `behaviours` name, which get their own vendor and deviations on top of
    `overrides`. ConfigError when a name is not one of the models or a behaviour cannot be shown."""
    names = model_names(count)
    unknown = [name for name, _, _ in behaviours if name not in names]
    if unknown:
        raise ConfigError(f"no model {unknown[0]!r} among {names[0]} ... {names[-1]}")
    special = {name: ServerConfig.for_vendor(own, {**overrides, **deviations}, model_name=name, **knobs)
               for name, own, deviations in behaviours}
    base = ServerConfig.for_vendor(vendor, overrides, **knobs)
    return [special.get(name) or replace(base, model_name=name) for name in names]


class Fleet:
    """The ASGI app: each request to the app of the model it names."""

    def __init__(self, configs: list[ServerConfig]):
        self.apps = {config.model_id: create_app(config) for config in configs}
        self.first = next(iter(self.apps.values()))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.first(scope, receive, send)
        path = scope["path"].rstrip("/")
        if scope["method"] == "GET" and path == MODELS_PATH:
            return await self.listing(scope, receive, send)
        if path.startswith(MODELS_PATH + "/"):
            return await self.apps.get(path[len(MODELS_PATH) + 1:], self.first)(scope, receive, send)
        body = await read_all(receive)
        try:
            named = json.loads(body).get("model")
        except (ValueError, AttributeError):
            named = None
        app = self.apps.get(named, self.first) if isinstance(named, str) else self.first
        await app(scope, replay(body, receive), send)

    async def listing(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The first app's answer (authentication, faults, envelope), its `data` holding every model."""
        start: Message = {}
        parts: list[bytes] = []

        async def capture(message: Message) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
            else:
                parts.append(message.get("body", b""))

        await self.first(scope, receive, capture)
        body = b"".join(parts)
        if start.get("status") == 200:
            listed = json.loads(body)
            listed["data"] = [app.state.endpoint.model_object() for app in self.apps.values()]
            body = json.dumps(listed).encode()
        headers = [(name, value) for name, value in start.get("headers", []) if name.lower() != b"content-length"]
        await send({"type": "http.response.start", "status": start.get("status", 500),
                    "headers": [*headers, (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


async def read_all(receive: Receive) -> bytes:
    parts = []
    while True:
        message = await receive()
        parts.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(parts)


def replay(body: bytes, receive: Receive) -> Receive:
    """A `receive` that hands the app the body already read, then the connection's own messages
    (a disconnect, when the client leaves)."""
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed
