"""What a run spends: requests and tokens counted across its threads (`RunStats`), and the token
budget, which each request reserves its worst case from before it is sent.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from typing import Any

from conformance.exceptions import BudgetExhausted
from conformance.exchange import Exchange


def usage_of(exchange: Exchange) -> dict | None:
    """The token usage an exchange reports: the body's, or what a stream carried, later counts
    over earlier ones (a Messages stream's `message_start` has the input tokens, its `message_delta`
    the output tokens)."""
    if exchange.json is not None:
        usage = exchange.json.get("usage") if isinstance(exchange.json, dict) else None
        if not isinstance(usage, dict) and isinstance(exchange.json, dict):
            response = exchange.json.get("response")
            usage = response.get("usage") if isinstance(response, dict) else None
        return usage if isinstance(usage, dict) else None
    found = None
    for chunk in exchange.stream.chunks:
        if isinstance(chunk, dict):
            usage = chunk.get("usage")
            for envelope in ("response", "message"):  # a Responses event's response, message_start's message
                if not isinstance(usage, dict) and isinstance(chunk.get(envelope), dict):
                    usage = chunk[envelope].get("usage")
            if isinstance(usage, dict):
                found = {**(found or {}), **usage}
    return found


#: No single response spends more tokens than this; a larger count is not summed into the run's.
MAX_COUNTED_TOKENS = 10**9


def token_counts(usage: dict | None) -> tuple[int, int]:
    """(prompt, completion) tokens from a chat/completions or Responses usage object. A count that
    is not a whole number from 0 to MAX_COUNTED_TOKENS (NaN, -5, true, 1e30) counts as 0: the
    evidence keeps it, and the checks judge it, but the run's totals stay true numbers."""
    if not usage:
        return 0, 0
    prompt = usage.get("prompt_tokens", usage.get("input_tokens", 0))
    completion = usage.get("completion_tokens", usage.get("output_tokens", 0))
    return countable(prompt), countable(completion)


def countable(count: Any) -> int:
    return count if type(count) is int and 0 <= count <= MAX_COUNTED_TOKENS else 0


#: Generation length caps, across chat/completions (`max_tokens`, `max_completion_tokens`) and Responses.
LENGTH_CAPS = ("max_tokens", "max_completion_tokens", "max_output_tokens")
#: Prompt fields, and what a chat template may add per message and per request (generous on purpose).
PROMPT_FIELDS = ("messages", "prompt", "input")
TEMPLATE_TOKENS = 16


def worst_case_tokens(body: Any, generates: bool = True) -> int | None:
    """The most tokens a request can cost, or None when it sets no length cap (it could cost anything).

    The prompt is counted as one token per character of its JSON (no tokenizer is that wasteful),
    plus a chat template's overhead; the output as the cap times the choices asked for. A request
    that `generates` nothing (embeddings) costs its prompt alone, cap or none."""
    if not isinstance(body, dict) or not any(name in body for name in PROMPT_FIELDS):
        return 0  # a listing, or a body no endpoint can generate from
    prompt = sum(len(json.dumps(body[name], ensure_ascii=False)) for name in PROMPT_FIELDS if name in body)
    items = sum(len(body[name]) if isinstance(body[name], list) else 1 for name in PROMPT_FIELDS if name in body)
    if not generates:
        return prompt + TEMPLATE_TOKENS * items
    caps = [body[name] for name in LENGTH_CAPS if type(body.get(name)) is int and body[name] >= 0]
    if not caps:
        return None
    choices = max([value for value in (body.get("n"), body.get("best_of")) if type(value) is int and value > 0] or [1])
    return prompt + TEMPLATE_TOKENS * (items + 1) + max(caps) * choices


@dataclass
class Spend:
    """What some requests cost (one check's, one model's): requests sent, retries included, and
    the tokens their usage reports. The run's total and its budget are `RunStats`'."""

    requests: int = 0
    retries: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def add(self, exchange: Exchange) -> None:
        prompt, completion = token_counts(usage_of(exchange))
        self.requests += 1 + len(exchange.retries)
        self.retries += len(exchange.retries)
        self.prompt_tokens += prompt
        self.completion_tokens += completion

    def __iadd__(self, other: Spend) -> Spend:
        self.requests += other.requests
        self.retries += other.retries
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        return self

    def to_dict(self) -> dict[str, Any]:
        """As report.json spells it (the run's own `requests`, `retries` and `tokens`)."""
        return {"requests": self.requests, "retries": self.retries,
                "tokens": {"prompt": self.prompt_tokens, "completion": self.completion_tokens,
                           "total": self.prompt_tokens + self.completion_tokens}}

    @classmethod
    def of(cls, exchanges: list[Exchange]) -> Spend:
        spend = cls()
        for exchange in exchanges:
            spend.add(exchange)
        return spend


class TokenLedger:
    """The token budget's books, for the threads of one process: tokens charged (reported usage,
    or reservations where none was reported), tokens reserved by requests in flight, and the
    condition requests wait on for reservations to come back."""

    def __init__(self) -> None:
        self.charged = 0
        self.reserved = 0
        self.changed: Any = threading.Condition()


class SharedTokenLedger(TokenLedger):
    """The same books in shared memory, under a lock every process forked after it was made
    shares: the worker processes of one run (workers.py) spend one budget, not one each."""

    def __init__(self, books: TokenLedger) -> None:
        import multiprocessing

        context = multiprocessing.get_context("fork")
        self._books = context.RawArray("q", [books.charged, books.reserved])
        self.changed = context.Condition()

    @property  # type: ignore[override]
    def charged(self) -> int:
        return self._books[0]

    @charged.setter
    def charged(self, value: int) -> None:
        self._books[0] = value

    @property  # type: ignore[override]
    def reserved(self) -> int:
        return self._books[1]

    @reserved.setter
    def reserved(self, value: int) -> None:
        self._books[1] = value


@dataclass
class RunStats:
    """Requests sent and tokens spent, shared by every thread of a run; and the token budget.

    The budget is never exceeded: each request reserves its worst case before it is sent (waiting
    while other requests' reservations are out, refused when it cannot fit even alone) and gives
    back what its usage shows it did not spend. A successful answer that reports no usage is
    charged its whole reservation, as nothing says it spent less. The budget's books (`ledger`)
    may be shared with worker processes; the counts are this process's."""

    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    retries: int = 0
    #: Never spend more than this many tokens (prompt + completion); None: no limit.
    token_budget: int | None = None
    ledger: TokenLedger = field(default_factory=TokenLedger, repr=False)

    @property
    def charged(self) -> int:
        """Tokens counted against the budget (reported usage, or reservations where none was reported)."""
        return self.ledger.charged

    @property
    def reserved(self) -> int:
        """Tokens reserved by requests in flight."""
        return self.ledger.reserved

    def reserve(self, body: Any, generates: bool = True) -> int:
        """Reserve a request's worst case before sending it; BudgetExhausted when it cannot fit.
        Without a length cap the request reserves whatever remains, once nothing else is in flight."""
        if self.token_budget is None:
            return 0
        need = worst_case_tokens(body, generates)
        books = self.ledger
        with books.changed:
            while True:
                left = self.token_budget - books.charged - books.reserved
                if need is None and books.reserved == 0 and left > 0:
                    books.reserved += left  # uncapped: whatever remains, and nothing else meanwhile
                    return left
                if need is not None and need <= max(left, 0):
                    books.reserved += need
                    return need
                if books.reserved == 0:  # nothing in flight will give anything back
                    raise BudgetExhausted(
                        f"not judged: the token budget of {self.token_budget} cannot pay for this request "
                        f"({'no length cap' if need is None else f'up to {need} tokens'}, "
                        f"{max(self.token_budget - books.charged, 0)} left); request not sent")
                books.changed.wait()

    def record(self, exchange: Exchange, reserved: int = 0) -> None:
        """Count a finished request, and give back the part of its reservation it did not spend."""
        prompt, completion = token_counts(usage_of(exchange))
        books = self.ledger
        with books.changed:
            self.requests += 1 + len(exchange.retries)
            self.retries += len(exchange.retries)
            self.prompt_tokens += prompt
            self.completion_tokens += completion
            reported = prompt + completion
            books.charged += reported if reported or not exchange.ok else reserved
            books.reserved -= reserved
            books.changed.notify_all()

    def counts(self) -> tuple[int, int, int, int]:
        """(requests, retries, prompt tokens, completion tokens): what a worker process hands back."""
        return self.requests, self.retries, self.prompt_tokens, self.completion_tokens

    def add(self, counts: tuple[int, int, int, int]) -> None:
        """Count a worker process's requests and tokens in this run's (its budget's books are shared)."""
        with self.ledger.changed:
            self.requests += counts[0]
            self.retries += counts[1]
            self.prompt_tokens += counts[2]
            self.completion_tokens += counts[3]

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens
