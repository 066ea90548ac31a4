"""Secrets out of everything the suite keeps or shows: one `Redactor`, applied at every sink.

A server can echo a secret back in many spellings: as sent, JSON-escaped (`\\u0073k-...`),
Python-`repr`'d (`b'Bearer sk-...'`), URL-encoded, HTML-escaped, hex, or base64 (standard or
URL-safe, at any of the three byte alignments, with or without padding). Evidence, reasons and
cassettes carry server text in any of them, so the same `Redactor` is applied where anything is
written or printed: the report dict before rendering, every rendered file, cassettes, the console.

A secret shorter than `MIN_SECRET` characters is not redacted (it would blank ordinary text), and
its encoded spellings only when they are long enough to be specific.
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

if TYPE_CHECKING:  # httpx is not imported by commands that never send a request
    import httpx

REDACTED = "<redacted>"
#: Headers whose values are credentials, whatever the key is.
SECRET_HEADERS = frozenset({"authorization", "api-key", "x-api-key", "cookie", "set-cookie", "proxy-authorization"})
MIN_SECRET = 4
#: An encoded spelling shorter than this could occur by chance; it is not searched for.
MIN_ENCODED = 8
_JSON_SHORT_ESCAPES = {'"': '\\"', "\\": "\\\\", "/": "\\/", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r",
                       "\t": "\\t"}


def _character(c: str) -> str:
    """A pattern for one character in any escaped spelling a server or a serializer may give it."""
    code = ord(c)
    spellings = {re.escape(c), re.escape(html.escape(c)), f"&#0*{code};", f"&#x0*{code:x};",
                 "".join(f"%{byte:02x}" for byte in c.encode("utf-8"))}
    if c in _JSON_SHORT_ESCAPES:
        spellings.add(re.escape(_JSON_SHORT_ESCAPES[c]))
    if c == " ":
        spellings.add(r"\+")
    if code < 0x100:
        spellings.add(rf"\\x{code:02x}")
    if code < 0x10000:
        spellings.add(rf"\\u{code:04x}")
    else:
        high, low = divmod(code - 0x10000, 0x400)
        spellings.add(rf"\\u{0xD800 + high:04x}\\u{0xDC00 + low:04x}")
        spellings.add(rf"\\U{code:08x}")
    return "(?:" + "|".join(sorted(spellings)) + ")"


def _base64_cores(secret: bytes) -> set[str]:
    """The base64 characters that depend on the secret alone, at each of the three alignments."""
    cores = set()
    for offset, dropped in ((0, 0), (1, 2), (2, 3)):
        encoded = base64.b64encode(bytes(offset) + secret).decode().rstrip("=")[dropped:]
        if (offset + len(secret)) % 3:
            encoded = encoded[:-1]  # its low bits belong to whatever byte follows the secret
        cores |= {encoded, encoded.replace("+", "-").replace("/", "_")}
    return {core for core in cores if len(core) >= MIN_ENCODED}


def spellings(secret: str) -> str:
    """One regular expression matching the secret in every spelling above (case-insensitive)."""
    characters = "".join(_character(c) for c in secret)
    encoded = {secret.encode("utf-8").hex()} | _base64_cores(secret.encode("utf-8"))
    encoded |= {repr(secret)[1:-1], repr(secret.encode("utf-8"))[2:-1]}
    return "|".join([characters, *(re.escape(form) for form in sorted(encoded) if len(form) >= MIN_ENCODED)])


class Redactor:
    """Replaces every spelling of a few secret values with `REDACTED`, wherever they appear."""

    def __init__(self, *secrets: str | None):
        self.secrets = tuple(sorted({s for s in secrets if s and len(s) >= MIN_SECRET}, key=len, reverse=True))
        self._pattern = (re.compile("|".join(f"(?:{spellings(s)})" for s in self.secrets), re.IGNORECASE)
                         if self.secrets else None)

    def text(self, value: str) -> str:
        return self._pattern.sub(REDACTED, value) if self._pattern else value

    def bytes(self, value: bytes) -> bytes:
        if not self._pattern:
            return value
        return self.text(value.decode("utf-8", "surrogateescape")).encode("utf-8", "surrogateescape")

    def contains(self, value: str) -> bool:
        """Whether any spelling of a secret occurs in `value`."""
        return bool(self._pattern and self._pattern.search(value))

    def headers(self, headers: httpx.Headers | dict[str, str]) -> dict[str, str]:
        """Credential headers are dropped to a marker; an Authorization that does not carry a
        secret (a probe's deliberately wrong one) is kept, so its curl line reproduces it."""
        kept = {}
        for name, value in headers.items():
            name = name.lower()
            if name == "authorization" and not self.contains(value):
                kept[name] = value
            else:
                kept[name] = REDACTED if name in SECRET_HEADERS else self.text(value)
        return kept

    def tree(self, value: Any) -> Any:
        """A copy of JSON-like data with every string (keys included) redacted; depth-first
        without recursion, so no nesting a server sends can exhaust the stack."""
        if not self._pattern:
            return value
        root: list[Any] = [value]
        pending: list[tuple[Any, Any, Any]] = [(root, 0, value)]
        while pending:
            parent, slot, item = pending.pop()
            if isinstance(item, str):
                parent[slot] = self.text(item)
            elif isinstance(item, dict):
                copy: dict[Any, Any] = {}
                for key, child in item.items():
                    key = self.text(key) if isinstance(key, str) else key
                    copy[key] = child
                    pending.append((copy, key, child))
                parent[slot] = copy
            elif isinstance(item, (list, tuple)):
                copied = list(item)
                pending.extend((copied, index, child) for index, child in enumerate(copied))
                parent[slot] = copied
        return root[0]


def url_credentials(url: str | None) -> list[str]:
    """The secrets a URL carries in its userinfo (`http://user:password@host`), as written and decoded."""
    if not url:
        return []
    parts = urlsplit(url.strip())
    found = []
    if parts.password:
        found += [parts.password, unquote(parts.password)]
    userinfo = parts.netloc.rpartition("@")[0]
    if userinfo and parts.password:
        found += [userinfo, unquote(userinfo)]
    return found


def run_redactor(api_key: str | None, base_url: str | None = None, header_values: Iterable[str] = ()) -> Redactor:
    """The redactor for one run: the API key (as given and stripped), the base URL's credentials,
    and the values of the headers the user added."""
    key = [api_key, api_key.strip()] if api_key else []
    return Redactor(*key, *url_credentials(base_url), *header_values)
