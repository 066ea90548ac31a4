"""Speed of `conformance audit` on a generated repository (issue 18's target: 10,000 files within a minute).

Writes N source files (default 10,000) of about 4 KB into a temporary directory: 60% Python, 30%
TypeScript, 10% other files; a third of the Python and TypeScript files call the SDK (chat with
`stop`, `max_tokens`, a stream loop reading `chunk.usage`), the rest never mention it, and a
`node_modules/` tree (which the audit must not walk) is added. Then it runs
`python -m conformance audit DIR --report-dir ...` in a child process and prints the wall time, the
child's CPU time and the load average.

    python benchmarks/audit_benchmark.py [--files N]
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PLAIN_PYTHON = '''
def helper_{n}(values):
    """Sum the positive values, a plain function with no API use."""
    total = 0
    for value in values:
        if value > 0:
            total += value
    return total


class Model{n}:
    def __init__(self, name):
        self.name = name
        self.items = [helper_{n}([i, -i, i * 2]) for i in range(10)]

    def describe(self):
        return f"{{self.name}}: {{len(self.items)}} items"
'''
SDK_PYTHON = '''
from openai import OpenAI

client = OpenAI()


def ask_{n}(question):
    response = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{{"role": "user", "content": question}}], stop=["END"], max_tokens=200)
    if response.choices[0].finish_reason == "length":
        return None
    return response.choices[0].message.content


def stream_{n}(question):
    for chunk in client.chat.completions.create(model="gpt-4o-mini", stream=True,
                                                messages=[{{"role": "user", "content": question}}]):
        if chunk.usage:
            print(chunk.usage.total_tokens)
'''
PLAIN_TYPESCRIPT = '''
export function helper{n}(values: number[]): number {{
  let total = 0;
  for (const value of values) {{ if (value > 0) {{ total += value; }} }}
  return total;
}}
export const table{n} = {{ name: "table {n}", rows: [1, 2, 3], nested: {{ deep: {{ deeper: true }} }} }};
'''
SDK_TYPESCRIPT = '''
import OpenAI from "openai";
const openai = new OpenAI();
export async function ask{n}(question: string) {{
  const completion = await openai.chat.completions.create({{
    model: "gpt-4o-mini",
    messages: [{{ role: "user", content: question }}],
    logprobs: true, top_logprobs: 10,
    n: 2,
  }});
  return completion.choices[0].message.content;
}}
'''


def padded(text: str, size: int = 4096) -> str:
    """The text followed by comment lines up to about `size` bytes, as real files carry."""
    filler = "# " if text.lstrip().startswith(("def", "from", "class")) else "// "
    lines = [text]
    while sum(map(len, lines)) < size:
        lines.append(f"{filler}padding line {len(lines)} that explains nothing in particular at all\n")
    return "".join(lines)


def generate_repository(root: Path, files: int) -> None:
    """`files` files under `root` in nested packages, plus a node_modules tree the audit must skip."""
    for n in range(files):
        directory = root / f"package{n % 50}" / f"module{n % 7}"
        directory.mkdir(parents=True, exist_ok=True)
        kind = n % 10
        if kind < 6:
            (directory / f"file{n}.py").write_text(padded((SDK_PYTHON if n % 3 == 0 else PLAIN_PYTHON).format(n=n)))
        elif kind < 9:
            (directory / f"file{n}.ts").write_text(
                padded((SDK_TYPESCRIPT if n % 3 == 0 else PLAIN_TYPESCRIPT).format(n=n)))
        else:
            (directory / f"notes{n}.md").write_text(f"# Notes {n}\n" * 200)
    vendored = root / "node_modules" / "openai"
    vendored.mkdir(parents=True)
    (vendored / "index.js").write_text(SDK_TYPESCRIPT.format(n=0))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=10_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="audit-benchmark-") as scratch:
        root = Path(scratch, "repository")
        generate_repository(root, args.files)
        load_before = os.getloadavg()[0]
        started = time.perf_counter()
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        completed = subprocess.run([sys.executable, "-m", "conformance", "audit", str(root), "--report-dir",
                                    str(Path(scratch, "reports"))], capture_output=True, text=True, check=False)
        wall = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        print(completed.stdout.splitlines()[0] if completed.stdout else completed.stderr)
        print(f"{args.files:,} files: {wall:.1f} s wall, {cpu:.1f} s CPU "
              f"(load average {load_before:.1f} -> {os.getloadavg()[0]:.1f}); exit {completed.returncode}")
        return 0 if wall < 60 and completed.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
