"""One way to declare a check, validated as it registers: mistakes fail at import, naming the file."""

from __future__ import annotations

import importlib.util
import sys

import pytest

from conformance.catalog import load_catalog
from conformance.checks import REGISTRY
from conformance.checks.base import CheckDeclarationError, check


def import_module_file(path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    finally:
        sys.modules.pop(path.stem, None)


def test_an_unknown_entry_fails_at_import_naming_the_entry_and_the_files_to_edit(tmp_path):
    module = tmp_path / "new_checks.py"
    module.write_text("from conformance.checks.base import check\n\n"
                      "@check('no-such-entry', variant='chat')\n"
                      "def probe(ctx):\n    raise AssertionError('never probed')\n")
    with pytest.raises(CheckDeclarationError) as raised:
        import_module_file(module)
    message = str(raised.value)
    assert "'no-such-entry'" in message and str(module) in message
    assert "conformance/catalog/differences.toml" in message
    assert not any(c.entry == "no-such-entry" for c in REGISTRY)


def test_the_old_declarations_fail_loudly_saying_how_to_write_the_new_one():
    with pytest.raises(CheckDeclarationError, match=r"@check\(ENTRY, variant=NAME\)"):
        check("logit-bias/chat", "logit-bias", "logit_bias is accepted (chat)")
    with pytest.raises(CheckDeclarationError, match="variant"):
        check("logit-bias")  # neither variant nor variants
    with pytest.raises(ImportError):
        from conformance.checks.base import check_per_api  # noqa: F401


def test_variant_arguments_the_probe_cannot_take_fail_at_registration():
    def probe(ctx, api):
        raise AssertionError("never probed")

    with pytest.raises(CheckDeclarationError, match=r"logit-bias/chat .*test_check_declaration.py.*cannot take"):
        check("logit-bias", variant="chat")(probe)  # probe(ctx) would lack `api`


def test_a_duplicate_id_fails_at_registration():
    with pytest.raises(CheckDeclarationError, match="duplicate check id 'logit-bias/chat'"):
        check("logit-bias", variant="chat")(lambda ctx: None)


def test_titles_come_from_the_catalog_and_the_variant():
    catalog = load_catalog()
    for registered in REGISTRY:
        variant = registered.id.partition("/")[2]
        assert registered.title == f"{catalog[registered.entry].title} ({variant})"
