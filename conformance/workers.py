"""A live matrix run's cases judged by worker processes, one per core (`--workers`).

One process runs Python on one core at a time (the GIL), and judging hundreds of models is
CPU-bound: building, sending and parsing requests and judging the answers. So a live matrix run
forks worker processes once pytest has collected its cases and the endpoint is resolved (the
listing and the preflights are the run's, sent once), one per core but the run's own, which judges
a share too. Each worker judges its share exactly as the run would (`Job.judge`, with clients of
its own under the same transport bounds and retry policy) and sends each result back as it is
reached; the run's pytest items, progress and reports take them as if judged in-process.

What stays one for the whole run: the token budget (`--max-tokens-budget`) is one set of books in
shared memory (`accounting.SharedTokenLedger`), reserved from and charged by every worker; the
requests in flight are split: each worker holds its share of `--concurrency` (the shares add up to
it, so the run never has more in flight), and adapts its share to the endpoint as the run would.
A check re-run after a timeout sends one request at a time within its worker. A worker that dies
leaves its unjudged cases as `error`s, never as passes.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import os
import pickle
import signal
import sys
import threading
import traceback
from concurrent.futures import Future, ThreadPoolExecutor
from multiprocessing.connection import Connection, Pipe
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from conformance.results import CheckResult
    from conformance.runner import ConformanceRun, Job


def usable_cores() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def default_workers() -> int:
    """One worker per usable core. Workers are forked (they inherit the collected run: nothing is
    re-imported or listed again), so only where fork is safe with the libraries loaded, Linux."""
    return usable_cores() if sys.platform.startswith("linux") else 1


#: The run's own process judges this much of a worker's part: it also runs the pytest items and
#: takes every worker's results (a 200-model run measured 40 s of CPU in it to a worker's 33 s, with
#: equal parts).
KEPT_WEIGHT = 0.8


def parts(jobs: list[Job], count: int) -> list[list[Job]]:
    """`jobs` dealt into `count` parts, in turn (each part a mix of every check), the first
    (the run's own) KEPT_WEIGHT of the others' size."""
    weights = [KEPT_WEIGHT] + [1.0] * (count - 1)
    dealt: list[list[Job]] = [[] for _ in range(count)]
    for job in jobs:
        dealt[min(range(count), key=lambda part: (len(dealt[part]) + 1) / weights[part])].append(job)
    return dealt


def shares(concurrency: int, count: int) -> list[int]:
    """`concurrency` split into `count` shares of at least one that add up to it."""
    return [concurrency // count + (index < concurrency % count) for index in range(count)]


class Workers:
    """The worker processes judging `jobs` for `run` beside the run's own process, and the threads
    collecting their results. Of `count` parts, the run's process keeps the first (`kept`, with
    `kept_share` requests in flight) and forks a worker for each other."""

    def __init__(self, run: ConformanceRun, jobs: list[Job], count: int):
        from conformance.accounting import SharedTokenLedger

        self.stats = run.stats
        self._stopping = False
        if run.stats.token_budget is not None:
            run.stats.ledger = SharedTokenLedger(run.stats.ledger)
        split, dealt = shares(run.concurrency, count), parts(jobs, count)
        self.kept, self.kept_share = dealt[0], split[0]
        self._children: list[tuple[int, Connection, list[Job]]] = []
        from conformance.sdk_worker import relay

        # The SDKs imported here once, before the fork, are shared by every worker (sdk_worker/relay.py).
        relay.host_here()
        # What the run built so far (the modules, pytest's items, the jobs) lives until it ends: no
        # collection goes through it, in a worker (where that would copy every page it touches) or
        # in the run's process (where each full collection took tenths of a second) until `close`.
        gc.freeze()
        try:
            for index in range(1, count):
                mine = dealt[index]
                for job in mine:
                    job.future = Future()
                reader, writer = Pipe(duplex=False)
                pid = os.fork()
                if pid == 0:  # the worker: judges its jobs, and never returns into the run
                    reader.close()
                    judge_in_worker(run, mine, split[index], writer)
                writer.close()
                self._children.append((pid, reader, mine))
        except BaseException:
            gc.unfreeze()
            raise
        self._collectors = [threading.Thread(target=self._collect, args=child, name=f"worker-{pid}", daemon=True)
                            for child in self._children for pid in child[:1]]
        for collector in self._collectors:
            collector.start()

    def _collect(self, pid: int, reader: Connection, jobs: list[Job]) -> None:
        """Hand each result to its case's future as the worker sends it; when the worker ends, count
        the requests and tokens it last said it had spent (an interrupted run's too), and every case
        it did not answer is an error (unless the run is stopping: those are not judged)."""
        spent = (0, 0, 0, 0)
        try:
            while True:
                kind, index, payload, spent = pickle.loads(reader.recv_bytes())
                if kind == "result":
                    jobs[index].settle(payload)
                elif kind == "failed":
                    jobs[index].settle(jobs[index].broken(payload))
        except (EOFError, OSError):
            pass
        finally:
            reader.close()
            _, status = os.waitpid(pid, 0)
            self.stats.add(spent)
        if not self._stopping:
            code = os.waitstatus_to_exitcode(status)
            for job in jobs:
                if not job.settled:
                    job.settle(job.broken(f"internal error: the worker process judging it ended "
                                          f"(exit code {code}) before it was judged"))

    def close(self, wait: bool) -> None:
        """Wait for the workers to finish (`wait`), or stop them now (the run was interrupted);
        either way every worker has ended and its counts are in the run's stats on return."""
        gc.unfreeze()
        if not wait:
            self._stopping = True
            for pid, _, _ in self._children:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)  # our own child, by its pid
        for collector in self._collectors:
            collector.join()


def judge_in_worker(run: ConformanceRun, jobs: list[Job], share: int, writer: Connection) -> None:
    """A worker's life: judge `jobs` with `share` requests in flight, send each result, then the
    worker's request and token counts, and exit (os._exit: nothing of the parent's runs here)."""
    from conformance.accounting import RunStats, TokenLedger

    # A Ctrl-C reaches the whole process group: the run stops the workers itself (SIGTERM).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    code = 0
    try:
        # The budget's books are shared; without a budget, fresh ones (nothing of the parent's threads).
        shared = run.stats.token_budget is not None
        stats = RunStats(token_budget=run.stats.token_budget, ledger=run.stats.ledger if shared else TokenLedger())
        clients = {name: run.client_for(name, stats, share) for name in {job.endpoint for job in jobs}}
        sending = threading.Lock()

        def send(kind: str, index: int, payload: Any) -> None:
            """A message to the run, with the worker's requests and tokens so far."""
            pickled = pickle.dumps((kind, index, payload, stats.counts()), protocol=pickle.HIGHEST_PROTOCOL)
            try:
                with sending:
                    writer.send_bytes(pickled)
            except OSError:  # the run is gone: nothing to judge for
                os._exit(1)

        def answer(index: int, done: Future[CheckResult]) -> None:
            failure = done.exception()
            if failure is None:
                send("result", index, done.result())
            else:
                send("failed", index, f"internal error in the check: {type(failure).__name__}: {failure}")

        with ThreadPoolExecutor(max_workers=share, thread_name_prefix="check") as pool:
            for index, job in enumerate(jobs):
                future = pool.submit(job.judge, clients[job.endpoint])
                future.add_done_callback(functools.partial(answer, index))
        for client in clients.values():
            client.close()
        send("done", -1, None)
    except BaseException:  # noqa: BLE001  # whatever it is, the run must hear of it, and this process end
        code = 1
        traceback.print_exc()
    finally:
        sys.stderr.flush()
        os._exit(code)

