"""report.md: the compatibility table, fit for a pull request or $GITHUB_STEP_SUMMARY."""

from __future__ import annotations

from typing import Any

MARK = {"pass": "✅ pass", "fail": "❌ fail", "error": "💥 error", "inconclusive": "❔ inconclusive", "skip": "⏭️ skip"}


def cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def render(report: dict[str, Any]) -> str:
    endpoint = report["endpoint"]
    profile = report["profile"] or {"name": "-"}
    lines = [
        "# Conformance report",
        "",
        f"- Endpoint: `{endpoint['base_url']}`" + (" (embedded reference server)" if endpoint.get("embedded") else ""),
        f"- Model: `{report['model']}`",
        f"- Profile: `{profile['name']}`",
        f"- Started: {report['started_at']}, took {report['duration_s']:.1f}s, status **{report['status']}**",
        f"- Requests: {report['requests']}; tokens: {report['tokens']['prompt']} prompt + "
        f"{report['tokens']['completion']} completion",
        f"- conformance {report['tool']['version']}",
    ]
    if report.get("message"):
        lines += ["", f"> {cell(report['message'])}"]
    summary = ", ".join(f"{n} {outcome}" for outcome, n in report["summary"].items() if n)
    lines += ["", f"**{summary or 'no checks ran'}**", ""]
    if report["entries"]:
        lines += ["## By catalog entry", "", "| Entry | Expected | Observed | Outcome | Matches documents |",
                  "|---|---|---|---|---|"]
        for row in report["entries"]:
            expected = " or ".join(row["expected"]) if row["expected"] else "any"
            lines.append(f"| `{row['id']}` {cell(row['title'])} | {expected} | {', '.join(row['observed']) or '-'} "
                         f"| {MARK[row['outcome']]} | {cell('; '.join(row['matches'])) or '-'} |")
        lines.append("")
    if report["results"]:
        lines += ["## Checks", "", "| Check | Expected | Observed | Outcome | Why |", "|---|---|---|---|---|"]
        for result in report["results"]:
            expected = " or ".join(result["expected"]) if result["expected"] else "any"
            lines.append(f"| `{result['check_id']}` | {expected} | {result['observed'] or '-'} | "
                         f"{MARK[result['outcome']]} | {cell(result['reason'])} |")
        problems = [r for r in report["results"] if r["outcome"] in ("fail", "error")]
        if problems:
            lines += ["", "## Failures and errors", ""]
            for result in problems:
                lines += [f"### `{result['check_id']}`", "", cell(result["reason"]), "", "```sh",
                          *result["curl"], "```", ""]
    return "\n".join(lines) + "\n"
