"""One import point for a TOML reader: stdlib `tomllib` on 3.11+, the `tomli` backport before."""

import sys

if sys.version_info >= (3, 11):
    import tomllib as toml_reader
else:  # pragma: no cover - exercised only on Python 3.10
    import tomli as toml_reader

__all__ = ["toml_reader"]
