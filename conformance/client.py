"""The one way the suite talks to an endpoint: httpx, through one `BoundedTransport` whichever
client sends (ours, or the openai SDK's), with the bounds of `transport.py`, one retry policy,
redaction and accounting.

Every request becomes an `Exchange` that keeps what a verdict needs as evidence (the request as
sent, the status, headers and raw body bytes, timings) with the API key already removed, and can
print itself as a curl line that reproduces it. `RunStats` counts requests and tokens across the
threads of a run.
"""

from __future__ import annotations

import json
import shlex
import threading
import time
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, cast
from urllib.parse import urlsplit, urlunsplit

import httpx

from conformance import __version__
from conformance.redaction import REDACTED, Redactor
from conformance.sse import EventCounter, ParsedStream, parse_stream
from conformance.transport import AdaptiveLimit, BoundedStream, Lease, ResponseLimit, network_transport, set_deadline

#: The request extension naming the check a request belongs to (read by the cassette transports).
CHECK_EXTENSION = "conformance.check"
#: Bodies larger than this are cut in evidence (the check still judged the whole body).
EVIDENCE_BODY_LIMIT = 8_000
#: The request extension where the transport leaves the request's Exchange for its sender.
EXCHANGE_EXTENSION = "conformance.exchange"

#: 429/503 answers carrying Retry-After are retried at most this often per request...
MAX_RETRIES = 2
#: ...and only when the server asks to wait no longer than this.
MAX_RETRY_AFTER_S = 10.0


class BudgetExhausted(httpx.TransportError):
    """The run's token budget cannot pay for a request, which is therefore not sent. A transport
    error, so third-party clients (the openai SDK) report it as a request that could not be made
    instead of judging it; the runner finds it behind their wrappers and makes the check a skip."""


class EndpointError(Exception):
    """The endpoint could not be talked to (refused, timed out, broke the connection)."""

    def __init__(self, message: str, exchange: "Exchange | None" = None):
        super().__init__(message)
        self.exchange = exchange


class RequestTimeout(EndpointError):
    """No complete response within the timeout: the endpoint's fault, or our own load on it."""


def without_credentials(url: str) -> str:
    """The URL as it may be shown: any `user:password@` taken out."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def normalize_base_url(url: str) -> str:
    """`http://host:port` means `http://host:port/v1`, as OpenAI's SDKs expect a versioned base.

    Credentials in the URL are refused rather than sent: httpx would turn them into Basic auth in
    place of the Bearer key, and a URL is shown everywhere (reports, endpoint names, folders).

    A query string (Azure's `api-version`) is kept: it goes with every request."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"not an http(s) URL: {without_credentials(url.strip())!r}")
    if "@" in parts.netloc:
        raise ValueError(f"the base URL carries credentials ({without_credentials(url.strip())} with user:password@); "
                         "remove them and pass the key with --api-key or OPENAI_API_KEY")
    path = parts.path.rstrip("/") or "/v1"
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))


@dataclass
class Exchange:
    """One HTTP request and what came back (or why nothing did). Already redacted."""

    method: str
    url: str
    request_headers: dict[str, str]
    request_body: Any
    status: int | None = None
    response_headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    elapsed: float = 0.0
    first_byte: float | None = None
    failure: str | None = None
    #: The client closed the connection on purpose after this many events (stream-abort probes).
    aborted_after: int | None = None
    #: Earlier attempts answered 429/503 with Retry-After: [{"status": ..., "retry_after_s": ...}].
    retries: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    @cached_property
    def json(self) -> Any:
        """The body as JSON, or None when it is not JSON."""
        try:
            return json.loads(self.body)
        except (ValueError, RecursionError):  # RecursionError: nested deeper than the parser goes
            return None

    @cached_property
    def stream(self) -> ParsedStream:
        return parse_stream(self.body)

    @property
    def is_event_stream(self) -> bool:
        return self.response_headers.get("content-type", "").startswith("text/event-stream")

    @property
    def error_envelope(self) -> dict | None:
        """The OpenAI error object `{"error": {...}}`'s inner dict, if the body is one."""
        body = self.json
        if isinstance(body, dict) and isinstance(body.get("error"), dict):
            return body["error"]
        return None

    def describe_status(self) -> str:
        if self.failure:
            return self.failure
        detail = ""
        if self.error_envelope:
            detail = f": {self.error_envelope.get('message', '')}"[:200]
        return f"HTTP {self.status}{detail}"

    def curl(self) -> str:
        """A shell line that sends the same request; the key is read from $OPENAI_API_KEY."""
        parts = ["curl", "-sS"]
        if isinstance(self.request_body, dict) and self.request_body.get("stream"):
            parts.append("-N")
        parts += ["-X", self.method, shlex.quote(self.url)]
        for name, value in self.request_headers.items():
            if name == "authorization" and value == REDACTED:
                parts += ["-H", '"Authorization: Bearer $OPENAI_API_KEY"']
            elif name in ("authorization", "content-type"):
                parts += ["-H", shlex.quote(f"{name}: {value}")]
        if self.request_body is not None:
            parts += ["-d", shlex.quote(json.dumps(self.request_body, separators=(",", ":")))]
        return " ".join(parts)

    def evidence(self) -> dict[str, Any]:
        """The exchange as report evidence: request, status, headers, body (cut when huge)."""
        body: Any
        if self.is_event_stream or (self.json is None and self.body.startswith(b"data:")):
            body = self.text[:EVIDENCE_BODY_LIMIT]
        elif self.json is not None and len(self.body) <= EVIDENCE_BODY_LIMIT:
            body = self.json
        else:
            body = self.text[:EVIDENCE_BODY_LIMIT]
        # HTTP has no status outside 100-599 (RFC 9110 15); one is kept as an observation, not a status
        invalid = self.status is not None and not 100 <= self.status <= 599
        return {
            "request": {"method": self.method, "url": self.url, "body": self.request_body},
            "status": None if invalid else self.status,
            "failure": f"invalid HTTP status {self.status}" if invalid and not self.failure else self.failure,
            "response_headers": self.response_headers,
            "response_body": body,
            "truncated": len(self.body) > EVIDENCE_BODY_LIMIT,
            "elapsed_ms": round(self.elapsed * 1000, 1),
            "first_byte_ms": None if self.first_byte is None else round(self.first_byte * 1000, 1),
            "retries": self.retries,
        }


class TeeStream(httpx.SyncByteStream):
    """Passes a response body through and, when the reader closes it, hands over what was read."""

    def __init__(self, inner: httpx.SyncByteStream, on_close):
        self._inner, self._on_close = inner, on_close
        self._parts: list[bytes] = []

    def __iter__(self):
        for part in self._inner:
            self._parts.append(part)
            yield part

    def close(self) -> None:
        try:
            self._inner.close()
        finally:
            self._on_close(b"".join(self._parts))


def usage_of(exchange: Exchange) -> dict | None:
    """The token usage an exchange reports: the body's, or the last one a stream carried."""
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
            if not isinstance(usage, dict) and isinstance(chunk.get("response"), dict):
                usage = chunk["response"].get("usage")
            if isinstance(usage, dict):
                found = usage
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


def worst_case_tokens(body: Any) -> int | None:
    """The most tokens a request can cost, or None when it sets no length cap (it could cost anything).

    The prompt is counted as one token per character of its JSON (no tokenizer is that wasteful),
    plus a chat template's overhead; the output as the cap times the choices asked for."""
    if not isinstance(body, dict) or not any(name in body for name in PROMPT_FIELDS):
        return 0  # a listing, or a body no endpoint can generate from
    prompt = sum(len(json.dumps(body[name], ensure_ascii=False)) for name in PROMPT_FIELDS if name in body)
    items = sum(len(body[name]) if isinstance(body[name], list) else 1 for name in PROMPT_FIELDS if name in body)
    caps = [body[name] for name in LENGTH_CAPS if type(body.get(name)) is int and body[name] >= 0]
    if not caps:
        return None
    choices = max([value for value in (body.get("n"), body.get("best_of")) if type(value) is int and value > 0] or [1])
    return prompt + TEMPLATE_TOKENS * (items + 1) + max(caps) * choices


@dataclass
class RunStats:
    """Requests sent and tokens spent, shared by every thread of a run; and the token budget.

    The budget is never exceeded: each request reserves its worst case before it is sent (waiting
    while other requests' reservations are out, refused when it cannot fit even alone) and gives
    back what its usage shows it did not spend. A successful answer that reports no usage is
    charged its whole reservation, as nothing says it spent less."""

    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    retries: int = 0
    #: Never spend more than this many tokens (prompt + completion); None: no limit.
    token_budget: int | None = None
    #: Tokens counted against the budget (reported usage, or reservations where none was reported).
    charged: int = 0
    #: Tokens reserved by requests in flight.
    reserved: int = 0
    _lock: threading.Condition = field(default_factory=threading.Condition, repr=False)

    def reserve(self, body: Any) -> int:
        """Reserve a request's worst case before sending it; BudgetExhausted when it cannot fit.
        Without a length cap the request reserves whatever remains, once nothing else is in flight."""
        if self.token_budget is None:
            return 0
        need = worst_case_tokens(body)
        with self._lock:
            while True:
                left = self.token_budget - self.charged - self.reserved
                if need is None and self.reserved == 0 and left > 0:
                    self.reserved += left  # uncapped: whatever remains, and nothing else meanwhile
                    return left
                if need is not None and need <= max(left, 0):
                    self.reserved += need
                    return need
                if self.reserved == 0:  # nothing in flight will give anything back
                    raise BudgetExhausted(
                        f"not judged: the token budget of {self.token_budget} cannot pay for this request "
                        f"({'no length cap' if need is None else f'up to {need} tokens'}, "
                        f"{max(self.token_budget - self.charged, 0)} left); request not sent")
                self._lock.wait()

    def record(self, exchange: Exchange, reserved: int = 0) -> None:
        """Count a finished request, and give back the part of its reservation it did not spend."""
        prompt, completion = token_counts(usage_of(exchange))
        with self._lock:
            self.requests += 1 + len(exchange.retries)
            self.retries += len(exchange.retries)
            self.prompt_tokens += prompt
            self.completion_tokens += completion
            reported = prompt + completion
            self.charged += reported if reported or not exchange.ok else reserved
            self.reserved -= reserved
            self._lock.notify_all()

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


def describe_request(request: httpx.Request, redactor: Redactor) -> Exchange:
    """The redacted start of an Exchange: what was sent, with a JSON body kept as JSON."""
    sent = request.read()
    text = redactor.text(sent.decode("utf-8", "replace"))
    try:
        body = json.loads(text) if sent else None
    except ValueError:
        body = text
    return Exchange(method=request.method, url=redactor.text(str(request.url)),
                    request_headers=redactor.headers(request.headers), request_body=body)


class BoundedTransport(httpx.BaseTransport):
    """The one way every request of a run goes out, whichever client sends it (ours, the openai
    SDK's): under the adaptive limit, one deadline per attempt, the body and event caps, the retry
    policy, with no cookie kept and no body decoded; each request becomes a redacted Exchange,
    counted in the stats and left in the request's extensions for whoever sent it."""

    def __init__(self, inner: httpx.BaseTransport, redactor: Redactor, timeout: float, stats: RunStats,
                 limit: AdaptiveLimit):
        self.inner, self.redactor, self.timeout, self.stats, self.limit = inner, redactor, timeout, stats, limit

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        # identity: bodies arrive as sent, so evidence and cassettes keep (and can scrub) the real bytes
        request.headers["accept-encoding"] = "identity"
        exchange = describe_request(request, self.redactor)
        reserved = self.stats.reserve(exchange.request_body)  # BudgetExhausted: not sent, not counted
        request.extensions = {**request.extensions, EXCHANGE_EXTENSION: exchange}
        while True:
            lease = self.limit.acquire()
            set_deadline(lease.deadline)
            try:
                response = self.inner.handle_request(request)
            except httpx.HTTPError as error:
                lease.release(overloaded=isinstance(error, httpx.TimeoutException))
                if isinstance(error, httpx.RemoteProtocolError) and not exchange.retries:
                    # A kept-alive connection the server had just closed: nothing was answered, so
                    # sending again is safe. Once only; a server that keeps hanging up is a fault.
                    exchange.retries.append({"status": None, "dropped": str(error)[:120]})
                    continue
                self._file(exchange, lease, reserved, error)
                raise
            wait = retry_after(response.status_code, response.headers)
            if wait is None or len(exchange.retries) >= MAX_RETRIES:
                return self._bounded(response, exchange, lease, reserved)
            response.close()
            lease.release(overloaded=True)
            exchange.retries.append({"status": response.status_code, "retry_after_s": wait})
            time.sleep(wait)

    def _bounded(self, response: httpx.Response, exchange: Exchange, lease: Lease, reserved: int) -> httpx.Response:
        exchange.status = response.status_code
        exchange.response_headers = self.redactor.headers(response.headers)
        encoding = response.headers.get("content-encoding", "identity").strip().lower()
        stream = BoundedStream(cast(httpx.SyncByteStream, response.stream), lease, event_stream=exchange.is_event_stream,
                               encoding=None if encoding == "identity" else encoding,
                               on_close=lambda read: self._file(exchange, lease, reserved, read.failure, read))
        # Handed up without what would make a client keep state (cookies) or decode the body.
        headers = [(name, value) for name, value in response.headers.multi_items()
                   if name.lower() not in ("set-cookie", "content-encoding")]
        return httpx.Response(response.status_code, headers=headers, stream=stream, extensions=response.extensions)

    def _file(self, exchange: Exchange, lease: Lease, reserved: int, failure: Exception | None,
              read: BoundedStream | None = None) -> None:
        if read is not None:
            exchange.body = self.redactor.bytes(read.body())
            exchange.first_byte = read.first_byte
            if failure is not None:
                # An incomplete answer is judged by no check, only shown: keep what evidence shows
                # (and one byte more, which marks it cut), not up to BODY_SIZE_CAP of it.
                exchange.body = exchange.body[:EVIDENCE_BODY_LIMIT + 1]
        if failure is not None:
            exchange.failure = self._describe(failure)
        exchange.elapsed = time.monotonic() - lease.sent
        self.stats.record(exchange, reserved)

    def _describe(self, failure: Exception) -> str:
        if isinstance(failure, httpx.TimeoutException):
            return f"no complete response within the {self.timeout:g}s timeout"
        if isinstance(failure, ResponseLimit):
            return str(failure)
        return f"{type(failure).__name__}: {self.redactor.text(str(failure)) or 'connection failed'}"

    def close(self) -> None:
        self.inner.close()


class EndpointClient:
    """Sends requests to one base URL; never follows redirects elsewhere."""

    def __init__(self, base_url: str, api_key: str | None, timeout: float, stats: RunStats | None = None,
                 transport: httpx.BaseTransport | None = None, concurrency: int = 16,
                 headers: dict[str, str] | None = None):
        """`headers` go with every request (--header); their values are redacted like the key."""
        parts = urlsplit(normalize_base_url(base_url))
        self.base_url = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
        #: The base URL's query string, sent with every request (also the SDK's).
        self.params = httpx.QueryParams(parts.query)
        self.timeout = timeout
        self.stats = stats if stats is not None else RunStats()
        # A pasted key often ends in a newline, which no header may carry.
        self.api_key = api_key.strip() if api_key else None
        self.headers = dict(headers or {})
        self.redactor = Redactor(self.api_key, *self.headers.values())
        self.limit = AdaptiveLimit(concurrency, timeout)
        self._transport = BoundedTransport(transport or network_transport(), self.redactor, timeout, self.stats,
                                           self.limit)
        sent = {"user-agent": f"conformance/{__version__}", **self.headers}
        if self.api_key:
            sent["authorization"] = f"Bearer {self.api_key}"
        self._http = self._client(self._transport, sent)

    def _client(self, transport: httpx.BaseTransport, headers: dict[str, str]) -> httpx.Client:
        # The transport bounds every request overall; httpx's own timeouts only bound each socket
        # operation, and are the same so that neither fires first for another reason.
        return httpx.Client(headers=headers, params=self.params, timeout=httpx.Timeout(self.timeout),
                            follow_redirects=False, transport=transport)

    def close(self) -> None:
        self._http.close()

    def url(self, path: str) -> str:
        return f"{self.base_url}/{path.lstrip('/')}"

    def request(self, method: str, path: str, body: Any = None, *, headers: dict[str, str] | None = None,
                content: bytes | None = None, abort_after_events: int | None = None,
                check: str | None = None, authorization: str | None = "") -> Exchange:
        """Send one request and read the whole response within `timeout` seconds overall.

        With `abort_after_events`, close the connection once that many SSE events have arrived,
        as a client abandoning a stream does. `check` names the check the request belongs to (for
        cassettes). `authorization` replaces the Authorization header (None: send none at all).
        Raises EndpointError when no complete HTTP response could be had; any HTTP status is returned.
        """
        request = self._http.build_request(method, self.url(path), json=body if content is None else None,
                                           content=content, headers=headers,
                                           extensions={CHECK_EXTENSION: check} if check else None)
        if authorization is None:
            request.headers.pop("authorization", None)
        elif authorization:
            request.headers["authorization"] = authorization
        aborted = None
        try:
            response = self._http.send(request, stream=True)
            try:
                events = EventCounter()
                for part in response.iter_raw():
                    if abort_after_events and events.feed(part) >= abort_after_events:
                        aborted = abort_after_events
                        break
            finally:
                response.close()
        except BudgetExhausted:
            raise  # nothing was sent
        except httpx.HTTPError as error:
            failure: httpx.HTTPError | None = error  # the transport wrote it into the exchange
        else:
            failure = None
        exchange = request.extensions.get(EXCHANGE_EXTENSION) or describe_request(request, self.redactor)
        exchange.aborted_after = aborted
        if exchange.failure:
            raised = RequestTimeout if isinstance(failure, httpx.TimeoutException) else EndpointError
            raise raised(f"{method} {exchange.url}: {exchange.failure}", exchange)
        return exchange

    def logging_http_client(self, check: str | None, log: list[Exchange]) -> httpx.Client:
        """An httpx client for third-party code (the openai SDK) whose traffic goes the same way as
        ours (bounded, retried, live, recorded or replayed) and lands in `log` as evidence. Do not
        close its transport: it is this client's."""
        return self._client(_LoggingTransport(self._transport, check, log), self.headers)

    def get(self, path: str) -> Exchange:
        return self.request("GET", path)

    def post(self, path: str, body: Any) -> Exchange:
        return self.request("POST", path, body)


class _LoggingTransport(httpx.BaseTransport):
    """Files every request a foreign client sends under a check, and its Exchange in `log`."""

    def __init__(self, bounded: BoundedTransport, check: str | None, log: list[Exchange]):
        self.bounded, self.check, self.log = bounded, check, log

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if self.check:
            request.extensions = {**request.extensions, CHECK_EXTENSION: self.check}
        try:
            return self.bounded.handle_request(request)
        finally:
            if EXCHANGE_EXTENSION in request.extensions:  # absent when the budget refused to send it
                self.log.append(request.extensions[EXCHANGE_EXTENSION])

    def close(self) -> None:
        """The bounded transport is the owning client's to close."""


def retry_after(status: int, headers: httpx.Headers) -> float | None:
    """Seconds to wait before retrying a 429/503 that asked for it (within bounds), else None."""
    if status not in (429, 503):
        return None
    value = headers.get("retry-after", "")
    try:
        seconds = float(value)
    except ValueError:
        return None  # an HTTP date, or nothing: not worth guessing
    return seconds if 0 <= seconds <= MAX_RETRY_AFTER_S else None
