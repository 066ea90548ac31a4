"""The embedded OpenAI/Fireworks-behaving reference server (see app.py)."""

from conformance.reference_server.config import ServerConfig
from conformance.reference_server.embedded import RunningServer, start_in_thread

__all__ = ["ServerConfig", "RunningServer", "start_in_thread"]
