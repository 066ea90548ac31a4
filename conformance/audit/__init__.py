"""`conformance audit`: which catalog differences does *this* application depend on?

`sources` walks the SOURCE arguments and finds every use of the OpenAI API (`python_source` parses
Python with `ast`, never running it; `javascript_source` reads request object literals in
JavaScript/TypeScript; `recordings` reads HAR files, VCR cassettes and JSONL request logs), each a
`uses.Use` with its evidence. `rules` loads the mapping rules (data: `conformance/catalog/audit.toml`),
`findings` maps uses through them to catalog entries and the checks that matter, `targets` judges
those entries on documented profiles and, when asked, on live targets (through `conformance run`),
`report` writes JSON, Markdown, HTML and JUnit, and `command` is the CLI entry.
"""
