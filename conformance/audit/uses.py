"""A use of the OpenAI API found in an application, with the evidence of where it was found.

Every scanner (Python, JavaScript/TypeScript, recordings) produces these, so the mapping rules
never know where a use came from.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

Kind = Literal["call", "argument", "read", "header"]
#: The APIs a use can be tied to; None in `Use.api`: the scan could not tell.
APIS = ("chat", "completions", "responses", "embeddings")


@dataclass(frozen=True)
class Use:
    """One use: `kind` and `name` say what (a call `chat.completions.create`, an argument `stop`, a
    read `usage`, a response header read, by its lower-case name); `api` and `stream` the request it
    belongs to (None: unknown); `value` is the
    argument's literal value when `literal`; `where` is file:line or recording#request."""

    kind: Kind
    name: str
    where: str
    api: str | None = None
    stream: bool | None = None
    literal: bool = False
    value: Any = None
    traced: bool = True  # a read tied to the call it reads from (False: only the field's name matched)
    #: The top-level fields the use's request passes (None: unknown, e.g. an untraced read).
    request_fields: frozenset[str] | None = None

    def to_dict(self) -> dict[str, Any]:
        shown = NOT_SHOWN if self.name in CREDENTIAL_FIELDS else bounded(self.value)
        return {"kind": self.kind, "name": self.name, "where": self.where, "api": self.api, "stream": self.stream,
                "literal": self.literal, "value": shown if self.literal else None, "traced": self.traced}


#: Request fields whose values may be credentials written into the code (`extra_headers={"Authorization": ...}`):
#: their use is reported, their value never.
CREDENTIAL_FIELDS = frozenset({"extra_headers", "extra_query", "api_key", "headers"})
NOT_SHOWN = "<not shown: may hold credentials>"


#: The longest literal value a report shows as it is; a longer one (a prompt, a schema) is cut.
MAX_VALUE_CHARS = 200


def bounded(value: Any) -> Any:
    """The value as JSON can hold it, short: a long or deep one becomes its first characters, marked cut."""
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError, RecursionError):  # bytes, sets, complex numbers from a Python literal
        text = None
    if text is not None and len(text) <= MAX_VALUE_CHARS:
        return value
    shown = text if text is not None else repr(value)
    return shown[:MAX_VALUE_CHARS] + ("... (cut)" if len(shown) > MAX_VALUE_CHARS else "")


def api_of_method(method: str) -> str | None:
    """The API a method path such as `chat.completions.create` calls (None for other methods)."""
    parts = method.split(".")
    if "chat" in parts and "completions" in parts:
        return "chat"
    for api in ("completions", "responses", "embeddings"):
        if api in parts:
            return api
    return None


def api_of_path(path: str) -> str | None:
    """The API a URL path such as `/v1/chat/completions` names."""
    path = path.split("?", 1)[0].rstrip("/")
    if path.endswith("/chat/completions"):
        return "chat"
    for api in ("completions", "responses", "embeddings"):
        if path.endswith("/" + api):
            return api
    return None
