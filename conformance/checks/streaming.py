"""Streaming checks: where usage travels in a stream."""

from __future__ import annotations

from typing import Any

from conformance.checks.base import Api, ProbeContext, check_per_api
from conformance.results import Observation, inconclusive, observe

STREAM_PROMPT = {"chat": "Reply with only the word OK.", "completions": "The quick brown fox"}


def _usage_totals_problem(usage: dict[str, Any]) -> str | None:
    prompt, completion, total = (usage.get(k) for k in ("prompt_tokens", "completion_tokens", "total_tokens"))
    if not all(isinstance(v, int) for v in (prompt, completion, total)):
        return f"usage counts are not all integers: {usage}"
    if prompt + completion != total:
        return f"usage does not add up: {prompt} + {completion} != {total}"
    return None


def finish_chunk_index(chunks: list[dict[str, Any]]) -> int | None:
    """Index of the (last) chunk in which a choice carries a finish_reason."""
    found = None
    for index, chunk in enumerate(chunks):
        if any(isinstance(c, dict) and c.get("finish_reason") for c in chunk.get("choices") or []):
            found = index
    return found


@check_per_api("stream-usage-default", "Usage in a stream without stream_options")
def stream_usage_default(ctx: ProbeContext, api: Api) -> Observation:
    exchange = ctx.generate(api, STREAM_PROMPT[api.name], stream=True, max_tokens=8)
    chunks = ctx.require_stream(exchange, "stream")
    if not exchange.stream.done:
        return inconclusive("the stream ended without `data: [DONE]`, so a usage chunk may have been lost")
    finish = finish_chunk_index(chunks)
    if finish is None:
        return inconclusive("no chunk carried a finish_reason, so the documented usage chunk cannot be located")
    carrying = [i for i, chunk in enumerate(chunks) if isinstance(chunk.get("usage"), dict)]
    if not carrying:
        return observe("openai", f"none of {len(chunks)} chunks carries usage")
    usage = chunks[carrying[-1]]["usage"]
    problem = _usage_totals_problem(usage)
    if problem:
        return observe("other", problem, usage=usage)
    if carrying == [finish]:
        return observe("fireworks", f"usage on the finish chunk (#{finish} of {len(chunks)}) only", usage=usage)
    if len(carrying) == 1 and chunks[carrying[0]].get("choices") == []:
        return observe("other", f"usage on a separate chunk #{carrying[0]} with empty choices, "
                       "as OpenAI sends only when asked with stream_options.include_usage", usage=usage)
    return observe("other", f"usage on chunks {carrying}, finish_reason on chunk {finish}", usage=usage)
