"""Placement: which nodes hold a replica of which shard, within the shard's allowed regions.

Data residency is a placement rule, not a network rule: a shard's replicas are chosen
only among nodes in the shard's allowed regions, and a replica sends shard data only to
the other replicas of its shard (``ReplicaConfig.replicas``), so no message carrying a
shard's data ever needs to reach a node outside those regions. The specification
(:mod:`graphrep.spec`) checks that on every delivered message of a run.

Placement is deterministic: candidates are taken in name order, and shard ``s`` starts
at candidate ``s mod len(candidates)``, which spreads shards that share regions over
different nodes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from graphrep.errors import PlacementError

__all__ = ["ShardPlacement", "place"]


@dataclass(frozen=True)
class ShardPlacement:
    """Shard ``shard`` may live only in ``regions``; ``replicas`` are the nodes holding it."""

    shard: int
    regions: tuple[str, ...]
    replicas: tuple[str, ...]


def place(nodes: Mapping[str, str], shards: Mapping[int, Sequence[str]],
          replication: int = 3) -> list[ShardPlacement]:
    """Place every shard on ``replication`` nodes of its allowed regions.

    ``nodes`` maps node name -> region, ``shards`` maps shard -> allowed regions.
    Raises :class:`PlacementError` when a shard's regions hold fewer nodes than
    ``replication`` (say which shard and how many nodes there are).
    """
    if not isinstance(replication, int) or replication < 1:
        raise PlacementError(f"replication must be an int >= 1, got {replication!r}")
    for shard in shards:
        if not isinstance(shard, int) or isinstance(shard, bool) or shard < 0:
            raise PlacementError(f"shard ids are ints >= 0, got {shard!r}")
    out = []
    for shard in sorted(shards):
        allowed = tuple(sorted(set(shards[shard])))
        if not allowed:
            raise PlacementError(f"shard {shard} has no allowed region; give at least one")
        candidates = sorted(n for n, r in nodes.items() if r in allowed)
        if len(candidates) < replication:
            raise PlacementError(
                f"shard {shard} needs {replication} replicas in regions {list(allowed)}, "
                f"but only {len(candidates)} node(s) are there ({candidates}); add nodes "
                "or allow more regions")
        start = shard % len(candidates)
        chosen = tuple(sorted((candidates * 2)[start : start + replication]))
        out.append(ShardPlacement(shard, allowed, chosen))
    return out
