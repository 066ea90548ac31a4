"""The run's side of the SDK workers (`conformance.sdk_worker` says why they exist): starting them,
sending them calls, and sending the requests they relay through the check's own logging client."""

from __future__ import annotations

import atexit
import contextlib
import itertools
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any

import httpx

from conformance.exceptions import ConformanceError, RequestTimeout
from conformance.sdk_worker import PACKAGES, PLACEHOLDER_KEY, PLACEHOLDER_ORIGIN

if TYPE_CHECKING:
    from conformance.client import EndpointClient
    from conformance.exchange import Exchange

#: One SDK call as the worker runs it: a function of PACKAGE_calls.py by name, and its arguments.
Call = tuple[str, dict[str, Any]]


class WorkerFailed(ConformanceError):
    """The SDK worker could not run a call (an SDK that does not import, a worker that ended)."""


@dataclass(frozen=True)
class Raised:
    """What an SDK call raised in the worker, as data."""

    #: Its class's names, most derived first (`BadRequestError`, `APIStatusError`, `APIError`, ...).
    kinds: tuple[str, ...]
    message: str
    #: The HTTP status of an APIStatusError.
    status_code: int | None = None
    #: What the run's transport raised under it (a timeout, a broken connection, the token budget).
    fault: BaseException | None = None

    @property
    def name(self) -> str:
        return self.kinds[0]

    def is_a(self, *names: str) -> bool:
        """Whether it is an instance of a class named one of `names`."""
        return any(name in self.kinds for name in names)

    def __str__(self) -> str:
        return self.message


@dataclass
class _Pending:
    """A call the worker is running: where its requests go, and what they raised here."""

    client: EndpointClient
    prefix: str
    https: list[httpx.Client]
    done: Future[list[tuple[Any, Any]]] = field(default_factory=Future)
    faults: dict[int, BaseException] = field(default_factory=dict)


#: A call may take this many times the request timeout, and this many seconds more, before the
#: worker is held to have hung (its requests, bounded by the transport, are long done by then).
CALL_BOUND_FACTOR, CALL_BOUND_EXTRA_S = 10, 60
#: How much of what a worker wrote to stderr is kept, to say why it ended.
STDERR_TAIL_BYTES = 4096


def listening_socket() -> tuple[str, str, socket.socket]:
    """A Unix socket listening in a new private directory (0700: this user's only): the directory,
    the socket's path, the socket."""
    directory = tempfile.mkdtemp(prefix="conformance-sdk-")
    address = os.path.join(directory, "socket")
    listening = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listening.bind(address)
        listening.listen(64)
    except OSError:
        listening.close()
        shutil.rmtree(directory, ignore_errors=True)
        raise
    return directory, address, listening


class SdkWorker:
    """One SDK's worker process, listening on a Unix socket in a private directory, which is removed
    as soon as the process that started it has connected (`Channel`): nothing is left on disk
    however that process ends. Another process (a fork) starts or hosts its own."""

    def __init__(self, package: str) -> None:
        self.package = package
        self.directory, self.address, listening = listening_socket()
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "conformance.sdk_worker", package, str(listening.fileno())],
                pass_fds=(listening.fileno(),), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE, env=worker_environment())
        finally:
            listening.close()
        #: The process that started it: the one that may wait for it, and whose leaving ends it.
        self.owner = os.getpid()
        #: The end of what the worker wrote to stderr, to say why it ended if it does.
        self._stderr_tail = b""
        threading.Thread(target=self._drain_stderr, name="sdk-worker-stderr", daemon=True).start()

    def alive(self) -> bool:
        """Whether it still runs (known only to its owner; another process finds out by connecting)."""
        return os.getpid() != self.owner or self.process.poll() is None

    def ended(self) -> str:
        """Why a connection to it closed: its exit code and last words, as its owner knows them."""
        if os.getpid() != self.owner:
            return f"the connection to the {self.package} SDK's worker process was closed"
        try:
            code: int | None = self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            code = None
        said = self._stderr_tail.decode("utf-8", "replace").strip().splitlines()[-3:]
        return f"the {self.package} SDK's worker process ended (exit code {code})" + (
            ": " + " / ".join(said) if said else "")

    def close(self) -> None:
        """Wait for it to end (its owner's connection closed ends it; it is killed if it lingers)."""
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        shutil.rmtree(self.directory, ignore_errors=True)

    def _drain_stderr(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self._stderr_tail = (self._stderr_tail + line)[-STDERR_TAIL_BYTES:]


class HostedWorker:
    """An SDK's worker hosted in the run's own process: the same service over the same socket, its
    SDK imported here. For a run that forks case workers (a matrix on several cores): the SDK's
    modules are then imported once and shared by every fork, where a worker process of its own
    (about 130 MB for both SDKs) would be memory no fork shares. A fork hosts one of its own, over
    the modules it inherited (nothing is imported again). Its socket's path goes once its process
    connected, as a worker process's does."""

    def __init__(self, package: str) -> None:
        from conformance.sdk_worker.__main__ import Worker

        self.package = package
        self.directory, self.address, self._listening = listening_socket()
        self.owner = os.getpid()
        served = Worker(package, self._listening, ends_with_run=False)
        served.import_sdk()
        threading.Thread(target=served.accept, name="sdk-host", daemon=True).start()

    def alive(self) -> bool:
        return os.getpid() == self.owner  # a fork's copy serves nobody: its threads stayed behind

    def ended(self) -> str:
        return f"the {self.package} SDK's hosted worker closed"

    def forget(self) -> None:
        """Close this process's copy of the socket (a fork's), leaving it to the process serving it."""
        self._listening.close()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._listening.shutdown(socket.SHUT_RDWR)
        self._listening.close()
        shutil.rmtree(self.directory, ignore_errors=True)


class Channel:
    """One process's connection to an SDK worker: the calls it sends, and the requests they relay."""

    def __init__(self, worker: SdkWorker | HostedWorker) -> None:
        self.worker, self.package = worker, worker.package
        connected = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            connected.connect(worker.address)
        except OSError:
            connected.close()
            raise
        self._connection = Connection(connected.detach())
        self._send_lock = threading.Lock()
        self._ids = itertools.count()
        self._pending: dict[int, _Pending] = {}
        #: Why calls fail, once the connection closed.
        self.ended: str | None = None
        # The requests the worker relays wait here for a slot of the run's limit, like any check's.
        self._requests = ThreadPoolExecutor(max_workers=64, thread_name_prefix="sdk-request")
        threading.Thread(target=self._listen, name="sdk-worker", daemon=True).start()

    def call(self, client: EndpointClient, check: str | None, prefix: str, steps: Sequence[Call],
             logs: Sequence[list[Exchange]]) -> list[tuple[Raised | None, str | None]]:
        """Run `steps` at once in the worker with SDK clients whose base URL stands for `prefix`;
        each step's exchanges go into its log. What each raised (or None) and its note."""
        number = next(self._ids)
        pending = _Pending(client, prefix, [client.logging_http_client(check, log) for log in logs])
        self._pending[number] = pending
        try:
            self._send(("call", number, client.timeout, list(steps)))
            # Every request of the call is bounded by the transport; this bounds a worker that hangs.
            outcomes = pending.done.result(timeout=CALL_BOUND_FACTOR * client.timeout + CALL_BOUND_EXTRA_S)
        except TimeoutError:
            raise WorkerFailed(f"the {self.package} SDK's worker did not finish a call in "
                               f"{CALL_BOUND_FACTOR * client.timeout + CALL_BOUND_EXTRA_S:g}s") from None
        finally:
            del self._pending[number]
            for http in pending.https:
                http.close()
        return [(None if described is None else raised_of(described, pending.faults), note)
                for described, note in outcomes]

    def forget(self) -> None:
        """Close this process's copy of the connection (a forked child's), leaving it to its owner."""
        self._connection.close()

    def close(self) -> None:
        """Close the connection: shut down first, which the worker sees at once (a close alone waits
        for this process's listening thread to leave its read)."""
        with contextlib.suppress(OSError):
            handle = socket.socket(fileno=self._connection.fileno())
            handle.shutdown(socket.SHUT_RDWR)
            handle.detach()  # the connection closes the descriptor
        self._connection.close()
        self._requests.shutdown(wait=False, cancel_futures=True)

    def _send(self, message: tuple[Any, ...]) -> None:
        with self._send_lock:
            if self.ended is not None:
                raise WorkerFailed(self.ended)
            try:
                self._connection.send(message)
            except OSError as error:  # the worker is gone; its listener fails what was pending
                raise WorkerFailed(f"the {self.package} SDK's worker process cannot be reached: {error}") from None

    def _listen(self) -> None:
        try:
            while True:
                message = self._connection.recv()
                pending = self._pending.get(message[1])
                if pending is None:
                    continue
                if message[0] == "request":
                    self._requests.submit(self._relay, pending, *message[2:])
                elif message[0] == "done":
                    pending.done.set_result(message[2])
                else:  # "failed"
                    pending.done.set_exception(WorkerFailed(message[2]))
        except (EOFError, OSError):
            pass
        ended = self.worker.ended()
        with self._send_lock:
            self.ended = ended
        for pending in list(self._pending.values()):
            if not pending.done.done():
                pending.done.set_exception(WorkerFailed(ended))

    def _relay(self, pending: _Pending, step: int, request: int, method: str, url: str,
               headers: list[tuple[str, str]], body: bytes) -> None:
        """Send one of the worker's requests through the check's logging client; answer it redacted."""
        redactor = pending.client.redactor
        try:
            if not url.startswith(PLACEHOLDER_ORIGIN + "/"):
                raise WorkerFailed(f"the SDK asked for {url!r}, not a path under the base URL")
            key = pending.client.api_key or "no-key"
            http = pending.https[step]
            outgoing = http.build_request(method, pending.prefix + url[len(PLACEHOLDER_ORIGIN):], content=body,
                                          headers=[(name, value.replace(PLACEHOLDER_KEY, key))
                                                   for name, value in headers if name.lower() != "host"])
            response = http.send(outgoing, stream=True)
            try:
                raw = b"".join(response.iter_raw())
            finally:
                response.close()
        except Exception as error:  # the worker's SDK raises it as its own transport error
            pending.faults[request] = error
            kind = "timeout" if isinstance(error, (httpx.TimeoutException, RequestTimeout)) else "error"
            answer: tuple[Any, Any, Any] = (None, kind, redactor.text(f"{type(error).__name__}: {error}"))
        else:
            answer = (response.status_code, [(name, redactor.text(value)) for name, value in
                                             response.headers.multi_items()], redactor.bytes(raw))
        with contextlib.suppress(WorkerFailed):  # the call already failed with the worker
            self._send(("answer", request, answer))


#: What of the run's environment a worker gets: where Python and this package are, the locale. Not
#: the rest, which may hold keys (OPENAI_API_KEY, an --endpoint-key variable).
INHERITED = ("PATH", "HOME", "LANG", "TMPDIR", "VIRTUAL_ENV", "DEFER_PYDANTIC_BUILD")


def worker_environment() -> dict[str, str]:
    """A worker's environment: INHERITED, Python's own variables, and this package's copy first on
    the path, wherever the worker's working directory is."""
    here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    kept = {name: value for name, value in os.environ.items()
            if name in INHERITED or name.startswith(("PYTHON", "LC_"))}
    return {**kept, "PYTHONPATH": os.pathsep.join(filter(None, [here, os.environ.get("PYTHONPATH")]))}


def raised_of(described: tuple[Any, ...], faults: dict[int, BaseException]) -> Raised:
    kinds, message, status, fault = described
    return Raised(tuple(kinds), message, status, None if fault is None else faults.get(fault))


_workers: dict[str, SdkWorker | HostedWorker] = {}
_channels: dict[str, Channel] = {}
_lock = threading.Lock()


def prestart(packages: Sequence[str] = PACKAGES) -> None:
    """Start these SDKs' workers now, so that they import the SDKs while the run gets ready; only
    where other cores can do that work (on one, each SDK's first call starts its worker). One
    worker for both SDKs was measured slower on two cores: its imports then run one after the other."""
    from conformance.workers import usable_cores

    if usable_cores() > 1:
        for package in packages:
            shared(package)


def shared(package: str) -> Channel:
    """This process's channel to the worker for `package`, the worker started on first use. Workers
    keep no state between calls, so every run of the process (the tests', a library user's) shares
    them until it exits; a matrix's forked case workers connect to their run's."""
    with _lock:
        channel = _channels.get(package)
        if channel is not None and channel.ended is None and channel.worker.alive():
            return channel
        worker = _workers.get(package)
        if isinstance(worker, HostedWorker) and not worker.alive():  # a fork's: host one here, as the run did
            return connected(package, hosted(package))
        if worker is not None and worker.alive():
            with contextlib.suppress(OSError):  # ended, or another process's (its socket is gone): our own, below
                channel = _channels[package] = Channel(worker)
                return channel
        # None yet, or one that died: the calls it was running failed with it, later ones get a new one.
        if not any(known.owner == os.getpid() for known in _workers.values()):
            atexit.register(stop)
        worker = _workers[package] = SdkWorker(package)
        return connected(package, worker)


def connected(package: str, worker: SdkWorker | HostedWorker) -> Channel:
    """This process's channel to a worker it just started or hosted; then the socket's path goes."""
    channel = _channels[package] = Channel(worker)
    shutil.rmtree(worker.directory, ignore_errors=True)
    return channel


def host_here(packages: Sequence[str] = PACKAGES) -> None:
    """Serve these SDKs from this process from now on (`HostedWorker`): before a run forks its case
    workers. Workers already started for them are ended."""
    stop()
    with _lock:
        atexit.register(stop)
        for package in packages:
            connected(package, hosted(package))


def hosted(package: str) -> HostedWorker:
    worker = _workers[package] = HostedWorker(package)
    return worker


def _forget_channels_in_a_forked_child() -> None:
    """A forked child (a matrix's case worker) cannot use its parent's channels: their listening
    threads stayed in the parent. It closes its copies of them and opens its own to the same
    workers when it needs them."""
    global _lock
    _lock = threading.Lock()  # perhaps held, at the fork, by a thread the child does not have
    for channel in _channels.values():
        channel.forget()
    _channels.clear()


os.register_at_fork(after_in_child=_forget_channels_in_a_forked_child)


def stop() -> None:
    """Close this process's channels, and end the workers it started (at exit)."""
    with _lock:
        channels, workers = list(_channels.values()), list(_workers.values())
        _channels.clear()
        _workers.clear()
    for channel in channels:
        channel.close()
    for worker in workers:
        if worker.owner == os.getpid():
            worker.close()
        elif isinstance(worker, HostedWorker):  # a fork's copy
            worker.forget()
