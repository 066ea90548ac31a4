"""report.html: one self-contained page for people (inline CSS, no scripts, no external assets).

The latency chart is computed here (`latency_chart`) and drawn by the template as inline SVG: one
bar per request the run sent, and for streams the time to the first byte (TTFT) inside it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from statistics import median
from typing import Any

from jinja2 import ChoiceLoader, Environment, PackageLoader, select_autoescape
from markupsafe import Markup, escape

from conformance.report import traffic

#: The one jinja2 set-up of every HTML page: the run's report and the comparison (here), the audit's
#: and the dataset report's (in their packages); all share `_page.html.j2` (styles, colours).
_environment = Environment(loader=ChoiceLoader([PackageLoader(package, "templates") for package in
                                                ("conformance.report", "conformance.audit", "conformance.datasets")]),
                           autoescape=select_autoescape(["html", "j2"]), trim_blocks=True, lstrip_blocks=True)
_environment.filters["pretty"] = lambda value: json.dumps(value, indent=2, ensure_ascii=False) \
    if not isinstance(value, str) else value
_environment.filters["json"] = lambda value: json.dumps(value, ensure_ascii=False)


def code_spans(text: str) -> Markup:
    """Catalog titles use Markdown's `code`; show it as <code> (the rest is escaped as usual)."""
    parts = str(escape(text)).split("`")
    if len(parts) % 2 == 0:  # an unpaired backtick: leave the text as it is
        return Markup("`".join(parts))
    return Markup("".join(f"<code>{part}</code>" if i % 2 else part for i, part in enumerate(parts)))


_environment.filters["code_spans"] = code_spans


def prepare(template: str) -> None:
    """Compile `template` now (jinja2 keeps it), not when the page is first rendered."""
    _environment.get_template(template)


def render_page(template: str, **context: Any) -> str:
    """Render one of the page templates (they share `_page.html.j2`: styles, colours)."""
    return _environment.get_template(template).render(**context)


def render(report: dict[str, Any]) -> str:
    from conformance.report.matrix import groups, is_matrix, matrix_rows

    if is_matrix(report):
        # Folded: a column per group of identically behaving models, each entry and group on demand.
        folded = groups(report)
        members = [[s for s in report["models"] if s["id"] in set(group.models)] for group in folded]
        return render_page("matrix.html.j2", report=report, groups=folded, sections=members,
                           rows=matrix_rows(report, folded), traffic=traffic(report))
    return render_page("report.html.j2", report=report, chart=latency_chart(report), traffic=traffic(report))


# The chart's geometry, in SVG user units (the SVG scales to the page's width); labels are 11px
# monospace, about CHAR_WIDTH units a character.
PLOT_WIDTH, VALUE_WIDTH, CHAR_WIDTH = 560, 150, 6.7
ROW_HEIGHT, BAR_HEIGHT, AXIS_HEIGHT = 18, 12, 24


@dataclass(frozen=True)
class Bar:
    label: str
    y: float
    elapsed_ms: float
    width: float
    ttft_ms: float | None  # streams only: time to the first byte of the response
    ttft_width: float
    status: str
    kind: str  # request, stream, or failed (no response)

    @property
    def text_y(self) -> float:
        return self.y + BAR_HEIGHT - 2


@dataclass(frozen=True)
class Tick:
    x: float
    label: str


@dataclass(frozen=True)
class LatencyChart:
    bars: list[Bar]
    ticks: list[Tick]
    width: int
    height: int
    plot_x: int
    plot_width: int
    axis_y: float
    bar_height: int
    stats: dict[str, str]


def is_stream(exchange: dict[str, Any]) -> bool:
    body = exchange["request"].get("body")
    return isinstance(body, dict) and body.get("stream") is True


def nice_step(largest: float, most_ticks: int = 6) -> float:
    """The smallest 1, 2 or 5 × 10^k step that spans `largest` in at most `most_ticks` steps."""
    raw = max(largest, 1e-9) / most_ticks
    power = 10 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= raw)


def milliseconds(value: float) -> str:
    return f"{value:,.0f} ms" if value >= 10 else f"{value:.1f} ms"


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(fraction * len(ordered)) - 1))]


def latency_chart(report: dict[str, Any]) -> LatencyChart | None:
    """One bar per request, in report order, on a shared millisecond scale; None without requests."""
    labelled = [(result["check_id"] if len(result["evidence"]) == 1 else f"{result['check_id']} #{number}", exchange)
                for result in report["results"] for number, exchange in enumerate(result["evidence"], 1)]
    if not labelled:
        return None
    elapsed = [exchange["elapsed_ms"] for _, exchange in labelled]
    step = nice_step(max(elapsed))
    top = step * max(1, math.ceil(max(elapsed) / step))
    scale = PLOT_WIDTH / top
    label_width = int(CHAR_WIDTH * max(len(label) for label, _ in labelled)) + 16
    bars = []
    for row, (label, exchange) in enumerate(labelled):
        ttft = exchange["first_byte_ms"] if is_stream(exchange) else None
        bars.append(Bar(
            label=label, y=AXIS_HEIGHT + row * ROW_HEIGHT + (ROW_HEIGHT - BAR_HEIGHT) / 2,
            elapsed_ms=exchange["elapsed_ms"], width=max(1.0, exchange["elapsed_ms"] * scale),
            ttft_ms=ttft, ttft_width=max(1.0, (ttft or 0) * scale),
            status=str(exchange["status"] or exchange["failure"] or "no response"),
            kind="failed" if exchange["status"] is None else "stream" if ttft is not None else "request"))
    stats = {"requests": str(len(elapsed)), "median": milliseconds(median(elapsed)),
             "p90": milliseconds(percentile(elapsed, 0.9)), "slowest": milliseconds(max(elapsed))}
    ttfts = [bar.ttft_ms for bar in bars if bar.ttft_ms is not None]
    if ttfts:
        stats.update({"streams": str(len(ttfts)), "median TTFT": milliseconds(median(ttfts))})
    ticks = [Tick(label_width + i * step * scale, milliseconds(i * step) if i else "0")
             for i in range(int(round(top / step)) + 1)]
    return LatencyChart(bars, ticks, label_width + PLOT_WIDTH + VALUE_WIDTH, AXIS_HEIGHT + len(bars) * ROW_HEIGHT + 4,
                        label_width, PLOT_WIDTH, AXIS_HEIGHT - 6, BAR_HEIGHT, stats)
