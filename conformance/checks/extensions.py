"""Fireworks extensions: performance metrics in headers and body, the sampling-options header, and the
sampling parameters Fireworks adds to OpenAI's."""

from __future__ import annotations

import json

from conformance.checks.base import (
    CHAT,
    ProbeContext,
    as_dict,
    check,
    first_choice,
    is_refused,
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


#: Fireworks' sampling extensions with values that leave greedy sampling as it is; `ignore_eos` is
#: the one whose effect is cheap to see: the reply to "OK" runs on to the cap.
SAMPLING_EXTENSIONS = {"top_k": 1, "min_p": 0.0, "typical_p": 1.0, "repetition_penalty": 1.0, "ignore_eos": True,
                       "echo_last": 0}
EOS_CAP = 3


@check("fireworks-sampling-extensions", variant="chat")
def sampling_extensions(ctx: ProbeContext) -> Observation:
    every = f"all {len(SAMPLING_EXTENSIONS)}"
    exchange = ctx.generate(CHAT, "OK", max_tokens=EOS_CAP, **SAMPLING_EXTENSIONS)
    if refused_for(ctx, exchange, *SAMPLING_EXTENSIONS):
        alone = ctx.send_all([(CHAT.path, CHAT.body(ctx.model, "OK", {"max_tokens": EOS_CAP, name: value}))
                              for name, value in SAMPLING_EXTENSIONS.items()])
        accepted = [name for name, answer in zip(SAMPLING_EXTENSIONS, alone, strict=True) if not is_refused(answer)]
        if accepted:
            return observe("other", f"together {rejection_reason(exchange)}; alone, {', '.join(accepted)} accepted "
                           "and the rest refused", accepted=accepted)
        return observe("openai", f"{every} refused, each alone (together: {rejection_reason(exchange)})")
    body = ctx.require_success(exchange, "a request with the sampling extensions")
    used, finish = as_dict(body.get("usage")).get("completion_tokens"), first_choice(body).get("finish_reason")
    # The same request without them (the control of any refusal): did the reply end by itself?
    plain = ctx.require_success(ctx.control(CHAT.path, CHAT.body(ctx.model, "OK", {"max_tokens": EOS_CAP})),
                                "the same request without the extensions")
    if first_choice(plain).get("finish_reason") != "stop":
        return observe("fireworks", f"{every} accepted; ignore_eos's effect is not visible: without it the reply "
                       f"reaches the cap of {EOS_CAP} too")
    if finish == "stop":
        return observe("ignored", f"{every} accepted, but with ignore_eos the reply still stopped by itself "
                       f"({used} of {EOS_CAP} tokens)")
    return observe("fireworks", f"{every} accepted; with ignore_eos the reply runs on to the cap "
                   f"({used} tokens, finish_reason {finish!r}), without it it stops by itself")
