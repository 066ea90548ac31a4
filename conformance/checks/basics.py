"""Basic checks: shapes, usage, n, history and the model listing, which both documents promise alike."""

from __future__ import annotations

import re
from typing import Any

from conformance.checks.base import (
    CHAT,
    COMPLETIONS,
    PER_API,
    Api,
    ProbeContext,
    as_dict,
    check,
    choices_of,
    refused_for,
    rejection_reason,
    usage_problem,
)
from conformance.results import Observation, inconclusive, observe

SAY_OK = "Reply with only the word OK."


def _classify_shape(ctx: ProbeContext, api: Api, body: dict) -> Observation:
    """strict-valid: openai; compatible-valid only: fireworks (its documented schema); else other."""
    strict = ctx.schema_violations(api.response_schema, body, "strict")
    if not strict:
        return observe("openai", f"valid against the strict OpenAI `{api.response_schema}` schema")
    compatible = ctx.schema_violations(api.response_schema, body, "compatible")
    listed = "; ".join(str(v) for v in (compatible or strict))
    if compatible:
        return observe("other", f"invalid even against the compatible schema: {listed}")
    return observe("fireworks", f"valid against the compatible schema only; strict schema: {listed}")


@check("chat-completion-schema", variant="chat")
def chat_completion_schema(ctx: ProbeContext) -> Observation:
    body = ctx.require_success(ctx.generate(CHAT, SAY_OK, max_tokens=8), "chat completion")
    return _classify_shape(ctx, CHAT, body)


@check("completion-schema", variant="completions")
def completion_schema(ctx: ProbeContext) -> Observation:
    body = ctx.require_success(ctx.generate(COMPLETIONS, "The quick brown fox", max_tokens=8), "completion")
    observation = _classify_shape(ctx, COMPLETIONS, body)
    # Only OpenAI's shape is documented for completions: a compatible-only fit is not Fireworks' either.
    if observation.behaviour == "fireworks":
        return observe("other", observation.reason)
    return observation


@check("usage-in-response", variants=PER_API)
def usage_in_response(ctx: ProbeContext, api: Api) -> Observation:
    prompt = SAY_OK if api is CHAT else "The quick brown fox"
    usage = ctx.require_success(ctx.generate(api, prompt, max_tokens=4), api.name).get("usage")
    if not isinstance(usage, dict):
        return observe("other", "the response has no usage object")
    problem = usage_problem(usage)
    if problem:
        return observe("other", problem)
    if usage["prompt_tokens"] == 0:
        return observe("other", "usage reports 0 prompt tokens for a non-empty prompt")
    return observe("openai", f"usage {usage['prompt_tokens']} + {usage['completion_tokens']} = "
                   f"{usage['total_tokens']}", usage=usage)


N_CHOICES = 2
N_MAX_TOKENS = 4
#: Prompts whose answer outruns N_MAX_TOKENS, so every choice stops at the limit and its token
#: count is known exactly without the endpoint's tokenizer.
N_PROMPT = {"chat": "Count from 1 to 40, separated by commas.", "completions": "1, 2, 3,"}


@check("n-choices", variants=PER_API)
def n_choices(ctx: ProbeContext, api: Api) -> Observation:
    """n choices indexed 0..n-1, and usage counting every one of them: a choice stopped by
    max_tokens produced exactly max_tokens, any other non-empty choice at least one token."""
    exchange = ctx.generate(api, N_PROMPT[api.name], max_tokens=N_MAX_TOKENS, n=N_CHOICES)
    if refused_for(ctx, exchange, "n"):
        return observe("unsupported", f"n={N_CHOICES} {rejection_reason(exchange)}")
    choices = choices_of(ctx.require_success(exchange, f"{api.name} with n={N_CHOICES}"))
    indexes = [choice.get("index") for choice in choices]
    if sorted(indexes, key=repr) != list(range(N_CHOICES)):
        return observe("other", f"asked for {N_CHOICES} choices, got indexes {indexes}")
    completion_tokens = as_dict(exchange.json.get("usage")).get("completion_tokens")
    if type(completion_tokens) is not int:
        return observe("openai", f"{N_CHOICES} choices, indexes 0..{N_CHOICES - 1}; no usage.completion_tokens to "
                       "check against them (usage-in-response judges usage)")
    finishes = [choice.get("finish_reason") for choice in choices]
    least = sum(N_MAX_TOKENS if finish == "length" else int(bool(api.text(choice)))
                for finish, choice in zip(finishes, choices, strict=True))
    exact = all(finish == "length" for finish in finishes)
    counted = (f"usage counts {completion_tokens} completion tokens; the {N_CHOICES} choices (finish_reason "
               f"{finishes}, max_tokens {N_MAX_TOKENS}) produced {'exactly' if exact else 'at least'} {least}")
    if completion_tokens >= least:
        return observe("openai", f"{N_CHOICES} choices, indexes 0..{N_CHOICES - 1}; {counted}")
    if completion_tokens <= N_MAX_TOKENS:
        return observe("usage-one-choice", f"{counted}: usage covers no more than one choice")
    return observe("other", counted)


SECRET = "marmalade"
HISTORY = [{"role": "user", "content": f"The secret word is {SECRET}. Remember it for later in this conversation."},
           {"role": "assistant", "content": "Noted, I will remember the secret word."},
           {"role": "user", "content": "Repeat my first message exactly."}]


@check("multi-turn-history", variant="chat")
def multi_turn_history(ctx: ProbeContext) -> Observation:
    """Judged by what the endpoint counts, not by what a model recalls: the same last message with
    and without the earlier turns must differ in prompt tokens by about the turns' length."""
    with_history = ctx.require_success(ctx.generate(CHAT, HISTORY, max_tokens=1), "multi-turn request")
    alone = ctx.require_success(ctx.generate(CHAT, HISTORY[-1:], max_tokens=1), "the last message alone")
    counted: list[Any] = [as_dict(body.get("usage")).get("prompt_tokens") for body in (with_history, alone)]
    if not all(isinstance(n, int) and not isinstance(n, bool) for n in counted):
        return inconclusive(f"no usage.prompt_tokens to compare ({counted}), and a one-token reply cannot show "
                            "whether the earlier turns were read")
    added = counted[0] - counted[1]
    if added >= 10:  # the two earlier turns are ~25 words; any tokenizer counts well over 10 tokens
        return observe("openai", f"the earlier turns add {added} prompt tokens ({counted[0]} vs {counted[1]})")
    return observe("other", f"the earlier turns add only {added} prompt tokens ({counted[0]} vs {counted[1]}): "
                   "the history is not part of the prompt")


FIREWORKS_MODEL_ID = re.compile(r"^accounts/[^/]+/models/[^/]+$")


@check("model-identifiers", variant="models")
def model_identifiers(ctx: ProbeContext) -> Observation:
    listing = ctx.require_success(ctx.send("models", method="GET"), "GET /models")
    problems = ctx.schema_violations("model_list", listing, "compatible")
    if problems:
        return observe("other", "the listing is malformed: " + "; ".join(map(str, problems)))
    ids = [m["id"] for m in listing["data"]]
    if ctx.model not in ids:
        return observe("other", f"the model in use, {ctx.model!r}, is not listed (listed: {ids[:5]})")
    if FIREWORKS_MODEL_ID.match(ctx.model):
        return observe("fireworks", f"{ctx.model!r} has the accounts/<account>/models/<name> form")
    return observe("openai", f"{ctx.model!r} is a plain model id")
