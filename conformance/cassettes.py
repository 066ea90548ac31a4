"""Record every HTTP interaction of a run into cassettes, one per check, and replay them offline.

Why not VCR.py's own patching: it patches httpx process-wide, so only one cassette can be active
at a time (checks run concurrently here), and it reads a streamed body to the end before handing
it over (the stream-abort probe must really close a stream early). Interception is therefore an
httpx transport under the client's bounded one, which keeps each body as it is read (redacted) in
the request's Exchange; when the body is closed, the interaction is filed under the check named in
`request.extensions`. The files are VCR.py cassettes, written and read with VCR.py's own
serializer, so other VCR.py tooling can open them.

Nothing secret reaches the disk: credential headers are dropped and every spelling of the run's
secrets is replaced wherever it appears (URL, headers, body) before an interaction is kept, and
once more in the serialized text, since a serializer may spell a value differently.
"""

from __future__ import annotations

import json
import re
import threading
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx
from vcr.request import Request as VcrRequest
from vcr.serialize import deserialize, serialize
from vcr.serializers import yamlserializer

from conformance.client import CHECK_EXTENSION, EXCHANGE_EXTENSION
from conformance.exceptions import ConformanceError
from conformance.exchange import Exchange
from conformance.redaction import REDACTED, SECRET_HEADERS, Redactor
from conformance.transport import network_transport

SETUP = "_setup"
METADATA_FILE = "run.json"
#: The fields of run.json a replay reads, all strings.
METADATA_TEXT = ("endpoint", "base_url", "model")
SECRET_QUERY_KEYS = re.compile(r"(key|token|secret|password|auth)", re.IGNORECASE)


class CassetteMiss(ConformanceError, httpx.TransportError):
    """A request has no recorded answer in its check's cassette: the check changed since it was
    recorded (stale). A check with no cassette at all is not replayed (`CassetteStore.recorded`)."""


#: Between a model's folder and a check id in a matrix run's cassette key (no check id holds it).
MODEL_SEPARATOR = "::"


def cassette_name(check_id: str) -> str:
    """A file name for a check id (`stop-sequence-in-output/chat` -> `stop-sequence-in-output__chat.yaml`)."""
    return model_folder(check_id) + ".yaml"


def model_folder(model: str) -> str:
    """A file or folder name for an id (`accounts/x/models/y` -> `accounts__x__models__y`)."""
    return re.sub(r"[^A-Za-z0-9_.-]", "__", model)


def case_cassette(model: str, check_id: str) -> str:
    """The cassette key of a check on one model of a matrix run: its file goes in the model's folder."""
    return f"{model_folder(model)}{MODEL_SEPARATOR}{check_id}"


def cassette_path(directory: Path, key: str) -> Path:
    """Where a cassette key's file is: DIR/<check>.yaml, or DIR/<model>/<check>.yaml in a matrix."""
    folder, separator, check = key.rpartition(MODEL_SEPARATOR)
    return (directory / folder if separator else directory) / cassette_name(check)


class Scrubber:
    """Removes the run's secrets and credential headers from what is about to be written."""

    def __init__(self, redactor: Redactor):
        self.text = redactor.text

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

    def __init__(self, directory: Path, redactor: Redactor | None = None):
        self.directory = directory
        self.redactor = redactor or Redactor()
        self._interactions: dict[str, list[tuple[VcrRequest, dict[str, Any]]]] = defaultdict(list)
        self._lock = threading.Lock()

    def add(self, check: str, request: VcrRequest, response: dict[str, Any]) -> None:
        with self._lock:
            self._interactions[check].append((request, response))

    def save(self, metadata: dict[str, Any]) -> list[Path]:
        """Write this run's cassettes and `run.json`; returns the cassettes it replaced wholesale.

        A directory recorded from the same endpoint and model keeps the cassettes of checks this
        run did not record (a `-k` subset updates them), and `run.json` lists every check the
        directory holds. A directory recorded from another endpoint or model is replaced whole:
        its cassettes are removed first, so no directory ever mixes two recordings."""
        self.directory.mkdir(parents=True, exist_ok=True)
        try:
            previous = self.metadata(self.directory)
        except (OSError, ValueError):
            previous = {}
        removed: list[Path] = []
        if previous and recording_identity(previous) != recording_identity(metadata):
            removed = sorted(self.directory.rglob("*.yaml"))
            for path in removed:
                path.unlink()
        with self._lock:
            for check, pairs in sorted(self._interactions.items()):
                path = cassette_path(self.directory, check)
                path.parent.mkdir(exist_ok=True)
                text = serialize({"requests": [r for r, _ in pairs], "responses": [p for _, p in pairs]},
                                 yamlserializer)
                path.write_text(self.redactor.text(text), encoding="utf-8")
            recorded = set(self._interactions) - {SETUP}
        kept = set(previous.get("checks", [])) if previous and not removed else set()
        metadata = {**metadata, "checks": sorted(kept | recorded)}
        (self.directory / METADATA_FILE).write_text(self.redactor.text(json.dumps(metadata, indent=2)) + "\n",
                                                    encoding="utf-8")
        return removed

    @staticmethod
    def metadata(directory: Path) -> dict[str, Any]:
        """The recorded run's `run.json`; ValueError (one line) when it is not one."""
        path = directory / METADATA_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{directory} holds no recorded run ({METADATA_FILE} is missing); "
                                    "record one with `conformance run --record DIR`")
        try:
            recorded = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, RecursionError) as problem:
            raise ValueError(f"{path} is not JSON ({type(problem).__name__}); re-record the run") from None
        if not isinstance(recorded, dict) or any(not isinstance(recorded.get(name), str) for name in METADATA_TEXT) \
                or type(recorded.get("context_window")) not in (int, type(None)) or not recorded_models(recorded):
            raise ValueError(f"{path} is not a recorded run's metadata (it needs the strings "
                             f"{', '.join(METADATA_TEXT)} and an integer or null context_window); re-record the run")
        return recorded

    def recorded(self, check: str) -> bool:
        """Whether this directory holds a cassette for `check` (a check added since has none)."""
        return cassette_path(self.directory, check).is_file()

    def not_recorded(self, check: str, entry: str) -> str:
        """Why a check without a cassette is not judged in a replay, and how to record it: a check
        added after the recording is news, not a fault (a stale cassette is one: CassetteMiss)."""
        return (f"not recorded in {self.directory}: record it with "
                f"`conformance run --record {self.directory} -k {entry}` against the recorded endpoint")

    def load(self, check: str) -> list[tuple[VcrRequest, dict[str, Any]]]:
        path = cassette_path(self.directory, check)
        if not path.is_file():
            return []
        requests, responses = deserialize(path.read_text(encoding="utf-8"), yamlserializer)[:2]
        return list(zip(requests, responses, strict=True))


class FiledOnClose(httpx.SyncByteStream):
    """Passes a response body through untouched and calls `on_close` when the reader closes it:
    by then the bounded transport above has kept the body, redacted, in the request's Exchange."""

    def __init__(self, inner: httpx.SyncByteStream, on_close: Callable[[], None]):
        self._inner, self._on_close = inner, on_close

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._inner)

    def close(self) -> None:
        try:
            self._inner.close()
        finally:
            self._on_close()


def recorded_models(recorded: dict[str, Any]) -> bool:
    """Whether run.json's `models` (a matrix recording's; absent in a one-model one) is a list of
    objects with a string id, an integer or null context window, and a string or null problem."""
    models = recorded.get("models", [])
    return isinstance(models, list) and all(
        isinstance(model, dict) and isinstance(model.get("id"), str)
        and type(model.get("context_window")) in (int, type(None)) and type(model.get("problem")) in (str, type(None))
        for model in models)


def recording_identity(metadata: dict[str, Any]) -> tuple[Any, ...]:
    """What makes two recordings the same endpoint's: its name (`reference-openai` for the embedded
    server, whose port changes every run), the base URL's path, and the model."""
    return (metadata.get("endpoint"), urlsplit(str(metadata.get("base_url", ""))).path, metadata.get("model"),
            tuple(str(model.get("id")) for model in metadata.get("models") or () if isinstance(model, dict)))


def _check_of(request: httpx.Request) -> str:
    return request.extensions.get(CHECK_EXTENSION, SETUP)


class RecordingTransport(httpx.BaseTransport):
    """Sends requests for real and records them, scrubbed of the store's secrets, into a CassetteStore."""

    def __init__(self, store: CassetteStore, inner: httpx.BaseTransport | None = None):
        self.store, self.scrub = store, Scrubber(store.redactor)
        self.inner = inner or network_transport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        recorded = VcrRequest(request.method, self.scrub.url(str(request.url)), self.scrub.body(request.read()),
                              self.scrub.headers(request.headers))

        def file() -> None:
            # Every request comes through the client's BoundedTransport, which files the Exchange:
            # the body as read and redacted once, there.
            exchange: Exchange = request.extensions[EXCHANGE_EXTENSION]
            if exchange.failure:
                return  # no complete answer (a timeout, a cap): nothing a replay could serve as one
            self.store.add(_check_of(request), recorded, {
                "status": {"code": response.status_code, "message": response.reason_phrase},
                "headers": self.scrub.headers(response.headers),
                "body": {"string": exchange.body.decode("utf-8", "surrogateescape")},
            })

        return httpx.Response(response.status_code, headers=response.headers,
                              stream=FiledOnClose(cast(httpx.SyncByteStream, response.stream), file),
                              extensions=response.extensions)

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

    def __init__(self, store: CassetteStore):
        self.store, self.scrub = store, Scrubber(store.redactor)
        self._remaining: dict[str, list[tuple[VcrRequest, dict[str, Any]]]] = {}
        self._lock = threading.Lock()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        check = _check_of(request)
        url = self.scrub.url(str(request.url))
        with self._lock:
            if check not in self._remaining:
                self._remaining[check] = self.store.load(check)
            pending = self._remaining[check]
            for index, (recorded, response) in enumerate(pending):  # noqa: B007  (used after the break)
                if recorded.method == request.method and _path(recorded.uri) == _path(url) \
                        and _same_body(recorded.body, request.read(), self.scrub):
                    del pending[index]
                    break
            else:
                why = "stale: the check changed since it was recorded" if self.store.recorded(check) else "missing"
                raise CassetteMiss(
                    f"no recorded answer for {request.method} {url} in "
                    f"{cassette_path(self.store.directory, check)} (the cassette is {why}); "
                    f"re-record with `conformance run --record {self.store.directory}`")
        body = response["body"]["string"]
        content = body if isinstance(body, bytes) else body.encode("utf-8", "surrogateescape")
        headers = [(name, value) for name, values in response["headers"].items() for value in values]
        return httpx.Response(response["status"]["code"], headers=headers, stream=httpx.ByteStream(content))
