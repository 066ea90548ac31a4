"""Streaming lines from .jsonl and .jsonl.gz files in bounded pieces: memory stays flat.

A line longer than the bound is measured by reading it in pieces of `PIECE` bytes and reported as
`Oversize`; it is never held whole. A gzip stream that ends early or is corrupt yields `EarlyEnd`
(the lines before it were already judged). Compression is recognised by its magic bytes, not by
the file name.
"""

from __future__ import annotations

import gzip
import io
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator, Union

GZIP_MAGIC = b"\x1f\x8b"
BUFFER = 1 << 20
PIECE = 1 << 20


class UnreadableFile(Exception):
    """The file cannot be opened or read at all (a usage error, not a finding)."""


@dataclass(frozen=True)
class Oversize:
    size: int  # the line's length in bytes, without its line end


@dataclass(frozen=True)
class EarlyEnd:
    reason: str


Line = Union[bytes, Oversize, EarlyEnd]


def open_dataset(path: Path) -> tuple[BinaryIO, bool]:
    """The file as a binary stream (decompressed when it is gzip), and whether it was compressed."""
    try:
        raw = open(path, "rb", buffering=BUFFER)
    except OSError as problem:
        raise UnreadableFile(f"cannot read {str(path)!r}: {problem.strerror or problem}") from None
    try:
        compressed = raw.peek(2)[:2] == GZIP_MAGIC
    except OSError as problem:
        raw.close()
        raise UnreadableFile(f"cannot read {str(path)!r}: {problem.strerror or problem}") from None
    if not compressed:
        return raw, False
    return io.BufferedReader(gzip.GzipFile(fileobj=raw, mode="rb"), buffer_size=BUFFER), True


def read_lines(stream: BinaryIO, max_bytes: int) -> Iterator[tuple[int, Line]]:
    """(line number from 1, the line's bytes or what went wrong); an `EarlyEnd` is always last."""
    number = 0
    while True:
        number += 1
        try:
            data = stream.readline(max_bytes + 1)
            if not data:
                return
            if len(data) > max_bytes and not data.endswith(b"\n"):
                yield number, Oversize(len(data) + skip_rest_of_line(stream))
                continue
        except (EOFError, OSError, zlib.error) as problem:
            yield number, EarlyEnd(early_end_reason(problem))
            return
        yield number, data


def skip_rest_of_line(stream: BinaryIO) -> int:
    """Read up to the next line end in bounded pieces; the number of bytes skipped, without it."""
    skipped = 0
    while True:
        piece = stream.readline(PIECE)
        if not piece:
            return skipped
        if piece.endswith(b"\n"):
            return skipped + len(piece) - 1
        skipped += len(piece)


def early_end_reason(problem: BaseException) -> str:
    if isinstance(problem, EOFError):
        return "the compressed stream ends before its end-of-stream marker"
    if isinstance(problem, gzip.BadGzipFile):
        return f"the compressed stream is corrupt: {problem}"
    return f"the compressed stream cannot be read: {problem}"
