"""`conformance dataset`: validate fine-tuning JSONL files against OpenAI's and Fireworks' rules.

The rules are data (`conformance/catalog/datasets.toml`, loaded by `catalog`); each has one small
function in `rules`. `reader` streams lines from .jsonl / .jsonl.gz in bounded pieces, `formats`
tells a chat, preference or legacy example apart, `judge` runs the rules over one file and keeps
bounded findings, `report` writes JSON, Markdown, HTML and JUnit, `command` is the CLI entry.
"""

TARGETS = ("openai", "fireworks")
