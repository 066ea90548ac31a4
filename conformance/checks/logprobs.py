"""Log probabilities on chat: OpenAI's boolean form, Fireworks' integer form, the top_logprobs cap."""

from __future__ import annotations

from conformance.checks.base import CHAT, ProbeContext, as_dict, check, first_choice, refused_for, rejection_reason
from conformance.results import Observation, observe

PROMPT = "Reply with only the word OK."
FIREWORKS_EXTRAS = ("token_id", "text_offset", "sampling_logprob")


def logprobs_content(ctx: ProbeContext, exchange, what: str) -> tuple[object, list[dict] | None]:
    """The choice's `logprobs`, and its `content` list when that is a non-empty list of objects."""
    logprobs = first_choice(ctx.require_success(exchange, what)).get("logprobs")
    content = as_dict(logprobs).get("content")
    usable = isinstance(content, list) and content and all(isinstance(item, dict) for item in content)
    return logprobs, content if usable else None


@check("chat-logprobs-boolean", variant="chat")
def chat_logprobs_boolean(ctx: ProbeContext) -> Observation:
    exchange = ctx.generate(CHAT, PROMPT, max_tokens=3, logprobs=True, top_logprobs=2)
    if refused_for(ctx, exchange, "logprobs", "top_logprobs"):
        return observe("unsupported", f"logprobs {rejection_reason(exchange)}")
    logprobs, content = logprobs_content(ctx, exchange, "chat with logprobs")
    if content is None:
        return observe("other", f"no `logprobs.content` list: {str(logprobs)[:200]}")
    malformed = [item for item in content if not {"token", "logprob", "top_logprobs"} <= set(item)]
    if malformed:
        return observe("other", f"logprobs.content items lack token/logprob/top_logprobs: {str(malformed[0])[:200]}")
    extras = sorted({key for item in content for key in FIREWORKS_EXTRAS if key in item})
    if extras:
        return observe("fireworks", f"OpenAI's content list plus Fireworks fields {extras}")
    return observe("openai", f"OpenAI's content list ({len(content)} tokens), no extra fields")


@check("chat-logprobs-integer", variant="chat")
def chat_logprobs_integer(ctx: ProbeContext) -> Observation:
    exchange = ctx.generate(CHAT, PROMPT, max_tokens=3, logprobs=2)
    if refused_for(ctx, exchange, "logprobs"):
        return observe("openai", f"an integer logprobs is {rejection_reason(exchange)}")
    logprobs = first_choice(ctx.require_success(exchange, "chat with integer logprobs")).get("logprobs")
    if isinstance(logprobs, dict) and isinstance(logprobs.get("tokens"), list) \
            and isinstance(logprobs.get("token_logprobs"), list):
        return observe("fireworks", "accepted; answered in the legacy tokens/token_logprobs format")
    return observe("other", f"accepted, but not in the legacy format: {str(logprobs)[:200]}")


@check("top-logprobs-range", variant="chat")
def top_logprobs_range(ctx: ProbeContext) -> Observation:
    exchange = ctx.generate(CHAT, PROMPT, max_tokens=2, logprobs=True, top_logprobs=10)
    if refused_for(ctx, exchange, "top_logprobs"):
        return observe("fireworks", f"top_logprobs 10 is {rejection_reason(exchange)}")
    logprobs, content = logprobs_content(ctx, exchange, "chat with top_logprobs 10")
    if content is None:
        return observe("other", f"no `logprobs.content` list: {str(logprobs)[:200]}")
    alternatives = content[0].get("top_logprobs")
    count = len(alternatives) if isinstance(alternatives, list) else 0
    if count == 10:
        return observe("openai", "10 alternatives per token, as asked")
    if 0 < count <= 5:
        return observe("fireworks", f"accepted but capped at {count} alternatives")
    return observe("other", f"{count} alternatives for top_logprobs 10")
