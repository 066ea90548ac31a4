"""`--shard K/N`: which part of a run's cases (checks x models) one process judges.

Every case goes to one shard, the same one in every process (a digest, not Python's salted
`hash`). Assignment is rendezvous hashing with bounded loads: each case ranks the shards by a
digest of (case, shard) and takes the first with room, cases in a fixed digest order, each shard
holding floor(cases / N) or one more. So shards are balanced (sizes differ by at most one), and
adding a check moves few other cases: each case keeps its first choice unless that shard filled
up first.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from conformance.options import Shard


def _rank(*parts: str) -> bytes:
    return hashlib.sha256("\0".join(parts).encode()).digest()


def assign(cases: Sequence[tuple[str, str]], count: int) -> dict[tuple[str, str], int]:
    """Each case's shard (1..count)."""
    room, extra = divmod(len(set(cases)), count)  # `extra` shards hold one case more than the rest
    load = [0] * (count + 1)
    shards: dict[tuple[str, str], int] = {}
    for case in sorted(set(cases), key=lambda c: _rank(*c)):
        for shard in sorted(range(1, count + 1), key=lambda n: _rank(*case, str(n))):
            if load[shard] < room or (load[shard] == room and extra):
                extra -= load[shard] == room
                load[shard] += 1
                shards[case] = shard
                break
    return shards


def in_shard(cases: Sequence[tuple[str, str]], shard: Shard) -> list[tuple[str, str]]:
    """The cases `shard` judges, in the order given."""
    shards = assign(cases, shard.count)
    return [case for case in cases if shards[case] == shard.index]
