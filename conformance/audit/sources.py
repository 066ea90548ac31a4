"""From the SOURCE arguments to uses: walk directories, pick a scanner by file name, collect problems.

A file that cannot be read or parsed (a syntax error, invalid UTF-8, a broken recording) is a
problem with its file and line, and the scan goes on. Directories that hold other people's code or
tool state (`node_modules`, virtual environments, `.git`, any hidden directory) are not walked:
the `openai` package's own sources would otherwise read as uses. Source files that never mention
the API (`openai`, `.completions`, `.responses`, `.embeddings`) are not parsed at all, which is
what keeps a 10,000-file repository fast.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from conformance.audit.javascript_source import scan_javascript
from conformance.audit.python_source import scan_python
from conformance.audit.recordings import NotARecording, scan_cassette, scan_har, scan_jsonl
from conformance.audit.uses import Use

PYTHON = (".py", ".pyi")
JAVASCRIPT = (".js", ".mjs", ".cjs", ".jsx", ".ts", ".mts", ".cts", ".tsx")
SKIPPED_DIRECTORIES = frozenset({"node_modules", "site-packages", "__pycache__", "venv", "env", "dist", "build"})
#: Source text that may call the SDK; a file without any of these is not parsed.
MENTIONS_API = re.compile(r"openai|\.completions|\.responses|\.embeddings")
#: A bigger file is reported, not read (generated or vendored code, a huge recording).
MAX_BYTES = 32 * 1024 * 1024

#: A scanner: the uses in one file's text, and the syntax errors of the parts it had to leave out.
Scanner = Callable[[str, str], tuple[list[Use], list[SyntaxError]]]


@dataclass
class Scan:
    """What the scan found: uses, problems (file:line and message), and how many files it looked at."""

    uses: list[Use] = field(default_factory=list)
    problems: list[dict[str, str]] = field(default_factory=list)
    files_seen: int = 0
    files_parsed: int = 0

    def problem(self, where: str, message: str) -> None:
        self.problems.append({"where": where, "message": message})


def kind_of(path: Path) -> str | None:
    name = path.name.lower()
    if name.endswith(PYTHON):
        return "python"
    if name.endswith(JAVASCRIPT) and not name.endswith(".d.ts"):
        return "javascript"
    if name.endswith(".har"):
        return "har"
    if name.endswith((".yaml", ".yml")):
        return "cassette"
    if name.endswith((".jsonl", ".ndjson")):
        return "jsonl"
    return None


def files_under(root: Path) -> list[Path]:
    if not root.is_dir():
        return [root]
    found = []
    for directory, subdirectories, names in os.walk(root):
        subdirectories[:] = sorted(d for d in subdirectories if not d.startswith(".") and d not in SKIPPED_DIRECTORIES)
        found += [Path(directory, name) for name in sorted(names) if kind_of(Path(name))]
    return found


def scan_sources(roots: list[Path], read_names: frozenset[str]) -> Scan:
    scan = Scan()
    scanners: dict[str, Scanner] = {
        "python": lambda path, text: scan_python(path, text, read_names),
        "javascript": lambda path, text: (scan_javascript(path, text, read_names), []),
        "har": lambda path, text: (scan_har(path, text), []),
        "cassette": lambda path, text: (scan_cassette(path, text), []),
        "jsonl": lambda path, text: (scan_jsonl(path, text), []),
    }
    for root in roots:
        for path in files_under(root):
            scan.files_seen += 1
            scan_file(scan, path, kind_of(path), scanners)
    return scan


def scan_file(scan: Scan, path: Path, kind: str | None, scanners: dict[str, Scanner]) -> None:
    shown = str(path)
    if kind is None:
        scan.problem(shown, "not a kind of file the audit reads (Python, JavaScript/TypeScript, HAR, "
                            "YAML cassette, JSONL)")
        return
    try:
        if path.stat().st_size > MAX_BYTES:
            scan.problem(shown, f"not read: larger than {MAX_BYTES} bytes")
            return
        text = path.read_bytes().decode("utf-8")
    except OSError as error:
        scan.problem(shown, f"cannot be read: {error.strerror or error}")
        return
    except UnicodeDecodeError as error:
        scan.problem(shown, f"not UTF-8 (byte {error.start})")
        return
    if kind in ("python", "javascript") and not MENTIONS_API.search(text):
        return
    if kind == "cassette" and "interactions" not in text:
        return  # some other YAML file
    scan.files_parsed += 1
    try:
        uses, errors = scanners[kind](shown, text)
    except (RecursionError, MemoryError):
        scan.problem(shown, "too deeply nested to parse; not audited")
        return
    except NotARecording as broken:
        scan.problem(shown, str(broken))
        return
    except ValueError as unparsable:  # ast.parse before Python 3.12, on a NUL byte
        scan.problem(shown, f"cannot be parsed: {unparsable}; not audited")
        return
    scan.uses += uses
    for syntax in errors:
        scan.problem(f"{shown}:{syntax.lineno or 0}", f"syntax error: {syntax.msg}; that statement is not audited")
