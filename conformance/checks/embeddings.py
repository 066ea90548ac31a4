"""`POST /v1/embeddings`: the response's shape, `encoding_format: "base64"` (which the openai SDK
sends by default and decodes as little-endian float32), and `dimensions`.

Vectors are compared with each other, never judged for meaning, so any model will do; a chat-only
endpoint is `unsupported`, told from a wrong path or a refused key by a chat request that is served.
Each request embeds one word (a token or two).
"""

from __future__ import annotations

import base64
import binascii
import math
import struct
from typing import Any

from conformance.checks.base import (
    CHAT,
    ProbeContext,
    ProbeFailed,
    as_dict,
    as_list,
    check,
    is_refused,
    refused_for,
    rejection_reason,
    require_control,
)
from conformance.exchange import Exchange
from conformance.results import Observation, observe

WORD = "hello"
DIMENSIONS = 8
#: How far a decoded base64 vector may stray from the float list (servers may re-run the model).
TOLERANCE = 1e-3


def vector(ctx: ProbeContext, exchange: Exchange, what: str) -> Any:
    """`data[0].embedding` of a well-formed embeddings response; ProbeFailed when the shape is wrong."""
    body = ctx.require_success(exchange, what)
    data = as_list(body.get("data"))
    item = as_dict(data[0]) if data else {}
    usage = as_dict(body.get("usage"))
    problems = [problem for problem, broken in (
        (f"object is {body.get('object')!r}, not 'list'", body.get("object") != "list"),
        (f"data has {len(data)} items for one input", len(data) != 1),
        (f"data[0].object is {item.get('object')!r}, not 'embedding'", item.get("object") != "embedding"),
        (f"data[0].index is {item.get('index')!r}", item.get("index") != 0),
        (f"usage.prompt_tokens is {usage.get('prompt_tokens')!r}", type(usage.get("prompt_tokens")) is not int),
    ) if broken]
    if problems:
        raise ProbeFailed(f"{what}: not an embeddings list: {'; '.join(problems)}")
    return item.get("embedding")


def floats(value: Any) -> list[float] | None:
    if isinstance(value, list) and value and all(type(x) in (int, float) for x in value):
        return [float(x) for x in value]
    return None


def decoded(value: Any) -> list[float] | None:
    """A base64 string of little-endian float32s, decoded; None when it is not one."""
    if not isinstance(value, str):
        return None
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None
    if not raw or len(raw) % 4:
        return None
    return list(struct.unpack(f"<{len(raw) // 4}f", raw))


#: Answers that say the path is not served: no such route, not this method, not implemented.
NOT_SERVED = (404, 405, 501)
#: Answers about the caller, never about the endpoint's features.
NOT_ABOUT_THE_FEATURE = (401, 403, 429)


def refusal(ctx: ProbeContext, plain: Exchange) -> Observation | None:
    """What a refused embeddings request means, or None when it was not refused. `unsupported` only
    when a chat request with the same model and key is served, and the path is not (404, 405, 501)
    or even `{model, input}` alone is refused; any other refusal is an error naming the answers."""
    if plain.status not in NOT_SERVED and not is_refused(plain):
        return None
    chat = ctx.control(CHAT.path, CHAT.body(ctx.model, WORD, {"max_tokens": 1}))
    require_control(chat, f"POST /embeddings {rejection_reason(plain)}", "a chat request with the same model and key")
    served = f"a chat request with the same model is served (HTTP {chat.status})"
    if plain.status in NOT_SERVED:
        return observe("unsupported", f"POST /embeddings {rejection_reason(plain)}; {served}")
    if plain.status in NOT_ABOUT_THE_FEATURE:
        raise ProbeFailed(f"POST /embeddings {rejection_reason(plain)}, although {served}: "
                          "an answer about the caller, not about embeddings")
    minimal = ctx.control("embeddings", {"model": ctx.model, "input": WORD})
    if minimal.ok:
        return observe("other", f"encoding_format 'float' {rejection_reason(plain)}; the same request without it "
                       "is answered")
    if minimal.status in NOT_ABOUT_THE_FEATURE or not is_refused(minimal):
        raise ProbeFailed(f"POST /embeddings {rejection_reason(plain)}; without encoding_format "
                          f"{minimal.describe_status()}")
    return observe("unsupported", f"POST /embeddings {rejection_reason(plain)}, and {{model, input}} alone too "
                   f"({minimal.describe_status()}), while {served}: the model embeds nothing here")


@check("embeddings", variant="embeddings")
def embeddings(ctx: ProbeContext) -> Observation:
    request = {"model": ctx.model, "input": WORD}
    plain = ctx.send("embeddings", {**request, "encoding_format": "float"})
    refused = refusal(ctx, plain)
    if refused is not None:
        return refused
    reference = floats(vector(ctx, plain, "embedding as floats"))
    if reference is None or not all(map(math.isfinite, reference)):
        return observe("other", "encoding_format 'float' did not answer a list of finite numbers")
    encoded, sized = ctx.send_all([("embeddings", {**request, "encoding_format": "base64"}),
                                   ("embeddings", {**request, "dimensions": DIMENSIONS})])
    found = [base64_finding(ctx, encoded, reference), dimensions_finding(ctx, sized, len(reference))]
    deviations = [(behaviour, reason) for behaviour, reason in found if behaviour != "openai"]
    if len(deviations) > 1:
        return observe("other", "; ".join(reason for _, reason in deviations))
    behaviour = deviations[0][0] if deviations else "openai"
    return observe(behaviour, "; ".join(reason for _, reason in found), length=len(reference))


def base64_finding(ctx: ProbeContext, exchange: Exchange, reference: list[float]) -> tuple[str, str]:
    if refused_for(ctx, exchange, "encoding_format"):
        return "other", f"encoding_format 'base64' {rejection_reason(exchange)}"
    answered = vector(ctx, exchange, "embedding as base64")
    if floats(answered) is not None:
        return "base64-ignored", "encoding_format 'base64' answered with a float list"
    values = decoded(answered)
    if values is None:
        return "other", f"encoding_format 'base64' answered {str(answered)[:60]!r}, not base64 float32"
    if len(values) != len(reference) or max(abs(a - b) for a, b in zip(values, reference, strict=True)) > TOLERANCE:
        return "other", (f"the base64 vector ({len(values)} float32) is not the float vector "
                         f"({len(reference)} numbers)")
    return "openai", f"base64 decodes to the same {len(values)} float32 values"


def dimensions_finding(ctx: ProbeContext, exchange: Exchange, natural: int) -> tuple[str, str]:
    if refused_for(ctx, exchange, "dimensions"):
        return "openai", f"dimensions {DIMENSIONS} {rejection_reason(exchange)} (a fixed-size model)"
    answered = floats(vector(ctx, exchange, f"embedding with dimensions {DIMENSIONS}"))
    length = len(answered) if answered is not None else None
    if length == DIMENSIONS:
        return "openai", f"dimensions {DIMENSIONS} honoured"
    return "dimensions-ignored", (f"dimensions {DIMENSIONS} accepted, but the vector has {length} numbers "
                                  f"({natural} without it)")
