"""The one Redactor: every spelling of every secret goes, and nothing else does."""

from __future__ import annotations

import base64
import json
from urllib.parse import quote

import pytest

from conformance.client import EndpointClient
from conformance.redaction import REDACTED, Redactor, run_redactor

KEY = "sk-sentinel/0123456789+abc def"


def spellings(secret: str) -> list[str]:
    raw = secret.encode()
    forms = [secret, json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1],
             "".join(f"\\u{ord(c):04X}" for c in secret), repr(f"Bearer {secret}\n".encode()),
             quote(secret, safe=""), quote(secret).lower(), secret.replace(" ", "+"), raw.hex(), raw.hex().upper(),
             "".join(f"&#{ord(c)};" for c in secret), secret.upper()]
    for prefix in (b"", b"a", b"ab"):
        for suffix in (b"", b"z", b"zz"):
            encoded = base64.b64encode(prefix + raw + suffix).decode()
            forms += [encoded, encoded.rstrip("="), base64.urlsafe_b64encode(prefix + raw + suffix).decode()]
    return forms


@pytest.mark.parametrize("form", spellings(KEY))
def test_every_spelling_of_the_key_is_redacted(form):
    redacted = Redactor(KEY).text(f"before {form} after")
    core = form[4:-4]  # a base64 form's edges also encode its neighbours ("ab", "zz")
    assert REDACTED in redacted
    assert not [core[i:i + 8] for i in range(len(core) - 7) if core[i:i + 8] in redacted], redacted


def test_bytes_trees_and_headers_are_redacted_too():
    redactor = Redactor(KEY)
    assert redactor.bytes(b"x\xff" + KEY.encode() + b"\xfe") == b"x\xff" + REDACTED.encode() + b"\xfe"
    tree = redactor.tree({KEY: [KEY, {"n": 1, "deep": [[KEY]]}], "kept": None})
    assert tree == {REDACTED: [REDACTED, {"n": 1, "deep": [[REDACTED]]}], "kept": None}
    assert redactor.headers({"Authorization": f"Bearer {KEY}", "X-Echo": KEY, "Authorization-Probe": "x"}) == {
        "authorization": REDACTED, "x-echo": REDACTED, "authorization-probe": "x"}
    assert redactor.headers({"Authorization": "Bearer wrong-key"}) == {"authorization": "Bearer wrong-key"}


def test_ordinary_text_and_short_secrets_are_left_alone():
    text = "sk- sentinel 0123 abc def c2stc2VudGluZWw= 736b2d " + "a" * 100
    assert Redactor(KEY).text(text) == text
    assert Redactor("abc").text("abc") == "abc"
    assert Redactor(None, "").text(KEY) == KEY


def test_a_run_knows_its_key_stripped_its_url_credentials_and_header_values():
    redactor = run_redactor(" sk-pasted-with-newline\n", "https://alice:s3cr%40t-pw@example.test/v1", ["hdr-value-1"])
    text = redactor.text("sk-pasted-with-newline s3cr@t-pw alice:s3cr%40t-pw hdr-value-1 alice")
    assert text == f"{REDACTED} {REDACTED} {REDACTED} {REDACTED} alice"



def test_a_client_redacts_what_its_run_redacts():
    """One builder for both: the client's redactor is `run_redactor` of its key (as given too, not
    only stripped), base URL and headers, so its evidence hides exactly what the run's reports do."""
    key, headers = " sk-pasted-with-newline\n", {"api-key": "hdr-value-0815"}
    client = EndpointClient("http://h.invalid/v1", key, 5, headers=headers)
    assert client.redactor.secrets == run_redactor(key, "http://h.invalid/v1", headers.values()).secrets
