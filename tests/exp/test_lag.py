"""The lag experiment: one sample per (log position, follower), and the cost model prices
the work of a replay follower, not of a leader-policy one."""

from __future__ import annotations

from graphrep.exp import get, load, run_sweep
from graphrep.exp.lag import LagCell


def test_the_lag_cells_measure_every_entry_and_plot(tmp_path):
    cells = [LagCell(p, writes=60, initial=300, write_interval_us=2_000)
             for p in ("leader", "replay")]
    r = run_sweep("lag", cells, (1,), root=tmp_path, progress=False)
    assert r.ran == 2 and not r.failed, r.failed
    frame = load("lag", tmp_path)
    for _policy, g in frame.groupby("cfg.policy"):
        assert g["converged"].all() and (g["lost_writes"] == 0).all()
        assert len(g) >= 2 * 60 and (g["lag_ms"] >= 0).all()
    busy = frame.groupby("cfg.policy")["follower_busy_share"].first()
    assert busy["leader"] == 0 and busy["replay"] > 0
    assert {p.suffix for p in get("lag").plot(frame, tmp_path / "fig")} == {".png", ".pdf"}
