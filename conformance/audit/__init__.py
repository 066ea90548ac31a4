"""`conformance audit`: which catalog differences does *this* application depend on?

`sources` finds every use of the OpenAI API in a code base or in recorded traffic (`python_source`
parses Python with `ast`, never running it; `javascript_source` scans request object literals in
JavaScript/TypeScript; `recordings` reads HAR files, VCR cassettes and JSONL request logs), each a
`uses.Use` with its evidence. `rules` loads the mapping rules (data: `conformance/catalog/audit.toml`),
`targets` judges the relevant entries on documented profiles and, when asked, live targets (through
`conformance run`), `report` writes JSON, Markdown, HTML and JUnit, and `command` is the CLI entry.
"""
