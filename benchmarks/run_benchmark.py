"""Whole-process timings of `conformance`, each the median of 5 runs, against the README's targets:

- `conformance catalog` (printing a data file) within 0.3 s;
- `conformance run` against the embedded reference server within 2.5 s;
- `conformance run` against a reference server that delays every response by 500 ms within 1.5x
  its critical path: the longest chain of requests that must wait for each other (the setup
  requests, then the check whose requests depend on one another the most) times the latency;
- `conformance run --models all` against `conformance serve --models 200` (every check on 200
  models, one run) within 60 s and 500 MB (median of 3: each run takes minutes). The memory is the
  whole process tree's, the run and the workers it forks (`TreeMemory`): the peak of their summed
  PSS is held to the target, and the sum of each one's peak RSS, which counts the pages a worker
  shares with the run in both, is printed beside it.

The critical path is measured, not guessed: one calibration run against the slow server with
`--concurrency` above the run's whole request count (so no request ever waits for a slot) gives
each check's duration, and its chain is that duration divided by the latency (requests a check
sends together count once). The benchmark prints that chain. Every command runs from a scratch
directory, as a user runs the installed package (not the checkout); CPU times include the SDK
worker processes a run starts. Run with `nox -s benchmark` (or `python benchmarks/run_benchmark.py`
with the package installed; `--matrix-only` measures the 200-model run alone); the exit code is 1
when a target is missed.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RUNS = 5
LATENCY_S = 0.5
TARGETS = {"catalog": 0.3, "embedded": 2.5}
CRITICAL_PATH_FACTOR = 1.5
CONFORMANCE = [sys.executable, "-m", "conformance"]
#: More requests in flight than a whole run sends: the calibration run never queues a request.
UNQUEUED = 1000
MATRIX_MODELS, MATRIX_RUNS = 200, 3
MATRIX_TARGETS = {"wall_s": 60.0, "rss_mb": 500.0}


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def wall(arguments: list[str]) -> tuple[float, float]:
    """Wall and CPU seconds of one whole `conformance` process, start-up and imports included. CPU
    time shows what the process itself costs when the machine is shared and wall time is not."""
    started, cpu = time.monotonic(), children_cpu()
    subprocess.run(CONFORMANCE + arguments, check=True, stdout=subprocess.DEVNULL)
    return time.monotonic() - started, children_cpu() - cpu


def median_wall(arguments: list[str]) -> tuple[float, list[float], float]:
    """The median wall time of RUNS processes, every wall time, and the median CPU time."""
    measured = [wall(arguments) for _ in range(RUNS)]
    times = [wall_s for wall_s, _ in measured]
    return statistics.median(times), times, statistics.median(cpu for _, cpu in measured)


@dataclass
class TreeMemory:
    """The memory of a process and every process it starts (a matrix run's workers), sampled every
    SAMPLE_S seconds: the sum of each process's peak RSS (VmHWM: what each held at its most,
    counting the pages a forked worker shares with its parent in both, so an upper bound), and the
    peak of their summed PSS (shared pages divided among the processes sharing them: what the tree
    occupied)."""

    peak_rss: dict[int, int] = field(default_factory=dict)
    peak_pss: int = 0

    def sample(self, root: int) -> None:
        pss = 0
        for pid in tree(root):
            self.peak_rss[pid] = max(self.peak_rss.get(pid, 0), proc_kb(pid, "status", "VmHWM:"))
            pss += proc_kb(pid, "smaps_rollup", "Pss:")
        self.peak_pss = max(self.peak_pss, pss)

    @property
    def rss_mb(self) -> float:
        return sum(self.peak_rss.values()) / 1024

    @property
    def pss_mb(self) -> float:
        return self.peak_pss / 1024


SAMPLE_S = 0.1


def tree(pid: int) -> list[int]:
    """`pid` and its descendants, now."""
    found = [pid]
    try:
        for thread in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{thread}/children") as children:
                found += [child for word in children.read().split() for child in tree(int(word))]
    except OSError:  # it ended meanwhile
        pass
    return found


def proc_kb(pid: int, name: str, field_name: str) -> int:
    try:
        with open(f"/proc/{pid}/{name}") as lines:
            return next((int(line.split()[1]) for line in lines if line.startswith(field_name)), 0)
    except OSError:
        return 0


def measured(arguments: list[str]) -> tuple[float, float, TreeMemory]:
    """Wall seconds, CPU seconds and memory of one whole `conformance` process with the workers it
    forks (CPU from wait4: the process's own and its waited-for workers'; memory sampled from /proc;
    the server beside it is not counted)."""
    started = time.monotonic()
    process = subprocess.Popen(CONFORMANCE + arguments, stdout=subprocess.DEVNULL)
    memory = TreeMemory()
    while True:
        memory.sample(process.pid)
        ended, status, usage = os.wait4(process.pid, os.WNOHANG)
        if ended:
            break
        time.sleep(SAMPLE_S)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode not in (0, 1):
        raise SystemExit(f"conformance {' '.join(arguments)} exited {process.returncode}")
    return time.monotonic() - started, usage.ru_utime + usage.ru_stime, memory


def process_cpu(pid: int) -> float:
    """CPU seconds a running process has used so far (the server's, read before and after a run)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def matrix(scratch_dir: Path) -> list[str]:
    """The 200-model run: its median wall time and peak memory against the targets; what was missed."""
    server = subprocess.Popen(CONFORMANCE + ["serve", "--port", "0", "--models", str(MATRIX_MODELS)],
                              stdout=subprocess.PIPE, text=True)
    runs = []
    try:
        base_url = server.stdout.readline().strip()  # type: ignore[union-attr]
        directory = scratch_dir / "matrix"
        for _ in range(MATRIX_RUNS):
            before = process_cpu(server.pid)
            wall_s, cpu_s, memory = measured(["run", "--base-url", base_url, "--models", "all",
                                              "--report-dir", str(directory)])
            runs.append((wall_s, cpu_s, memory, process_cpu(server.pid) - before, os.getloadavg()))
    finally:
        server.terminate()  # the server this script started, by its pid
        server.wait(timeout=30)
    report = read_report(directory)
    wall_s, cpu_s = statistics.median(run[0] for run in runs), statistics.median(run[1] for run in runs)
    server_s = statistics.median(run[3] for run in runs)
    rss_mb, pss_mb = max(run[2].rss_mb for run in runs), max(run[2].pss_mb for run in runs)
    processes = max(len(run[2].peak_rss) for run in runs)
    cases = sum(len(section["results"]) for section in report["models"])
    print(f"run --models all, {MATRIX_MODELS} models   {wall_s:6.2f}s  (target {MATRIX_TARGETS['wall_s']:.0f}s; "
          f"runs {', '.join(f'{run[0]:.1f}' for run in sorted(runs, key=lambda run: run[0]))}; "
          f"CPU {cpu_s:.1f}s, server CPU {server_s:.1f}s); memory of the run's {processes} processes: peak PSS "
          f"{pss_mb:.0f} MB (target {MATRIX_TARGETS['rss_mb']:.0f}), sum of peak RSS {rss_mb:.0f} MB; "
          f"{cases} cases, {report['requests']} requests; "
          f"report.html {(directory / 'report.html').stat().st_size / 1e6:.2f} MB, "
          f"report.json {(directory / 'report.json').stat().st_size / 1e6:.1f} MB; load average after each run "
          f"{'; '.join(' '.join(f'{load:.1f}' for load in run[4]) for run in runs)}")
    return [name for name, value in (("matrix wall", wall_s), ("matrix memory", pss_mb))
            if value > MATRIX_TARGETS["wall_s" if name == "matrix wall" else "rss_mb"]]


def read_report(directory: Path) -> dict[str, Any]:
    return json.loads((directory / "report.json").read_text(encoding="utf-8"))


def critical_path(report: dict[str, Any]) -> tuple[int, str, list[str]]:
    """From an unqueued run against the slow server: the longest chain in requests, the
    check at its end, and that check's requests (method and path) as sent."""
    results = report["results"]
    # The report counts every request; those in no check's evidence are the setup: the listing,
    # then one preflight generation per API family, those at once (a chain of two).
    setup = min(2, report["requests"] - sum(len(result["evidence"]) for result in results))
    slowest = max(results, key=lambda result: result["duration_s"])
    chain = round(slowest["duration_s"] / LATENCY_S)
    sent = [f"{e['request']['method']} {e['request']['url'].split('/v1', 1)[-1]}" for e in slowest["evidence"]]
    return setup + chain, slowest["check_id"], [f"{setup} setup request(s) in a row", *sent]


def spread(times: list[float], cpu: float) -> str:
    return f"runs {', '.join(f'{t:.2f}' for t in sorted(times))}; CPU {cpu:.2f}s"


def main() -> int:
    started_in = Path.cwd()
    with tempfile.TemporaryDirectory() as scratch:
        scratch_dir = Path(scratch)
        # Run where a user does: outside the checkout, so `-m conformance` is the installed copy
        # (compiled, and not scanned by Hypothesis for constants as a local module is).
        os.chdir(scratch_dir)
        try:
            return measure(scratch_dir)
        finally:
            os.chdir(started_in)


def measure(scratch_dir: Path) -> int:
    missed: list[str] = []
    where = subprocess.run([sys.executable, "-c", "import conformance; print(conformance.__file__)"],
                           capture_output=True, text=True, check=True).stdout.strip()
    print(f"measuring {where}")
    if "--matrix-only" in sys.argv[1:]:
        missed = matrix(scratch_dir)
        print(f"missed: {', '.join(missed)}" if missed else "every target met")
        return 1 if missed else 0
    median, times, cpu = median_wall(["catalog"])
    print(f"conformance catalog              {median:6.2f}s  (target {TARGETS['catalog']}s; {spread(times, cpu)})")
    missed += ["catalog"] if median > TARGETS["catalog"] else []

    embedded_dir = scratch_dir / "embedded"
    median, times, cpu = median_wall(["run", "--profile", "none", "--report-dir", str(embedded_dir)])
    report = read_report(embedded_dir)
    print(f"run, embedded reference server   {median:6.2f}s  "
          f"(target {TARGETS['embedded']}s; {spread(times, cpu)}); "
          f"checks {report['duration_s']:.2f}s, {report['requests']} requests, "
          f"{report['tokens']['prompt']} + {report['tokens']['completion']} tokens")
    missed += ["embedded"] if median > TARGETS["embedded"] else []

    server = subprocess.Popen(CONFORMANCE + ["serve", "--port", "0", "--latency-ms", str(int(LATENCY_S * 1000))],
                              stdout=subprocess.PIPE, text=True)
    try:
        base_url = server.stdout.readline().strip()  # type: ignore[union-attr]
        calibration_dir = scratch_dir / "calibration"
        wall(["run", "--base-url", base_url, "--profile", "none", "--concurrency", str(UNQUEUED),
              "--report-dir", str(calibration_dir)])
        chain, check_id, steps = critical_path(read_report(calibration_dir))
        slow_dir = scratch_dir / "slow"
        median, times, cpu = median_wall(["run", "--base-url", base_url, "--profile", "none",
                                          "--report-dir", str(slow_dir)])
        report = read_report(slow_dir)
    finally:
        server.terminate()  # the server this script started, by its pid
        server.wait(timeout=30)
    path_s = chain * LATENCY_S
    print(f"critical path: {chain} requests x {LATENCY_S}s = {path_s:.1f}s, ending in {check_id}: "
          + " -> ".join(steps))
    print(f"run, {LATENCY_S * 1000:.0f} ms per response        {median:6.2f}s  "
          f"= {median / path_s:.2f}x the critical "
          f"path (target {CRITICAL_PATH_FACTOR}x; {spread(times, cpu)}); checks {report['duration_s']:.2f}s, "
          f"{report['requests']} requests")
    missed += ["latency"] if median > CRITICAL_PATH_FACTOR * path_s else []
    missed += matrix(scratch_dir)
    if missed:
        print(f"missed: {', '.join(missed)}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
