"""Parameters the older Fireworks page lists as "not supported": presence_penalty,
frequency_penalty, best_of, logit_bias and the legacy functions API.

Acceptance is deterministic (2xx versus 4xx), so it is what these checks judge; where an effect
can be seen without knowing the model's tokenizer (functions), they look at the effect too.
"""

from __future__ import annotations

from conformance.checks.base import (
    CHAT,
    COMPLETIONS,
    Api,
    ProbeContext,
    as_dict,
    as_list,
    check,
    first_choice,
    refused_for,
    rejection_reason,
)
from conformance.results import Observation, observe

SAY_OK = "Reply with only the word OK."


def acceptance(ctx: ProbeContext, api: Api, prompt: str, name: str, **params) -> Observation:
    """openai when the parameter is accepted; fireworks ("not supported") when refused with a 4xx."""
    exchange = ctx.generate(api, prompt, max_tokens=4, **params)
    if refused_for(ctx, exchange, *params):
        return observe("fireworks", f"{name} {rejection_reason(exchange)}")
    ctx.require_success(exchange, f"request with {name}")
    return observe("openai", f"{name} accepted (HTTP {exchange.status}); its effect is not measured")


@check("penalty-parameters", variants={name: (name,) for name in ("presence_penalty", "frequency_penalty")})
def penalty_parameter(ctx: ProbeContext, name: str) -> Observation:
    return acceptance(ctx, CHAT, SAY_OK, name, **{name: 0.5})


@check("best-of", variant="completions")
def best_of(ctx: ProbeContext) -> Observation:
    return acceptance(ctx, COMPLETIONS, "The quick brown fox", "best_of", best_of=2, n=1)


@check("logit-bias", variant="chat")
def logit_bias(ctx: ProbeContext) -> Observation:
    # A small bias on a low token id exists in every vocabulary and barely changes the output.
    return acceptance(ctx, CHAT, SAY_OK, "logit_bias", logit_bias={"1000": 1})


GET_TIME = {"name": "get_time", "description": "Returns the current time.",
            "parameters": {"type": "object", "properties": {}}}


@check("legacy-functions", variant="chat")
def legacy_functions(ctx: ProbeContext) -> Observation:
    exchange = ctx.generate(CHAT, "What time is it?", max_tokens=32, functions=[GET_TIME],
                            function_call={"name": "get_time"})
    if refused_for(ctx, exchange, "functions", "function_call"):
        return observe("fireworks", f"functions {rejection_reason(exchange)}")
    message = as_dict(first_choice(ctx.require_success(exchange, "request with functions")).get("message"))
    call = message.get("function_call")
    if isinstance(call, dict) and call.get("name") == "get_time":
        return observe("openai", "the forced function is returned as message.function_call")
    if any(as_dict(as_dict(call).get("function")).get("name") == "get_time"
           for call in as_list(message.get("tool_calls"))):
        return observe("tool-calls", "the forced function is returned as message.tool_calls")
    return observe("other", f"accepted, but neither function_call nor tool_calls names get_time: {str(message)[:200]}")
