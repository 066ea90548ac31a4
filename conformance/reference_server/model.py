"""A tiny deterministic "language model": a tokenizer, a chat template and a few rules.

It is not meant to be clever, only predictable, so every probe's precondition can be met on
purpose: it repeats the user's text, counts when asked, continues integer sequences, and obeys a
logit_bias of +100 by emitting that token.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterator
from itertools import count, islice, repeat
from typing import Any

TOKEN_PATTERN = re.compile(r" ?\w+| ?[^\w\s]|\s+")
COUNT_REQUEST = re.compile(r"count from (-?\d+) to (-?\d+)", re.IGNORECASE)
_vocabulary: dict[int, str] = {}


def tokenize(text: str) -> list[str]:
    tokens = TOKEN_PATTERN.findall(text)
    for token in tokens:
        _vocabulary.setdefault(token_id(token), token)
    return tokens


def token_id(token: str) -> int:
    """A stable id per token string (the same across runs and processes)."""
    return 1000 + zlib.crc32(token.encode("utf-8")) % 99_000


def token_text(identifier: int) -> str | None:
    """The token an id stands for, if this server has seen it (ids come from its own outputs)."""
    return _vocabulary.get(identifier)


def count_tokens(text: str) -> int:
    return len(TOKEN_PATTERN.findall(text))


def message_text(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return content if isinstance(content, str) else ""


def render_chat(messages: list[dict[str, Any]]) -> str:
    """The chat template: what the model really reads (and what echo on chat returns)."""
    return "".join(f"<|{m.get('role', 'user')}|>\n{message_text(m)}\n" for m in messages) + "<|assistant|>\n"


def chat_reply(messages: list[dict[str, Any]]) -> Iterator[str]:
    """Tokens of the reply: a count when asked to count, else the last user message repeated."""
    users = [message_text(m) for m in messages if m.get("role") == "user"]
    if not users:
        return iter(tokenize("OK"))
    last = users[-1]
    counting = COUNT_REQUEST.search(last)
    if counting:
        start, end = (int(g) for g in counting.groups())
        return iter(tokenize(", ".join(str(i) for i in range(start, end + 1))))
    return iter(tokenize(last))


_SEQUENCE = re.compile(r"(-?\d+)\s*,\s*(-?\d+)\s*,\s*$|(-?\d+)\s*,\s*(-?\d+)\s*$")


def completion_continuation(prompt: str) -> Iterator[str]:
    """Tokens that continue the prompt: an integer sequence goes on forever, anything else says OK."""
    match = _SEQUENCE.search(prompt)
    if not match:
        return iter(tokenize(" OK"))
    with_comma = match.group(1) is not None
    first, second = (int(g) for g in (match.groups()[:2] if with_comma else match.groups()[2:]))
    step = second - first

    def sequence() -> Iterator[str]:
        if not with_comma:
            yield ","
        for i in count(1):
            yield f" {second + i * step}"
            yield ","

    return sequence()


def forced(tokens: Iterator[str], logit_bias: dict[str, float] | None) -> Iterator[str]:
    """Apply logit_bias: a bias of +100 on a known token makes it the only output; -100 bans."""
    if not logit_bias:
        return tokens
    for key, bias in logit_bias.items():
        text = token_text(int(key))
        if bias >= 100 and text is not None:
            return repeat(text)  # the same token forever
    banned = {token_text(int(k)) for k, b in logit_bias.items() if b <= -100}
    return (t for t in tokens if t not in banned)


def take(tokens: Iterator[str], limit: int) -> tuple[list[str], bool]:
    """Up to `limit` tokens, and whether the model stopped by itself before the limit."""
    taken = list(islice(tokens, limit + 1))
    return taken[:limit], len(taken) <= limit


def logprob(token: str) -> float:
    return -round((zlib.crc32(token.encode()) % 1000) / 10_000, 4)
