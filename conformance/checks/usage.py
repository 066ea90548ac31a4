"""Usage details: `prompt_tokens_details.cached_tokens` and `completion_tokens_details`, plain and
streamed. Clients read them to bill cache hits and reasoning; their absence is silent, so it is
judged here. Cache hits themselves depend on the endpoint's state and are only reported, except
where a request asks for none (`prompt_cache_max_len: 0`): there a hit is the finding.
"""

from __future__ import annotations

from typing import Any

from conformance.checks.base import (
    CHAT,
    ProbeContext,
    ProbeFailed,
    as_dict,
    check,
    refused_for,
    rejection_reason,
    usage_problem,
)
from conformance.exchange import Exchange
from conformance.results import Observation, inconclusive, observe

PROMPT = "Reply with only the word OK."
CACHED_HEADER = "fireworks-cached-prompt-tokens"


def detail_problems(usage: dict[str, Any]) -> list[str]:
    """Details that are present but not counts within their totals."""
    problems = []
    for details, total, keys in (("prompt_tokens_details", "prompt_tokens", ("cached_tokens",)),
                                 ("completion_tokens_details", "completion_tokens",
                                  ("reasoning_tokens", "accepted_prediction_tokens", "rejected_prediction_tokens"))):
        if details not in usage:
            continue
        if not isinstance(usage[details], dict):
            problems.append(f"{details} is {usage[details]!r}, not an object")
            continue
        for key in keys:
            value = usage[details].get(key)
            if value is not None and (type(value) is not int or not 0 <= value <= usage[total]):
                problems.append(f"{details}.{key} is {value!r}, not a count from 0 to {total} ({usage[total]})")
    return problems


def shape(usage: dict[str, Any]) -> str:
    """The entry's behaviour one usage object shows (its counts already checked)."""
    cached = "cached_tokens" in as_dict(usage.get("prompt_tokens_details"))
    completion = isinstance(usage.get("completion_tokens_details"), dict)
    if cached and completion:
        return "openai"
    if cached:
        return "fireworks"
    return "absent" if not completion else "other"


def streamed_usage(ctx: ProbeContext) -> dict[str, Any]:
    exchange = ctx.generate(CHAT, PROMPT, max_tokens=1, stream=True, stream_options={"include_usage": True})
    usages = [chunk["usage"] for chunk in ctx.require_stream(exchange, "stream with include_usage")
              if isinstance(chunk.get("usage"), dict)]
    if not usages:
        raise ProbeFailed("a stream with stream_options.include_usage carried no usage")
    return usages[-1]


@check("usage-details", variant="chat")
def usage_details(ctx: ProbeContext) -> Observation:
    plain = ctx.generate(CHAT, PROMPT, max_tokens=1)
    usages = {"plain": as_dict(ctx.require_success(plain, "chat completion").get("usage")),
              "streamed": streamed_usage(ctx)}
    for where, usage in usages.items():
        problems = [problem] if (problem := usage_problem(usage)) else detail_problems(usage)
        if problems:
            return observe("other", f"{where} usage: {'; '.join(problems)}", usage=usage)
    header = plain.response_headers.get(CACHED_HEADER)
    cached = as_dict(usages["plain"].get("prompt_tokens_details")).get("cached_tokens")
    if header is not None and cached is not None and header != str(cached):
        return observe("other", f"{CACHED_HEADER} is {header} but prompt_tokens_details.cached_tokens is {cached}")
    shapes = {where: shape(usage) for where, usage in usages.items()}
    if shapes["plain"] != shapes["streamed"]:
        return observe("other", f"plain and streamed usage differ: {shapes}", usage=usages)
    found = {"openai": "prompt_tokens_details.cached_tokens and completion_tokens_details",
             "fireworks": "prompt_tokens_details.cached_tokens but no completion_tokens_details",
             "absent": "neither prompt_tokens_details.cached_tokens nor completion_tokens_details",
             "other": "completion_tokens_details but no prompt_tokens_details.cached_tokens"}
    behaviour = shapes["plain"]
    header_note = f"; {CACHED_HEADER}: {header}" if header is not None else ""
    return observe(behaviour, f"plain and streamed usage carry {found[behaviour]} "
                   f"(cached {cached!r} of {usages['plain'].get('prompt_tokens')}){header_note}", usage=usages)


#: A prompt long enough for a cache to hold some of it (about 30 tokens), sent three times.
CACHED_PROMPT = ("Reply with only the word OK. This sentence is only here so that the prompt is long enough "
                 "for a prompt cache to keep part of it.")
#: Fireworks pins a session to one replica with this header, so a prompt sent again meets its cache.
SESSION = {"x-session-affinity": "conformance-prompt-cache"}


def cached_tokens(ctx: ProbeContext, exchange: Exchange, what: str) -> int | None:
    """The cached prompt tokens an answer reports (`prompt_tokens_details.cached_tokens`, else the
    `fireworks-cached-prompt-tokens` header), or None when it reports none."""
    usage = as_dict(ctx.require_success(exchange, what).get("usage"))
    cached = as_dict(usage.get("prompt_tokens_details")).get("cached_tokens")
    if cached is None and (header := exchange.response_headers.get(CACHED_HEADER)) is not None:
        cached = int(header) if header.isdigit() else header
    if cached is not None and (type(cached) is not int or cached < 0):
        raise ProbeFailed(f"{what}: the cached prompt tokens are not a count: {cached!r}")
    return cached


@check("prompt-cache-max-len", variant="chat")
def prompt_cache_max_len(ctx: ProbeContext) -> Observation:
    """The prompt goes out once to be cached, twice with `prompt_cache_max_len: 0`, then once more
    without it: only a hit on that last one shows there was a cache to turn off. The second request
    with it follows the first at once, so a server that ignores it hits what the first left even
    when something else evicted the prompt before (a miss then is not taken for honouring). One
    after the other, in one session; the caps differ by a token, so no two bodies are the same."""
    body = CHAT.body(ctx.model, CACHED_PROMPT, {"max_tokens": 1})
    ctx.require_success(ctx.send(CHAT.path, {**body, "max_tokens": 2}, headers=SESSION), "the prompt, to be cached")
    disabled = ctx.send(CHAT.path, {**body, "prompt_cache_max_len": 0}, headers=SESSION)
    if refused_for(ctx, disabled, "prompt_cache_max_len"):
        return observe("openai", f"prompt_cache_max_len {rejection_reason(disabled)}")
    again = ctx.send(CHAT.path, {**body, "prompt_cache_max_len": 0, "max_tokens": 3}, headers=SESSION)
    with_it = [cached_tokens(ctx, exchange, "prompt_cache_max_len 0") for exchange in (disabled, again)]
    without = cached_tokens(ctx, ctx.send(CHAT.path, body, headers=SESSION), "the prompt sent again without it")
    counts = f"cached tokens with prompt_cache_max_len 0: {' then '.join(map(str, with_it))}; without it: {without}"
    if not without:
        return inconclusive(f"accepted, but the prompt sent again reports no cache hit ({counts}), so there is "
                            "no cache to turn off")
    if any(with_it):
        return observe("ignored", f"accepted, but the cache was still used: {counts}")
    return observe("fireworks", f"honoured: {counts}")
