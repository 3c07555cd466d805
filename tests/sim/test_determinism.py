"""Same (seed, config) -> same trace hash, in this process and in a fresh one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from graphrep.sim.engine import SimConfig, Simulation
from graphrep.sim.network import LatencyModel, NetworkConfig

from .protocols import MS, faulty_gossip_run, gossip_factory, scenario_hash

ROOT = Path(__file__).resolve().parents[2]


def test_same_seed_same_hash_other_seed_other_hash():
    assert scenario_hash(7) == scenario_hash(7)
    assert scenario_hash(7) != scenario_hash(8)


def test_same_hash_in_fresh_processes_with_other_hash_seeds():
    expected = scenario_hash(7)
    code = "from tests.sim.protocols import scenario_hash; print(scenario_hash(7))"
    for hashseed in ("0", "12345"):
        env = dict(os.environ, PYTHONHASHSEED=hashseed)
        out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env,
                             capture_output=True, text=True, check=True)
        assert out.stdout.strip() == expected


def test_trace_jsonl_is_identical_across_runs(tmp_path):
    paths = []
    for i in range(2):
        p = tmp_path / f"t{i}.jsonl"
        with p.open("w") as fp:
            faulty_gossip_run(3).trace.write_jsonl(fp)
        paths.append(p)
    assert paths[0].read_bytes() == paths[1].read_bytes()


@settings(max_examples=15)
@given(seed=st.integers(0, 2**32), loss=st.floats(0, 0.5), dup=st.floats(0, 0.5),
       crash_at=st.integers(0, 50 * MS))
def test_replay_from_seed_and_config_is_exact(seed, loss, dup, crash_at):
    def run() -> str:
        net = NetworkConfig(default=LatencyModel.exponential(5 * MS), loss=loss, duplicate=dup)
        sim = Simulation(seed, SimConfig(network=net))
        names = ["a", "b", "c"]
        for n in names:
            sim.add_node(n, gossip_factory(names, {n: [n]}))
        sim.at(crash_at, lambda s: s.crash("b"))
        sim.at(crash_at + 10 * MS, lambda s: s.restart("b"))
        sim.run_until(100 * MS)
        return sim.trace.hash()

    assert run() == run()
