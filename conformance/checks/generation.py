"""Stop sequences and the context window: what the generated text contains, and when a request
that cannot fit is refused or shortened."""

from __future__ import annotations

from typing import Any

from conformance.accounting import token_counts
from conformance.checks.base import (
    CHAT,
    COMPLETIONS,
    PER_API,
    Api,
    ProbeContext,
    as_dict,
    check,
    first_choice,
    is_refused,
    refused_for,
    rejection_reason,
    streamed_finish_reason,
    streamed_text,
)
from conformance.results import Observation, inconclusive, observe


def stop_probe(api: Api) -> tuple[Any, list[str], str, str]:
    """(prompt, stop, the text expected before the stop string, the stop string itself)."""
    if api is CHAT:
        messages = [{"role": "system", "content": "Repeat the user's text exactly."},
                    {"role": "user", "content": "alpha beta gamma delta epsilon"}]
        return messages, ["gamma"], "alpha beta", "gamma"
    return "1, 2, 3, 4, 5, 6,", [" 9"], " 7, 8,", " 9"


def _squeeze(text: str) -> str:
    return " ".join(text.split()).casefold()


def classify_stop(text: str | None, finish_reason: str | None, before: str, stop: str) -> Observation:
    """Verdict from the tail of the text; only when the stop string really ended generation right
    after the expected lead-in (a preamble such as "Sure!" is fine, case and spacing are ignored)."""
    if not isinstance(text, str):
        return inconclusive("the response carried no text")
    if finish_reason != "stop":
        return inconclusive(f"finish_reason is {finish_reason!r}, not 'stop': the stop string was never reached")
    tail, lead, word = _squeeze(text), _squeeze(before), _squeeze(stop)
    if tail.endswith(f"{lead} {word}") or tail.endswith(lead + word):
        return observe("fireworks", f"the text ends with the stop string: {text!r}", text=text)
    if tail.endswith(lead):
        return observe("openai", f"the text ends right before the stop string: {text!r}", text=text)
    if lead not in tail:
        return inconclusive(f"the model never produced the lead-in {before!r} (got {text[:60]!r}), "
                            "so the stop string's fate says nothing")
    return observe("other", f"the text neither ends before nor with the stop string: {text!r}", text=text)


@check("stop-sequence-in-output", variants={"chat": (CHAT, False), "chat-stream": (CHAT, True),
                                            "completions": (COMPLETIONS, False),
                                            "completions-stream": (COMPLETIONS, True)})
def stop_sequence_in_output(ctx: ProbeContext, api: Api, stream: bool) -> Observation:
    prompt, stop, before, stop_text = stop_probe(api)
    exchange = ctx.generate(api, prompt, stop=stop, max_tokens=16, stream=stream)
    if stream:
        chunks = ctx.require_stream(exchange, "stream with stop")
        return classify_stop(streamed_text(api, chunks), streamed_finish_reason(chunks), before, stop_text)
    choice = first_choice(ctx.require_success(exchange, "request with stop"))
    return classify_stop(api.text(choice), choice.get("finish_reason"), before, stop_text)


OVERFLOW_PROMPT = "Reply with only the word OK."
#: max_tokens beyond any context window in use today, when the window is not known.
UNKNOWN_WINDOW_MAX_TOKENS = 1_048_576


def overflow_request(ctx: ProbeContext, api: Api, window: int | None, **params: Any):
    """A request whose prompt fits but whose prompt + max_tokens does not. The newline stop keeps a
    model that does not stop after "OK" from filling the whole window when max_tokens is lowered."""
    max_tokens = window + 16 if window else UNKNOWN_WINDOW_MAX_TOKENS
    return ctx.generate(api, OVERFLOW_PROMPT, max_tokens=max_tokens, stop=["\n"], **params)


def require_prompt_fits(ctx: ProbeContext, api: Api) -> None:
    """Guard: the same prompt with a small max_tokens must succeed, or nothing can be concluded."""
    ctx.require_success(ctx.generate(api, OVERFLOW_PROMPT, max_tokens=4), "the same prompt with max_tokens 4")


@check("context-overflow-default", variants=PER_API)
def context_overflow_default(ctx: ProbeContext, api: Api) -> Observation:
    window = ctx.context_window  # --context-window, else what /models stated (endpoint.read_models)
    require_prompt_fits(ctx, api)
    exchange = overflow_request(ctx, api, window)
    if is_refused(exchange):  # the prompt fits (require_prompt_fits): the refusal is the overflow's
        envelope = exchange.error_envelope or {}
        return observe("openai", rejection_reason(exchange), status=exchange.status, code=envelope.get("code"))
    body = ctx.require_success(exchange, "overflowing request")
    usage = as_dict(body.get("usage"))
    used = sum(token_counts(usage))
    if window and used > window:
        return observe("other", f"succeeded but used {used} tokens, more than the {window}-token window")
    return observe("fireworks", f"succeeded (HTTP {exchange.status}) with max_tokens lowered to fit"
                   + (f" the {window}-token window" if window else ""), usage=usage, window=window)


@check("context-length-exceeded-behavior-param", variant="chat")
def context_length_exceeded_behavior(ctx: ProbeContext) -> Observation:
    probe = ctx.generate(CHAT, OVERFLOW_PROMPT, max_tokens=4, context_length_exceeded_behavior="error")
    if refused_for(ctx, probe, "context_length_exceeded_behavior"):
        return observe("openai", f"the field is not accepted: {rejection_reason(probe)}")
    ctx.require_success(probe, "a small request with context_length_exceeded_behavior=error")
    window = ctx.context_window
    erring = overflow_request(ctx, CHAT, window, context_length_exceeded_behavior="error")
    truncating = overflow_request(ctx, CHAT, window, context_length_exceeded_behavior="truncate")
    if not is_refused(erring):
        return observe("other", f"accepted, but `error` did not refuse an overflowing request "
                       f"(HTTP {erring.status})")
    if is_refused(truncating):
        return observe("other", f"`error` refused the overflow, but `truncate` was refused too: "
                       f"{rejection_reason(truncating)}")
    ctx.require_success(truncating, "overflowing request with truncate")
    envelope = erring.error_envelope or {}
    return observe("fireworks", f"`error` refused the overflow with HTTP {erring.status}; `truncate` succeeded",
                   error_status=erring.status, error_code=envelope.get("code"), error_type=envelope.get("type"))

