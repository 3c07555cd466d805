"""Shipping between regions, for active-active policies (the applier's ``active_active``).

Each region's group commits its own writes; every ``ship_ticks`` ticks its leader sends
a :class:`~.messages.Pull` with its version vector to one replica of each other region's
group (round robin over the group, so a replica that is down or behind costs one round).
Any replica answers from its *committed* log with a :class:`~.messages.Ship`: the entries
the puller lacks, in its log order, at most ``ship_batch``. The puller's leader appends
each entry that is the next of its origin region (a duplicate or an entry past a gap is
skipped; the next pull asks again), merges it, and replicates it in its region like a
local write.

One pull per region is in flight at a time: the next goes when its shipment arrives, or
after :data:`PULL_TIMEOUT_ROUNDS` rounds without one (a lost message). A cross-region
round trip (up to 240 ms between the preset regions) is longer than a round (50 ms by
default), so pulling every round regardless would ship the same entries several times.
A full batch is pulled again at once: a region catching up does not wait for rounds.

Why pulls: the puller says what it has, so a lost message, a crashed leader or a healed
partition costs at most one round; entries come in the shipper's log order, which puts
every entry after the ones it was computed from, relayed entries of third regions
included (a region cut off from one region still gets that region's writes through the
others). A shipper serves only committed entries, which no failover takes back.

Every replica remembers the most each other region has been heard to hold (the version
vectors of its pulls and shipments) and compacts its log only below what they all
hold: a region cut off for a while catches up by entries when it comes back.

Residency: replicas pull from and answer only the groups in ``ReplicaConfig.regions``,
the regions allowed to hold the shard; a pull from any other node is refused.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from graphrep.errors import ProtocolError
from graphrep.protocol.config import LEADER
from graphrep.protocol.messages import MERGE, Pull, Ship
from graphrep.sansio import Metric

if TYPE_CHECKING:
    from graphrep.protocol.replica import Replica

__all__ = ["PULL_TIMEOUT_ROUNDS", "Shipping"]

PULL_TIMEOUT_ROUNDS = 10
"""Rounds (of ``ship_ticks`` ticks) after which a pull that got no shipment is sent again."""


class Shipping:
    """The shipping side of one replica (idle unless its applier is active-active)."""

    def __init__(self, replica: Replica) -> None:
        self.r = replica
        cfg = replica.config
        self.on = bool(replica.applier.active_active and cfg.regions)
        self.others = [(region, group) for region, group in cfg.regions
                       if region != cfg.region and group]
        self.members = {n: region for region, group in cfg.regions for n in group}
        self.rounds = 0
        self.outstanding: dict[str, int] = {}
        """Per other region, the round its unanswered pull went out in."""
        self.seen: dict[str, list[int]] = {region: [0] * len(cfg.regions)
                                           for region, _ in self.others}
        """Per other region, the most it has been heard to hold (from its pulls and
        shipments): the log keeps what a region may still need (:meth:`keep_from`)."""

    def tick(self, out: list) -> None:
        """A leader's tick: pull from each other region every ``ship_ticks``."""
        r = self.r
        if not self.on or r.role != LEADER or r.ticks % r.config.ship_ticks:
            return
        self.rounds += 1
        vv = r.applier.version_vector()
        for region, group in self.others:
            sent = self.outstanding.get(region)
            if sent is not None and self.rounds - sent < PULL_TIMEOUT_ROUNDS:
                continue
            self.outstanding[region] = self.rounds
            r.send(out, group[self.rounds % len(group)],
                   Pull(r.config.shard, r.config.region, vv))
        r.applier.on_round()
        body = r.applier.take_links()  # e.g. ``ordered``'s tick, when writes wait for it
        if body is not None:
            r.applier.linked(r.log.append((r.term, MERGE, body), out))
            r.after_append(out)

    def _heard(self, region: str, vv: list[int]) -> None:
        seen = self.seen[region]
        for k, v in enumerate(vv):
            if v > seen[k]:
                seen[k] = v

    def keep_from(self, end: int) -> int:
        """The first log position that another region may still need (``end`` if none):
        compaction keeps the log from there, so a region cut off for a while catches up
        by entries. Until a region has been heard from, it may need everything."""
        if not self.on:
            return end
        return min([end] + [self.r.applier.first_needed(vv) for vv in self.seen.values()])

    def _check_peer(self, src: str, region: str) -> None:
        if self.members.get(src) != region or region == self.r.config.region:
            raise ProtocolError(f"{src!r} is not a replica of this shard in region "
                                f"{region!r}: only the shard's regions ship to each other")

    def on_pull(self, now: int, src: str, m: Pull, out: list) -> None:
        r = self.r
        if not self.on:
            raise ProtocolError("a pull for a shard that is not active-active")
        self._check_peer(src, m.region)
        if len(m.vv) != len(r.config.regions):
            raise ProtocolError(f"a pull's version vector has {len(m.vv)} entries, the shard "
                                f"has {len(r.config.regions)} regions")
        self._heard(m.region, m.vv)
        end = min(r.commit, r.applied)
        bodies = r.applier.shippable(r.log, end, m.vv, r.config.ship_batch)
        r.send(out, src, Ship(r.config.shard, r.config.region, bodies,
                              r.applier.version_vector()))

    def on_ship(self, now: int, src: str, m: Ship, out: list) -> None:
        r = self.r
        if not self.on:
            raise ProtocolError("a shipment for a shard that is not active-active")
        self._check_peer(src, m.region)
        if len(m.vv) == len(r.config.regions):
            self._heard(m.region, m.vv)
        if r.role != LEADER:
            return
        self.outstanding.pop(m.region, None)
        if not m.entries:
            return
        a = r.applier
        keys = [a.check_remote(body) for body in m.entries]  # all checked before any merge
        vv = a.version_vector()
        took = 0
        for body, (origin, seq) in zip(m.entries, keys, strict=True):
            if seq <= vv[origin]:
                continue  # already here
            if seq != vv[origin] + 1:
                break  # a gap: the next pull asks again
            pos = r.log.append((r.term, MERGE, body), out)
            r.merge_shipped(body, pos)
            vv[origin] = seq
            took += 1
        if not took:
            return
        links = a.take_links()  # the remote inserts linked with this region's unseen ones
        if links is not None:
            a.linked(r.log.append((r.term, MERGE, links), out))
        out.append(Metric("shipped_in", float(took)))
        r.after_append(out)
        if len(m.entries) >= r.config.ship_batch:  # more where these came from
            self.outstanding[m.region] = self.rounds
            r.send(out, src, Pull(r.config.shard, r.config.region, a.version_vector()))
