"""The Responses API (`POST /v1/responses`): create, non-streaming and streaming."""

from __future__ import annotations

from typing import Any

from conformance.checks.base import CHAT, ProbeContext, as_dict, as_list, check, require_control
from conformance.results import Observation, observe

PATH = "responses"
NOT_SERVED = (404, 405, 501)


def _request(ctx: ProbeContext, stream: bool) -> dict[str, Any]:
    return {"model": ctx.model, "input": "Reply with only the word OK.", "max_output_tokens": 16,
            "temperature": 0, "stream": stream}


def not_served(ctx: ProbeContext, exchange) -> bool:
    """Whether /responses is missing here: a 404/405/501, while a chat completion for the same
    model succeeds (else the model or the base URL is what is wrong: ProbeFailed)."""
    if exchange.status not in NOT_SERVED:
        return False
    control = ctx.control(CHAT.path, CHAT.body(ctx.model, "Reply with only the word OK.", {"max_tokens": 1}))
    require_control(control, f"/responses answered {exchange.describe_status()}",
                    "a chat completion for the same model")
    return True


def output_text(response: Any) -> str:
    """The concatenated `output_text` parts of a response object."""
    return "".join(part["text"] for item in as_list(as_dict(response).get("output"))
                   for part in as_list(as_dict(item).get("content"))
                   if isinstance(part, dict) and part.get("type") == "output_text"
                   and isinstance(part.get("text"), str))


@check("responses-api", variant="create")
def responses_create(ctx: ProbeContext) -> Observation:
    exchange = ctx.send(PATH, _request(ctx, stream=False))
    if not_served(ctx, exchange):
        return observe("unsupported", f"/responses is not served: {exchange.describe_status()}")
    body = ctx.require_success(exchange, "POST /responses")
    problems = ctx.schema_violations("response", body, "compatible")
    if problems:
        return observe("other", "not a valid response object: " + "; ".join(map(str, problems)))
    if body.get("status") != "completed" or not output_text(body):
        return observe("other", f"status {body.get('status')!r}, output text {output_text(body)!r}")
    return observe("openai", f"a completed response with output text {output_text(body)[:60]!r}")


@check("responses-api", variant="stream")
def responses_stream(ctx: ProbeContext) -> Observation:
    exchange = ctx.send(PATH, _request(ctx, stream=True))
    if not_served(ctx, exchange):
        return observe("unsupported", f"/responses is not served: {exchange.describe_status()}")
    events = ctx.require_stream(exchange, "POST /responses (stream)", expect_done=False)
    types = [event.get("type") for event in events]
    problems = [f"event #{i} ({types[i]}): {v}" for i, event in enumerate(events)
                for v in ctx.schema_violations("response_stream_event", event, "compatible")]
    if problems:
        return observe("other", "events break the schema: " + "; ".join(problems[:3]))
    if not types or types[0] != "response.created" or types[-1] != "response.completed":
        return observe("other", f"the events run {types[:1]} ... {types[-1:]}, not response.created ... "
                       "response.completed")
    deltas = "".join(e["delta"] for e in events
                     if e.get("type") == "response.output_text.delta" and isinstance(e.get("delta"), str))
    final = output_text(events[-1].get("response"))
    if deltas != final:
        return observe("other", f"the text deltas {deltas!r} do not add up to the final text {final!r}")
    return observe("openai", f"{len(events)} typed events from response.created to response.completed")
