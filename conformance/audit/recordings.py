"""Uses in recorded traffic: every JSON request body sent to an OpenAI API path.

- HAR (`*.har`): `log.entries[].request` (`url`, `postData.text`); evidence `file.har#N`.
- VCR.py / pytest-recording cassettes (`*.yaml`, `*.yml` with `interactions`): each interaction's
  `request.uri` and `request.body` (a string, or `{string: ...}`); evidence `file.yaml#N`.
- JSONL request logs (`*.jsonl`, `*.ndjson`): one request a line, either OpenAI's batch format
  (`{"url": "/v1/chat/completions", "body": {...}}`) or the body itself (its API then told by its
  fields: `messages` chat, `prompt` completions, `input` responses); evidence `file.jsonl:LINE`.

A recording states every field literally, so each argument's value is known. Reads cannot be
seen in traffic; the request's API and `stream` are.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from conformance.audit.uses import Use, api_of_path

METHOD_OF_API = {"chat": "chat.completions.create", "completions": "completions.create",
                 "responses": "responses.create", "embeddings": "embeddings.create"}


class NotARecording(ValueError):
    """The file is not in the recording format its name says."""


def request_uses(where: str, api: str | None, body: Any) -> list[Use]:
    """The call and the arguments of one request body (nothing when it is not a JSON object)."""
    if api is None or not isinstance(body, dict):
        return []
    stream, fields = body.get("stream") is True, frozenset(map(str, body))
    return [Use("call", METHOD_OF_API[api], where, api, stream, request_fields=fields),
            *(Use("argument", str(name), where, api, stream, True, value, request_fields=fields)
              for name, value in body.items())]


def json_body(text: Any) -> Any:
    if isinstance(text, dict) and "string" in text:  # VCR.py's {string: ...} form
        text = text["string"]
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    if not isinstance(text, str) or not text.strip():
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


def scan_har(path: str, text: str) -> list[Use]:
    try:
        entries = json.loads(text)["log"]["entries"]
    except (ValueError, KeyError, TypeError):
        raise NotARecording("not a HAR file (no log.entries)") from None
    uses: list[Use] = []
    for number, entry in enumerate(entries if isinstance(entries, list) else [], start=1):
        request = entry.get("request") if isinstance(entry, dict) else None
        if isinstance(request, dict):
            post = request.get("postData") or {}
            uses += request_uses(f"{path}#{number}", api_of_path(str(request.get("url", ""))),
                                 json_body(post.get("text") if isinstance(post, dict) else None))
    return uses


def scan_cassette(path: str, text: str) -> list[Use]:
    import yaml

    try:
        data = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as error:
        raise NotARecording(f"not YAML: {str(error).splitlines()[0]}") from None
    if not isinstance(data, dict) or not isinstance(data.get("interactions"), list):
        raise NotARecording("not a VCR cassette (no interactions)")
    uses: list[Use] = []
    for number, interaction in enumerate(data["interactions"], start=1):
        request = interaction.get("request") if isinstance(interaction, dict) else None
        if isinstance(request, dict):
            uses += request_uses(f"{path}#{number}", api_of_path(str(request.get("uri", ""))),
                                 json_body(request.get("body")))
    return uses


def body_api(body: dict[str, Any]) -> str | None:
    for field, api in (("messages", "chat"), ("prompt", "completions"), ("input", "responses")):
        if field in body:
            return api
    return None


def jsonl_requests(text: str) -> Iterator[tuple[int, str | None, Any]]:
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:  # not a request: a log may hold other lines
            continue
        if isinstance(record, dict) and isinstance(record.get("body"), dict):
            yield number, api_of_path(str(record.get("url", ""))), record["body"]
        elif isinstance(record, dict):
            yield number, body_api(record), record


def scan_jsonl(path: str, text: str) -> list[Use]:
    uses: list[Use] = []
    for number, api, body in jsonl_requests(text):
        uses += request_uses(f"{path}:{number}", api, body)
    return uses
