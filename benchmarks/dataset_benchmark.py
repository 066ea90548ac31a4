"""Speed and memory of `conformance dataset` on a generated SFT file (issue 16's target).

Writes N chat examples of about 1 KB each (default 1,000,000: about 1 GB) into a temporary
directory, validates the file with `python -m conformance dataset` in a child process, and prints
lines per second and the child's peak resident memory (getrusage's ru_maxrss). The target: under
60 s and under 200 MB for 1,000,000 examples. The machine's load average is printed beside the
figures, since a loaded machine is slower.

    python benchmarks/dataset_benchmark.py [--lines N] [--profile both] [--gzip]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SYSTEM = "You are a helpful assistant that answers questions about geography concisely and correctly."
FILLER = "The answer depends on the context; here is a careful, complete explanation of it. " * 8


def example(number: int) -> str:
    """One ~1 KB chat example with a weighted assistant turn and a tool call every tenth line."""
    messages = [{"role": "system", "content": SYSTEM},
                {"role": "user", "content": f"Question {number}: what is the capital of country {number % 197}?"},
                {"role": "assistant", "content": f"Capital {number % 197}. {FILLER}", "weight": 1}]
    if number % 10 == 0:
        messages += [{"role": "user", "content": "Look it up."},
                     {"role": "assistant", "content": None, "weight": 0, "tool_calls": [
                         {"id": f"call_{number}", "type": "function",
                          "function": {"name": "lookup_capital", "arguments": json.dumps({"country": number % 197})}}]},
                     {"role": "tool", "tool_call_id": f"call_{number}", "content": f"Capital {number % 197}"},
                     {"role": "assistant", "content": f"It is Capital {number % 197}."}]
    return json.dumps({"messages": messages}, separators=(",", ":"))


def generate(path: Path, lines: int, compress: bool) -> int:
    with (gzip.open(path, "wt", encoding="utf-8", compresslevel=1) if compress
          else open(path, "w", encoding="utf-8", buffering=1 << 20)) as stream:
        for number in range(lines):
            stream.write(example(number))
            stream.write("\n")
    return path.stat().st_size


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--profile", default="both", choices=("openai", "fireworks", "both"))
    parser.add_argument("--gzip", action="store_true", help="write and validate train.jsonl.gz instead")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / ("train.jsonl.gz" if args.gzip else "train.jsonl")
        size = generate(path, args.lines, args.gzip)
        load_before = os.getloadavg()[0]
        started = time.perf_counter()
        completed = subprocess.run([sys.executable, "-m", "conformance", "dataset", str(path), "--profile",
                                    args.profile],
                                   capture_output=True, text=True)
        elapsed = time.perf_counter() - started
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        peak_mb, cpu = usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime
        load_after = os.getloadavg()[0]
    if completed.returncode != 0:
        print(completed.stdout, completed.stderr, sep="\n", file=sys.stderr)
        print(f"unexpected exit code {completed.returncode}: the generated file should be valid", file=sys.stderr)
        return 1
    print(f"{args.lines:,} examples, {size / 1e6:,.0f} MB{' gzip' if args.gzip else ''}: "
          f"{elapsed:.1f} s wall (including start-up), "
          f"{args.lines / elapsed:,.0f} lines/s, {cpu:.1f} s CPU, peak RSS {peak_mb:.0f} MB; "
          f"load average {load_before:.1f} before, {load_after:.1f} after, {os.cpu_count()} CPUs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
