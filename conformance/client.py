"""The one way the suite talks to an endpoint: httpx, with timeouts, redaction and accounting.

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
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from conformance import __version__
from conformance.sse import ParsedStream, parse_stream

REDACTED = "<redacted>"
#: The request extension naming the check a request belongs to (read by the cassette transports).
CHECK_EXTENSION = "conformance.check"
#: Headers whose values are credentials, whatever the key is.
SECRET_HEADERS = frozenset({"authorization", "api-key", "x-api-key", "cookie", "set-cookie", "proxy-authorization"})
#: Bodies larger than this are cut in evidence (the check still judged the whole body).
EVIDENCE_BODY_LIMIT = 8_000
#: A response body larger than this is not read further: the endpoint is misbehaving.
BODY_SIZE_CAP = 16 * 1024 * 1024


#: 429/503 answers carrying Retry-After are retried at most this often per request...
MAX_RETRIES = 2
#: ...and only when the server asks to wait no longer than this.
MAX_RETRY_AFTER_S = 10.0


class BudgetExhausted(Exception):
    """The run's token budget is spent; no further requests are sent."""


class EndpointError(Exception):
    """The endpoint could not be talked to (refused, timed out, broke the connection)."""

    def __init__(self, message: str, exchange: "Exchange | None" = None):
        super().__init__(message)
        self.exchange = exchange


def normalize_base_url(url: str) -> str:
    """`http://host:port` means `http://host:port/v1`, as OpenAI's SDKs expect a versioned base.
    A query string (Azure's `api-version`) is kept: it goes with every request."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"not an http(s) URL: {url!r}")
    path = parts.path.rstrip("/") or "/v1"
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))


@dataclass
class Redactor:
    """Removes secret values (the key, and `others` such as --header values), wherever they
    appear, before anything is kept."""

    secret: str | None
    others: tuple[str, ...] = ()

    @property
    def _secrets(self) -> list[str]:
        return [value for value in (self.secret, *self.others) if value and len(value) >= 4]

    def text(self, value: str) -> str:
        for secret in self._secrets:
            value = value.replace(secret, REDACTED)
        return value

    def bytes(self, value: bytes) -> bytes:
        for secret in self._secrets:
            value = value.replace(secret.encode(), REDACTED.encode())
        return value

    def headers(self, headers: httpx.Headers | dict[str, str]) -> dict[str, str]:
        """Credential headers are dropped to a marker; an Authorization that does not carry the
        run's key (a probe's deliberately wrong one) is kept, so its curl line reproduces it."""
        kept = {}
        for name, value in headers.items():
            name = name.lower()
            if name == "authorization" and not (self.secret and self.secret in value):
                kept[name] = value
            else:
                kept[name] = REDACTED if name in SECRET_HEADERS else self.text(value)
        return kept


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
        except ValueError:
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
        return {
            "request": {"method": self.method, "url": self.url, "body": self.request_body},
            "status": self.status,
            "failure": self.failure,
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
        self._inner, self._on_close, self._parts = inner, on_close, []

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


def token_counts(usage: dict | None) -> tuple[int, int]:
    """(prompt, completion) tokens from a chat/completions or Responses usage object."""
    if not usage:
        return 0, 0
    prompt = usage.get("prompt_tokens", usage.get("input_tokens", 0))
    completion = usage.get("completion_tokens", usage.get("output_tokens", 0))
    return (prompt if isinstance(prompt, int) else 0, completion if isinstance(completion, int) else 0)


@dataclass
class RunStats:
    """Requests sent and tokens spent, shared by every thread of a run."""

    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    retries: int = 0
    #: Stop sending once this many tokens (prompt + completion) are spent; None: no limit.
    token_budget: int | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record(self, exchange: Exchange) -> None:
        prompt, completion = token_counts(usage_of(exchange))
        with self._lock:
            self.requests += 1 + len(exchange.retries)
            self.retries += len(exchange.retries)
            self.prompt_tokens += prompt
            self.completion_tokens += completion

    def check_budget(self) -> None:
        if self.token_budget is not None and self.total_tokens >= self.token_budget:
            raise BudgetExhausted(f"the token budget of {self.token_budget} is spent "
                                  f"({self.total_tokens} tokens used); request not sent")

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


class EndpointClient:
    """Sends requests to one base URL; never follows redirects elsewhere."""

    def __init__(self, base_url: str, api_key: str | None, timeout: float, stats: RunStats | None = None,
                 transport: httpx.BaseTransport | None = None, headers: dict[str, str] | None = None):
        """`headers` go with every request (--header); their values are redacted like the key."""
        parts = urlsplit(normalize_base_url(base_url))
        self.base_url = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
        #: The base URL's query string, sent with every request (also the SDK's).
        self.params = httpx.QueryParams(parts.query)
        self.timeout = timeout
        self.stats = stats if stats is not None else RunStats()
        self.redactor = Redactor(api_key, tuple((headers or {}).values()))
        self.api_key = api_key
        self._transport = transport or httpx.HTTPTransport(
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=16))
        # identity: bodies arrive as sent, so evidence and cassettes keep (and can scrub) the real bytes
        sent = {"user-agent": f"conformance/{__version__}", "accept-encoding": "identity", **(headers or {})}
        if api_key:
            sent["authorization"] = f"Bearer {api_key}"
        self.headers = dict(headers or {})
        self._http = httpx.Client(
            headers=sent,
            params=self.params,
            timeout=httpx.Timeout(timeout),
            follow_redirects=False,
            transport=self._transport,
        )

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
        Raises EndpointError when no HTTP response could be had; any HTTP status is returned.
        """
        self.stats.check_budget()
        url = self.url(path)
        request = self._http.build_request(method, url, json=body if content is None else None,
                                           content=content, headers=headers,
                                           extensions={CHECK_EXTENSION: check} if check else None)
        if authorization is None:
            request.headers.pop("authorization", None)
        elif authorization:
            request.headers["authorization"] = authorization
        exchange = describe_request(request, self.redactor)
        started = time.monotonic()
        try:
            while True:
                try:
                    response = self._http.send(request, stream=True)
                except httpx.RemoteProtocolError as dropped:
                    # A kept-alive connection the server had just closed: nothing was answered, so
                    # sending again is safe. Once only; a server that keeps hanging up is a fault.
                    if exchange.retries:
                        raise
                    exchange.retries.append({"status": None, "dropped": str(dropped)[:120]})
                    continue
                try:
                    exchange.status = response.status_code
                    exchange.response_headers = self.redactor.headers(response.headers)
                    exchange.body = self._read_body(response, started, exchange, abort_after_events)
                finally:
                    response.close()
                wait = retry_after(exchange)
                if wait is None or len(exchange.retries) >= MAX_RETRIES:
                    break
                exchange.retries.append({"status": exchange.status, "retry_after_s": wait})
                time.sleep(wait)
                started = time.monotonic()
                exchange.first_byte = None
        except httpx.TimeoutException:
            exchange.failure = f"no complete response within the {self.timeout:g}s timeout"
        except httpx.HTTPError as exc:
            exchange.failure = f"{type(exc).__name__}: {self.redactor.text(str(exc)) or 'connection failed'}"
        exchange.elapsed = time.monotonic() - started
        self.stats.record(exchange)
        if exchange.failure:
            raise EndpointError(f"{method} {exchange.url}: {exchange.failure}", exchange)
        return exchange

    def _read_body(self, response: httpx.Response, started: float, exchange: Exchange,
                   abort_after_events: int | None = None) -> bytes:
        """Read the body chunk by chunk, enforcing an overall deadline and a size cap."""
        deadline = started + self.timeout
        parts: list[bytes] = []
        size = 0
        for part in response.iter_bytes():
            if exchange.first_byte is None:
                exchange.first_byte = time.monotonic() - started
            parts.append(part)
            size += len(part)
            if size > BODY_SIZE_CAP:
                exchange.failure = f"response body exceeded {BODY_SIZE_CAP} bytes"
                break
            if time.monotonic() > deadline:
                exchange.failure = f"response still streaming after the {self.timeout:g}s timeout"
                break
            if abort_after_events and b"".join(parts).count(b"\n\n") >= abort_after_events:
                exchange.aborted_after = abort_after_events
                break
        return self.redactor.bytes(b"".join(parts))

    def logging_http_client(self, check: str | None, log: list[Exchange]) -> httpx.Client:
        """An httpx client for third-party code (the openai SDK) whose traffic goes the same way as
        ours (live, recorded or replayed) and lands in `log` as evidence. Do not close it: it
        shares this client's transport."""
        return httpx.Client(transport=_LoggingTransport(self, check, log), timeout=httpx.Timeout(self.timeout),
                            follow_redirects=False)

    def get(self, path: str) -> Exchange:
        return self.request("GET", path)

    def post(self, path: str, body: Any) -> Exchange:
        return self.request("POST", path, body)


class _LoggingTransport(httpx.BaseTransport):
    """Turns every request a foreign client sends into a redacted Exchange, counted in the stats."""

    def __init__(self, owner: EndpointClient, check: str | None, log: list[Exchange]):
        self.owner, self.check, self.log = owner, check, log

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if self.check:
            request.extensions = {**request.extensions, CHECK_EXTENSION: self.check}
        request.url = request.url.copy_merge_params(self.owner.params)
        for name, value in self.owner.headers.items():
            request.headers.setdefault(name, value)
        redactor = self.owner.redactor
        exchange = describe_request(request, redactor)
        started = time.monotonic()
        response = self.owner._transport.handle_request(request)
        exchange.status = response.status_code
        exchange.response_headers = redactor.headers(response.headers)

        def file(read: bytes) -> None:
            exchange.body, exchange.elapsed = redactor.bytes(read), time.monotonic() - started
            self.owner.stats.record(exchange)
            self.log.append(exchange)

        return httpx.Response(response.status_code, headers=response.headers, stream=TeeStream(response.stream, file),
                              extensions=response.extensions)


def retry_after(exchange: Exchange) -> float | None:
    """Seconds to wait before retrying a 429/503 that asked for it (within bounds), else None."""
    if exchange.status not in (429, 503):
        return None
    value = exchange.response_headers.get("retry-after", "")
    try:
        seconds = float(value)
    except ValueError:
        return None  # an HTTP date, or nothing: not worth guessing
    return seconds if 0 <= seconds <= MAX_RETRY_AFTER_S else None
