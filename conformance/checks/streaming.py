"""Streaming checks: where usage travels in a stream."""

from __future__ import annotations

import time
from typing import Any

from conformance.checks.base import (
    CHAT,
    PER_API,
    Api,
    ProbeContext,
    ProbeFailed,
    check,
    choices_of,
    refused_for,
    rejection_reason,
    usage_problem,
)
from conformance.results import Observation, inconclusive, observe

STREAM_PROMPT = {"chat": "Reply with only the word OK.", "completions": "The quick brown fox"}


def finish_chunk_index(chunks: list[dict[str, Any]]) -> int | None:
    """Index of the (last) chunk in which a choice carries a finish_reason."""
    found = None
    for index, chunk in enumerate(chunks):
        if any(choice.get("finish_reason") for choice in choices_of(chunk)):
            found = index
    return found


@check("stream-usage-default", variants=PER_API)
def stream_usage_default(ctx: ProbeContext, api: Api) -> Observation:
    exchange = ctx.generate(api, STREAM_PROMPT[api.name], stream=True, max_tokens=8)
    chunks = ctx.require_stream(exchange, "stream")
    finish = finish_chunk_index(chunks)
    if finish is None:
        return inconclusive("no chunk carried a finish_reason, so the documented usage chunk cannot be located")
    carrying = [i for i, chunk in enumerate(chunks) if isinstance(chunk.get("usage"), dict)]
    if not carrying:
        return observe("openai", f"none of {len(chunks)} chunks carries usage")
    usage = chunks[carrying[-1]]["usage"]
    problem = usage_problem(usage)
    if problem:
        return observe("other", problem, usage=usage)
    if carrying == [finish]:
        return observe("fireworks", f"usage on the finish chunk (#{finish} of {len(chunks)}) only", usage=usage)
    if len(carrying) == 1 and chunks[carrying[0]].get("choices") == []:
        return observe("other", f"usage on a separate chunk #{carrying[0]} with empty choices, "
                       "as OpenAI sends only when asked with stream_options.include_usage", usage=usage)
    return observe("other", f"usage on chunks {carrying}, finish_reason on chunk {finish}", usage=usage)


@check("stream-options-include-usage", variants=PER_API)
def stream_options_include_usage(ctx: ProbeContext, api: Api) -> Observation:
    exchange = ctx.generate(api, STREAM_PROMPT[api.name], stream=True, max_tokens=8,
                            stream_options={"include_usage": True})
    if refused_for(ctx, exchange, "stream_options"):
        return observe("unsupported", f"stream_options {rejection_reason(exchange)}")
    chunks = ctx.require_stream(exchange, "stream")
    finish = finish_chunk_index(chunks)
    carrying = [i for i, chunk in enumerate(chunks) if isinstance(chunk.get("usage"), dict)]
    if not carrying:
        return observe("other", "include_usage was accepted but no chunk carries usage")
    if len(carrying) > 1:
        return observe("other", f"usage on several chunks: {carrying}")
    usage = chunks[carrying[0]]["usage"]
    problem = usage_problem(usage)
    if problem:
        return observe("other", problem, usage=usage)
    if chunks[carrying[0]].get("choices") == [] and carrying[0] == len(chunks) - 1:
        keyless = sum(1 for chunk in chunks[:-1] if "usage" not in chunk)
        note = f"; {keyless} other chunk(s) omit the `usage` key instead of sending null" if keyless else ""
        return observe("openai", f"usage on a final chunk with empty choices (#{carrying[0]}){note}", usage=usage)
    if carrying == [finish]:
        return observe("fireworks", f"usage on the finish chunk (#{finish}), not on a separate chunk", usage=usage)
    return observe("other", f"usage on chunk {carrying[0]}, finish_reason on chunk {finish}", usage=usage)


#: Any server needs a moment to notice a closed connection; the follow-up waits this long.
ABORT_SETTLE_S = 0.2


@check("stream-abort", variant="chat")
def stream_abort(ctx: ProbeContext) -> Observation:
    body = CHAT.body(ctx.model, "Count from 1 to 40, separated by commas.", {"stream": True, "max_tokens": 64})
    aborted = ctx.send(CHAT.path, body, abort_after_events=2)
    if not aborted.ok:
        raise ProbeFailed(f"the stream to abort did not start: {aborted.describe_status()}")
    if aborted.aborted_after is None:
        return inconclusive("the stream ended before two events arrived, so there was nothing to abort")
    time.sleep(ABORT_SETTLE_S)
    follow_up = ctx.generate(CHAT, "Reply with only the word OK.", max_tokens=4)
    if follow_up.ok:
        return observe("openai", "after the client closed a stream mid-way, the next request succeeded")
    return observe("other", f"after the client closed a stream mid-way, the next request failed: "
                   f"{follow_up.describe_status()}")
