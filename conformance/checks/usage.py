"""Usage details: `prompt_tokens_details.cached_tokens` and `completion_tokens_details`, plain and
streamed. Clients read them to bill cache hits and reasoning; their absence is silent, so it is
judged here. Cache hits themselves depend on the endpoint's state and are only reported.
"""

from __future__ import annotations

from typing import Any

from conformance.checks.base import (
    CHAT,
    ProbeContext,
    ProbeFailed,
    as_dict,
    check,
    usage_problem,
)
from conformance.results import Observation, observe

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
