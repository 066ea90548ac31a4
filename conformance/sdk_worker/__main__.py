"""An SDK worker process: `python -m conformance.sdk_worker PACKAGE LISTENING_FD`, started by the
run (`sdk_worker/relay.py`; `sdk_worker/__init__.py` says why), listening on a Unix socket the run
made.

It imports its SDK (through `PACKAGE_calls.py`) at once, then runs the calls the run sends over its
connection, each with a client of its own whose transport relays every request back over that
connection: it opens no socket to the endpoint, and knows neither its address nor the key (the run
fills in both). It ends when the run's process disconnects.
"""

from __future__ import annotations

import functools
import gc
import importlib
import os
import socket
import sys
import threading
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from itertools import count
from multiprocessing.connection import Connection
from typing import Any

from conformance.sdk_worker import PLACEHOLDER_KEY, PLACEHOLDER_ORIGIN

#: What a relayed request comes back as: (status, headers, body), or (None, fault kind, message).
Answer = tuple[Any, Any, Any]


def describe(error: BaseException, fault_of: Callable[[BaseException], int | None]) -> tuple[Any, ...]:
    """`error` as data the run turns back into a `Raised` (relay.py): its kinds, message, status and the number of
    the relayed request whose failure caused it (`fault_of`, looked for along its causes)."""
    fault, seen, cause = None, set(), error  # type: tuple[int | None, set[int], BaseException | None]
    while cause is not None and id(cause) not in seen and fault is None:
        seen.add(id(cause))
        fault = fault_of(cause)
        cause = cause.__cause__ or cause.__context__
    status = getattr(error, "status_code", None)
    return (tuple(kind.__name__ for kind in type(error).__mro__), str(error),
            status if isinstance(status, int) else None, fault)


class Relayed(Exception):
    """Marks an exception the relay raised for the run's transport (`relayed` numbers the request;
    not `request`, which httpx sets to its own Request)."""

    relayed: int


def relayed(base: type[Exception]) -> Any:
    """`base` (an httpx or httpx2 transport error, which the SDKs map) marked as relayed."""
    return type(f"Relayed{base.__name__}", (base, Relayed), {})


class Relay:
    """Sends requests to the run over the pipe and hands each thread its answer."""

    def __init__(self, send: Callable[[tuple[Any, ...]], None]):
        self.send = send
        self._ids = count()
        self._waiting: dict[int, tuple[threading.Event, list[Answer]]] = {}
        self._lock = threading.Lock()

    def exchange(self, call: int, step: int, method: str, url: str, headers: list[tuple[str, str]],
                 body: bytes) -> tuple[int, Answer]:
        """Relay one request; its id, and (status, headers, body) or (None, kind, message)."""
        request, arrived, answer = next(self._ids), threading.Event(), list[Answer]()
        with self._lock:
            self._waiting[request] = (arrived, answer)
        self.send(("request", call, step, request, method, url, headers, body))
        arrived.wait()
        return request, answer[0]

    def answered(self, request: int, answer: Answer) -> None:
        with self._lock:
            arrived, slot = self._waiting.pop(request)
        slot.append(answer)
        arrived.set()


class Link:
    """One process of the run connected to this worker (the run's own, a matrix's case worker): its
    calls, and the requests they relay back to it."""

    def __init__(self, worker: Worker, connection: Connection):
        self.worker, self.connection = worker, connection
        self._send_lock = threading.Lock()
        self.relay = Relay(self.send)

    def send(self, message: tuple[Any, ...]) -> None:
        with self._send_lock:
            self.connection.send(message)

    def listen(self, last: bool) -> None:
        """Read this process's messages until it disconnects; the first process to connect (the run's
        own) is `last`: when it goes, so does this worker."""
        try:
            while True:
                message = self.connection.recv()
                if message[0] == "call":  # a thread each: the run bounds how many are in flight
                    threading.Thread(target=self.run_call, args=message[1:], name="sdk-call", daemon=True).start()
                elif message[0] == "answer":
                    self.relay.answered(message[1], message[2])
        except (EOFError, OSError):
            pass
        self.connection.close()
        if last and self.worker.ends_with_run:
            os._exit(0)

    def run_call(self, call: int, timeout: float, steps: list[tuple[str, dict[str, Any]]]) -> None:
        worker = self.worker
        worker.imported.wait()
        if worker.unimportable is not None:
            self.send(("failed", call, worker.unimportable))
            return
        try:
            with ThreadPoolExecutor(max_workers=max(1, len(steps)), thread_name_prefix="sdk-step") as pool:
                outcomes = list(pool.map(lambda index: self.run_step(call, index, timeout, *steps[index]),
                                         range(len(steps))))
        except BaseException:  # a bug here, not a finding about the SDK
            self.send(("failed", call, "the SDK worker failed: " + traceback.format_exc(limit=4)))
            return
        self.send(("done", call, outcomes))

    def run_step(self, call: int, index: int, timeout: float, function: str,
                 arguments: dict[str, Any]) -> tuple[Any, Any]:
        package = self.worker.package
        try:
            note = getattr(self.worker.calls_module, function)(client(package, timeout, self.relay, call, index),
                                                                **arguments)
        except Exception as error:  # the finding: sent back as data
            return describe(error, lambda cause: cause.relayed if isinstance(cause, Relayed) else None), None
        return None, note


class Worker:
    """Serves one SDK's calls to every process that connects: in a process of its own, which ends with
    the run's (`ends_with_run`), or hosted in the run's process (`relay.HostedWorker`)."""

    def __init__(self, package: str, listening: socket.socket, ends_with_run: bool = True):
        self.package, self.listening, self.ends_with_run = package, listening, ends_with_run
        #: Set once the SDK is imported (or failed to be): no call runs while an import does.
        self.imported = threading.Event()
        self.calls_module: Any = None
        self.unimportable: str | None = None

    def import_sdk(self) -> None:
        # The import builds thousands of pydantic classes, and little garbage: without the cyclic
        # collector running over them again and again, it takes about a sixth less CPU.
        gc.disable()
        try:
            self.calls_module = importlib.import_module(f"conformance.sdk_worker.{self.package}_calls")
        except Exception as error:  # reported with every call
            self.unimportable = f"cannot import the {self.package} SDK: {type(error).__name__}: {error}"
        finally:
            gc.enable()
        self.imported.set()

    def accept(self) -> None:
        """Take each connection; the first is the run's (the socket's path is gone after it)."""
        first = True
        while True:
            try:
                connected, _ = self.listening.accept()
            except OSError:  # closed: a hosted worker's run ended
                return
            link = Link(self, Connection(connected.detach()))
            threading.Thread(target=link.listen, args=(first,), name="sdk-worker-link", daemon=True).start()
            first = False


def client(package: str, timeout: float, relay: Relay, call: int, step: int) -> Any:
    """The SDK's client, its requests relayed to the run: httpx for the openai SDK and for anthropic
    releases built on httpx, httpx2 for those built on httpx2 (2.x)."""
    sdk: Any = importlib.import_module(package)
    # Built on httpx2 (anthropic 2.x) or on httpx (the rest): the library its own client derives from.
    on_httpx2 = any(base.__module__.split(".")[0] == "httpx2" for base in sdk.DefaultHttpxClient.__mro__)
    library: Any = importlib.import_module("httpx2" if on_httpx2 else "httpx")
    http = library.Client(transport=relay_transport(library, relay, call, step), timeout=timeout)
    return (sdk.OpenAI if package == "openai" else sdk.Anthropic)(
        base_url=PLACEHOLDER_ORIGIN, api_key=PLACEHOLDER_KEY, max_retries=0, timeout=timeout, http_client=http)


def relay_transport(library: Any, relay: Relay, call: int, step: int) -> Any:
    """A transport of `library` (httpx or httpx2: the same API) relaying every request."""
    return relay_transport_class(library)(relay, call, step)


@functools.cache
def relay_transport_class(library: Any) -> type:
    """The relaying transport class of `library`. A timeout or a failed request in the run comes back
    as the library's ReadTimeout or ReadError, which the SDKs turn into their APITimeoutError and
    APIConnectionError."""
    timeout, error = relayed(library.ReadTimeout), relayed(library.ReadError)

    class RelayTransport(library.BaseTransport):  # type: ignore[name-defined,misc]
        def __init__(self, relay: Relay, call: int, step: int):
            self.relay, self.call, self.step = relay, call, step

        def handle_request(self, request: Any) -> Any:
            number, (status, headers, body) = self.relay.exchange(self.call, self.step, request.method,
                                                                  str(request.url), request.headers.multi_items(),
                                                                  request.read())
            if status is None:
                raised = (timeout if headers == "timeout" else error)(body, request=request)
                raised.relayed = number
                raise raised
            return library.Response(status, headers=headers, content=body, request=request)

    return RelayTransport


def main(arguments: list[str]) -> None:
    package, listening = arguments
    worker = Worker(package, socket.socket(fileno=int(listening)))
    threading.Thread(target=worker.accept, name="sdk-worker-accept", daemon=True).start()
    worker.import_sdk()
    threading.Event().wait()  # the run's own link ends the process


if __name__ == "__main__":
    main(sys.argv[1:])
