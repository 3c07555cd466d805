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
    assert "unknown nemesis" in capsys.readouterr().err
