"""The run's side of the SDK workers (`conformance.sdk_worker` says why they exist): starting them,
sending them calls, and sending the requests they relay through the check's own logging client."""

from __future__ import annotations

import atexit
import contextlib
import itertools
import os
import subprocess
import sys
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


class SdkWorker:
    """One SDK's worker process and the pipe to it; calls from many checks share it."""

    def __init__(self, package: str) -> None:
        self.package = package
        theirs_in, ours_out = os.pipe()
        ours_in, theirs_out = os.pipe()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "conformance.sdk_worker", package, str(theirs_in), str(theirs_out)],
            pass_fds=(theirs_in, theirs_out), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, env=worker_environment())
        os.close(theirs_in)
        os.close(theirs_out)
        #: The end of what the worker wrote to stderr, to say why it ended if it does.
        self._stderr_tail = b""
        threading.Thread(target=self._drain_stderr, name="sdk-worker-stderr", daemon=True).start()
        self._outgoing = Connection(ours_out, readable=False)
        self._incoming = Connection(ours_in, writable=False)
        self._send_lock = threading.Lock()
        self._ids = itertools.count()
        self._pending: dict[int, _Pending] = {}
        self._ended: str | None = None
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
        """Close this process's ends of the pipe, leaving the worker to the process that started it."""
        self._outgoing.close()
        self._incoming.close()

    def close(self) -> None:
        """End the worker (closing the pipe ends it; it is killed if it lingers)."""
        self._outgoing.close()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._requests.shutdown(wait=False, cancel_futures=True)

    def _send(self, message: tuple[Any, ...]) -> None:
        with self._send_lock:
            if self._ended is not None:
                raise WorkerFailed(self._ended)
            try:
                self._outgoing.send(message)
            except OSError as error:  # the worker is gone; its listener fails what was pending
                raise WorkerFailed(f"the {self.package} SDK's worker process cannot be reached: {error}") from None

    def _listen(self) -> None:
        try:
            while True:
                message = self._incoming.recv()
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
        try:
            code: int | None = self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            code = None
        said = self._stderr_tail.decode("utf-8", "replace").strip().splitlines()[-3:]
        with self._send_lock:
            self._ended = (f"the {self.package} SDK's worker process ended (exit code {code})"
                           + (": " + " / ".join(said) if said else ""))
        for pending in list(self._pending.values()):
            if not pending.done.done():
                pending.done.set_exception(WorkerFailed(self._ended))

    def _drain_stderr(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self._stderr_tail = (self._stderr_tail + line)[-STDERR_TAIL_BYTES:]

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


_workers: dict[str, SdkWorker] = {}
_workers_lock = threading.Lock()


def prestart(packages: Sequence[str] = PACKAGES) -> None:
    """Start these SDKs' workers now, so that they import the SDKs while the run gets ready; only
    where other cores can do that work (on one, each SDK's first call starts its worker). One
    worker for both SDKs was measured slower on two cores: its imports then run one after the other."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if cores > 1:
        for package in packages:
            shared(package)


def shared(package: str) -> SdkWorker:
    """The process's worker for `package`, started on first use. Workers keep no state between calls,
    so every run of the process (the tests', a library user's) shares them until it exits."""
    with _workers_lock:
        worker = _workers.get(package)
        if worker is None or worker.process.poll() is not None:
            # None yet, or one that died: the calls it was running failed with it, later ones get a new one.
            if not _workers:
                atexit.register(stop)
            worker = _workers[package] = SdkWorker(package)
        return worker


def _forget_workers_in_a_forked_child() -> None:
    """A forked child (a matrix worker) cannot use its parent's workers: their listening threads stayed
    in the parent. It closes its copies of their pipes (so a worker still ends when the parent does)
    and starts workers of its own when it needs them."""
    global _workers_lock
    _workers_lock = threading.Lock()  # perhaps held, at the fork, by a thread the child does not have
    for worker in _workers.values():
        worker.forget()
    _workers.clear()


os.register_at_fork(after_in_child=_forget_workers_in_a_forked_child)


def stop() -> None:
    """End the process's workers (at exit; closing the pipe alone would end them too)."""
    with _workers_lock:
        workers = list(_workers.values())
        _workers.clear()
    for worker in workers:
        worker.close()
