"""Developer sessions: `nox -s tests` is what CI runs; the others are run on demand."""

import nox

nox.options.sessions = ["tests"]
nox.options.reuse_existing_virtualenvs = True


@nox.session
def tests(session: nox.Session) -> None:
    """The project's own test suite (the README's second Quickstart command)."""
    session.install(".[test]")
    session.run("pytest", *session.posargs)


@nox.session
def schemas(session: nox.Session) -> None:
    """Regenerate schemas/ from the vendored OpenAI OpenAPI spec plus the Fireworks overlays."""
    session.install("jsonschema")
    session.run("python", "tools/generate_schemas.py", *session.posargs)


@nox.session
def record_reference(session: nox.Session) -> None:
    """Re-record cassettes/reference-{openai,fireworks} from the embedded reference server."""
    session.install(".")
    for vendor in ("openai", "fireworks"):
        session.run("conformance", "run", "--embedded-behavior", vendor, "--profile", "none",
                    "--record", f"cassettes/reference-{vendor}", "--report-dir", f"reports/reference-{vendor}")
