"""The spec world: steps as data, the config, determinism, and invariants that can fail.

The planted bugs (test_mutants.py) show most invariants failing; here the others are
broken by hand: a graph over its degree bound, two leaders in one term, an
acknowledged write removed behind the protocol's back, an impossible recall bound.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import asdict, replace

import pytest

from graphrep.errors import InvalidArgument, InvariantViolation
from graphrep.protocol.replica import ReplicaConfig
from graphrep.spec import (
    STEP_KINDS,
    PolicySpec,
    SpecWorld,
    Step,
    WorldConfig,
    policy_names,
    register_policy,
    unregister_policy,
)
from graphrep.spec.invariants import RUN_TIME
from graphrep.spec.machine import spec_machine

WRITES = [Step("advance", ms=300),
          Step("insert", shard=0, replica=0, concern="majority", count=6, read=1),
          Step("insert", shard=1, replica=2, concern="all", count=4),
          Step("delete", shard=0, replica=1, concern="majority", pick=2),
          Step("search", shard=1, replica=1, pick=3),
          Step("advance", ms=50)]


def _world(**kw) -> SpecWorld:
    w = SpecWorld(WorldConfig(seed=4, **kw))
    for s in WRITES:
        w.do(s)
    return w


def test_steps_print_readably_and_round_trip_through_json():
    s = Step("partition", groups=(("n0",), ("n1", "n2", "n3")))
    assert repr(s) == "partition(groups=(('n0',), ('n1', 'n2', 'n3')))"
    assert Step.from_json(json.loads(json.dumps(s.to_json()))) == s
    with pytest.raises(InvalidArgument, match="unknown step"):
        Step("meteor")
    with pytest.raises(InvalidArgument, match="a step is"):
        Step.from_json(["insert"])


def test_every_step_kind_has_a_handler():
    w = SpecWorld(WorldConfig(seed=4))
    assert tuple(w.actions.table) == STEP_KINDS
    assert all(h.__name__ == kind for kind, h in w.actions.table.items())


def test_the_config_holds_replica_settings_once():
    cfg = WorldConfig(seed=50, sync="tick", R=6)
    assert (cfg.sync, cfg.R, cfg.L, cfg.dim) == ("tick", 6, 16, 4)
    assert replace(cfg, sync="always").replica_settings == {**cfg.replica_settings,
                                                            "sync": "always"}
    assert WorldConfig(**json.loads(json.dumps(asdict(cfg)))) == cfg
    w = SpecWorld(cfg)
    for shard, placement in w.placement.items():
        rc = w.replica_configs[shard]
        assert (rc.replicas, rc.shard, rc.sync, rc.R, rc.L, rc.search_L, rc.index_seed,
                rc.policy) == (placement.replicas, shard, "tick", 6, 16, 16, 50, "leader")
        assert rc.alpha == ReplicaConfig.alpha  # not a world setting: ReplicaConfig's default
    with pytest.raises(InvalidArgument, match="neither a WorldConfig field nor"):
        WorldConfig(speed=3)
    with pytest.raises(InvalidArgument, match="the world sets the replicas' shard"):
        WorldConfig(shard=1)
    with pytest.raises(InvalidArgument, match="unknown sync policy"):
        WorldConfig(sync="sometimes")
    with pytest.raises(AttributeError):
        _ = cfg.speed


def test_the_machine_checks_what_the_world_checks_in_the_same_order():
    """Hypothesis calls a machine's @invariant methods in the order of their names: the
    world checks in that order too, so both report the same invariant first (and a
    failure the machine found replays to the same invariant, see test_mutants.py)."""
    names = [check.__name__ for check in RUN_TIME]
    assert names == sorted(names)
    machine = spec_machine("leader")()
    machine.world = _world()
    for name in names:
        getattr(machine, name)()  # a clean world passes each


def test_a_clean_run_passes_every_invariant_and_reports_recall():
    w = _world()
    s = w.finish()
    assert s["acks"] == 11 and s["searches"]["ok"] >= 1
    for shard in (0, 1):
        digests = set(s["shards"][shard]["digests"].values())
        assert len(digests) == 1
        assert s["shards"][shard]["recall"]["single_writer"] > 0.9


_HASH_SCRIPT = """
import json, sys
from graphrep.spec import SpecWorld, Step, WorldConfig
steps = [Step.from_json(s) for s in json.loads(sys.argv[1])]
w = SpecWorld(WorldConfig(seed=4))
for s in steps:
    w.do(s)
w.finish()
print(w.sim.trace.hash())
"""


def test_the_same_config_and_steps_give_the_same_trace_in_any_process():
    w = _world()
    w.finish()
    steps = json.dumps([s.to_json() for s in WRITES])
    hashes = {w.sim.trace.hash()}
    for hash_seed in ("0", "123"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        out = subprocess.run([sys.executable, "-c", _HASH_SCRIPT, steps], env=env,
                             capture_output=True, text=True, check=True)
        hashes.add(out.stdout.strip())
    assert len(hashes) == 1


def test_graph_health_catches_a_list_over_its_bound():
    w = _world()
    r = w.replica(w.placement[0].replicas[1], 0)
    r.index._g.deg[0] = r.index.R + 1  # damage the arrays behind the index's back
    with pytest.raises(InvariantViolation) as exc:
        w.check()
    assert exc.value.invariant == "graph_health"


def test_two_leaders_elected_in_one_term_are_caught():
    w = _world()
    w.sim.metrics.append((w.sim.now, "n0", "leader_elected@0", 99.0))
    w.sim.metrics.append((w.sim.now, "n2", "leader_elected@0", 99.0))
    with pytest.raises(InvariantViolation) as exc:
        w.check()
    assert exc.value.invariant == "one_leader_per_term"


def test_an_acknowledged_write_removed_everywhere_is_a_lost_write():
    w = _world()
    w.settle()
    ack = next(a for a in w.client.acks if a.op == "insert" and a.id not in w.client.delete_sent)
    for _, r in w.replicas(ack.shard):
        r.index.delete(ack.id)  # the same damage on every replica: digests stay equal
    with pytest.raises(InvariantViolation) as exc:
        w.finish()
    assert exc.value.invariant == "no_lost_writes"


def test_the_recall_bound_can_fail():
    register_policy(PolicySpec("impossible-recall", config={"policy": "leader"},
                               recall_eps=-0.5))
    try:
        w = SpecWorld(replace(WorldConfig(seed=4), policy="impossible-recall"))
        for s in WRITES:
            w.do(s)
        with pytest.raises(InvariantViolation) as exc:
            w.finish()
        assert exc.value.invariant == "recall"
    finally:
        unregister_policy("impossible-recall")


def test_a_registered_policy_gets_the_machine_and_names_are_unique():
    register_policy(PolicySpec("leader-tick", config={"policy": "leader"}))
    try:
        machine = spec_machine("leader-tick")
        assert machine.world_config.policy == "leader-tick"
        with pytest.raises(InvalidArgument, match="registered already"):
            register_policy(PolicySpec("leader-tick"))
    finally:
        unregister_policy("leader-tick")
    assert "leader-tick" not in policy_names()
    with pytest.raises(InvalidArgument, match="unknown policy"):
        WorldConfig(policy="leader-tick")
