"""The SDK checks' calls run in worker processes (conformance/sdk_worker): the run's own process
never imports an SDK, every request the SDKs make still goes through the run's transport, and the
workers hold neither the key nor the endpoint's address."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx

from conformance import sdk_worker
from conformance.catalog import load_catalog
from conformance.checks import REGISTRY
from conformance.client import EndpointClient
from conformance.profiles import Profile
from conformance.runner import execute
from conformance.sdk_worker import relay
from tests.test_cli import ROOT, subprocess_env

COMPLETION = {"id": "x", "object": "text_completion", "created": 0, "model": "m",
              "choices": [{"index": 0, "text": "ok", "finish_reason": "stop"}]}
SDK_CHECKS = ("openai-sdk/chat", "openai-sdk/completions", "openai-sdk/tools", "stream-error-frame/chat",
              "anthropic-sdk/messages")


def test_no_check_module_imports_an_sdk() -> None:
    """Checks name SDK calls (sdk_worker/*_calls.py); importing an SDK in the run's process would
    cost it the import the workers are there to take elsewhere (about 1.8 s of CPU)."""
    importing = []
    for path in sorted((ROOT / "conformance" / "checks").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(name.split(".")[0] in sdk_worker.PACKAGES for name in names):
                importing.append(f"{path.name}:{node.lineno}")
    assert not importing, f"SDK imports in checks (move the call to conformance/sdk_worker/): {importing}"


def test_a_run_of_the_sdk_checks_imports_no_sdk_in_its_own_process(tmp_path: Path) -> None:
    probe = ("import json, sys; from conformance.cli import main; "
             f"code = main(['run', '--profile', 'none', '--report-dir', {str(tmp_path)!r}, '-k', "
             "'sdk or stream-error-frame']); "
             "print(json.dumps([code, [m for m in ('openai', 'anthropic', 'httpx2') if m in sys.modules]]))")
    completed = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120,
                               env=subprocess_env(), check=True)
    code, imported = json.loads(completed.stdout.strip().splitlines()[-1])
    report = json.loads((tmp_path / "report.json").read_text(encoding="utf-8"))
    assert sorted(r["check_id"] for r in report["results"]) == sorted(SDK_CHECKS)
    assert code == 0 and {r["outcome"] for r in report["results"]} == {"pass"}, report["results"]
    assert imported == []


def test_the_workers_get_the_key_from_no_one_yet_the_endpoint_gets_it(reference_server, monkeypatch) -> None:
    """The reference server refuses a wrong key, so the SDK checks pass only if the run put the real
    key in place of the workers' placeholder; the workers' command lines and environments never
    held it, though the run's environment did."""
    key = "sk-worker-test-key-0123456789"
    server = reference_server("openai", api_key=key)
    monkeypatch.setenv("OPENAI_API_KEY", key)
    client = EndpointClient(server.base_url, key, 10)
    relay.stop()
    try:
        catalog = load_catalog()
        for check_id in ("openai-sdk/chat", "stream-error-frame/chat"):
            check = REGISTRY[check_id]
            result = execute(check, catalog[check.entry], Profile("none", ""), client, server.config.model_id, None)
            assert result.outcome == "pass", result.explain()
            evidence = json.dumps(result.to_dict()["evidence"])
            assert sdk_worker.PLACEHOLDER_KEY not in evidence and sdk_worker.PLACEHOLDER_ORIGIN not in evidence
        worker = relay.shared("openai").worker
        for part in ("cmdline", "environ"):
            assert key.encode() not in Path(f"/proc/{worker.process.pid}/{part}").read_bytes()
    finally:
        client.close()
        relay.stop()


def test_a_worker_that_dies_during_a_call_makes_the_check_an_error_not_a_pass() -> None:
    worker = relay.shared("openai").worker

    def kill_the_worker(request: httpx.Request) -> httpx.Response:  # the call is in flight now
        worker.process.kill()
        worker.process.wait()
        return httpx.Response(200, json=COMPLETION)

    client = EndpointClient("http://worker-dies.invalid/v1", None, 10, transport=httpx.MockTransport(kill_the_worker))
    try:
        check = REGISTRY["openai-sdk/completions"]
        result = execute(check, load_catalog()[check.entry], Profile("none", ""), client, "m", None)
    finally:
        client.close()
    assert result.outcome == "error", result.explain()
    assert "worker process" in result.reason, result.reason


def test_a_worker_that_died_is_replaced_for_the_next_call(reference_server) -> None:
    server = reference_server("openai")
    client = EndpointClient(server.base_url, server.config.api_key, 10)
    dead = relay.shared("openai").worker
    dead.process.kill()
    dead.process.wait()
    try:
        check = REGISTRY["openai-sdk/completions"]
        result = execute(check, load_catalog()[check.entry], Profile("none", ""), client, server.config.model_id,
                         None)
    finally:
        client.close()
    assert result.outcome == "pass", result.explain()
    assert relay.shared("openai").worker is not dead


def test_a_forked_child_gets_a_worker_of_its_own_and_no_socket_is_left_on_disk(tmp_path, monkeypatch) -> None:
    """A forked child cannot use its parent's connection (its listening thread stayed in the
    parent), nor reach the parent's worker (its socket's path is gone): it starts its own, whose SDK
    calls work for it. A process ended by os._exit (as a matrix's case worker is) leaves nothing
    on disk: the paths go as soon as their process connected."""
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    tempfile.tempdir = None  # read $TMPDIR again
    relay.stop()
    parents = relay.shared("openai")
    child = os.fork()
    if child == 0:  # the child: a channel of its own, and a check through it
        code = 1
        try:
            own = relay.shared("openai")
            client = EndpointClient("http://forked.invalid/v1", None, 10, transport=httpx.MockTransport(
                lambda request: httpx.Response(200, json=COMPLETION)))
            check = REGISTRY["openai-sdk/completions"]
            result = execute(check, load_catalog()[check.entry], Profile("none", ""), client, "m", None)
            if own is not parents and own.worker.process.pid != parents.worker.process.pid:
                code = 0 if result.outcome == "pass" else 3
        finally:
            os._exit(code)
    _, status = os.waitpid(child, 0)
    try:
        assert os.waitstatus_to_exitcode(status) == 0
        assert parents.worker.alive() and relay.shared("openai") is parents
        assert list(tmp_path.iterdir()) == []
    finally:
        relay.stop()
        tempfile.tempdir = None
