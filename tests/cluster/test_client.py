"""Client searches in the simulated cluster: read preferences, session tokens
(read-your-writes) and the checker that counts violations."""

from __future__ import annotations

from typing import ClassVar

import pytest

from graphrep.cluster import ClusterConfig, run_cluster, runner
from graphrep.cluster.client import nearest
from graphrep.protocol.replica import Replica
from graphrep.sansio import MS
from graphrep.sim.network import LatencyModel

SMALL = {"writes": 60, "deletes": 6, "queries": 10, "seed": 3, "searches": 40}


def _without_cpu(s: dict) -> dict:
    return {k: v for k, v in s.items()
            if k not in ("cpu_s", "apply_cpu_s", "op_cpu_s", "sim_cpu_s")}


@pytest.mark.parametrize("pref", ["leader", "nearest", "any"])
@pytest.mark.parametrize("concern", ["one", "majority"])
def test_every_read_preference_answers_with_no_read_your_writes_violation(pref, concern):
    s = run_cluster(ClusterConfig(read_preference=pref, concern=concern, **SMALL))
    q = s["searches"]
    assert q["sent"] == 40 and q["ok"] == 40 and q["errors"] == q["unanswered"] == 0
    assert q["retried"] == q["stale"]  # each stale first answer retried once, at the leader
    assert s["read_your_writes_violations"] == 0
    assert s["search_latency_ms"]["p50"] > 0
    assert s["converged"] and s["lost_writes"] == 0
    if pref != "leader" and concern == "one":
        assert q["stale"] > 0  # followers lag: the session token really is checked


class _Recording(runner.TimedReplica):
    """Counts the searches each replica receives (class-level, reset per test)."""

    received: ClassVar[dict[str, int]] = {}

    def _on_search(self, now, src, m, out):
        self.received[self.name] = self.received.get(self.name, 0) + 1
        Replica._on_search(self, now, src, m, out)


def test_nearest_goes_to_the_replica_with_the_lowest_configured_latency(monkeypatch):
    regions = {"replica_regions": ("west", "west", "east"), "client_region": "east",
               "region_latency": (("east", "west", LatencyModel.constant(20 * MS)),
                                  ("east", "east", LatencyModel.constant(1 * MS)))}
    cfg = ClusterConfig(read_preference="nearest", **regions, **SMALL)
    assert nearest(cfg, ["r0", "r1", "r2"]) == "r2"
    monkeypatch.setattr(_Recording, "received", {})
    monkeypatch.setattr(runner, "TimedReplica", _Recording)
    s = run_cluster(cfg)
    got = _Recording.received
    assert got.get("r2", 0) >= 40 and s["read_your_writes_violations"] == 0
    assert got.get("r0", 0) + got.get("r1", 0) <= s["searches"]["retried"]  # at the leader
    # one region, equal latencies: the client's home replica r{seed % nodes}
    assert nearest(ClusterConfig(**SMALL), ["r0", "r1", "r2"]) == "r0"
    assert nearest(ClusterConfig(**{**SMALL, "seed": 7}), ["r0", "r1", "r2"]) == "r1"


class _IgnoresMinSeq(runner.TimedReplica):
    """A broken replica: answers ``ok`` from whatever it has applied, session or not."""

    def _on_search(self, now, src, m, out):
        Replica._on_search(self, now, src, m._replace(min_seq=0), out)


@pytest.mark.parametrize("pref", ["nearest", "any"])
def test_the_checker_catches_a_replica_that_ignores_the_session_token(monkeypatch, pref):
    monkeypatch.setattr(runner, "TimedReplica", _IgnoresMinSeq)
    s = run_cluster(ClusterConfig(read_preference=pref, concern="one", **SMALL))
    assert s["read_your_writes_violations"] > 0
    assert s["searches"]["stale"] == 0  # it never says stale: it answers behind instead


def test_any_is_deterministic():
    cfg = ClusterConfig(read_preference="any", concern="one", nemesis="mixed", **SMALL)
    one, two = run_cluster(cfg), run_cluster(cfg)
    assert _without_cpu(one) == _without_cpu(two)
    other = run_cluster(ClusterConfig(read_preference="leader", concern="one",
                                      nemesis="mixed", **SMALL))
    assert other["trace_hash"] != one["trace_hash"]
