"""``graphrep sim``: one simulated cluster, its JSON summary and its exit code."""

from __future__ import annotations

import json

from graphrep.cli import main


def test_sim_prints_the_summary_the_experiments_depend_on(capsys):
    code = main(["sim", "--policy", "leader", "--nodes", "3", "--writes", "120", "--deletes",
                 "12", "--nemesis", "partitions", "--seed", "7", "--queries", "20", "--json"])
    s = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 0 and s["converged"] and s["lost_writes"] == 0
    for key in ("policy", "seed", "converged", "digests", "acked_writes", "lost_writes",
                "bytes_per_insert", "replica_distance_computations_per_insert", "lag_ms",
                "converge_ms_after_heal", "recall_at_10", "topk_agreement", "trace_hash"):
        assert key in s
    assert set(s["lag_ms"]) == {"p50", "p95", "p99"}
    assert {"vector", "edges", "metadata", "total"} <= set(s["bytes_per_insert"])


def test_sim_refuses_an_unknown_nemesis(capsys):
    assert main(["sim", "--nemesis", "meteor"]) == 2
    assert "argument --nemesis: invalid choice: 'meteor'" in capsys.readouterr().err


def test_sim_searches_with_a_read_preference(capsys):
    args = ["sim", "--writes", "60", "--deletes", "6", "--queries", "10", "--seed", "3",
            "--searches", "20", "--read-preference", "nearest", "--concern", "one"]
    assert main([*args, "--json"]) == 0
    s = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert s["searches"]["sent"] == 20 and s["searches"]["ok"] == 20
    assert s["read_your_writes_violations"] == 0
    assert set(s["search_latency_ms"]) == {"p50", "p95", "p99"}
    assert s["config"]["read_preference"] == "nearest"
    assert main(args) == 0
    assert "searches            20 to nearest: 20 ok" in capsys.readouterr().out


def test_sim_refuses_a_bad_read_preference_or_dataset(capsys):
    assert main(["sim", "--searches", "5", "--read-preference", "closest"]) == 2
    assert "argument --read-preference: invalid choice: 'closest'" in capsys.readouterr().err
    assert main(["sim", "--dataset", "sift"]) == 2
    assert "argument --dataset: invalid choice: 'sift'" in capsys.readouterr().err
    assert main(["sim", "--dataset", "fmnist", "--dim", "32"]) == 2
    assert "argument --dim: --dataset fmnist has 784 dimensions" in capsys.readouterr().err


def test_sim_runs_a_sharded_cluster_and_flow_control(capsys):
    args = ["sim", "--nodes", "4", "--shards", "3", "--replication", "3", "--writes", "60",
            "--deletes", "6", "--queries", "10", "--seed", "2", "--max-inflight", "1"]
    assert main([*args, "--json"]) == 0
    s = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert s["converged"] and s["lost_writes"] == 0 and s["acked_writes"] == 66
    assert s["config"]["shards"] == 3 and s["config"]["replica"]["max_inflight"] == 1
    assert sorted(s["shards"]) == ["0", "1", "2"] and len(s["digests"]) == 9
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "4 nodes, 3 shard(s) of 3 replicas" in out and "placement           shard 0:" in out
    assert main(["sim", "--shards", "2", "--searches", "5"]) == 2
    assert "argument --searches:" in (err := capsys.readouterr().err) and "scatter-gather" in err


def test_sim_runs_regions_from_the_presets_under_a_region_partition(capsys):
    args = ["sim", "--regions", "eu,us,ap", "--nodes-per-region", "1", "--writes", "40",
            "--deletes", "4", "--queries", "10", "--seed", "1", "--nemesis",
            "region-partition"]
    assert main([*args, "--json"]) == 0
    s = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert s["converged"] and s["lost_writes"] == 0 and s["acked_writes"] == 44
    assert s["faults"] == 2 and s["dropped"] > 0  # the partition and its heal
    c = s["config"]
    assert c["nodes"] == 3 and c["replica_regions"] == ["eu", "us", "ap"]
    latency = {(a, b): m for a, b, m in c["region_latency"]}
    assert len(latency) == 9 and latency[("ap", "eu")]["mean_ns"] == 120_000_000
    assert latency[("us", "us")]["kind"] == "uniform"
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "nemesis region-partition (2 faults)" in out
    assert "regions             eu: r0; us: r1; ap: r2; client in local" in out


def test_sim_without_regions_is_unchanged():
    from graphrep.cli import _sim_config, build_parser
    from graphrep.cluster import ClusterConfig

    plain = _sim_config(build_parser().parse_args(["sim", "--nodes-per-region", "5"]))
    assert plain == ClusterConfig() and plain.replica_regions == ()
    placed = _sim_config(build_parser().parse_args(["sim", "--regions", "ap,eu"]))
    assert placed.nodes == 6 and placed.replica_regions == ("ap",) * 3 + ("eu",) * 3


def test_sim_runs_writers_in_every_region_for_crdt(capsys):
    args = ["sim", "--policy", "crdt", "--regions", "eu,us,ap", "--writers-per-region", "2",
            "--nodes-per-region", "2", "--writes", "30", "--deletes", "3", "--queries", "10",
            "--nemesis", "region-partition"]
    assert main([*args, "--json"]) == 0
    s = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert s["converged"] and s["digests_equal"] and s["writes_acknowledged"] == 6 * 30
    assert set(s["latency"]) == {"eu", "us", "ap"} and len(s["digests"]) == 6
    assert main(args) == 0
    assert "write latency" in capsys.readouterr().out


def test_sim_refuses_writers_per_region_it_cannot_run(capsys):
    for bad in (["--writers-per-region", "2"],
                ["--regions", "eu,us", "--policy", "replay", "--writers-per-region", "1"],
                ["--regions", "eu,us", "--policy", "crdt", "--nemesis", "crashes"]):
        assert main(["sim", *bad]) == 2
        assert "writers" in capsys.readouterr().err
