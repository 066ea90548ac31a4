"""Core surface checks: the shape of a plain chat completion and completion."""

from __future__ import annotations

from conformance.checks.base import CHAT, COMPLETIONS, Api, ProbeContext, check
from conformance.results import Observation, observe

SAY_OK = "Reply with only the word OK."


def _classify_shape(ctx: ProbeContext, api: Api, body: dict) -> Observation:
    """strict-valid: openai; core-valid only: fireworks (its documented schema); else other."""
    strict = ctx.schema_violations(api.response_schema, body, "strict")
    if not strict:
        return observe("openai", f"valid against the strict OpenAI `{api.response_schema}` schema")
    core = ctx.schema_violations(api.response_schema, body, "core")
    listed = "; ".join(str(v) for v in (core or strict))
    if core:
        return observe("other", f"invalid even against the core-compatible schema: {listed}")
    return observe("fireworks", f"valid against the core-compatible schema only; strict schema: {listed}")


@check("chat-completion-schema/chat", "chat-completion-schema", "A chat completion validates against the schema")
def chat_completion_schema(ctx: ProbeContext) -> Observation:
    body = ctx.require_success(ctx.generate(CHAT, SAY_OK, max_tokens=8), "chat completion")
    return _classify_shape(ctx, CHAT, body)


@check("completion-schema/completions", "completion-schema", "A completion validates against the schema")
def completion_schema(ctx: ProbeContext) -> Observation:
    body = ctx.require_success(ctx.generate(COMPLETIONS, "The quick brown fox", max_tokens=8), "completion")
    observation = _classify_shape(ctx, COMPLETIONS, body)
    # Only OpenAI's shape is documented for completions: a core-only fit is not Fireworks' either.
    if observation.behaviour == "fireworks":
        return observe("other", observation.reason)
    return observation
