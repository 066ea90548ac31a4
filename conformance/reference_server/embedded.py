"""Run the reference server on a real loopback port: in a thread (embedded) or in the foreground."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from dataclasses import dataclass
from types import FrameType
from typing import Any

import uvicorn

from conformance.reference_server.app import create_app
from conformance.reference_server.config import ServerConfig


@dataclass
class RunningServer:
    """A server started by `start_in_thread`; `stop()` shuts it down and joins the thread."""

    base_url: str
    config: ServerConfig
    _server: ThreadServer
    _thread: threading.Thread

    def request_stop(self) -> None:
        self._server.request_stop()

    def stop(self) -> None:
        self.request_stop()
        self._thread.join(timeout=10)

    def __enter__(self) -> RunningServer:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


class ThreadServer(uvicorn.Server):
    """uvicorn for a thread of its own: `ready` is set once it listens (or failed to start), and
    `request_stop` wakes its main loop at once, where uvicorn looks for a stop every 0.1 s."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        self._loop, self._wake = asyncio.get_running_loop(), asyncio.Event()
        await super().startup(sockets)
        self.ready.set()

    async def main_loop(self) -> None:
        assert self._wake is not None
        # uvicorn's own loop, woken by request_stop; a tick of 10 keeps its once-a-second duties
        # (the Date header) once a second.
        counter = 0
        while not await self.on_tick(counter):
            counter += 10
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=1)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """A signal (`conformance serve` in the foreground): stop at once, as `request_stop` does."""
        super().handle_exit(sig, frame)
        self.request_stop()

    def request_stop(self) -> None:
        self.should_exit = True
        if self._loop is not None and self._wake is not None:
            with contextlib.suppress(RuntimeError):  # the loop already closed: it stopped by itself
                self._loop.call_soon_threadsafe(self._wake.set)

    def run_until_stopped(self, sock: socket.socket) -> None:
        try:
            self.run(sockets=[sock])
        finally:
            self.ready.set()  # also when it could not start: the waiter then sees `started` false


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    # Listening from here on: a client told the URL (`conformance serve` prints it before uvicorn
    # starts) is queued by the kernel until uvicorn accepts, never refused. uvicorn listens again
    # with its own backlog.
    sock.listen()
    return sock


def uvicorn_server(config: ServerConfig, log_level: str = "warning", app: Any = None) -> ThreadServer:
    """A server of `config`'s app, or of `app` (a fleet of models, whose first model's is `config`)."""
    settings = uvicorn.Config(app or create_app(config), log_level=log_level, access_log=False, lifespan="off",
                              timeout_graceful_shutdown=1)
    return ThreadServer(settings)


def base_url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://{'[' + host + ']' if ':' in host else host}:{port}/v1"


def start_in_thread(config: ServerConfig, host: str = "127.0.0.1", port: int = 0, app: Any = None) -> RunningServer:
    """Start on a free loopback port (port 0) and return once it accepts connections."""
    sock = bind(host, port)
    # Embedded: requests cut off at shutdown (a hung probe) are expected, not worth a log line.
    server = uvicorn_server(config, log_level="critical", app=app)
    server.install_signal_handlers = lambda: None  # type: ignore[attr-defined,method-assign]  # not the main thread
    thread = threading.Thread(target=server.run_until_stopped, args=(sock,), daemon=True,
                              name="conformance-reference-server")
    thread.start()
    if not server.ready.wait(timeout=10) or not server.started:
        server.request_stop()
        raise RuntimeError("the embedded reference server did not start")
    return RunningServer(base_url_of(sock), config, server, thread)


def start_fleet(configs: list[ServerConfig], host: str = "127.0.0.1", port: int = 0) -> RunningServer:
    """A server of several models (fleet.py) in a thread; its `config` is the first model's."""
    from conformance.reference_server.fleet import Fleet

    return start_in_thread(configs[0], host, port, app=Fleet(configs))
