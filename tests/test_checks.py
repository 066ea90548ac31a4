"""Every check, against the reference server showing each behaviour it can show for the check's
entry: the check must observe exactly that behaviour, and fail (with evidence and a curl line)
under a profile that expects anything else. This is the proof that no check is vacuous."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from conformance.catalog import load_catalog
from conformance.checks import REGISTRY
from conformance.client import EndpointClient
from conformance.profiles import Profile, load_profile
from conformance.reference_server.config import CAPABILITIES
from conformance.runner import execute

CATALOG = load_catalog()
#: Servers of the whole-suite tests require a key, as the embedded one does, so the
#: missing/wrong-key checks have a refusal to observe.
KEY = "sk-checks-test-0123456789"


_clients: dict[str, EndpointClient] = {}


def run_check(server, check, profile: Profile):
    """Execute one check; one client per server, as in a real run (building one costs ~15 ms)."""
    if server.base_url not in _clients:
        _clients[server.base_url] = EndpointClient(server.base_url, server.config.api_key, timeout=10)
    return execute(check, CATALOG[check.entry], profile, _clients[server.base_url], server.config.model_id, None)


def test_every_entry_has_a_check_and_every_check_an_entry():
    checked = {check.entry for check in REGISTRY}
    assert set(CATALOG.entries) - checked == set(), (
        "catalog entries without a check: declare one with @check(ENTRY, variant=...) in conformance/checks/<area>.py "
        "(CONTRIBUTING.md, step 2)")
    assert checked - set(CATALOG.entries) == set(), (
        "checks naming no catalog entry: add the entry to conformance/catalog/differences.toml "
        "(CONTRIBUTING.md, step 1)")


def test_the_server_can_deviate_on_every_entry():
    assert set(CATALOG.entries) - set(CAPABILITIES) == set(), (
        "entries the reference server cannot show: list their behaviours in CAPABILITIES "
        "(conformance/reference_server/config.py) and act them out in conformance/reference_server/app.py "
        "(CONTRIBUTING.md, step 4)")
    assert set(CAPABILITIES) - set(CATALOG.entries) == set(), (
        "CAPABILITIES (conformance/reference_server/config.py) names entries the catalog lacks")
    for entry_id, behaviours in CAPABILITIES.items():
        assert set(behaviours) <= set(CATALOG[entry_id].vocabulary), (
            f"{entry_id}: CAPABILITIES (conformance/reference_server/config.py) lists behaviours the entry's "
            "[entry.behaviours] in conformance/catalog/differences.toml does not")
        if len(behaviours) < 2:  # the common surface deviates through rule-break faults: tests/test_surface.py
            assert CATALOG[entry_id].area == "surface", f"{entry_id}: no way to make the reference server deviate"


CASES = [(check, behaviour) for check in REGISTRY for behaviour in CAPABILITIES[check.entry]
         if len(CAPABILITIES[check.entry]) > 1]


@pytest.mark.parametrize(("check", "behaviour"), CASES, ids=[f"{c.id}={b}" for c, b in CASES])
def test_check_observes_what_the_server_does(reference_server, check, behaviour):
    server = reference_server("openai", {check.entry: behaviour}, api_key=KEY)
    others = [b for b in CAPABILITIES[check.entry] if b != behaviour]

    observed = run_check(server, check, Profile("none", ""))
    assert (observed.outcome, observed.observed) == ("pass", behaviour), observed.explain()
    assert observed.evidence and observed.curl[0].startswith("curl ")

    judged = run_check(server, check, Profile("expects-otherwise", "", {check.entry: others}))
    assert judged.outcome == "fail"
    message = judged.explain()
    assert f"observed {behaviour}" in message and "reproduce: curl" in message


@pytest.mark.parametrize("vendor", ["openai", "fireworks", "anthropic"])
def test_profile_none_classifies_every_entry_as_the_server_behaves(reference_server, vendor):
    server = reference_server(vendor, api_key=KEY)
    for check in REGISTRY:
        if CATALOG[check.entry].api not in server.config.apis:
            continue  # a family the server does not serve: test_families.py
        result = run_check(server, check, Profile("none", ""))
        assert result.observed == server.config.acts(check.entry), result.explain()


def test_the_readme_table_lists_every_entry():
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    first_cells = re.findall(r"^\| (`[^|]+)\|", readme, flags=re.MULTILINE)
    listed = {entry for cell in first_cells for entry in re.findall(r"`([a-z0-9-]+)`", cell)}
    assert set(CATALOG.entries) - listed == set(), (
        "entries missing from the table under README.md's 'What is checked': add a row (CONTRIBUTING.md, step 6)")


@pytest.mark.parametrize("vendor", ["openai", "fireworks", "anthropic"])
def test_shipped_profiles_cover_what_their_vendor_documents(vendor):
    profile = load_profile(vendor, CATALOG)
    for entry in CATALOG:
        if entry.api not in profile.apis:
            assert profile.expected(entry.id) is None, f"{vendor} judges {entry.id} of a family it does not serve"
            continue
        assert set(entry.vendor_behaviours(vendor)) <= set(profile.expected(entry.id) or []), (
            f"{entry.id}: add `{entry.id} = {entry.vendor_behaviours(vendor)}` to [expect] in "
            f"conformance/profiles/{vendor}.toml (CONTRIBUTING.md, step 3)")


@pytest.mark.parametrize(("server_vendor", "profile_name"),
                         [("openai", "openai"), ("fireworks", "fireworks"), ("openai", "fireworks"),
                          ("fireworks", "openai"), ("anthropic", "anthropic"), ("fireworks", "anthropic"),
                          ("anthropic", "fireworks")])
def test_profiles_fail_exactly_where_the_documents_differ(reference_server, server_vendor, profile_name):
    """Over the families both serve and judge (test_families.py: a family one does not serve)."""
    server = reference_server(server_vendor, api_key=KEY)
    profile = load_profile(profile_name, CATALOG)
    judged = [check for check in REGISTRY if CATALOG[check.entry].api in set(server.config.apis) & set(profile.apis)]
    results = [run_check(server, check, profile) for check in judged]
    failing = {result.entry_id for result in results if result.outcome != "pass"}
    differ = {entry.id for entry in CATALOG if entry.api in set(server.config.apis) & set(profile.apis)
              and server.config.acts(entry.id) not in (profile.expected(entry.id) or [])}
    assert failing == differ
    assert bool(failing) == (server_vendor != profile_name)


def test_reasons_count_what_was_sent(reference_server, monkeypatch):
    """A reason says how many fields went out, counted from the list sent (it said "six" whatever
    the list held): with one field fewer, it says 5."""
    from conformance.checks import extensions, requests

    monkeypatch.delitem(requests.DOCUMENTED_FIELDS, "user")
    monkeypatch.delitem(extensions.SAMPLING_EXTENSIONS, "echo_last")
    documented = run_check(reference_server("openai", api_key=KEY), REGISTRY["documented-optional-fields/chat"],
                           load_profile("openai", CATALOG))
    sampling = run_check(reference_server("fireworks", api_key=KEY), REGISTRY["fireworks-sampling-extensions/chat"],
                         load_profile("fireworks", CATALOG))
    assert documented.reason.startswith("all 5 documented fields accepted;"), documented.reason
    assert sampling.reason.startswith("all 5 accepted;"), sampling.reason
