"""Streaming lines from .jsonl and .jsonl.gz files in bounded pieces: memory stays flat.

The file is read (and, when it is gzip, decompressed with a bounded output per step) in chunks of
`CHUNK` bytes and split into lines here, so a line longer than the bound is measured and reported
as `Oversize` without ever being held whole, and a gzip stream that ends early still yields every
complete line before the point where it ends, then `EarlyEnd`. Compression is recognised by its
magic bytes, not by the file's name; concatenated gzip members are read as one stream.
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

GZIP_MAGIC = b"\x1f\x8b"
CHUNK = 1 << 20


class UnreadableFile(Exception):
    """The file cannot be opened or read at all (a usage error, not a finding)."""


@dataclass(frozen=True)
class Oversize:
    size: int  # the line's length in bytes, without its line end


@dataclass(frozen=True)
class EarlyEnd:
    reason: str


Line = bytes | Oversize | EarlyEnd


def open_dataset(path: Path) -> tuple[io.BufferedReader[io.FileIO], bool]:
    """The raw file, and whether it is gzip-compressed."""
    try:
        raw = io.BufferedReader(io.FileIO(path, "rb"), buffer_size=CHUNK)  # the caller closes it
        compressed = raw.peek(2)[:2] == GZIP_MAGIC
    except OSError as problem:
        raise UnreadableFile(f"cannot read {str(path)!r}: {problem.strerror or problem}") from None
    return raw, compressed


def plain_chunks(raw: BinaryIO) -> Iterator[bytes | EarlyEnd]:
    while True:
        try:
            chunk = raw.read(CHUNK)
        except OSError as problem:
            yield EarlyEnd(f"the file cannot be read further: {problem.strerror or problem}")
            return
        if not chunk:
            return
        yield chunk


def gzip_chunks(raw: BinaryIO) -> Iterator[bytes | EarlyEnd]:
    """Decompressed chunks of at most CHUNK bytes each; EarlyEnd if the stream stops mid-member."""
    decompressor = zlib.decompressobj(wbits=31)
    for data in plain_chunks(raw):
        if isinstance(data, EarlyEnd):
            yield data
            return
        while data:
            try:
                output = decompressor.decompress(data, CHUNK)
            except zlib.error as problem:
                yield EarlyEnd(f"the compressed stream is corrupt: {problem}")
                return
            if output:
                yield output
            data = decompressor.unconsumed_tail
            if decompressor.eof:
                data = decompressor.unused_data
                if data:  # another gzip member follows
                    decompressor = zlib.decompressobj(wbits=31)
    if not decompressor.eof:
        yield EarlyEnd("the compressed stream ends before its end-of-stream marker")


def read_lines(raw: BinaryIO, compressed: bool, max_bytes: int) -> Iterator[tuple[int, Line]]:
    """(line number from 1, the line's bytes without its line end, or what went wrong)."""
    number = 0
    pending: list[bytes] = []  # the current line's pieces so far, at most max_bytes in all
    pending_size = 0
    skipping = False  # the current line is over the bound: only its size is counted
    for chunk in (gzip_chunks(raw) if compressed else plain_chunks(raw)):
        if isinstance(chunk, EarlyEnd):
            yield number + 1, chunk
            return
        parts = chunk.split(b"\n")
        for index, part in enumerate(parts):
            last = index == len(parts) - 1
            if pending_size or skipping:
                pending_size += len(part)
                if not skipping and pending_size > max_bytes:
                    skipping, pending = True, []
                elif not skipping:
                    pending.append(part)
                if last:
                    break
                number += 1
                yield number, (Oversize(pending_size) if skipping else b"".join(pending))
                pending, pending_size, skipping = [], 0, False
            elif last:
                if part:
                    if len(part) > max_bytes:
                        skipping = True
                    else:
                        pending.append(part)
                    pending_size = len(part)
            else:
                number += 1
                yield number, (part if len(part) <= max_bytes else Oversize(len(part)))
    if pending_size or skipping:
        yield number + 1, (Oversize(pending_size) if skipping else b"".join(pending))
