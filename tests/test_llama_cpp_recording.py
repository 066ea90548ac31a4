"""Real traffic from a real server nobody here wrote: the whole suite recorded against llama.cpp
(`nox -s live_llama_cpp`; llama-server 0.5.0-dev, commit 0c1e57098, serving Gemma 3 270M Q4_K_M on
CPU with a 2048-token window). Replayed offline with sockets blocked and held to the committed
reports/llama-cpp/report.json: a change that flips any verdict on this real traffic fails here, a
check added since shows as not recorded until `nox -s live_llama_cpp` records it."""

from __future__ import annotations

import json

import pytest

from tests.committed_recordings import ROOT, assert_replay_agrees_with_report, replay

NAME = "llama-cpp"


@pytest.mark.block_network
def test_the_llama_cpp_recording_replays_with_its_committed_verdicts(tmp_path):
    """The verdicts are reports/llama-cpp/report.json's; a check added since shows as not recorded."""
    replayed = assert_replay_agrees_with_report(NAME, tmp_path)
    assert sum(row["observed"] is not None for row in replayed.values()) >= 50  # the recording is whole


def test_a_full_live_run_stays_frugal():
    committed = json.loads((ROOT / "reports" / NAME / "report.json").read_text())
    assert committed["tokens"]["total"] < 3000


@pytest.mark.block_network
def test_llama_cpp_fails_both_vendor_profiles_where_it_differs(tmp_path):
    """Judged at no cost under the shipped profiles: llama.cpp is neither OpenAI nor Fireworks."""
    for profile in ("openai", "fireworks"):
        rows = replay(NAME, profile, tmp_path / profile)
        assert any(row["outcome"] == "fail" for row in rows.values()), profile
