"""The base URL as the suite accepts it, and as it may be shown."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit


def without_credentials(url: str) -> str:
    """The URL as it may be shown: any `user:password@` taken out."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def normalize_base_url(url: str) -> str:
    """`http://host:port` means `http://host:port/v1`, as OpenAI's SDKs expect a versioned base.

    Credentials in the URL are refused rather than sent: httpx would turn them into Basic auth in
    place of the Bearer key, and a URL is shown everywhere (reports, endpoint names, folders).

    A query string (Azure's `api-version`) is kept: it goes with every request."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"not an http(s) URL: {without_credentials(url.strip())!r}")
    if "@" in parts.netloc:
        raise ValueError(f"the base URL carries credentials ({without_credentials(url.strip())} with user:password@); "
                         "remove them and pass the key with --api-key or OPENAI_API_KEY")
    path = parts.path.rstrip("/") or "/v1"
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))
