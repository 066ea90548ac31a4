"""Fixtures shared by the project's tests: reference servers on loopback, one per configuration."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from conformance.reference_server import RunningServer, ServerConfig, start_in_thread

ServerFactory = Callable[..., RunningServer]


@pytest.fixture(scope="session")
def reference_server() -> Iterator[ServerFactory]:
    """`reference_server("fireworks", {"stop-sequence-in-output": "openai"}, api_key=...)`.

    Servers are started on free loopback ports and reused for identical configurations.
    """
    running: dict[tuple, RunningServer] = {}

    def serve(vendor: str = "openai", overrides: dict[str, str] | None = None, **knobs) -> RunningServer:
        key = (vendor, tuple(sorted((overrides or {}).items())), tuple(sorted(knobs.items())))
        if key not in running:
            running[key] = start_in_thread(ServerConfig.for_vendor(vendor, overrides, **knobs))
        return running[key]

    yield serve
    stop_all(running.values())


def stop_all(servers) -> None:
    """Ask every server to exit first, then wait: shutdowns overlap instead of queueing."""
    servers = list(servers)
    for server in servers:
        server.request_stop()
    for server in servers:
        server.stop()
