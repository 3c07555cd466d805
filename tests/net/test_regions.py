"""Emulated regions and residency on the live runtime: frames between regions held for
the configured one-way delay (in order), ``nearest`` reads sent to the client's region,
and a shard's messages refused to and from a node outside its regions."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import trio

from graphrep.errors import ConfigError
from graphrep.net import Client, ClusterFile, NodeSpec, build_node
from graphrep.net.node import warm_up
from graphrep.net.testing import MemoryTransport

DIM = 8


def regional(tmp_path: Path, regions: dict[str, str], shards: dict[int, tuple[str, ...]],
             replication: int = 3, **extra) -> ClusterFile:
    return ClusterFile(cluster="c-regions", data_dir=tmp_path / "data", dim=DIM,
                       replication=replication,
                       nodes={n: NodeSpec(n, "127.0.0.1:0", r) for n, r in regions.items()},
                       shards=shards, **extra)


def test_delays_are_between_known_regions_and_read_both_ways(tmp_path):
    cfg = regional(tmp_path, {"n1": "eu", "n2": "eu", "n3": "us"}, {0: ("eu", "us")},
                   delays={"eu": {"us": [40, 2]}})
    assert cfg.delay_between("eu", "us") == cfg.delay_between("us", "eu") == (0.04, 0.002)
    assert cfg.delay_between("eu", "eu") is None
    back = ClusterFile.load(cfg.dump(tmp_path / "cluster.toml"))
    assert back.delays == {"eu": {"us": [40, 2]}}
    for bad in ({"eu": {"ap": [1, 0]}}, {"eu": {"us": [-1, 0]}}, {"eu": {"us": [1]}},
                {"eu": {"eu": [1, 0]}}, {"eu": [1, 0]}):
        with pytest.raises(ConfigError, match=r"\[delays\]"):
            regional(tmp_path, {"n1": "eu", "n2": "eu", "n3": "us"}, {0: ("eu", "us")},
                     delays=bad)


def test_a_placement_outside_a_shards_regions_does_not_start(tmp_path):
    with pytest.raises(ConfigError, match="placement fails"):
        regional(tmp_path, {"n1": "eu", "n2": "eu", "n3": "us"}, {0: ("ap",)})


@pytest.mark.trio
async def test_frames_across_regions_wait_the_delay_and_nearest_reads_stay_home(tmp_path):
    warm_up(DIM)
    cfg = regional(tmp_path, {"n1": "eu", "n2": "eu", "n3": "us"}, {0: ("eu", "us")},
                   delays={"eu": {"us": [40, 5]}})
    transport = MemoryTransport()
    drivers = {n: build_node(cfg, n, transport=transport) for n in cfg.nodes}
    assert drivers["n1"].latency == {"n3": (0.04, 0.005)}
    assert drivers["n3"].latency == {"n1": (0.04, 0.005), "n2": (0.04, 0.005)}
    rng = np.random.default_rng(0)
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            for d in drivers.values():
                await nursery.start(d.run)
            async with Client(cfg, transport=transport, timeout=20, region="us") as client:
                await client.insert(0, rng.standard_normal(DIM))  # a leader is elected
                took = []
                for i in range(1, 11):
                    t0 = time.perf_counter()
                    await client.insert(i, rng.standard_normal(DIM), concern="all")
                    took.append(time.perf_counter() - t0)
                # n3 is 40-45 ms from the others each way: "all" waits for it
                assert min(took) >= 0.08, took
                assert client._order(0, "nearest")[0] == "n3"
                eu = Client(cfg, transport=transport, region="eu")
                assert eu._order(0, "nearest")[0] in ("n1", "n2")
            with trio.fail_after(10):
                while len({d.process.replicas[0].index.digest()
                            for d in drivers.values()}) > 1:
                    await trio.sleep(0.05)
            for d in drivers.values():  # held frames kept their order: no gaps refused
                assert d.process.replicas[0].errors == 0
                assert not d.counters.get("dropped_sends")
            nursery.cancel_scope.cancel()
    for d in drivers.values():
        d.store.close()


@pytest.mark.trio
async def test_a_shards_messages_from_a_node_outside_its_regions_are_refused(tmp_path,
                                                                           caplog):
    """Shard 0 may live only in "eu", shard 1 in "eu" and "us"; n3 is in "us", so the
    placement puts shard 0 on n1 and n2, shard 1 on n2 and n3. n3 runs with a cluster
    file that says it is in "eu" (a misconfiguration): it takes itself for a replica of
    shard 0 too and stands for election. n2, its peer for shard 1, refuses its shard-0
    messages (counted, logged once), and shard 0 goes on without it."""
    warm_up(DIM)
    shards = {0: ("eu",), 1: ("eu", "us")}
    good = regional(tmp_path, {"n1": "eu", "n2": "eu", "n3": "us"}, shards, replication=2)
    assert [good.replicas_of(s) for s in (0, 1)] == [("n1", "n2"), ("n2", "n3")]
    wrong = regional(tmp_path / "n3", {"n1": "eu", "n2": "eu", "n3": "eu"}, shards)
    assert "n3" in wrong.replicas_of(0)
    transport = MemoryTransport()
    drivers = {n: build_node(good, n, transport=transport) for n in ("n1", "n2")}
    drivers["n3"] = build_node(wrong, "n3", transport=transport)
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            for d in drivers.values():
                await nursery.start(d.run)
            with trio.fail_after(10):
                while not drivers["n2"].counters["residency_refused"]:
                    await trio.sleep(0.05)
            async with Client(good, transport=transport, timeout=20) as client:
                for i in range(0, 10, 2):  # shard 0's ids
                    await client.insert(i, np.full(DIM, i, np.float32))
            shard0 = {n: d.process.replicas[0] for n, d in drivers.items()}
            assert shard0["n3"].commit == 0 and shard0["n1"].commit >= 5
            nursery.cancel_scope.cancel()
    for d in drivers.values():
        d.store.close()
    logged = [r.getMessage() for r in caplog.records if "refused shard 0" in r.getMessage()]
    assert logged and all("messages from 'n3': it is in region 'us'" in m
                          and "('eu',)" in m for m in logged)
    assert len(logged) == 1  # once per peer and shard, then counted only
