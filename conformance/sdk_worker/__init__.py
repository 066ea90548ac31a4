"""The official SDKs (openai's, anthropic's) run in worker processes of their own, one per SDK,
started with the run.

Importing them builds thousands of pydantic models: about 0.5 s of CPU for openai's and 1.3 s for
anthropic's, together more than every other check of a run. In processes of their own, started as
the run starts (`prestart`), those imports run on other cores while the run opens the endpoint and
pytest collects, instead of in the run's process under its one GIL.

Only the SDK calls run there (`openai_calls.py`, `anthropic_calls.py`). Every request they make
comes back over a pipe and goes out here, through the check's logging client
(`EndpointClient.logging_http_client`): bounded, retried, recorded or replayed, redacted and counted
like every other request, its exchange the check's evidence. The worker sees a placeholder origin
and key, which are replaced here; the answers it gets are redacted. It opens no socket and holds no
secret. Its outcomes come back as data (`Raised`).
"""

from __future__ import annotations

#: The SDKs there are workers for (each API family's, named as its package).
PACKAGES = ("openai", "anthropic")
#: The base URL the worker's SDK clients are given; the run puts the real one in its place.
PLACEHOLDER_ORIGIN = "http://sdk-worker.invalid"
#: The key they are given; the run sends the real one (or none) in its place.
PLACEHOLDER_KEY = "sdk-worker-placeholder-key"

