"""Whole-process timings of `conformance`, each the median of 5 runs, against the README's targets:

- `conformance catalog` (printing a data file) within 0.3 s;
- `conformance run` against the embedded reference server within 2.5 s;
- `conformance run` against a reference server that delays every response by 500 ms within 1.5x
  its critical path: the longest chain of requests that must wait for each other (the setup
  requests, then the check whose requests depend on one another the most) times the latency.

The critical path is measured, not guessed: one calibration run against the slow server with
`--concurrency` above the run's whole request count (so no request ever waits for a slot) gives
each check's duration, and its chain is that duration divided by the latency (requests a check
sends together count once). The benchmark
prints that chain. Run with `nox -s benchmark` (or `python benchmarks/run_benchmark.py` with the
package installed); the exit code is 1 when a target is missed.
"""

from __future__ import annotations

import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

RUNS = 5
LATENCY_S = 0.5
TARGETS = {"catalog": 0.3, "embedded": 2.5}
CRITICAL_PATH_FACTOR = 1.5
CONFORMANCE = [sys.executable, "-m", "conformance"]
#: More requests in flight than a whole run sends: the calibration run never queues a request.
UNQUEUED = 1000


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


def read_report(directory: Path) -> dict[str, Any]:
    return json.loads((directory / "report.json").read_text(encoding="utf-8"))


def critical_path(report: dict[str, Any]) -> tuple[int, str, list[str]]:
    """From an unqueued run against the slow server: the longest chain in requests, the
    check at its end, and that check's requests (method and path) as sent."""
    results = report["results"]
    # The report counts every request; those in no check's evidence are the setup: the listing,
    # then the preflight generation, one after the other.
    setup = report["requests"] - sum(len(result["evidence"]) for result in results)
    slowest = max(results, key=lambda result: result["duration_s"])
    chain = round(slowest["duration_s"] / LATENCY_S)
    sent = [f"{e['request']['method']} {e['request']['url'].split('/v1', 1)[-1]}" for e in slowest["evidence"]]
    return setup + chain, slowest["check_id"], [f"{setup} setup request(s)", *sent]


def spread(times: list[float], cpu: float) -> str:
    return f"runs {', '.join(f'{t:.2f}' for t in sorted(times))}; CPU {cpu:.2f}s"


def main() -> int:
    missed = []
    with tempfile.TemporaryDirectory() as scratch:
        scratch_dir = Path(scratch)
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
            base_url = server.stdout.readline().strip()
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
    if missed:
        print(f"missed: {', '.join(missed)}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
