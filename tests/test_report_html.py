"""report.html's parts for people: the coloured entry matrix and the latency chart (inline SVG)."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_report import Page

from conformance.compare import load_report
from conformance.report import build_report
from conformance.report.html import PLOT_WIDTH, code_spans, latency_chart, nice_step, render

REPORT = Path(__file__).resolve().parents[1] / "reports" / "reference-fireworks" / "report.json"


@pytest.fixture(scope="module")
def report() -> dict:
    return load_report(REPORT)


def test_one_bar_per_request_on_one_scale(report) -> None:
    chart = latency_chart(report)
    exchanges = [e for r in report["results"] for e in r["evidence"]]
    assert len(chart.bars) == len(exchanges) > 0
    for bar, exchange in zip(chart.bars, exchanges, strict=True):
        assert bar.elapsed_ms == exchange["elapsed_ms"]
    assert len({round(bar.width / bar.elapsed_ms, 6) for bar in chart.bars if bar.width > 1}) == 1  # one scale
    assert PLOT_WIDTH / 2 < max(bar.width for bar in chart.bars) <= PLOT_WIDTH  # and it uses the room
    assert [t.label for t in chart.ticks][0] == "0" and chart.ticks[-1].x == chart.plot_x + PLOT_WIDTH


def test_streams_show_time_to_first_token(report) -> None:
    chart = latency_chart(report)
    streams = [bar for bar in chart.bars if bar.ttft_ms is not None]
    assert streams and all(bar.kind == "stream" and bar.ttft_width <= bar.width + 1e-9 for bar in streams)
    assert all(bar.kind == "request" for bar in chart.bars if bar.ttft_ms is None)
    assert "median TTFT" in chart.stats and chart.stats["requests"] == str(len(chart.bars))
    assert any(bar.label == "stream-usage-default/chat" for bar in streams)


def test_the_page_draws_the_chart_and_the_matrix(report) -> None:
    html = render(report)
    page = Page()
    page.feed(html)
    page.close()
    assert page.open == []
    tags = [tag for tag, _ in page.tags]
    assert tags.count("svg") == 1 and tags.count("details") >= sum(len(r["evidence"]) for r in report["results"])
    rects = [attributes for tag, attributes in page.tags if tag == "rect"]
    assert len(rects) == len(latency_chart(report).bars) + sum(1 for b in latency_chart(report).bars if b.ttft_ms)
    cells = [a["class"] for t, a in page.tags if t == "td" and (a.get("class") or "").startswith("cell ")]
    assert cells.count("cell pass") == len(report["entries"]) + len(report["results"])


def test_a_report_without_requests_has_no_chart() -> None:
    report = build_report(None, "nothing listens", "http://127.0.0.1:9/v1")
    assert latency_chart(report) is None
    assert "<svg" not in render(report)


@pytest.mark.parametrize("largest, step", [(0.3, 0.05), (7, 2), (56, 10), (61, 20), (950, 200), (12_000, 2000)])
def test_nice_steps(largest, step) -> None:
    assert nice_step(largest) == pytest.approx(step)


def test_titles_show_code_and_stay_escaped() -> None:
    assert code_spans("`top_logprobs` above 5") == "<code>top_logprobs</code> above 5"
    assert code_spans("<b>`x`</b>") == "&lt;b&gt;<code>x</code>&lt;/b&gt;"
    assert code_spans("an odd ` tick") == "an odd ` tick"
