"""Where a reasoning model's reasoning travels (`reasoning_content`, `reasoning`, `<think>` in the
content, or nowhere but `reasoning_tokens`), and whether reasoning returned as a field is accepted
back on an assistant message, as multi-turn clients send it.

On a model that does not reason nothing can be told apart: the check is `inconclusive` and says so.
The reasoning probe is capped with `max_completion_tokens` (reasoning models refuse `max_tokens`).
"""

from __future__ import annotations

from typing import Any

from conformance.checks.base import (
    CHAT,
    ProbeContext,
    as_dict,
    check,
    first_choice,
    is_refused,
    rejection_reason,
    require_control,
)
from conformance.exchange import Exchange
from conformance.results import Observation, inconclusive, observe

THINK = "What is 2+3? Think step by step."
REASONING_CAP = 16
FIELDS = {"reasoning_content": "fireworks", "reasoning": "reasoning"}


def history(reasoning: bool) -> list[dict[str, Any]]:
    """A finished turn whose assistant message carries its reasoning back (or not: the control)."""
    answer: dict[str, Any] = {"role": "assistant", "content": "5"}
    if reasoning:
        answer["reasoning_content"] = "2 plus 3 is 5."
    return [{"role": "user", "content": "What is 2+3?"}, answer, {"role": "user", "content": "OK"}]


@check("reasoning-field", variant="chat")
def reasoning_field(ctx: ProbeContext) -> Observation:
    thinking, sent_back = ctx.send_all([
        (CHAT.path, CHAT.body(ctx.model, THINK, {"max_completion_tokens": REASONING_CAP})),
        (CHAT.path, CHAT.body(ctx.model, history(True), {"max_tokens": 1}))])
    body = ctx.require_success(thinking, "a question to think about")
    message = as_dict(first_choice(body).get("message"))
    carried = [name for name in FIELDS if isinstance(message.get(name), str) and message[name]]
    if carried:
        return sent_back_verdict(ctx, sent_back, FIELDS[carried[0]], f"reasoning in message.{carried[0]}")
    content = message.get("content")
    if isinstance(content, str) and content.lstrip().startswith("<think>"):
        return observe("think-tags", "reasoning in content, inside <think>...</think>")
    reasoning_tokens = as_dict(as_dict(body.get("usage")).get("completion_tokens_details")).get("reasoning_tokens")
    if type(reasoning_tokens) is int and reasoning_tokens > 0:
        return observe("openai", f"no reasoning text; completion_tokens_details.reasoning_tokens is {reasoning_tokens}")
    back = ("refused" if is_refused(sent_back) else "accepted") + f" (HTTP {sent_back.status})"
    return inconclusive(f"the model shows no reasoning (no reasoning text, reasoning_tokens {reasoning_tokens!r}), so "
                        f"where it travels cannot be told; an assistant message with reasoning_content was {back}")


def sent_back_verdict(ctx: ProbeContext, sent_back: Exchange, behaviour: str, where: str) -> Observation:
    """A reasoning field the endpoint returns must be accepted back in the history."""
    if not is_refused(sent_back):
        ctx.require_success(sent_back, "a history carrying reasoning_content")
        return observe(behaviour, f"{where}; an assistant message carrying reasoning_content is accepted")
    control = ctx.control(CHAT.path, CHAT.body(ctx.model, history(False), {"max_tokens": 1}))
    require_control(control, f"reasoning_content on an assistant message {rejection_reason(sent_back)}",
                    "the same history without it")
    return observe("input-rejected", f"{where}, but an assistant message carrying reasoning_content "
                   f"{rejection_reason(sent_back)}")
