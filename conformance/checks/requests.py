"""The request shapes today's SDKs send: `max_completion_tokens`, the `developer` role, content parts.

A small model cannot be trusted to follow instructions, so these probes never read what it wrote:
they compare `prompt_tokens` of two requests that differ only in shape (the same text as a
`system` or a `developer` message, as a string or as parts), or `completion_tokens` against a cap,
which every endpoint counts exactly. Every request generates at most 4 tokens.
"""

from __future__ import annotations

from typing import Any

from conformance.checks.base import (
    CHAT,
    ProbeContext,
    ProbeFailed,
    as_dict,
    check,
    choices_of,
    first_choice,
    is_refused,
    refused_for,
    rejection_reason,
)
from conformance.checks.surface import sdk_exchange
from conformance.exchange import Exchange
from conformance.results import Observation, inconclusive, observe
from conformance.sdk_worker.relay import Raised

COUNT = "Count from 1 to 40, separated by commas."
SAY_OK = "Reply with only the word OK."
#: Instructions the role probe sends as a `system` and as a `developer` message.
INSTRUCTIONS = "Answer briefly and politely."
CAP = 4
#: A 1x1 transparent PNG: the smallest image any vision model reads, and any text-only model refuses.
PIXEL = ("data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGA"
         "hKmMIQAAAABJRU5ErkJggg==")


def prompt_tokens(ctx: ProbeContext, exchange: Exchange, what: str) -> int:
    """`usage.prompt_tokens` of a successful answer; ProbeFailed when it is not a count."""
    count = as_dict(ctx.require_success(exchange, what).get("usage")).get("prompt_tokens")
    if type(count) is not int or count < 0:
        raise ProbeFailed(f"{what}: usage.prompt_tokens is not a count: {count!r}")
    return count


def completion_tokens(ctx: ProbeContext, exchange: Exchange, what: str) -> tuple[int, Any]:
    """`usage.completion_tokens` and the finish reason of a successful answer."""
    body = ctx.require_success(exchange, what)
    count = as_dict(body.get("usage")).get("completion_tokens")
    if type(count) is not int or count < 0:
        raise ProbeFailed(f"{what}: usage.completion_tokens is not a count: {count!r}")
    return count, first_choice(body).get("finish_reason")


@check("max-completion-tokens", variant="chat")
def max_completion_tokens(ctx: ProbeContext) -> Observation:
    alone = ctx.generate(CHAT, COUNT, max_completion_tokens=CAP)
    if refused_for(ctx, alone, "max_completion_tokens"):
        return observe("unsupported", f"max_completion_tokens {rejection_reason(alone)}")
    used, finish = completion_tokens(ctx, alone, f"max_completion_tokens {CAP}")
    if used > CAP:
        return observe("ignored", f"max_completion_tokens {CAP}, but {used} completion tokens were generated "
                       f"(finish_reason {finish!r})")
    if finish != "length":
        return inconclusive(f"the model stopped by itself after {used} tokens (finish_reason {finish!r}), "
                            f"so the cap of {CAP} was never reached")
    both = ctx.generate(CHAT, COUNT, max_completion_tokens=CAP, max_tokens=CAP - 1)
    if refused_for(ctx, both, "max_completion_tokens"):
        return observe("fireworks", f"honoured alone; with max_tokens too, {rejection_reason(both)}")
    paired, _ = completion_tokens(ctx, both, "max_completion_tokens with max_tokens")
    winner = {CAP: "max_completion_tokens", CAP - 1: "max_tokens"}.get(paired, f"neither ({paired} tokens)")
    return observe("openai", f"honoured alone ({used} tokens, finish_reason 'length'); with max_tokens "
                   f"{CAP - 1} too, accepted and {winner} won", winner=winner)


def with_instructions(role: str | None) -> list[dict[str, Any]]:
    head = [{"role": role, "content": INSTRUCTIONS}] if role else []
    return [*head, {"role": "user", "content": "hi"}]


@check("developer-role", variant="chat")
def developer_role(ctx: ProbeContext) -> Observation:
    system, developer = ctx.send_all([(CHAT.path, CHAT.body(ctx.model, with_instructions(role), {"max_tokens": 1}))
                                      for role in ("system", "developer")])
    as_system = prompt_tokens(ctx, system, "the system message")
    if is_refused(developer):
        return observe("rejected", f"developer {rejection_reason(developer)}; the same text as a system "
                       f"message is accepted ({as_system} prompt tokens)")
    as_developer = prompt_tokens(ctx, developer, "the developer message")
    if as_developer == as_system:
        return observe("openai", f"the same prompt_tokens as a system message ({as_system})")
    without = prompt_tokens(ctx, ctx.generate(CHAT, with_instructions(None), max_tokens=1), "no instructions")
    counts = f"system {as_system}, developer {as_developer}, no instructions {without} prompt tokens"
    if as_developer == without:
        return observe("dropped", f"the developer message is not in the prompt: {counts}")
    return observe("other", f"the developer message is read, but not as a system message: {counts}")


TEXT_PART = {"type": "text", "text": SAY_OK}
IMAGE_PART = {"type": "image_url", "image_url": {"url": PIXEL, "detail": "low"}}


@check("content-parts", variant="chat")
def content_parts(ctx: ProbeContext) -> Observation:
    string, parts, image = ctx.send_all([
        (CHAT.path, CHAT.body(ctx.model, [{"role": "user", "content": content}], {"max_tokens": 1}))
        for content in (SAY_OK, [TEXT_PART], [TEXT_PART, IMAGE_PART])])
    as_string = prompt_tokens(ctx, string, "the content as a string")
    if is_refused(parts):  # the string, its control, was answered
        return observe("rejected", f"a text part {rejection_reason(parts)}; the string is accepted")
    as_parts = prompt_tokens(ctx, parts, "the content as a text part")
    if as_parts != as_string:
        return observe("other", f"a text part is not read like the string: {as_parts} prompt tokens, "
                       f"the string {as_string}")
    return image_part(ctx, image, as_parts)


def image_part(ctx: ProbeContext, image: Exchange, as_text: int) -> Observation:
    """An image part is read (more prompt tokens) or refused with a 4xx envelope; a 5xx or a
    silent drop is the finding, not an endpoint fault: the text-only requests were answered."""
    text_ok = f"text parts read like the string ({as_text} prompt tokens)"
    if image.status is not None and image.status >= 500:
        return observe("other", f"{text_ok}; an image part answered {image.describe_status()} "
                       "instead of a 4xx error envelope")
    if is_refused(image):
        if image.error_envelope is None:
            return observe("other", f"{text_ok}; an image part refused with HTTP {image.status} "
                           f"but no error envelope: {image.text[:120]!r}")
        return observe("openai", f"{text_ok}; an image part {rejection_reason(image)}")
    with_image = prompt_tokens(ctx, image, "a text and an image part")
    if with_image == as_text:
        return observe("image-dropped", f"{text_ok}; an image part was accepted and dropped: the same "
                       f"{with_image} prompt tokens")
    if with_image > as_text:
        return observe("openai", f"{text_ok}; the image part is read ({with_image - as_text} more prompt tokens)")
    return observe("other", f"{text_ok}; with an image part fewer prompt tokens ({with_image})")


#: OpenAI's optional chat fields that SDKs pass through when a user sets them, with harmless values.
DOCUMENTED_FIELDS: dict[str, Any] = {
    "store": False, "metadata": {"probe": "conformance"}, "service_tier": "auto", "user": "conformance",
    "prompt_cache_key": "conformance", "safety_identifier": "conformance",
}
UNKNOWN_FIELD = "conformance_unknown_field"


@check("documented-optional-fields", variant="chat")
def documented_optional_fields(ctx: ProbeContext) -> Observation:
    documented, unknown = ctx.send_all([
        (CHAT.path, CHAT.body(ctx.model, SAY_OK, {"max_tokens": 1, **fields}))
        for fields in (DOCUMENTED_FIELDS, {UNKNOWN_FIELD: True})])
    if refused_for(ctx, documented, *DOCUMENTED_FIELDS):
        return refused_fields(ctx, documented)
    ctx.require_success(documented, "the documented optional fields")
    accepted = f"all {len(DOCUMENTED_FIELDS)} documented fields accepted"
    if refused_for(ctx, unknown, UNKNOWN_FIELD):
        return observe("openai", f"{accepted}; {UNKNOWN_FIELD} {rejection_reason(unknown)}")
    ctx.require_success(unknown, f"a request with {UNKNOWN_FIELD}")
    return observe("lenient", f"{accepted}, and {UNKNOWN_FIELD} too (HTTP {unknown.status})")


def refused_fields(ctx: ProbeContext, together: Exchange) -> Observation:
    """Which documented fields the endpoint refuses, each sent on its own."""
    alone = ctx.send_all([(CHAT.path, CHAT.body(ctx.model, SAY_OK, {"max_tokens": 1, name: value}))
                          for name, value in DOCUMENTED_FIELDS.items()])
    refused = [name for name, exchange in zip(DOCUMENTED_FIELDS, alone, strict=True) if is_refused(exchange)]
    named = ", ".join(refused) if refused else f"none on its own, only all {len(DOCUMENTED_FIELDS)} together"
    return observe("rejects-documented", f"documented fields refused: {named} "
                   f"(together: {rejection_reason(together)})", refused=refused)


#: The SDK call the stream-error-frame probe makes, as its evidence names it.
ERROR_STREAM_STEP = "chat.completions.create(stream=True, temperature='hot'), iterated"


@check("stream-error-frame", variant="chat")
def stream_error_frame(ctx: ProbeContext) -> Observation:
    """How the error arrives, and whether the official SDK raises `openai.APIError` on it: sent
    through the SDK (and our transport), so one request shows both."""
    # A wrong-typed temperature: every validator refuses it, and nothing is generated.
    exchange, raised = sdk_exchange(ctx, (ERROR_STREAM_STEP, "chat_stream_iterate", {"request": {
        "model": ctx.model, "messages": [{"role": "user", "content": SAY_OK}], "max_tokens": 1, "top_p": 1,
        "extra_body": {"temperature": "hot"}}}))
    if refused_for(ctx, exchange, "temperature"):
        if exchange.error_envelope is None:
            return observe("other",
                           f"refused with HTTP {exchange.status} but no error envelope: {exchange.text[:120]!r}")
        arrived = ("openai", f"a wrong-typed temperature {rejection_reason(exchange)}, before any stream")
    elif not exchange.is_event_stream:
        return inconclusive(f"a wrong-typed temperature was answered HTTP {exchange.status} without a stream, "
                            "so there is no error to observe")
    elif (frame := error_frame(exchange)) is not None:
        arrived = frame
    elif exchange.stream.done and any(choices_of(chunk) for chunk in exchange.stream.chunks if isinstance(chunk, dict)):
        return inconclusive("a wrong-typed temperature was accepted and answered, so there is no error to observe")
    else:
        return observe("other", f"HTTP 200 and a stream of {len(exchange.stream.events)} events with neither an "
                       f"answer nor an error; the openai SDK {sdk_outcome(ctx, raised)}")
    behaviour, seen = arrived
    if raised is None or not raised.is_a("APIError"):
        return observe("unraised", f"{seen}; but the openai SDK {sdk_outcome(ctx, raised)}: no openai.APIError")
    return observe(behaviour, f"{seen}; the openai SDK {sdk_outcome(ctx, raised)}")


def error_frame(exchange: Exchange) -> tuple[str, str] | None:
    """The behaviour and a description of an error sent inside a 200 stream, if there is one."""
    stream = exchange.stream
    framed = [event.data for event in stream.events if event.event == "error"]
    if framed:
        return "event-error", f"HTTP 200, then an `event: error` frame in the stream: {framed[0][:160]}"
    errors = [chunk for chunk in stream.chunks if isinstance(chunk, dict) and ("error" in chunk
                                                                               or chunk.get("object") == "error")]
    if errors:
        return "in-band", f"HTTP 200, then an error as a data event in the stream: {str(errors[0])[:160]}"
    return None


def sdk_outcome(ctx: ProbeContext, raised: Raised | None) -> str:
    """What the SDK did with the answer, as the predicate of a verdict's clause."""
    if raised is None:
        return "iterated the stream without raising"
    return f"raised {raised.name} ({ctx.client.redactor.text(str(raised))[:120]})"


@check("reasoning-effort-values", variant="chat")
def reasoning_effort_values(ctx: ProbeContext) -> Observation:
    none, integer = ctx.send_all([(CHAT.path, CHAT.body(ctx.model, SAY_OK, {"max_tokens": 1,
                                                                            "reasoning_effort": value}))
                                  for value in ("none", 0)])
    if refused_for(ctx, none, "reasoning_effort"):
        return observe("unsupported", f"reasoning_effort 'none' {rejection_reason(none)}: the model takes no "
                       "reasoning_effort, so its integer form cannot be judged")
    ctx.require_success(none, "reasoning_effort 'none'")
    if refused_for(ctx, integer, "reasoning_effort"):
        return observe("openai", f"'none' accepted; an integer {rejection_reason(integer)}")
    ctx.require_success(integer, "reasoning_effort 0")
    return observe("fireworks", "'none' accepted, and the integer 0 too")
