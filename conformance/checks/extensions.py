"""Fireworks extensions: performance metrics in headers and body, and the sampling-options header."""

from __future__ import annotations

import json

from conformance.checks.base import (
    CHAT,
    ProbeContext,
    as_dict,
    check,
    refused_for,
    rejection_reason,
    streamed_finish_reason,
)
from conformance.checks.streaming import finish_chunk_index
from conformance.results import Observation, observe

SAY_OK = "Reply with only the word OK."
METRIC_HEADERS = ("fireworks-prompt-tokens", "fireworks-server-time-to-first-token", "fireworks-server-processing-time")


@check("perf-metrics-headers", variant="chat")
def perf_metrics_headers(ctx: ProbeContext) -> Observation:
    exchange = ctx.generate(CHAT, SAY_OK, max_tokens=4)
    body = ctx.require_success(exchange, "chat completion")
    present = {name: exchange.response_headers[name] for name in METRIC_HEADERS if name in exchange.response_headers}
    if not present:
        return observe("openai", "no fireworks-* metrics headers")
    prompt_tokens = as_dict(body.get("usage")).get("prompt_tokens")
    stated = present.get("fireworks-prompt-tokens")
    if stated is not None and prompt_tokens is not None and stated != str(prompt_tokens):
        return observe("other", f"fireworks-prompt-tokens is {stated} but usage.prompt_tokens is {prompt_tokens}",
                       headers=present)
    return observe("fireworks", f"metrics headers present: {', '.join(present)}", headers=present)


@check("perf-metrics-in-response", variant="chat")
def perf_metrics_in_body(ctx: ProbeContext) -> Observation:
    exchange = ctx.generate(CHAT, SAY_OK, max_tokens=4, perf_metrics_in_response=True)
    if refused_for(ctx, exchange, "perf_metrics_in_response"):
        return observe("openai", f"perf_metrics_in_response {rejection_reason(exchange)}")
    metrics = ctx.require_success(exchange, "chat completion with perf_metrics_in_response").get("perf_metrics")
    if isinstance(metrics, dict):
        return observe("fireworks", f"perf_metrics in the body: {', '.join(sorted(metrics))}", perf_metrics=metrics)
    return observe("other", "perf_metrics_in_response was accepted but the body has no perf_metrics object")


@check("perf-metrics-in-response", variant="chat-stream")
def perf_metrics_in_stream(ctx: ProbeContext) -> Observation:
    exchange = ctx.generate(CHAT, SAY_OK, max_tokens=4, stream=True, perf_metrics_in_response=True)
    if refused_for(ctx, exchange, "perf_metrics_in_response"):
        return observe("openai", f"perf_metrics_in_response {rejection_reason(exchange)}")
    chunks = ctx.require_stream(exchange, "stream with perf_metrics_in_response")
    carrying = [i for i, chunk in enumerate(chunks) if isinstance(chunk.get("perf_metrics"), dict)]
    finish = finish_chunk_index(chunks)
    if carrying and carrying == [finish]:
        return observe("fireworks", f"perf_metrics on the finish chunk (#{finish})")
    if carrying:
        return observe("other", f"perf_metrics on chunks {carrying}, finish_reason on chunk {finish} "
                       f"({streamed_finish_reason(chunks)})")
    return observe("other", "perf_metrics_in_response was accepted but no chunk carries perf_metrics")


@check("sampling-options-header", variant="chat")
def sampling_options_header(ctx: ProbeContext) -> Observation:
    exchange = ctx.generate(CHAT, SAY_OK, max_tokens=4)
    ctx.require_success(exchange, "chat completion")
    raw = exchange.response_headers.get("fireworks-sampling-options")
    if raw is None:
        return observe("openai", "no fireworks-sampling-options header")
    try:
        options = json.loads(raw)
    except ValueError:
        return observe("other", f"fireworks-sampling-options is not JSON: {raw[:120]!r}")
    if not isinstance(options, dict):
        return observe("other", f"fireworks-sampling-options is not a JSON object: {raw[:120]!r}")
    return observe("fireworks", f"sampling defaults: {json.dumps(options)[:200]}", options=options)
