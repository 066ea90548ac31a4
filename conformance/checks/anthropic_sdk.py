"""The official `anthropic` SDK end to end against the Messages API: `messages.create`,
`messages.stream` (whose accumulator needs Anthropic's event sequence) and a forced tool call, its
traffic going through the run's transport like every other request (checks/sdk.py).

The SDK's base URL is the host without `/v1` (it appends `/v1/messages` itself); the run's base
URL keeps `/v1`, so an endpoint whose base URL does not end in `/v1` cannot be reached this way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import httpx
import jsonschema

from conformance.checks.base import ProbeContext, check
from conformance.checks.messages import CALL_TOKENS, CODE_SCHEMA, FORCE_GET_CODE, GET_CODE, REPLY_OK, unserved
from conformance.checks.sdk import SDK_IMPORT, Sdk, sdk_steps
from conformance.exchange import Exchange
from conformance.results import Observation, inconclusive

if TYPE_CHECKING:  # imported when the check runs, not when the checks are declared (checks/sdk.py)
    import anthropic

API_SUFFIX = "/v1"


def sdk_base_url(base_url: str) -> str | None:
    """The SDK's base URL for ours (`https://host/inference/v1` -> `https://host/inference`), or
    None when ours does not end in /v1."""
    return base_url[: -len(API_SUFFIX)] if base_url.endswith(API_SUFFIX) else None


def anthropic_client(ctx: ProbeContext, log: list[Exchange]) -> anthropic.Anthropic:
    """The official SDK, its traffic going our way (bounded, retried, recorded) into `log`: through
    an httpx client for the SDK releases built on httpx, an httpx2 one for those built on httpx2 (2.x)."""
    with SDK_IMPORT:
        import anthropic

    on_httpx = issubclass(anthropic.DefaultHttpxClient, httpx.Client)
    http_client: Any = (ctx.client.logging_http_client if on_httpx else ctx.client.logging_httpx2_client)(
        ctx.check_id, log)  # whichever the installed release takes
    return anthropic.Anthropic(base_url=sdk_base_url(ctx.client.base_url), api_key=ctx.client.api_key or "no-key",
                               max_retries=0, timeout=ctx.client.timeout, http_client=http_client)


ANTHROPIC_SDK = Sdk("anthropic", "anthropic", anthropic_client)


@check("anthropic-sdk", variant="messages")
def sdk_messages(ctx: ProbeContext) -> Observation:
    """What the SDK cannot be shown (tools refused, no call made) is messages-tool-choice's finding:
    here it makes the verdict inconclusive, not a failure of the SDK."""
    with SDK_IMPORT:
        import anthropic

    if sdk_base_url(ctx.client.base_url) is None:
        return inconclusive(f"the base URL {ctx.client.base_url} does not end in {API_SUFFIX}, so the SDK "
                            "(which appends /v1/messages) cannot be pointed at it")
    # `temperature` as an extra field: this SDK's `create()` no longer types it, the wire still takes it.
    request: dict[str, Any] = {"model": ctx.model, "max_tokens": 8, "extra_body": {"temperature": 0},
                               "messages": [{"role": "user", "content": REPLY_OK}]}
    unseen: list[str] = []

    def create(client: anthropic.Anthropic) -> None:
        message = client.messages.create(**request)
        assert message.content and message.content[0].type == "text", f"content {message.content!r}"
        assert message.stop_reason is not None, "the message has no stop_reason"

    def stream(client: anthropic.Anthropic) -> None:
        # A body of its own (one token less): the steps run at once, and a replay matches answers
        # to requests by body.
        with client.messages.stream(**{**request, "max_tokens": 7}) as events:
            streamed = "".join(events.text_stream)
            final = events.get_final_message()
        assert final.stop_reason is not None, "the accumulated message has no stop_reason"
        assert isinstance(streamed, str)

    def tool_use(client: anthropic.Anthropic) -> None:
        try:
            message = client.messages.create(  # type: ignore[call-overload]  # plain dicts, not the SDK's TypedDicts
                **{**request, "max_tokens": CALL_TOKENS, "messages": [{"role": "user", "content": "Call get_code."}]},
                tools=[GET_CODE], tool_choice=FORCE_GET_CODE)
        except anthropic.BadRequestError as refusal:
            unseen.append(f"tools refused ({refusal.status_code})")
            return
        calls = [block for block in message.content if block.type == "tool_use"]
        if not calls:
            unseen.append("the forced tool_choice made no call (see messages-tool-choice)")
            return
        jsonschema.validate(calls[0].input, CODE_SCHEMA)

    result = sdk_steps(ctx, ANTHROPIC_SDK, [("messages.create", create), ("messages.stream", stream),
                                            ("messages.create(tools, tool_choice=tool)", tool_use)])
    if result.behaviour == "other" and ctx.exchanges and (absent := unserved(ctx, ctx.exchanges[0])) is not None:
        return absent
    if result.behaviour == "anthropic" and unseen:
        return inconclusive("the SDK parsed every answer, but " + "; ".join(unseen))
    return result
