"""A small loopback HTTP server that misbehaves on purpose, one named mode at a time.

Whatever it does not misbehave on is forwarded to an upstream server (the reference server), so
the run around the misbehaviour is a normal one. Every loop is bounded (by bytes, events and
`MAX_SECONDS`) and ends early once the client goes away or the server is stopped.
"""

from __future__ import annotations

import functools
import json
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

#: No behaviour lasts longer than this, whoever is (or is not) reading.
MAX_SECONDS = 20.0
#: What the compression bombs unpack to: more than the memory a run may use.
BOMB_SIZE = 400 * 1024 * 1024


@functools.cache
def gzip_bomb() -> bytes:
    """BOMB_SIZE zero bytes, gzipped (about 2 MB on the wire)."""
    packer = zlib.compressobj(1, zlib.DEFLATED, 31)
    zeros = bytes(1 << 20)
    return b"".join(packer.compress(zeros) for _ in range(BOMB_SIZE >> 20)) + packer.flush()


@functools.cache
def double_gzip_bomb() -> bytes:
    """The bomb gzipped once more: a few kilobytes on the wire."""
    return zlib.compress(gzip_bomb(), 9, wbits=31)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args) -> None:
        """Quiet: the tests read reports, not access logs."""

    def do_GET(self) -> None:
        self._answer()

    def do_POST(self) -> None:
        self._answer()

    def _answer(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        owner = self.server.owner
        owner.note(self.headers)
        behaviour = MODES[owner.mode]
        if behaviour.applies(self.path, body, owner):
            behaviour.answer(self, body, owner)
        else:
            self.forward(body)

    def forward(self, body: bytes) -> None:
        """The upstream's answer, relayed byte for byte."""
        headers = {name: value for name, value in self.headers.items()
                   if name.lower() not in ("host", "content-length", "connection")}
        upstream = self.server.owner.upstream
        answer = upstream.request(self.command, self.path, content=body, headers=headers)
        self.send_response(answer.status_code)
        for name, value in answer.headers.multi_items():
            if name.lower() not in ("content-length", "transfer-encoding", "connection", "date", "server"):
                self.send_header(name, value)
        for name, value in self.server.owner.extra_headers:
            self.send_header(name, value)
        self.send_header("content-length", str(len(answer.content)))
        self.end_headers()
        self.wfile.write(answer.content)

    def raw(self, head: bytes, chunks: Iterable[bytes], pause: float = 0.0) -> None:
        """Write `head` and then `chunks`, `pause` seconds apart, until done, MAX_SECONDS pass, the
        client leaves or the server stops. The connection is closed afterwards."""
        self.close_connection = True
        ends = time.monotonic() + MAX_SECONDS
        stopping = self.server.owner.stopping
        try:
            for chunk in _chain(head, chunks):
                if time.monotonic() > ends or stopping.is_set():
                    return
                self.wfile.write(chunk)
                self.wfile.flush()
                if pause:
                    stopping.wait(pause)
        except (BrokenPipeError, ConnectionResetError):
            return


def _chain(head: bytes, chunks: Iterable[bytes]) -> Iterator[bytes]:
    yield head
    yield from chunks


def head(status: str = "200 OK", content_type: str = "application/json", length: int | None = None,
         extra: str = "") -> bytes:
    lines = [f"HTTP/1.1 {status}", f"content-type: {content_type}", "connection: close"]
    if length is not None:
        lines.append(f"content-length: {length}")
    if extra:
        lines.append(extra)
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def repeated(chunk: bytes, count: int) -> Iterator[bytes]:
    return (chunk for _ in range(count))


class Behaviour:
    """What a mode does to the requests it applies to (by default: legacy completions), and what
    it computes before the server starts (so the first answer is not late for that reason)."""

    def __init__(self, answer: Callable[[Handler, bytes, HostileServer], None],
                 applies: Callable[[str, bytes, HostileServer], bool] | None = None,
                 prepare: Callable[[], object] = lambda: None):
        self.answer, self.prepare = answer, prepare
        self.applies = applies or (lambda path, body, owner: path.endswith("/v1/completions"))


def _send_gzipped(handler: Handler, body: bytes) -> None:
    handler.raw(head(length=len(body), extra="content-encoding: gzip"), [body])


def _gzip_bomb(handler: Handler, *_) -> None:
    _send_gzipped(handler, gzip_bomb())


def _double_gzip(handler: Handler, *_) -> None:
    _send_gzipped(handler, double_gzip_bomb())


def _huge_body(handler: Handler, *_) -> None:
    mib = b"x" * (1 << 20)
    handler.raw(head(length=2048 << 20), repeated(mib, 2048))


def _many_events(handler: Handler, *_) -> None:
    batch = b"data: {}\n\n" * 10_000
    handler.raw(head(content_type="text/event-stream"), repeated(batch, 100))  # 10**6 events


def _long_line(handler: Handler, *_) -> None:
    handler.raw(head(content_type="text/event-stream"), _chain(b"data: ", repeated(b"x" * (1 << 20), 64)))


def _drip(handler: Handler, *_) -> None:
    body = json.dumps({"id": "drip", "object": "text_completion", "choices": []}).encode() * 100
    handler.raw(head(length=len(body)), (bytes([byte]) for byte in body), pause=0.05)


def _slow_headers(handler: Handler, *_) -> None:
    whole = head(length=2) + b"{}"
    handler.raw(b"", (bytes([byte]) for byte in whole), pause=0.05)


def _server_error(handler: Handler, *_) -> None:
    body = json.dumps({"error": {"message": "boom", "type": "server_error", "code": None}}).encode()
    handler.raw(head("500 Internal Server Error", length=len(body)), [body])


def _throttle_first(handler: Handler, *_) -> None:
    body = b'{"error": {"message": "slow down", "type": "rate_limit", "code": null}}'
    handler.raw(head("429 Too Many Requests", length=len(body), extra="retry-after: 0.2"), [body])


def _refuse_embeddings(status: str) -> Callable[[Handler, bytes, HostileServer], None]:
    """Refuse an embeddings request with `status` and an error envelope, as an endpoint does that
    takes no `encoding_format` (400) or serves this key no embeddings (401)."""
    def answer(handler: Handler, *_) -> None:
        body = json.dumps({"error": {"message": f"refused: {status}", "type": "invalid_request_error",
                                     "param": None, "code": None}}).encode()
        handler.raw(head(status, length=len(body)), [body])
    return answer


def _embeddings_with_encoding(path: str, body: bytes, owner: HostileServer) -> bool:
    return path.endswith("/embeddings") and b'"encoding_format"' in body


def _first_time(path: str, body: bytes, owner: HostileServer) -> bool:
    """True the first time a request (path and body) is seen: each is throttled once."""
    with owner.lock:
        seen = (path, body) in owner.seen
        owner.seen.add((path, body))
    return path.endswith("completions") and not seen


def _one_at_a_time(handler: Handler, body: bytes, owner: HostileServer) -> None:
    with owner.slot:
        owner.stopping.wait(owner.latency)
        handler.forward(body)


MODES: dict[str, Behaviour] = {
    "normal": Behaviour(lambda *_: None, lambda *_: False),
    "gzip-bomb": Behaviour(_gzip_bomb, prepare=gzip_bomb),
    "double-gzip": Behaviour(_double_gzip, prepare=double_gzip_bomb),
    "huge-body": Behaviour(_huge_body),
    "many-events": Behaviour(_many_events),
    "long-line": Behaviour(_long_line),
    "drip": Behaviour(_drip),
    "slow-headers": Behaviour(_slow_headers),
    "server-error": Behaviour(_server_error),
    "throttle-once": Behaviour(_throttle_first, _first_time),
    "one-at-a-time": Behaviour(_one_at_a_time, lambda *_: True),
    "embeddings-encoding-400": Behaviour(_refuse_embeddings("400 Bad Request"), _embeddings_with_encoding),
    "embeddings-401": Behaviour(_refuse_embeddings("401 Unauthorized"),
                                lambda path, *_: path.endswith("/embeddings")),
}


class LoopbackServer(ThreadingHTTPServer):
    """The tests' threaded HTTP server. Its listen backlog holds a whole run's requests in flight:
    with socketserver's 5, a loaded machine that accepts slowly overflows it, and the kernel resets
    connections a run then reports as the endpoint's fault (a test failed so, under load)."""

    daemon_threads = True
    request_queue_size = 128


class _Server(LoopbackServer):
    owner: HostileServer


class HostileServer:
    """`with HostileServer("drip", upstream_url) as server: ... server.base_url ...`.

    `extra_headers` are added to every forwarded answer (e.g. Set-Cookie); `cookies` collects the
    Cookie headers clients sent back. `latency` is the service time of `one-at-a-time`."""

    def __init__(self, mode: str, upstream: str, latency: float = 0.0,
                 extra_headers: tuple[tuple[str, str], ...] = ()):
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; modes: {sorted(MODES)}")
        self.mode, self.latency, self.extra_headers = mode, latency, extra_headers
        origin = httpx.URL(upstream)
        self.upstream = httpx.Client(base_url=f"{origin.scheme}://{origin.host}:{origin.port}", timeout=30)
        self.cookies: list[str] = []
        self.seen: set[tuple[str, bytes]] = set()
        self.lock = threading.Lock()
        self.slot = threading.Semaphore(1)
        self.stopping = threading.Event()
        self._httpd = _Server(("127.0.0.1", 0), Handler)
        self._httpd.owner = self
        self._thread = threading.Thread(target=self._httpd.serve_forever, name=f"hostile-{mode}", daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def note(self, headers) -> None:
        if headers.get("cookie"):
            with self.lock:
                self.cookies.append(headers["cookie"])

    def __enter__(self) -> HostileServer:
        MODES[self.mode].prepare()
        self._thread.start()
        return self

    def __exit__(self, *_) -> None:
        self.stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self.upstream.close()
        self._thread.join(timeout=10)
