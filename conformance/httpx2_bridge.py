"""Our httpx transport under an httpx2 client: the anthropic SDK (2.x) is built on httpx2, a fork
whose objects httpx's do not pass for, yet its requests must go the run's one way (bounded,
retried, recorded, replayed, redacted: client.py) like the openai SDK's.

The bridge converts each request and response at the boundary, streams the body through
unchanged (so bounds apply as bytes arrive, and a stream can be left early), and turns httpx's
transport errors into httpx2's, which the SDK knows (a timeout stays a timeout).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import cast

import httpx
import httpx2


class _BridgedStream(httpx2.SyncByteStream):
    """An httpx response body read through httpx2."""

    def __init__(self, response: httpx.Response, request: httpx2.Request):
        self.response, self.request = response, request

    def __iter__(self) -> Iterator[bytes]:
        with translated_errors(self.request):
            yield from cast(httpx.SyncByteStream, self.response.stream)  # our transport's BoundedStream

    def close(self) -> None:
        self.response.close()


class translated_errors:
    """httpx's transport errors raised as httpx2's (the cause kept), so the SDK maps them as its own."""

    def __init__(self, request: httpx2.Request):
        self.request = request

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, error, traceback) -> None:
        if isinstance(error, httpx.TimeoutException):
            raise httpx2.ReadTimeout(str(error), request=self.request) from error
        if isinstance(error, httpx.TransportError):
            raise httpx2.ReadError(str(error), request=self.request) from error


class Httpx2Bridge(httpx2.BaseTransport):
    """An httpx2 transport sending through an httpx one."""

    def __init__(self, inner: httpx.BaseTransport):
        self.inner = inner

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        outgoing = httpx.Request(request.method, str(request.url), headers=request.headers.multi_items(),
                                 content=request.read(), extensions=dict(request.extensions))
        with translated_errors(request):
            response = self.inner.handle_request(outgoing)
        return httpx2.Response(response.status_code, headers=response.headers.multi_items(),
                               stream=_BridgedStream(response, request), extensions=dict(response.extensions))

    def close(self) -> None:
        self.inner.close()


def bridged_client(inner: httpx.BaseTransport, headers: dict[str, str], params: httpx.QueryParams,
                   timeout: float) -> httpx2.Client:
    """An httpx2 client whose requests go through `inner`, as `EndpointClient._client` builds httpx ones."""
    return httpx2.Client(headers=headers, params=str(params), timeout=httpx2.Timeout(timeout),
                         follow_redirects=False, transport=Httpx2Bridge(inner))
