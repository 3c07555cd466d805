"""Active-active shipping between regions (crdt), in the simulator: three regions of
three replicas, a writer in each, one region cut off for a while."""

from __future__ import annotations

import numpy as np
import pytest

from graphrep.protocol.messages import ClientWrite, Pull, Ship, WriteReply, decode, encode
from graphrep.protocol.replica import Replica, ReplicaConfig
from graphrep.sansio import MS, Send, SetTimer
from graphrep.sim.engine import SimConfig, Simulation
from graphrep.sim.network import LatencyModel, NetworkConfig

REGIONS = ("ap", "eu", "us")
GROUPS = tuple((r, tuple(f"{r}{i}" for i in range(3))) for r in REGIONS)
DIM = 8
VECTORS = np.random.default_rng(1).standard_normal((4000, DIM)).astype(np.float32)


class Writer:
    """Sends ``n`` inserts to its region's group, one every 5 ms from 500 ms on (to every
    member: only the leader takes it), and notes when each is acknowledged."""

    def __init__(self, k: int, group: tuple[str, ...], n: int, shared: bool) -> None:
        self.k, self.group, self.n, self.shared = k, group, n, shared
        self.sent: dict[int, int] = {}
        self.acked: dict[int, int] = {}
        self.ids: dict[int, int] = {}

    def on_start(self, now: int) -> list:
        return [SetTimer("begin", 500 * MS)]  # once the groups have leaders

    def on_message(self, now: int, src: str, payload: bytes, size: int) -> list:
        m = decode(payload)
        if type(m) is WriteReply and m.status == "ok" and m.req not in self.acked:
            self.acked[m.req] = now
        return []

    def on_timer(self, now: int, name: str) -> list:
        if name == "begin":
            return [SetTimer("w", 5 * MS, periodic=True)]
        i = len(self.sent)
        if i >= self.n:
            return []
        id_ = i if self.shared and i % 4 == 0 else 1000 * (self.k + 1) + i
        self.sent[i] = now
        self.ids[i] = id_
        b = encode(ClientWrite(0, i, "insert", id_, VECTORS[(id_ * 7 + self.k) % 4000].tobytes(),
                               "majority"))
        return [Send(n, b, len(b)) for n in self.group]


def run(writes: int = 120, partition: bool = True, shared: bool = False, seed: int = 3,
        regions: tuple = GROUPS):
    lat = {(a, b): LatencyModel.constant(MS if a == b else 40 * MS, jitter_ns=MS)
           for a in REGIONS for b in REGIONS}
    sim = Simulation(seed, SimConfig(network=NetworkConfig(default=LatencyModel.constant(MS),
                                                           regions=lat)))
    cfgs = {}
    for r, g in GROUPS:
        c = ReplicaConfig(replicas=g, dim=DIM, policy="crdt", R=8, L=16, region=r,
                          regions=regions if r in dict(regions) else ((r, g),),
                          snapshot_every=64, log_keep=32)
        cfgs.update(dict.fromkeys(g, c))

    def replica(name: str, disk: dict) -> Replica:
        return Replica(name, disk, cfgs[name], sim.rng(f"replica:{name}"))

    for r, g in GROUPS:
        for n in g:
            sim.add_node(n, replica, region=r)
    writers = {}
    for k, (r, g) in enumerate(GROUPS):
        w = writers[r] = Writer(k, g, writes, shared)
        sim.add_node(f"w{r}", lambda n, d, w=w: w, region=r)
    if partition:
        sim.at(700 * MS, lambda s: s.partition_regions([["eu"], ["ap", "us"]]))
        sim.at(1500 * MS, lambda s: s.heal())
    sim.run_until(writes * 5 * MS + 3500 * MS)
    return sim, writers


def replicas(sim):
    return {n: sim.process(n) for _, g in GROUPS for n in g}


def test_regions_converge_after_a_partition_and_keep_every_acknowledged_write():
    sim, writers = run()
    reps = replicas(sim)
    assert len({r.index.digest() for r in reps.values()}) == 1
    acked = {w.ids[i] for w in writers.values() for i in w.acked}
    assert len(acked) == 3 * 120  # every write was acknowledged, partition or not
    for r in reps.values():
        assert acked <= set(r.index.ids().tolist())
        assert r.index.graph.pending == 0 and r.index.graph_problems() == []
    vv = reps["ap0"].applier.version_vector()
    assert vv == [max(len(w.acked), v) for w, v in zip(writers.values(), vv, strict=True)]
    assert sim.metrics and any(m[2] == "shipped_in" for m in sim.metrics)


def test_a_write_is_acknowledged_within_its_own_region():
    _sim, writers = run(partition=True)
    waits = [w.acked[i] - w.sent[i] for w in writers.values() for i in w.acked]
    # one-way between regions is 40 ms: no acknowledgement waited for another region
    assert max(waits) < 40 * MS


def test_concurrent_writes_of_one_id_end_with_the_latest_everywhere():
    sim, writers = run(partition=True, shared=True)
    reps = list(replicas(sim).values())
    assert len({r.index.digest() for r in reps}) == 1
    g = reps[0].index.graph
    shared = sorted({w.ids[i] for w in writers.values() for i in w.acked if w.ids[i] < 1000})
    assert shared
    for id_ in shared:
        ver = g.version(id_)
        assert all(r.index.graph.version(id_) == ver for r in reps)
        assert id_ in g  # one incarnation lives: the one with the largest timestamp


def test_a_region_not_allowed_the_shard_is_never_shipped_to_and_its_pulls_are_refused():
    allowed = GROUPS[:2]  # ap and eu; us holds a group of its own and no share
    sim, _ = run(writes=40, partition=False, regions=allowed)
    us = {n for n in dict(GROUPS)["us"]}
    ap0 = sim.process("ap0")
    for r in (sim.process(n) for n in us):
        assert set(r.index.ids().tolist()) <= set(range(3000, 4000))  # only its own writes
    before = ap0.errors
    out = ap0.on_message(sim.now, "us0", encode(Pull(0, "us", [0, 0])), 0)
    assert ap0.errors == before + 1
    assert not [e for e in out if type(e) is Send]
    ship = encode(Ship(0, "us", [], [0, 0]))
    ap0.on_message(sim.now, "us0", ship, 0)
    assert ap0.errors == before + 2


@pytest.mark.parametrize("seed", [1, 2])
def test_the_run_is_deterministic(seed):
    a, _ = run(writes=30, seed=seed)
    b, _ = run(writes=30, seed=seed)
    assert a.trace.hash() == b.trace.hash()


def test_where_entries_sit_is_kept_for_the_entries_the_log_still_holds():
    sim, _writers = run(partition=True)
    for r in replicas(sim).values():
        st, log = r.index, r.log
        held = sum(len(w) for w in st.where)
        assert log.start > 0 and held <= log.end - log.start < sum(st.vv)
        for w in st.where:  # and each position is where the log holds that entry
            for _seq, pos in w.items():
                assert log.start <= pos < log.end


def test_what_concurrent_writes_of_one_id_killed_is_forgotten_everywhere():
    sim, _writers = run(partition=True, shared=True)
    for r in replicas(sim).values():
        g = r.index.graph.garbage()
        assert g["tombstones"] == g["dead"] == 0 and not r.index.waiting
