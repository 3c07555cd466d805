"""Anti-entropy: find and repair a replica whose graph was damaged or rolled back behind
the protocol's back, shipping only the records that differ.

Every ``anti_entropy_ticks`` ticks a quiet leader (everything committed and applied)
sends each caught-up follower the root of a hash tree over its node records
(:mod:`graphrep.protocol.merkle`, a ``TreeRoot``); a follower whose root differs returns
its leaf digests (``TreeLeaves``), and the leader sends the records of the differing
leaves (``Repair``), which the follower overwrites. A follower not caught up when a
round starts is compared as soon as it is (:meth:`AntiEntropy.compare_if_due`, on its
acknowledgement).

Why a collaborator of its own rather than part of the consensus core: it is not
consensus. It reads and rewrites the index (the applier's) outside the log, it runs only
for policies whose replicas promise equal graphs (the applier's ``anti_entropy`` flag),
and the core needs from it only "start a round", "a follower caught up" and the three
message handlers. Kept apart, the core never touches index records, and a variant of the
comparison (:meth:`AntiEntropy.differing_leaves`) is one method to replace.

Invariant: a comparison is made only between states that name the same log position
(``end``), with everything up to it committed and applied on both sides, so a mismatch
is damage, never lag.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from graphrep.ann.records import RecordSet
from graphrep.errors import GraphrepError
from graphrep.protocol.config import FOLLOWER, LEADER
from graphrep.protocol.merkle import MerkleTree, ids_in_leaves
from graphrep.protocol.messages import Repair, TreeLeaves, TreeRoot
from graphrep.sansio import Metric

if TYPE_CHECKING:
    from graphrep.protocol.replica import Replica

__all__ = ["AntiEntropy"]


class AntiEntropy:
    """``AntiEntropy(replica)``: the anti-entropy of one replica (both sides).

    ``tree`` caches ``(applied, MerkleTree)`` of the replica's index; anything that
    changes the index in place sets it to None."""

    def __init__(self, replica: Replica) -> None:
        self.r = replica
        self.tree: tuple[int, MerkleTree] | None = None
        self.compare_due: set[str] = set()
        """Followers owed a comparison in the current round (leader side)."""

    def my_tree(self) -> MerkleTree:
        """The hash tree of the index as applied now (cached per applied position)."""
        r = self.r
        if self.tree is None or self.tree[0] != r.applied:
            ids, hashes = r.index.record_hashes()
            self.tree = (r.applied, MerkleTree.build(ids, hashes, r.config.tree_leaves))
        return self.tree[1]

    @staticmethod
    def differing_leaves(mine: list[bytes], theirs: list[bytes]) -> list[int]:
        """Indices of the leaves whose digests differ (what a repair ships)."""
        return [i for i, (a, b) in enumerate(zip(mine, theirs, strict=True)) if a != b]

    # ------------------------------------------------------------------ leader

    def start(self, out: list) -> None:
        """Start a round: a root to each caught-up follower, the others owed one."""
        r = self.r
        if not r.applier.anti_entropy:
            return
        end = r.end
        if r.commit != end or r.applied != end:
            return  # compare only committed state the followers can also hold
        self.tree = None  # the index may have changed in place (a repair, a test)
        tree = self.my_tree()
        for p in r.peers:
            if r.tracker[p].match == end:
                r.send(out, p, TreeRoot(r.config.shard, r.term, end, tree.root,
                                        r.index.entry_id))
        self.compare_due = {p for p in r.peers if r.tracker[p].match != end}

    def compare_if_due(self, peer: str, out: list) -> None:
        """``peer`` acknowledged: compare it now if it is owed a comparison and caught up."""
        r = self.r
        if peer in self.compare_due and r.tracker[peer].match == r.end == r.commit \
                == r.applied:
            self.compare_due.discard(peer)
            self.tree = None
            r.send(out, peer, TreeRoot(r.config.shard, r.term, r.end, self.my_tree().root,
                                       r.index.entry_id))

    def on_tree_leaves(self, now: int, src: str, m: TreeLeaves, out: list) -> None:
        """A follower's leaf digests: send the records of the leaves that differ."""
        r = self.r
        if m.term != r.term or r.role != LEADER or m.end != r.end or r.applied != r.end:
            return
        mine = self.my_tree().leaf_hashes
        if len(m.leaves) != len(mine):
            return
        leaves = self.differing_leaves(mine, m.leaves)
        ids = ids_in_leaves(r.index.ids(include_deleted=True), leaves, len(mine))
        data = r.index.export_records(ids).to_bytes()
        r.send(out, src, Repair(r.config.shard, r.term, m.end, leaves, data,
                                r.index.entry_id, r.index.seq))
        out.append(Metric("repair_bytes", float(len(data))))

    # ------------------------------------------------------------------ follower

    def on_tree_root(self, now: int, src: str, m: TreeRoot, out: list) -> None:
        """The leader's root: answer with the leaf digests if this index differs."""
        r = self.r
        r.catch_up(out)
        if m.term != r.term or r.role != FOLLOWER or r.applied != m.end:
            return
        self.tree = None
        tree = self.my_tree()
        if tree.root != m.root or r.index.entry_id != m.entry:
            r.send(out, src, TreeLeaves(r.config.shard, r.term, m.end, list(tree.leaf_hashes)))
            out.append(Metric("anti_entropy_mismatches", 1.0))

    def on_repair(self, now: int, src: str, m: Repair, out: list) -> None:
        """The leader's records for the differing leaves: overwrite them (and drop the
        ids of those leaves the leader does not have). A repair that does not apply
        means the index is worse than thought: rebuild it from the snapshot and log."""
        r = self.r
        if m.term != r.term or r.role != FOLLOWER or r.applied != m.end:
            return
        try:
            records = RecordSet.from_bytes(m.records)
            theirs = set(records.ids.tolist())
            here = ids_in_leaves(r.index.ids(include_deleted=True), m.leaves,
                                 r.config.tree_leaves)
            drop = [i for i in here.tolist() if i not in theirs]
            r.index.overwrite_records(records, drop, entry_id=m.entry, seq=m.seq)
        except GraphrepError:
            out.append(Metric("repair_failures", 1.0))
            r.recovery.rebuild(out)
            return
        self.tree = None
        out.append(Metric("repaired_records", float(len(records.ids) + len(drop))))
