"""Run the reference server on a real loopback port: in a thread (embedded) or in the foreground."""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

import uvicorn

from conformance.reference_server.app import create_app
from conformance.reference_server.config import ServerConfig


@dataclass
class RunningServer:
    """A server started by `start_in_thread`; `stop()` shuts it down and joins the thread."""

    base_url: str
    config: ServerConfig
    _server: uvicorn.Server
    _thread: threading.Thread

    def request_stop(self) -> None:
        self._server.should_exit = True

    def stop(self) -> None:
        self.request_stop()
        self._thread.join(timeout=10)

    def __enter__(self) -> RunningServer:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    return sock


def uvicorn_server(config: ServerConfig, log_level: str = "warning", app: Any = None) -> uvicorn.Server:
    """A server of `config`'s app, or of `app` (a fleet of models, whose first model's is `config`)."""
    settings = uvicorn.Config(app or create_app(config), log_level=log_level, access_log=False, lifespan="off",
                              timeout_graceful_shutdown=1)
    return uvicorn.Server(settings)


def base_url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://{'[' + host + ']' if ':' in host else host}:{port}/v1"


def start_in_thread(config: ServerConfig, host: str = "127.0.0.1", port: int = 0, app: Any = None) -> RunningServer:
    """Start on a free loopback port (port 0) and return once it accepts connections."""
    sock = bind(host, port)
    # Embedded: requests cut off at shutdown (a hung probe) are expected, not worth a log line.
    server = uvicorn_server(config, log_level="critical", app=app)
    server.install_signal_handlers = lambda: None  # type: ignore[attr-defined,method-assign]  # not the main thread
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True,
                              name="conformance-reference-server")
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the embedded reference server did not start")
        time.sleep(0.01)
    return RunningServer(base_url_of(sock), config, server, thread)


def start_fleet(configs: list[ServerConfig], host: str = "127.0.0.1", port: int = 0) -> RunningServer:
    """A server of several models (fleet.py) in a thread; its `config` is the first model's."""
    from conformance.reference_server.fleet import Fleet

    return start_in_thread(configs[0], host, port, app=Fleet(configs))
