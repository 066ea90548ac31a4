"""The one way the suite talks to an endpoint: httpx, through one `BoundedTransport` whichever
client sends (ours, or the openai SDK's), with the bounds of `transport.py`, one retry policy,
redaction, and the run's accounting.

Every request becomes an `Exchange` (exchange.py), counted in the run's `RunStats`
(accounting.py); what goes wrong is a `ConformanceError` (exceptions.py).
"""

from __future__ import annotations

import time
from typing import Any, cast
from urllib.parse import urlsplit, urlunsplit

import httpx

from conformance import __version__
from conformance.accounting import RunStats
from conformance.exceptions import BudgetExhausted, EndpointError, RequestTimeout
from conformance.exchange import EVIDENCE_BODY_LIMIT, Exchange, describe_request
from conformance.redaction import Redactor, run_redactor
from conformance.transport import AdaptiveLimit, BoundedStream, Lease, ResponseLimit, network_transport, set_deadline
from conformance.urls import normalize_base_url

#: The request extension naming the check a request belongs to (read by the cassette transports).
CHECK_EXTENSION = "conformance.check"
#: The request extension where the transport leaves the request's Exchange for its sender.
EXCHANGE_EXTENSION = "conformance.exchange"
#: The request extension asking the transport to end the body after that many events.
ABORT_EXTENSION = "conformance.abort_after_events"

#: Paths whose requests read a prompt but generate nothing: their cost is the prompt alone.
NOT_GENERATING = ("/embeddings", "/messages/count_tokens")
#: 429/503 answers carrying Retry-After are retried at most this often per request...
MAX_RETRIES = 2
#: ...and only when the server asks to wait no longer than this.
MAX_RETRY_AFTER_S = 10.0


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
        # BudgetExhausted: not sent, not counted
        reserved = self.stats.reserve(exchange.request_body, generates=not request.url.path.endswith(NOT_GENERATING))
        request.extensions = {**request.extensions, EXCHANGE_EXTENSION: exchange}
        while True:
            lease = self.limit.acquire()
            set_deadline(lease.deadline)
            try:
                response = self.inner.handle_request(request)
            except Exception as error:  # whatever the inner transport raises: the slot and the tokens go back
                lease.release(overloaded=isinstance(error, httpx.TimeoutException))
                if isinstance(error, httpx.RemoteProtocolError) and not exchange.retries:
                    # A kept-alive connection the server had just closed: nothing was answered, so
                    # sending again is safe. Once only; a server that keeps hanging up is a fault.
                    exchange.retries.append({"status": None, "dropped": self.redactor.text(str(error))[:120]})
                    continue
                self._file(exchange, lease, reserved, error)
                raise
            wait = retry_after(response.status_code, response.headers)
            if wait is None or len(exchange.retries) >= MAX_RETRIES:
                return self._bounded(response, exchange, lease, reserved, request.extensions.get(ABORT_EXTENSION))
            response.close()
            lease.release(overloaded=True)
            exchange.retries.append({"status": response.status_code, "retry_after_s": wait})
            time.sleep(wait)

    def _bounded(self, response: httpx.Response, exchange: Exchange, lease: Lease, reserved: int,
                 abort_after_events: int | None) -> httpx.Response:
        exchange.status = response.status_code
        exchange.response_headers = self.redactor.headers(response.headers)
        encoding = response.headers.get("content-encoding", "identity").strip().lower()
        stream = BoundedStream(cast(httpx.SyncByteStream, response.stream), lease,
                               event_stream=exchange.is_event_stream,
                               encoding=None if encoding == "identity" else encoding,
                               on_close=lambda read: self._file(exchange, lease, reserved, read.failure, read),
                               abort_after_events=abort_after_events)
        # Handed up without what would make a client keep state (cookies) or decode the body.
        headers = [(name, value) for name, value in response.headers.multi_items()
                   if name.lower() not in ("set-cookie", "content-encoding")]
        return httpx.Response(response.status_code, headers=headers, stream=stream, extensions=response.extensions)

    def _file(self, exchange: Exchange, lease: Lease, reserved: int, failure: Exception | None,
              read: BoundedStream | None = None) -> None:
        if read is not None:
            exchange.body = self.redactor.bytes(read.body())
            exchange.first_byte = read.first_byte
            exchange.aborted_after = read.aborted_after
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
        if isinstance(failure, ResponseLimit):  # it quotes what the server sent (Content-Encoding)
            return self.redactor.text(str(failure))
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
        # The run's redactor, from the same parts (the key, the base URL's credentials, the headers).
        self.redactor = run_redactor(api_key, base_url, self.headers.values())
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
        extensions: dict[str, Any] = {CHECK_EXTENSION: check} if check else {}
        if abort_after_events:
            extensions[ABORT_EXTENSION] = abort_after_events
        request = self._http.build_request(method, self.url(path), json=body if content is None else None,
                                           content=content, headers=headers, extensions=extensions)
        if authorization is None:
            request.headers.pop("authorization", None)
        elif authorization:
            request.headers["authorization"] = authorization
        try:
            response = self._http.send(request, stream=True)
            try:
                for _ in response.iter_raw():  # the transport keeps what arrives, and ends an aborted stream
                    pass
            finally:
                response.close()
        except BudgetExhausted:
            raise  # nothing was sent
        except httpx.HTTPError as error:
            failure: httpx.HTTPError | None = error  # the transport wrote it into the exchange
        else:
            failure = None
        exchange = request.extensions.get(EXCHANGE_EXTENSION) or describe_request(request, self.redactor)
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
