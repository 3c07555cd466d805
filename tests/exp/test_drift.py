"""The drift experiment: leader replicas hold one graph across restarts; a replay replica
that restarts re-indexes its log in bulk and holds a graph of its own."""

from __future__ import annotations

import numpy as np

from graphrep.exp import get, load, run_sweep
from graphrep.exp.drift import DriftCell, compare


def test_compare_counts_identical_lists_and_shared_ids():
    ref = np.array([[1, 2, 3], [4, 5, 6]])
    assert compare(ref, ref) == (1.0, 1.0)
    same, over = compare(np.array([[1, 2, 3], [4, 6, 7]]), ref)
    assert same == 0.5 and over == (1 + 2 / 3) / 2


def test_a_restarted_replay_replica_drifts_and_a_leader_replica_does_not(tmp_path):
    cells = [DriftCell(p, writes=400, restarts_ms=(500, 750), down_ms=50, sample_ms=200)
             for p in ("leader", "replay")]
    r = run_sweep("drift", cells, (1,), root=tmp_path, progress=False)
    assert r.ran == 2 and not r.failed, r.failed
    frame = load("drift", tmp_path)
    final = frame[frame["final"]].set_index(["cfg.policy", "replica"])
    assert (final["behind"] == 0).all()
    assert final.loc["leader", "same_graph"].all()
    assert (final.loc["leader", "identical"] == 1.0).all()
    assert not final.loc["replay", "same_graph"].any()
    paths = get("drift").plot(frame, tmp_path / "fig")
    assert {p.suffix for p in paths} == {".png", ".pdf"}
