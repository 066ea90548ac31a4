"""Where a reasoning model's reasoning travels (`reasoning_content`, `reasoning`, `<think>` in the
content, or nowhere but `reasoning_tokens`), the same whole and streamed (`delta.X`), and whether
reasoning returned as a field is accepted back on an assistant message, as multi-turn clients send it.

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
    choices_of,
    first_choice,
    is_refused,
    rejection_reason,
    require_control,
)
from conformance.exchange import Exchange
from conformance.results import Observation, inconclusive, observe

THINK = "What is 2+3? Think step by step."
REASONING_CAP = 16
#: The fields reasoning may travel in (in a message, or in a stream's deltas), with the behaviour each is.
FIELDS = {"reasoning_content": "fireworks", "reasoning": "reasoning"}
#: Reasoning at the start of the content, inside `<think>...</think>`.
THINK_TAGS = "<think>"


def history(reasoning: bool) -> list[dict[str, Any]]:
    """A finished turn whose assistant message carries its reasoning back (or not: the control)."""
    answer: dict[str, Any] = {"role": "assistant", "content": "5"}
    if reasoning:
        answer["reasoning_content"] = "2 plus 3 is 5."
    return [{"role": "user", "content": "What is 2+3?"}, answer, {"role": "user", "content": "OK"}]


def joined(parts: list[Any]) -> dict[str, str]:
    """The text fields of a message, or of a stream's deltas each joined in order."""
    fields: dict[str, str] = {}
    for part in parts:
        for key, value in as_dict(part).items():
            if isinstance(value, str):
                fields[key] = fields.get(key, "") + value
    return fields


def place_of(fields: dict[str, str]) -> str | None:
    """Where the reasoning is: a field's name, THINK_TAGS, or None when nowhere."""
    carried = [name for name in FIELDS if fields.get(name)]
    if carried:
        return carried[0]
    return THINK_TAGS if fields.get("content", "").lstrip().startswith(THINK_TAGS) else None


def described(place: str | None, container: str) -> str:
    if place is None:
        return "nowhere"
    return f"as {THINK_TAGS} in {container}.content" if place == THINK_TAGS else f"in {container}.{place}"


@check("reasoning-field", variant="chat")
def reasoning_field(ctx: ProbeContext) -> Observation:
    """Asked once whole and once streamed: a client reading either must find the reasoning in the
    same place (`message.X` and `delta.X`, or `<think>` in the content of both)."""
    thinking, streamed, sent_back = ctx.send_all([
        (CHAT.path, CHAT.body(ctx.model, THINK, {"max_completion_tokens": REASONING_CAP})),
        (CHAT.path, CHAT.body(ctx.model, THINK, {"max_completion_tokens": REASONING_CAP, "stream": True})),
        (CHAT.path, CHAT.body(ctx.model, history(True), {"max_tokens": 1}))])
    body = ctx.require_success(thinking, "a question to think about")
    place = place_of(joined([first_choice(body).get("message")]))
    deltas = [choice.get("delta") for chunk in ctx.require_stream(streamed, "the same question, streamed")
              for choice in choices_of(chunk) if choice.get("index", 0) == 0]
    streamed_place = place_of(joined(deltas))
    if streamed_place != place:
        return observe("other", f"reasoning {described(place, 'message')} when not streamed, but "
                       f"{described(streamed_place, 'delta')} when streamed")
    if place in FIELDS:
        return sent_back_verdict(ctx, sent_back, FIELDS[place], f"reasoning in message.{place} and delta.{place}")
    if place == THINK_TAGS:
        return observe("think-tags", "reasoning in content inside <think>...</think>, streamed or not")
    reasoning_tokens = as_dict(as_dict(body.get("usage")).get("completion_tokens_details")).get("reasoning_tokens")
    if type(reasoning_tokens) is int and reasoning_tokens > 0:
        return observe("openai", f"no reasoning text, streamed or not; completion_tokens_details.reasoning_tokens is "
                       f"{reasoning_tokens}")
    back = ("refused" if is_refused(sent_back) else "accepted") + f" (HTTP {sent_back.status})"
    return inconclusive(f"the model shows no reasoning (no reasoning text, streamed or not; reasoning_tokens "
                        f"{reasoning_tokens!r}), so where it travels cannot be told; an assistant message with "
                        f"reasoning_content was {back}")


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
