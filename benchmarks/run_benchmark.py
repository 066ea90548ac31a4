"""Measure the whole suite: against the embedded server, and against a server that delays every
response by 500 ms, where concurrency matters. Prints wall time, requests, tokens, and the ratio
of the slow run's time to what the same requests would take one after another (requests x 0.5 s).

Run with `nox -s benchmark` (or `python benchmarks/run_benchmark.py` with the package installed).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LATENCY_S = 0.5
TARGET_RATIO = 0.25


def timed_run(report_dir: Path, *arguments: str) -> tuple[float, dict]:
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "conformance", "run", "--profile", "none", "--report-dir", str(report_dir),
                    *arguments], check=True, stdout=subprocess.DEVNULL)
    return time.monotonic() - started, json.loads((report_dir / "report.json").read_text())


def describe(name: str, wall: float, report: dict) -> str:
    tokens = report["tokens"]
    return (f"{name:<28} wall {wall:6.2f}s  run {report['duration_s']:6.2f}s  {report['requests']:3d} requests  "
            f"{tokens['prompt']} + {tokens['completion']} tokens  {sum(report['summary'].values())} checks")


def main() -> int:
    with tempfile.TemporaryDirectory() as scratch:
        scratch_dir = Path(scratch)
        wall, embedded = timed_run(scratch_dir / "embedded")
        print(describe("embedded reference server", wall, embedded))
        server = subprocess.Popen([sys.executable, "-m", "conformance", "serve", "--port", "0",
                                   "--latency-ms", str(int(LATENCY_S * 1000))], stdout=subprocess.PIPE, text=True)
        try:
            base_url = server.stdout.readline().strip()
            wall, slow = timed_run(scratch_dir / "slow", "--base-url", base_url)
        finally:
            server.terminate()
            server.wait(timeout=10)
        print(describe(f"server with {LATENCY_S * 1000:.0f} ms latency", wall, slow))
        sequential = slow["requests"] * LATENCY_S
        ratio = slow["duration_s"] / sequential
        print(f"sequential estimate {sequential:.1f}s ({slow['requests']} x {LATENCY_S}s); "
              f"run took {slow['duration_s']:.2f}s = {ratio:.0%} of it (target <= {TARGET_RATIO:.0%})")
        return 0 if ratio <= TARGET_RATIO else 1


if __name__ == "__main__":
    sys.exit(main())
