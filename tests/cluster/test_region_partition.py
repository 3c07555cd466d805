"""The ``region-partition`` nemesis: one region of a geo-distributed cluster (the presets
of graphrep.sim.regions) is cut off from the others during the write phase, then healed.

Runs of three regions with one or three replicas each check that the partition
happened as scheduled (its trace record, messages dropped between the cut region and
the others and only while it lasted, the majority side still taking writes), that the
cluster converges after the heal without losing an acknowledged write, and that the
seed alone decides the run.
"""

from __future__ import annotations

import pytest

from graphrep.cluster import ClusterConfig, run_cluster
from graphrep.cluster.runner import REGION_PARTITION_PERCENT, region_partition
from graphrep.errors import InvalidArgument
from graphrep.sansio import MS
from graphrep.sim.engine import Simulation
from graphrep.sim.regions import nodes_in_regions, region_latency
from graphrep.sim.rng import RandomStreams

REGIONS = ("eu", "us", "ap")


def config(per_region: int, seed: int) -> ClusterConfig:
    """Three regions of ``per_region`` replicas, 44 writes spread over 1.58 s of write
    phase (so that some are sent while the partition lasts)."""
    return ClusterConfig(nodes=3 * per_region, writes=40, deletes=4, queries=10, seed=seed,
                         nemesis="region-partition", write_interval_ns=20 * MS,
                         replica_regions=nodes_in_regions(REGIONS, per_region),
                         region_latency=region_latency(REGIONS))


def run(cfg: ClusterConfig) -> tuple[dict, Simulation]:
    """The summary of a run and its simulation."""
    sims: list[Simulation] = []
    s = run_cluster(cfg, actions=[(0, sims.append)])
    return s, sims[0]


@pytest.mark.parametrize("per_region,seed,cut", [(1, 1, "eu"), (3, 2, "ap")])
def test_one_region_is_cut_off_then_the_cluster_converges(per_region: int, seed: int,
                                                          cut: str):
    cfg = config(per_region, seed)
    s, sim = run(cfg)
    assert s["converged"] and len(set(s["digests"].values())) == 1
    assert s["acked_writes"] == 44 and s["lost_writes"] == 0
    assert s["unacked_writes"] == 0 and s["failed_writes"] == 0
    assert s["topk_agreement"] == 1.0 and s["faults"] == 2

    # the partition: the cut region's replicas on one side, every other replica on the
    # other, from 20% to 70% of the faults' part of the write phase (300 ms on)
    start, end = 300 * MS, cfg.write_phase_ns
    cut_at = start + (end - start) * 20 // 100
    heal_at = start + (end - start) * 70 // 100
    inside = [f"r{i}" for i in range(cfg.nodes) if cfg.region(i) == cut]
    outside = [f"r{i}" for i in range(cfg.nodes) if cfg.region(i) != cut]
    assert len(inside) == per_region
    faults = [(r[0], r[1], r[5]) for r in sim.trace.records if r[1] in ("partition", "heal")]
    assert faults[:2] == [(cut_at, "partition", ["groups", [inside, outside]]),
                          (heal_at, "heal", None)]

    # messages were dropped by it: between the two sides, and only while it lasted
    dropped = [r for r in sim.trace.records if r[1] == "drop" and r[5] == "partition"]
    assert len(dropped) >= 10 and len(dropped) == s["dropped"]
    assert all((r[2] in inside) != (r[3] in inside) for r in dropped)
    assert all(cut_at <= r[0] < heal_at for r in dropped)
    # the client (in a region of its own) kept its links, and the other regions, a
    # majority, kept taking writes while the cut one could not be reached
    assert not any("client" in (r[2], r[3]) for r in dropped)
    acked_during = [a for a in sim.process("client").acked if cut_at <= a["at"] < heal_at]
    assert len(acked_during) >= 10


def test_the_seed_decides_the_run():
    cfg = config(1, 1)
    first, _ = run(cfg)
    again, _ = run(cfg)
    assert again["trace_hash"] == first["trace_hash"] and again["dropped"] == first["dropped"]
    other, _ = run(config(1, 2))  # seed 2 cuts ap off, not eu
    assert other["trace_hash"] != first["trace_hash"]


def test_the_cut_region_is_drawn_from_the_nemesis_stream():
    cfg = config(1, 1)

    def cut(seed: int) -> str:
        faults = region_partition(cfg, RandomStreams(seed).generator("nemesis"), 0, 1000)
        assert [f.kind for f in faults] == ["partition_regions", "heal"]
        assert [f.time_ns for f in faults] == [200, 700]
        (region,), others = faults[0].groups
        assert others == tuple(r for r in ("ap", "eu", "us") if r != region)
        return region

    drawn = [cut(seed) for seed in range(20)]
    assert drawn == [cut(seed) for seed in range(20)]
    assert set(drawn) == {"eu", "us", "ap"}  # every region gets its turn
    assert REGION_PARTITION_PERCENT == (20, 70)


@pytest.mark.parametrize("regions", [(), ("eu", "eu", "eu")])
def test_one_region_is_refused(regions: tuple[str, ...]):
    with pytest.raises(InvalidArgument, match="give replica_regions in at least two regions"):
        ClusterConfig(nemesis="region-partition", replica_regions=regions)
