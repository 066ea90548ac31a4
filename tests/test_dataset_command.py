"""`conformance dataset`: exit codes, the four reports (schema-valid, escaped, written atomically),
the strict rules file, the reader's line splitting, and the documented example files."""

from __future__ import annotations

import gzip
import io
import json
import re
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from conformance._toml import toml_reader
from conformance.cli import main
from conformance.datasets import reader
from conformance.datasets.catalog import RulesError, load_rules, parse_rules
from conformance.datasets.rules import PARAMETERS

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "tests" / "data" / "datasets"
SFT = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}]}


def write_lines(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def run(capsys, *arguments: str) -> tuple[int, str, str]:
    code = main(["dataset", *arguments])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def report_of(directory: Path) -> dict:
    report = json.loads((directory / "dataset-report.json").read_text(encoding="utf-8"))
    schema = json.loads((ROOT / "schemas" / "dataset-report.schema.json").read_text(encoding="utf-8"))
    assert list(Draft202012Validator(schema).iter_errors(report)) == []
    return report


def test_a_valid_file_exits_0_and_writes_every_report(tmp_path, capsys):
    path = write_lines(tmp_path / "train.jsonl", [SFT] * 10)
    code, out, _ = run(capsys, str(path), "--report-dir", str(tmp_path / "out"))
    assert code == 0 and "openai: valid" in out and "fireworks: valid" in out
    report = report_of(tmp_path / "out")
    assert report["valid"] == {"openai": True, "fireworks": True} and report["files"][0]["findings"] == []
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "dataset-junit.xml", "dataset-report.html", "dataset-report.json", "dataset-report.md"]


def test_error_findings_exit_1_and_name_the_target(tmp_path, capsys):
    path = write_lines(tmp_path / "train.jsonl", [SFT] * 5)
    assert run(capsys, str(path), "--profile", "fireworks")[0] == 0
    code, out, _ = run(capsys, str(path), "--profile", "openai", "--report-dir", str(tmp_path / "out"))
    assert code == 1 and "openai: NOT valid" in out
    section = report_of(tmp_path / "out")["files"][0]
    assert section["conversion"] == {"openai": ["bring the example count to at least 10 for openai (has 5)"]}


def test_warnings_alone_keep_exit_0(tmp_path, capsys):
    path = write_lines(tmp_path / "train.jsonl", [{"messages": SFT["messages"] + [{"role": "user",
                                                                                   "content": "?"}]}] * 10)
    code, _, _ = run(capsys, str(path), "--report-dir", str(tmp_path / "out"))
    assert code == 0
    assert report_of(tmp_path / "out")["files"][0]["warnings"] == {"openai": 10, "fireworks": 10}


@pytest.mark.parametrize("content", [b'{\n  "messages": []\n}\n', bytes(range(256)) * 40, b"[1]\n[2]\n"])
def test_not_jsonl_at_all_is_a_usage_error(tmp_path, capsys, content):
    path = tmp_path / "train.jsonl"
    path.write_bytes(content)
    code, _, err = run(capsys, str(path), "--report-dir", str(tmp_path / "out"))
    assert code == 2 and "is not JSONL" in err and err.count("\n") == 1
    assert report_of(tmp_path / "out")["files"][0]["problem"]


def test_an_unreadable_file_is_a_usage_error_and_the_others_are_still_judged(tmp_path, capsys):
    good = write_lines(tmp_path / "train.jsonl", [SFT] * 10)
    code, out, err = run(capsys, str(tmp_path / "missing.jsonl"), str(good), str(tmp_path))
    assert code == 2 and "cannot read" in err and len(err.strip().splitlines()) == 2
    assert f"{good}: 10 lines, 10 sft" in out


def test_markdown_html_and_junit_escape_what_the_dataset_holds(tmp_path, capsys):
    hostile = "<script>alert(1)</script>|`x`|[link](javascript:alert(1))\nsecond line\\|end"
    row = {"messages": [{"role": "user", "content": "Hi", hostile: 1}, {"role": "assistant", "content": "Hello."}]}
    path = write_lines(tmp_path / "a|b`c<i>.jsonl", [row] * 10)
    run(capsys, str(path), "--report-dir", str(tmp_path / "out"))
    markdown = (tmp_path / "out" / "dataset-report.md").read_text(encoding="utf-8")
    outside_code = re.sub(r"(`+)(?!`).*?(?<!`)\1(?!`)", "", markdown)  # code spans show markup literally
    assert "<script>" not in outside_code and "](javascript" not in outside_code and "`" not in outside_code.replace(
        "\\`", "")
    # The Markdown report's own code spans: a line break shown escaped, a backslash before a pipe
    # not left to escape the pipe's escape (before: a second, weaker code helper).
    assert "``/messages/0/<script>alert(1)<~1script>\\|`x`\\|[link](javascript:alert(1))\\nsecond line\u29f5\\|end``" \
        in markdown
    for line in markdown.splitlines():
        if re.match(r"\| \d+ \|", line):  # a finding's row
            assert line.replace("\\|", "").count("|") == 7 and "\\\\|" not in line  # the table keeps its columns
    html = (tmp_path / "out" / "dataset-report.html").read_text(encoding="utf-8")
    assert "<script>" not in html and "&lt;script&gt;" in html and "<i>" not in html
    suites = ElementTree.parse(tmp_path / "out" / "dataset-junit.xml").getroot()
    cases = suites.find("testsuite").findall("testcase")
    assert len(cases) == len(load_rules()) + 1  # one per rule, plus "readable"
    failing = [case.get("name") for case in cases if case.find("failure") is not None]
    assert failing == ["message-unknown-key"]


def test_reports_are_replaced_atomically(tmp_path, capsys, monkeypatch):
    path = write_lines(tmp_path / "train.jsonl", [SFT] * 10)
    out = tmp_path / "out"
    run(capsys, str(path), "--report-dir", str(out))
    before = (out / "dataset-report.json").read_text(encoding="utf-8")

    def broken(report):
        raise OSError(28, "No space left on device")

    from conformance.datasets import report as report_module
    monkeypatch.setattr(report_module, "render_html", broken)
    code, _, err = run(capsys, str(path), "--report-dir", str(out))
    assert code == 2 and "No space left" in err
    assert (out / "dataset-report.json").read_text(encoding="utf-8").startswith("{")
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["dataset-junit.xml", "dataset-report.html", "dataset-report.json", "dataset-report.md"]), "no temp file left"
    assert json.loads(before)["valid"]


def test_the_rules_file_is_strict():
    data = toml_reader.loads((ROOT / "conformance" / "catalog" / "datasets.toml").read_text(encoding="utf-8"))
    assert set(parse_rules(data, PARAMETERS)) == set(PARAMETERS)
    unknown_key = {**data, "rule": [{**data["rule"][0], "severity": "error"}] + data["rule"][1:]}
    with pytest.raises(RulesError, match="Additional properties"):
        parse_rules(unknown_key, PARAMETERS)
    wrong_params = {**data, "rule": [{**r, "params": {"max_lines": 1}} if r["id"] == "line-size" else r
                                     for r in data["rule"]]}
    with pytest.raises(RulesError, match="line-size"):
        parse_rules(wrong_params, PARAMETERS)
    dangling = {**data, "rule": [{**data["rule"][0], "sources": [{"source": "nowhere",
                                                                  "section": "x"}]}] + data["rule"][1:]}
    with pytest.raises(RulesError, match="unknown sources"):
        parse_rules(dangling, PARAMETERS)
    with pytest.raises(RulesError, match="no rule documents"):
        parse_rules({**data, "rule": data["rule"][1:]}, PARAMETERS)


def test_every_rule_cites_a_source_and_says_whether_it_is_on_disk():
    for rule in load_rules().values():
        assert rule.citations
        for citation in rule.citations:
            assert "on disk" in str(citation)


@settings(max_examples=300, deadline=None)
@given(lines=st.lists(st.binary(max_size=12).filter(lambda b: b"\n" not in b), max_size=6),
       final_newline=st.booleans(), chunk=st.integers(1, 7), bound=st.integers(1, 8))
def test_the_reader_splits_lines_like_bytes_split_whatever_the_chunk_size(lines, final_newline, chunk, bound):
    data = b"\n".join(lines) + (b"\n" if final_newline and lines else b"")
    expected = data.split(b"\n")
    if expected[-1] == b"":
        expected.pop()
    original = reader.CHUNK
    reader.CHUNK = chunk
    try:
        got = list(reader.read_lines(io.BytesIO(data), False, bound))
    finally:
        reader.CHUNK = original
    assert got == [(n, line if len(line) <= bound else reader.Oversize(len(line))) for n, line in enumerate(expected,
                                                                                                            1)]


def test_concatenated_gzip_members_are_one_stream(tmp_path, capsys):
    path = tmp_path / "train.jsonl.gz"
    body = "".join(json.dumps(SFT) + "\n" for _ in range(5)).encode()
    path.write_bytes(gzip.compress(body) + gzip.compress(body))
    code, out, _ = run(capsys, str(path))
    assert code == 0 and "10 lines, 10 sft" in out


# The documented examples (tests/data/datasets/PROVENANCE.md) and what each target makes of them.
EXPECTED = {
    "openai-spec-examples.jsonl": {
        "openai": [("example-count", 0, "")],
        "fireworks": [("image-url", 2, "/messages/0/content/1/image_url/url"), ("message-role", 1,
                                                                                "/messages/0/role")]},
    "openai-guide-marv.jsonl": {"openai": [("example-count", 0, "")], "fireworks": []},
    "openai-guide-dpo.jsonl": {"openai": [("example-count", 0, "")], "fireworks": [("example-count", 0, "")]},
    "fireworks-seed-features.jsonl": {
        "openai": [("example-count", 0, ""), ("message-unknown-key", 1, "/messages/2/reasoning_content"),
                   ("sample-weight", 1, "/weight"), ("sample-weight", 2, "/weight"), ("sample-weight", 3, "/weight")],
        "fireworks": []},
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
@pytest.mark.parametrize("target", ["openai", "fireworks"])
def test_documented_examples(tmp_path, capsys, name, target):
    out = tmp_path / "out"
    code, _, _ = run(capsys, str(EXAMPLES / name), "--profile", target, "--report-dir", str(out))
    findings = sorted((f["rule"], f["line"], f["pointer"]) for f in report_of(out)["files"][0]["findings"])
    assert findings == sorted(EXPECTED[name][target])
    assert code == (1 if findings else 0)


def test_keys_no_writer_can_hold_still_give_valid_reports(tmp_path, capsys):
    """A lone surrogate and a control character in keys reach the findings' pointers: report.json
    stays valid UTF-8 JSON and junit.xml well-formed (the JSON writer used to raise on the first)."""
    line = '{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "ok", ' \
           '"\\ud800": 1, "\\u0001": 2}]}\n'
    dataset = tmp_path / "odd.jsonl"
    dataset.write_text(line * 12, encoding="utf-8")
    code = main(["dataset", str(dataset), "--report-dir", str(tmp_path / "reports")])
    assert code in (0, 1), capsys.readouterr().err
    report = json.loads((tmp_path / "reports" / "dataset-report.json").read_text(encoding="utf-8"))
    assert report["files"][0]["findings"]
    ElementTree.parse(tmp_path / "reports" / "dataset-junit.xml")
