"""The API families a run can judge, and how each one carries the key.

A family is named after its reference vendor: `openai` (chat and text completions, responses,
embeddings, `Authorization: Bearer`) and `anthropic` (the Messages API, `x-api-key` and
`anthropic-version`). Fireworks and self-hosted servers such as llama.cpp serve both under one
base URL (`.../v1`): the Messages paths are relative to it, as OpenAI's are. Imports nothing, so
options.py may use it in every pytest session.
"""

from __future__ import annotations

API_FAMILIES = ("openai", "anthropic")
MESSAGES_PATH = "messages"
COUNT_TOKENS_PATH = "messages/count_tokens"
#: The API version every Messages request names (the one Anthropic's SDK sends).
ANTHROPIC_VERSION = "2023-06-01"


def anthropic_headers(api_key: str | None, version: str | None = ANTHROPIC_VERSION) -> dict[str, str]:
    """The headers of a Messages request: the key in `x-api-key` (none without a key), and
    `anthropic-version` unless `version` is None. Sent with `authorization=None`: the Bearer
    header is OpenAI's way, and a Messages request carries the key once."""
    headers = {"x-api-key": api_key} if api_key else {}
    if version is not None:
        headers["anthropic-version"] = version
    return headers
