"""How the reference server behaves: one word per catalog entry, plus a few knobs.

`ServerConfig.for_vendor("fireworks")` makes it act as Fireworks documents on every entry (where
Fireworks' own revisions disagree, as the revision that differs from OpenAI); overrides make it
deviate on single entries, which is how the project's tests prove each check can fail.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from conformance.catalog import load_catalog
from conformance.families import API_FAMILIES
from conformance.reference_server import faults

#: `openai` and `fireworks` serve both API families (OpenAI's and Anthropic's Messages), each
#: family's entries as that vendor documents them (`openai` acts as Anthropic on the Messages
#: family, its reference); `anthropic` serves the Messages family only, as Anthropic documents it.
VENDORS = ("openai", "fireworks", "anthropic")
_BOTH = ("openai", "fireworks")
#: The behaviours the server can show, per catalog entry: the two documented ones where they
#: differ, and a deliberate deviation ("other", "unsupported") where both documents agree, so
#: every check can be seen to fail.
CAPABILITIES: dict[str, tuple[str, ...]] = {
    "chat-completion-schema": ("openai", "fireworks", "other"),
    "completion-schema": ("openai", "other"),
    "usage-in-response": ("openai", "other"),
    "n-choices": ("openai", "other", "usage-one-choice"),
    "multi-turn-history": ("openai", "other"),
    "model-identifiers": _BOTH,
    "stream-usage-default": _BOTH,
    "stream-options-include-usage": ("openai", "fireworks", "unsupported"),
    "stream-abort": ("openai", "other"),
    "stop-sequence-in-output": _BOTH,
    "context-overflow-default": _BOTH,
    "context-length-exceeded-behavior-param": _BOTH,
    "penalty-parameters": _BOTH,
    "best-of": _BOTH,
    "logit-bias": _BOTH,
    "legacy-functions": ("openai", "fireworks", "tool-calls"),
    "perf-metrics-headers": _BOTH,
    "perf-metrics-in-response": _BOTH,
    "sampling-options-header": _BOTH,
    "chat-logprobs-boolean": _BOTH,
    "chat-logprobs-integer": _BOTH,
    "top-logprobs-range": _BOTH,
    "echo-on-chat": _BOTH,
    "completion-echo": ("openai", "other"),
    "raw-output": _BOTH,
    "responses-api": ("openai", "unsupported"),
    "max-completion-tokens": ("openai", "fireworks", "ignored"),
    "developer-role": ("openai", "rejected", "dropped"),
    "content-parts": ("openai", "rejected", "image-dropped", "other"),
    "models-object-shape": ("openai", "other", "unsupported"),
    "documented-optional-fields": ("openai", "lenient", "rejects-documented"),
    "usage-details": ("openai", "fireworks", "absent", "other"),
    "prompt-cache-max-len": ("openai", "fireworks", "ignored"),
    "stream-error-frame": ("openai", "in-band", "event-error", "unraised", "other"),
    "fireworks-sampling-extensions": ("openai", "fireworks", "ignored"),
    "reasoning-effort-values": ("openai", "fireworks", "unsupported"),
    "embeddings": ("openai", "base64-ignored", "dimensions-ignored", "unsupported"),
    "reasoning-field": ("openai", "fireworks", "reasoning", "think-tags", "input-rejected", "other"),
    # Tool calling and structured outputs: the documented behaviours and the deviations real servers
    # show (a named tool_choice served as auto, streamed tools refused, response_format ignored).
    "tool-choice": ("openai", "fireworks", "ignored"),
    "tool-call-stream": ("openai", "unsupported"),
    "tool-call-round-trip": ("openai", "rejects-null-content", "rejects-tool-parts"),
    "parallel-tool-calls": ("openai", "unsupported"),
    "response-format-json-object": ("openai", "ignored"),
    "response-format-json-schema": ("openai", "ignored"),
    "response-format-grammar": ("openai", "fireworks"),
    "json-schema-subset": ("openai", "fireworks"),
    # The common surface has one documented behaviour; the server breaks it with rule-break faults
    # (faults.py), and tests/test_surface.py proves each matching check fails.
    "sse-framing": ("openai",),
    "chunk-schema": ("openai",),
    "error-envelope": ("openai",),
    "parameter-validation": ("openai",),
    "openai-sdk": ("openai",),
    # Anthropic's Messages API: both documented behaviours where Anthropic and Fireworks differ, and
    # a deviation elsewhere (a missing field, a broken event sequence, OpenAI's words or envelope).
    "messages-schema": ("anthropic", "other"),
    "messages-stream-events": ("anthropic", "other"),
    "messages-stop-reason": ("anthropic", "other"),
    "messages-usage": ("anthropic", "absent"),
    "messages-stream-usage": ("anthropic", "absent"),
    "messages-max-tokens-required": ("anthropic", "fireworks"),
    "anthropic-version-header": ("anthropic", "fireworks"),
    "anthropic-auth-header": ("anthropic", "x-api-key-only", "bearer-only"),
    "messages-tool-choice": ("anthropic", "ignored"),
    "messages-unsupported-tool-fields": ("anthropic", "fireworks"),
    "messages-error-envelope": ("anthropic", "other"),
    "messages-count-tokens": ("anthropic", "miscounted", "unsupported"),
    "anthropic-sdk": ("anthropic", "other"),
}


#: The default pause before each streamed chunk (ms): small, so a run stays fast, yet not zero.
TOKEN_DELAY_MS = 2.0


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class ServerConfig:
    behaviours: dict[str, str] = field(default_factory=dict)
    api_key: str | None = None
    context_window: int = 4096
    latency_ms: int = 0
    #: The pause before each streamed chunk, as a model takes time per token: time to first token
    #: and incremental delivery are then measurable, and an aborted stream is really cut short.
    token_delay_ms: float = TOKEN_DELAY_MS
    model_name: str = "reference-model"
    #: The vendor whose documents the server follows, before any per-entry override.
    vendor: str = "openai"
    #: Transport faults to commit on every generation request (see faults.py).
    faults: frozenset[str] = frozenset()
    #: The API families served (catalog.API_FAMILIES); the routes of any other answer 404.
    apis: tuple[str, ...] = API_FAMILIES

    def __post_init__(self) -> None:
        try:
            faults.validate(self.faults)
        except faults.FaultError as problem:
            raise ConfigError(str(problem)) from None

    def acts(self, entry_id: str) -> str:
        """The behaviour this server shows for a catalog entry (its family's reference when unset)."""
        entry = load_catalog().entries.get(entry_id)
        return self.behaviours.get(entry_id, entry.api if entry else "openai")

    def is_(self, entry_id: str, behaviour: str) -> bool:
        return self.acts(entry_id) == behaviour

    @property
    def model_id(self) -> str:
        if self.is_("model-identifiers", "fireworks"):
            return f"accounts/fireworks/models/{self.model_name}"
        return self.model_name

    @classmethod
    def for_vendor(cls, vendor: str, overrides: dict[str, str] | None = None, **knobs) -> ServerConfig:
        if vendor not in VENDORS:
            raise ConfigError(f"unknown behaviour {vendor!r}: choose {' or '.join(VENDORS)}")
        catalog = load_catalog()
        behaviours = {}
        for entry in catalog:
            promised = entry.vendor_behaviours(vendor) or [entry.api]
            distinct = [b for b in promised if b != entry.api]
            behaviours[entry.id] = distinct[0] if vendor != entry.api and distinct else promised[0]
        for entry_id, behaviour in (overrides or {}).items():
            if entry_id not in catalog.entries:
                raise ConfigError(f"unknown catalog entry {entry_id!r}")
            if behaviour not in CAPABILITIES.get(entry_id, ()):
                raise ConfigError(f"the reference server cannot show {behaviour!r} for {entry_id}: choose from "
                                  f"{', '.join(CAPABILITIES.get(entry_id, ()))}")
            behaviours[entry_id] = behaviour
        if vendor == "anthropic":
            knobs.setdefault("apis", ("anthropic",))
        return cls(behaviours=behaviours, vendor=vendor, **knobs)
