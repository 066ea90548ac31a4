"""The bounds every request is under, whatever the server sends and whichever client sends it.

- One overall deadline per request, from when it is sent: httpx's timeouts are per socket
  operation, so a server dripping a byte a second (headers or body) would defeat them. The network
  transport here reads through sockets that clamp every read and write to the time left before the
  calling thread's deadline.
- A cap on the body's size and on the number of server-sent events, applied as bytes arrive.
- Compressed bodies are never decoded (a few kilobytes of nested gzip unpack to gigabytes): the
  suite asks for `identity`, and a `Content-Encoding` that comes anyway is a fault, kept as evidence.
- An adaptive limit on requests in flight, so that a slow endpoint is not made to time out by
  the suite's own queue.
"""

from __future__ import annotations

import functools
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import httpcore
import httpx

from conformance.exceptions import ConformanceError
from conformance.sse import EventCounter

#: A response body larger than this is not read further: the endpoint is misbehaving.
BODY_SIZE_CAP = 16 * 1024 * 1024
#: An event stream with more events than this is not read further (real streams carry one event
#: per token, a few hundred here).
EVENT_CAP = 10_000
#: A request answering slower than this fraction of the timeout is a sign the endpoint is saturated.
SLOW_FRACTION = 0.5

_deadline = threading.local()


class ResponseLimit(ConformanceError, httpx.TransportError):
    """The response broke one of the bounds (size, events, deadline, encoding); reading stopped."""


def set_deadline(at: float | None) -> None:
    """The monotonic time by which the calling thread's current request must be complete."""
    _deadline.at = at


def _clamp(timeout: float | None, expired: type[Exception]) -> float | None:
    at = getattr(_deadline, "at", None)
    if at is None:
        return timeout
    left = at - time.monotonic()
    if left <= 0:
        raise expired("the request's overall deadline passed")
    return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    """A socket whose every operation ends by the deadline of the request using it."""

    def __init__(self, inner: httpcore.NetworkStream):
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _clamp(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _clamp(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(self, ssl_context, server_hostname: str | None = None,
                  timeout: float | None = None) -> httpcore.NetworkStream:
        return _DeadlineStream(self._inner.start_tls(ssl_context, server_hostname,
                                                     _clamp(timeout, httpcore.ConnectTimeout)))

    def get_extra_info(self, info: str):
        return self._inner.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    def __init__(self) -> None:
        self._inner = httpcore.SyncBackend()

    def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                    socket_options=None) -> httpcore.NetworkStream:
        return _DeadlineStream(self._inner.connect_tcp(host, port, _clamp(timeout, httpcore.ConnectTimeout),
                                                       local_address, socket_options))

    def connect_unix_socket(self, path: str, timeout: float | None = None, socket_options=None):
        return _DeadlineStream(self._inner.connect_unix_socket(path, _clamp(timeout, httpcore.ConnectTimeout),
                                                               socket_options))

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """httpx's default TLS context, built once per process: each build loads the CA bundle (about
    20 ms), and a run builds several transports. A context is safe to share between connections."""
    return httpx.create_ssl_context()


#: Connections one transport opens at most (to one endpoint: the in-flight limit keeps below it).
MAX_CONNECTIONS = 64


class _KeptAlivePool(httpcore.ConnectionPool):
    """httpcore's pool, handing requests to connections in one pass over them, without closing any
    connection a request holds.

    httpcore 1.0's own pass closes an idle connection whenever the pool holds more connections than
    its keep-alive cap (it compares the cap with *all* connections), so with many requests in flight
    each connection was closed as soon as its answer was read, sometimes one just handed to a request
    waiting on another thread, which then read a closed socket (`ReadError: [Errno 9] Bad file
    descriptor`, encode/httpcore#1110); and it polls every idle socket on every pass (quadratic in
    the connections, a sixth of a run's CPU with 64 kept alive). Here a connection stays until it is
    reused, or closes to make room for another origin; it is checked for a server-side close (poll)
    only when about to be reused; one closed stays listed (unused) until room is needed; and one
    handed to a request is neither handed again nor closed."""

    def _assign_requests_to_connections(self) -> list[httpcore.ConnectionInterface]:
        closing: list[httpcore.ConnectionInterface] = []
        queued = [pool_request for pool_request in self._requests if pool_request.is_queued()]
        if not queued:  # a response was closed and nobody waits: its connection stays as it is
            return closing
        claimed = {id(pool_request.connection) for pool_request in self._requests}
        for pool_request in queued:
            origin = pool_request.request.url.origin
            connection = self._reusable(origin, claimed, closing)
            if connection is None and len(self._connections) >= self._max_connections:
                self._connections = [c for c in self._connections if not c.is_closed()]
            if connection is None and len(self._connections) >= self._max_connections:
                spare = next((c for c in self._connections if id(c) not in claimed and c.is_idle()), None)
                if spare is None:
                    continue  # the request waits for a connection to be released
                self._connections.remove(spare)
                closing.append(spare)
            if connection is None:
                connection = self.create_connection(origin)
                self._connections.append(connection)
            claimed.add(id(connection))
            pool_request.assign_to_connection(connection)
        return closing

    def _reusable(self, origin: httpcore.Origin, claimed: set[int],
                  closing: list[httpcore.ConnectionInterface]) -> httpcore.ConnectionInterface | None:
        """An idle connection to `origin` nobody holds, that the server has not closed meanwhile
        (those found are moved to `closing`)."""
        for connection in list(self._connections):
            if id(connection) in claimed or not connection.can_handle_request(origin):
                continue
            if not connection.is_available():
                continue
            if connection.has_expired():
                self._connections.remove(connection)
                closing.append(connection)
                continue
            return connection
        return None


def network_transport() -> httpx.HTTPTransport:
    """httpx's transport to the network, reading through deadline-bound sockets."""
    transport = httpx.HTTPTransport(verify=_tls_context())
    # httpx takes no network backend, so the pool it built is replaced by one with ours.
    transport._pool = _KeptAlivePool(ssl_context=_tls_context(), max_connections=MAX_CONNECTIONS,
                                     network_backend=_DeadlineBackend())
    return transport


@dataclass(eq=False)
class Lease:
    """One request's slot in the limit, held from sending until its response is closed."""

    limit: AdaptiveLimit
    sent: float
    deadline: float
    released: bool = False

    def release(self, overloaded: bool = False) -> None:
        """`overloaded`: the request timed out, or the endpoint asked us to slow down (429/503)."""
        if not self.released:
            self.released = True
            self.limit.settle(self, time.monotonic() - self.sent, overloaded)


@dataclass
class AdaptiveLimit:
    """Requests in flight, adapted to what the endpoint sustains (additive increase, multiplicative
    decrease): starts at `ceiling`, halves on a timeout or a 429/503, shrinks by a quarter when an
    answer takes more than half the timeout (once per round: requests sent before a cut do not cut
    again), and grows back by about one per `limit` quick answers, never above `ceiling`.

    A lease whose deadline has passed no longer counts, so a response nobody closes cannot
    starve the run."""

    ceiling: int
    timeout: float
    limit: float = field(init=False)
    _leases: set[Lease] = field(default_factory=set, repr=False)
    _alone: int = field(default=0, repr=False)
    #: When the limit was last cut: answers to requests sent before then were already reacted to.
    _cut_at: float = field(default=float("-inf"), repr=False)
    _changed: threading.Condition = field(default_factory=threading.Condition, repr=False)

    def __post_init__(self) -> None:
        self.limit = float(self.ceiling)

    def allowed(self) -> int:
        return 1 if self._alone else max(1, int(self.limit))

    def acquire(self) -> Lease:
        """Wait for a slot; the request's deadline starts now, when it is sent."""
        with self._changed:
            while True:
                now = time.monotonic()
                self._leases = {lease for lease in self._leases if lease.deadline > now}
                if len(self._leases) < self.allowed():
                    lease = Lease(self, now, now + self.timeout)
                    self._leases.add(lease)
                    return lease
                self._changed.wait(min(lease.deadline for lease in self._leases) - now)

    def settle(self, lease: Lease, elapsed: float, overloaded: bool) -> None:
        with self._changed:
            self._leases.discard(lease)
            if overloaded or elapsed > self.timeout * SLOW_FRACTION:
                if lease.sent > self._cut_at:  # one cut per round of requests, not one per request
                    self.limit = max(1.0, self.limit / 2 if overloaded else self.limit * 0.75)
                    self._cut_at = time.monotonic()
            else:
                self.limit = min(float(self.ceiling), self.limit + 1 / self.limit)
            self._changed.notify_all()

    @contextmanager
    def alone(self) -> Iterator[None]:
        """One request in flight at a time, whoever sends it, for as long as this is entered."""
        with self._changed:
            self._alone += 1
        try:
            yield
        finally:
            with self._changed:
                self._alone -= 1
                self._changed.notify_all()


class BoundedStream(httpx.SyncByteStream):
    """A response body read under the caps and the deadline; what was read and why reading stopped
    are handed to `on_close` once, when the reader closes it."""

    def __init__(self, inner: httpx.SyncByteStream, lease: Lease, *, event_stream: bool, encoding: str | None,
                 on_close, abort_after_events: int | None = None):
        """`abort_after_events`: end the body after that many events, as a client abandoning a
        stream does (the events are counted here once, for the cap and for this)."""
        self._inner, self._lease, self._on_close = inner, lease, on_close
        self._abort_after = abort_after_events
        self._events = EventCounter() if event_stream or abort_after_events else None
        self._encoding = encoding
        #: The number of events after which reading ended on purpose (`abort_after_events`).
        self.aborted_after: int | None = None
        self._parts: list[bytes] = []
        self._size = 0
        self.first_byte: float | None = None
        self.failure: Exception | None = None

    def __iter__(self) -> Iterator[bytes]:
        try:
            if self._encoding:
                raise ResponseLimit(f"the body is compressed (Content-Encoding: {self._encoding}) although the "
                                    "request asked for identity; it is not decoded")
            parts = iter(self._inner)
            while True:
                set_deadline(self._lease.deadline)  # the socket reads below end by it
                part = next(parts, None)
                if part is None:
                    return
                if self.first_byte is None:
                    self.first_byte = time.monotonic() - self._lease.sent
                self._parts.append(part)
                self._size += len(part)
                if self._size > BODY_SIZE_CAP:
                    raise ResponseLimit(f"response body exceeded {BODY_SIZE_CAP} bytes")
                events = self._events.feed(part) if self._events is not None else 0
                if events > EVENT_CAP:
                    raise ResponseLimit(f"event stream exceeded {EVENT_CAP} events")
                if time.monotonic() > self._lease.deadline:
                    raise httpx.ReadTimeout("the request's overall deadline passed")
                yield part
                if self._abort_after and events >= self._abort_after:
                    self.aborted_after = self._abort_after
                    return
        except httpx.HTTPError as error:
            self.failure = error
            raise

    def close(self) -> None:
        if self._lease.released:
            return
        try:
            self._lease.release(overloaded=isinstance(self.failure, httpx.TimeoutException))
            self._on_close(self)  # before the inner stream closes: a recording files only complete answers
        finally:
            self._inner.close()

    def body(self) -> bytes:
        return b"".join(self._parts)
