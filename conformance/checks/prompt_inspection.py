"""Seeing the prompt the model read: echo on chat, echo on completions, raw_output."""

from __future__ import annotations

from conformance.checks.base import CHAT, COMPLETIONS, ProbeContext, check, first_choice, refused_for, rejection_reason
from conformance.results import Observation, observe

USER_TEXT = "alpha beta"
COMPLETION_PROMPT = "The quick brown fox"


@check("echo-on-chat", variant="chat")
def echo_on_chat(ctx: ProbeContext) -> Observation:
    exchange = ctx.generate(CHAT, USER_TEXT, max_tokens=1, echo=True)
    if refused_for(ctx, exchange, "echo"):
        return observe("openai", f"echo on chat is {rejection_reason(exchange)}")
    content = CHAT.text(first_choice(ctx.require_success(exchange, "chat with echo")))
    if isinstance(content, str) and USER_TEXT in content and len(content) > len(USER_TEXT):
        return observe("fireworks", f"the reply carries the formatted prompt: {content[:120]!r}")
    return observe("other", f"echo accepted, but the reply does not show the prompt: {str(content)[:120]!r}")


@check("completion-echo", variant="completions")
def completion_echo(ctx: ProbeContext) -> Observation:
    exchange = ctx.generate(COMPLETIONS, COMPLETION_PROMPT, max_tokens=1, echo=True)
    if refused_for(ctx, exchange, "echo"):
        return observe("unsupported", f"echo on completions is {rejection_reason(exchange)}")
    text = COMPLETIONS.text(first_choice(ctx.require_success(exchange, "completion with echo")))
    if isinstance(text, str) and text.startswith(COMPLETION_PROMPT):
        return observe("openai", "the text starts with the prompt exactly as sent")
    return observe("other", f"the echoed text does not start with the prompt as sent: {str(text)[:120]!r}")


@check("raw-output", variant="chat")
def raw_output(ctx: ProbeContext) -> Observation:
    exchange = ctx.generate(CHAT, USER_TEXT, max_tokens=2, raw_output=True)
    if refused_for(ctx, exchange, "raw_output"):
        return observe("openai", f"raw_output {rejection_reason(exchange)}")
    body = ctx.require_success(exchange, "chat with raw_output")
    raw = first_choice(body).get("raw_output")
    where = "choices[0].raw_output"
    if not isinstance(raw, dict) and isinstance(body.get("raw_output"), dict):
        raw, where = body["raw_output"], "the top-level raw_output (the guide's example, not the schema)"
    ids = raw.get("prompt_token_ids") if isinstance(raw, dict) else None
    if isinstance(ids, list) and ids and all(isinstance(i, int) for i in ids):
        return observe("fireworks", f"{where} with {len(ids)} prompt token ids")
    return observe("other", f"raw_output accepted, but no prompt_token_ids list: {str(raw)[:200]}")
