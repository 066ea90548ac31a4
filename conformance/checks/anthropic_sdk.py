"""The official `anthropic` SDK end to end against the Messages API: `messages.create`,
`messages.stream` (whose accumulator needs Anthropic's event sequence) and a forced tool call, its
traffic going through the run's transport like every other request (checks/sdk.py).

The SDK's base URL is the host without `/v1` (it appends `/v1/messages` itself); the run's base
URL keeps `/v1`, so an endpoint whose base URL does not end in `/v1` cannot be reached this way.
"""

from __future__ import annotations

from typing import Any

from conformance.checks.base import ProbeContext, check
from conformance.checks.messages import CALL_TOKENS, CODE_SCHEMA, FORCE_GET_CODE, GET_CODE, REPLY_OK, unserved
from conformance.checks.sdk import Sdk, sdk_steps
from conformance.results import Observation, inconclusive

API_SUFFIX = "/v1"


def sdk_base_url(base_url: str) -> str | None:
    """The SDK's base URL for ours (`https://host/inference/v1` -> `https://host/inference`), or
    None when ours does not end in /v1."""
    return base_url[: -len(API_SUFFIX)] if base_url.endswith(API_SUFFIX) else None


ANTHROPIC_SDK = Sdk("anthropic", "anthropic", sdk_base_url)


@check("anthropic-sdk", variant="messages")
def sdk_messages(ctx: ProbeContext) -> Observation:
    """What the SDK cannot be shown (tools refused, no call made) is messages-tool-choice's finding:
    here it makes the verdict inconclusive, not a failure of the SDK."""
    if sdk_base_url(ctx.client.base_url) is None:
        return inconclusive(f"the base URL {ctx.client.base_url} does not end in {API_SUFFIX}, so the SDK "
                            "(which appends /v1/messages) cannot be pointed at it")
    # `temperature` as an extra field: this SDK's `create()` no longer types it, the wire still takes it.
    request: dict[str, Any] = {"model": ctx.model, "max_tokens": 8, "extra_body": {"temperature": 0},
                               "messages": [{"role": "user", "content": REPLY_OK}]}
    # The stream has a body of its own (one token less): the steps run at once, and a replay matches
    # answers to requests by body.
    result, unseen = sdk_steps(ctx, ANTHROPIC_SDK, [
        ("messages.create", "messages_create", {"request": request}),
        ("messages.stream", "messages_stream", {"request": {**request, "max_tokens": 7}}),
        ("messages.create(tools, tool_choice=tool)", "messages_tool_use",
         {"request": {**request, "max_tokens": CALL_TOKENS, "messages": [{"role": "user", "content": "Call get_code."}],
                      "tools": [GET_CODE], "tool_choice": FORCE_GET_CODE}, "schema": CODE_SCHEMA})])
    if result.behaviour == "other" and ctx.exchanges and (absent := unserved(ctx, ctx.exchanges[0])) is not None:
        return absent
    if result.behaviour == "anthropic" and unseen:
        return inconclusive("the SDK parsed every answer, but " + "; ".join(unseen))
    return result
