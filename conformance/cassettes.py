"""Record every HTTP interaction of a run into cassettes, one per check, and replay them offline.

Why not VCR.py's own patching: it patches httpx process-wide, so only one cassette can be active
at a time (checks run concurrently here), and it reads a streamed body to the end before handing
it over (the stream-abort probe must really close a stream early). Interception is therefore an
httpx transport: it tees the bytes as the client reads them and files each interaction under the
check named in `request.extensions`. The files are VCR.py cassettes, written and read with VCR.py's
own serializer, so other VCR.py tooling can open them.

Nothing secret reaches the disk: credential headers are dropped and the key's value is replaced
wherever it appears (URL, headers, body) before a cassette is written.
"""

from __future__ import annotations

import json
import re
import threading
from collections import defaultdict
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx
from vcr.request import Request as VcrRequest
from vcr.serialize import deserialize, serialize
from vcr.serializers import yamlserializer

from conformance.client import CHECK_EXTENSION, REDACTED, SECRET_HEADERS, Redactor, TeeStream

SETUP = "_setup"
METADATA_FILE = "run.json"
SECRET_QUERY_KEYS = re.compile(r"(key|token|secret|password|auth)", re.IGNORECASE)


class CassetteMiss(httpx.TransportError):
    """A request has no recorded answer: the cassette is missing or stale."""


def cassette_name(check_id: str) -> str:
    """A file name for a check id (`stop-sequence-in-output/chat` -> `stop-sequence-in-output__chat.yaml`)."""
    return re.sub(r"[^A-Za-z0-9_.-]", "__", check_id) + ".yaml"


class Scrubber:
    """Removes the API key and credential headers from what is about to be written."""

    def __init__(self, secret: str | None, others: tuple[str, ...] = ()):
        self.text = Redactor(secret, others).text

    def url(self, url: str) -> str:
        parts = urlsplit(url)
        query = urlencode([(k, REDACTED if SECRET_QUERY_KEYS.search(k) else v) for k, v in parse_qsl(parts.query)])
        return self.text(urlunsplit((parts.scheme, parts.netloc, parts.path, query, "")))

    def headers(self, headers: httpx.Headers) -> dict[str, list[str]]:
        kept: dict[str, list[str]] = defaultdict(list)
        for name, value in headers.multi_items():
            if name.lower() not in SECRET_HEADERS:
                kept[name.lower()].append(self.text(value))
        return dict(kept)

    def body(self, body: bytes) -> str:
        return self.text(body.decode("utf-8", errors="surrogateescape"))


class CassetteStore:
    """The interactions of one run, by check; written to a directory, or loaded from one."""

    def __init__(self, directory: Path):
        self.directory = directory
        self._interactions: dict[str, list[tuple[VcrRequest, dict[str, Any]]]] = defaultdict(list)
        self._lock = threading.Lock()

    def add(self, check: str, request: VcrRequest, response: dict[str, Any]) -> None:
        with self._lock:
            self._interactions[check].append((request, response))

    def save(self, metadata: dict[str, Any]) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        with self._lock:
            for check, pairs in sorted(self._interactions.items()):
                path = self.directory / cassette_name(check)
                path.write_text(serialize({"requests": [r for r, _ in pairs], "responses": [p for _, p in pairs]},
                                          yamlserializer), encoding="utf-8")
        (self.directory / METADATA_FILE).write_text(json.dumps(metadata, indent=2) + "\n", encoding="utf-8")

    @staticmethod
    def metadata(directory: Path) -> dict[str, Any]:
        path = directory / METADATA_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{directory} holds no recorded run ({METADATA_FILE} is missing); "
                                    "record one with `conformance run --record DIR`")
        return json.loads(path.read_text(encoding="utf-8"))

    def load(self, check: str) -> list[tuple[VcrRequest, dict[str, Any]]]:
        path = self.directory / cassette_name(check)
        if not path.is_file():
            return []
        requests, responses = deserialize(path.read_text(encoding="utf-8"), yamlserializer)[:2]
        return list(zip(requests, responses))


def _check_of(request: httpx.Request) -> str:
    return request.extensions.get(CHECK_EXTENSION, SETUP)


class RecordingTransport(httpx.BaseTransport):
    """Sends requests for real and records them, scrubbed, into a CassetteStore."""

    def __init__(self, store: CassetteStore, secret: str | None, inner: httpx.BaseTransport | None = None,
                 others: tuple[str, ...] = ()):
        """`others`: more values to scrub besides the key (--header values)."""
        self.store, self.scrub = store, Scrubber(secret, others)
        self.inner = inner or httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        recorded = VcrRequest(request.method, self.scrub.url(str(request.url)), self.scrub.body(request.read()),
                              self.scrub.headers(request.headers))

        def file(body: bytes) -> None:
            self.store.add(_check_of(request), recorded, {
                "status": {"code": response.status_code, "message": response.reason_phrase},
                "headers": self.scrub.headers(response.headers),
                "body": {"string": self.scrub.body(body)},
            })

        return httpx.Response(response.status_code, headers=response.headers,
                              stream=TeeStream(response.stream, file), extensions=response.extensions)

    def close(self) -> None:
        self.inner.close()


def _same_body(recorded: str | bytes | None, sent: bytes, scrub: Scrubber) -> bool:
    recorded_text = recorded.decode("utf-8", "surrogateescape") if isinstance(recorded, bytes) else recorded or ""
    sent_text = scrub.body(sent)
    try:
        return json.loads(recorded_text) == json.loads(sent_text)
    except ValueError:
        return recorded_text == sent_text


def _path(url: str) -> tuple[str, str]:
    """What a replay matches on: the path and query; the recorded host and port may differ."""
    parts = urlsplit(url)
    return parts.path, parts.query


class ReplayTransport(httpx.BaseTransport):
    """Answers from cassettes, in recorded order per check; never opens a socket."""

    def __init__(self, store: CassetteStore, secret: str | None = None):
        self.store, self.scrub = store, Scrubber(secret)
        self._remaining: dict[str, list[tuple[VcrRequest, dict[str, Any]]]] = {}
        self._lock = threading.Lock()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        check = _check_of(request)
        url = self.scrub.url(str(request.url))
        with self._lock:
            if check not in self._remaining:
                self._remaining[check] = self.store.load(check)
            pending = self._remaining[check]
            for index, (recorded, response) in enumerate(pending):
                if recorded.method == request.method and _path(recorded.uri) == _path(url) \
                        and _same_body(recorded.body, request.read(), self.scrub):
                    del pending[index]
                    break
            else:
                raise CassetteMiss(
                    f"no recorded answer for {request.method} {url} in "
                    f"{self.store.directory / cassette_name(check)} (the cassette is missing or the check changed "
                    f"since it was recorded); re-record with `conformance run --record {self.store.directory}`")
        body = response["body"]["string"]
        content = body if isinstance(body, bytes) else body.encode("utf-8", "surrogateescape")
        headers = [(name, value) for name, values in response["headers"].items() for value in values]
        return httpx.Response(response["status"]["code"], headers=headers, stream=httpx.ByteStream(content))
