"""Sweeps (graphrep.exp): cells run once, results stored and loaded, failures recorded,
and the same code path on local processes and on a Dask cluster."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import pytest

from graphrep.cli import main
from graphrep.errors import InvalidArgument
from graphrep.exp import (
    Experiment,
    Profile,
    cell_key,
    config_from_toml,
    get,
    load,
    register,
    run_sweep,
)


@dataclass(frozen=True)
class Toy:
    scale: int = 1
    tags: tuple[str, ...] = ("a",)
    boom: bool = False


def toy_run(cfg: Toy, seed: int) -> list[dict]:
    if cfg.boom:
        raise ValueError(f"planted failure at seed {seed}")
    return [{"i": i, "value": cfg.scale * seed + i} for i in range(3)]


TOY = register(Experiment("toy", Toy, toy_run,
                          profiles={"small": Profile(lambda: [Toy(1), Toy(2)], (1, 2))},
                          description="a test experiment"), replace=True)


def test_a_sweep_stores_every_cell_and_a_rerun_skips_them(tmp_path):
    r = run_sweep("toy", [Toy(1), Toy(2)], (1, 2), root=tmp_path, jobs=2, progress=False)
    assert (r.cells, r.ran, r.skipped, r.failed) == (4, 4, 0, [])
    frame = load("toy", tmp_path)
    assert len(frame) == 12 and set(frame["seed"]) == {1, 2}
    assert sorted(set(zip(frame["cfg.scale"], frame["seed"], strict=True))) == \
        [(1, 1), (1, 2), (2, 1), (2, 2)]
    assert (frame["value"] == frame["cfg.scale"] * frame["seed"] + frame["i"]).all()
    again = run_sweep("toy", [Toy(1), Toy(2)], (1, 2), root=tmp_path, progress=False)
    assert (again.ran, again.skipped) == (0, 4)
    forced = run_sweep("toy", [Toy(1)], (1,), root=tmp_path, force=True, progress=False)
    assert (forced.ran, forced.skipped) == (1, 0)
    meta = json.loads((tmp_path / "toy" / cell_key("toy", Toy(1), 1) / "meta.json")
                      .read_text())
    assert meta["status"] == "ok" and meta["seed"] == 1 and meta["settings"]["scale"] == 1
    assert {"graphrep", "git_commit", "packages", "platform", "wall_s"} <= set(meta)


def pid_run(cfg: Toy, seed: int) -> list[dict]:
    return [{"pid": os.getpid()}]


register(Experiment("pids", Toy, pid_run, profiles={}), replace=True)
register(Experiment("fresh_pids", Toy, pid_run, profiles={}, fresh_process=True),
         replace=True)


def test_a_fresh_process_experiment_runs_each_cell_in_a_process_of_its_own(tmp_path):
    """Cells that measure their process (peak memory) must not inherit another cell's."""
    for name, processes in (("pids", 1), ("fresh_pids", 2)):
        run_sweep(name, [Toy(1), Toy(2)], (1,), root=tmp_path, jobs=1, progress=False)
        assert load(name, tmp_path)["pid"].nunique() == processes


def test_a_failing_cell_is_recorded_and_the_sweep_goes_on(tmp_path):
    r = run_sweep("toy", [Toy(1), Toy(3, boom=True)], (5,), root=tmp_path, progress=False)
    assert r.ran == 2 and len(r.failed) == 1
    assert r.failed[0]["seed"] == 5 and "planted failure at seed 5" in r.failed[0]["error"]
    meta = json.loads((tmp_path / "toy" / cell_key("toy", Toy(3, boom=True), 5) /
                       "meta.json").read_text())
    assert meta["status"] == "failed" and "Traceback" in meta["error"]
    assert len(load("toy", tmp_path)) == 3  # the failed cell has no rows
    # a rerun runs the failed cell again (and only it)
    again = run_sweep("toy", [Toy(1), Toy(3, boom=True)], (5,), root=tmp_path,
                      progress=False)
    assert (again.ran, again.skipped, len(again.failed)) == (1, 1, 1)


def test_the_dask_path_runs_the_same_cells(tmp_path):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        r = run_sweep("toy", [Toy(1), Toy(2)], (1,), root=tmp_path / "dask",
                      executor=client.get_executor(), progress=False)
    local = run_sweep("toy", [Toy(1), Toy(2)], (1,), root=tmp_path / "local", progress=False)
    assert r.ran == local.ran == 2 and not r.failed
    a = load("toy", tmp_path / "dask").sort_values(["cfg.scale", "i"]).reset_index(drop=True)
    b = load("toy", tmp_path / "local").sort_values(["cfg.scale", "i"]).reset_index(drop=True)
    assert a[["cfg.scale", "seed", "i", "value"]].equals(b[["cfg.scale", "seed", "i", "value"]])


def test_a_config_loads_from_toml_and_bad_settings_are_refused(tmp_path):
    p = tmp_path / "toy.toml"
    p.write_text('scale = 4\ntags = ["x", "y"]\n')
    assert config_from_toml(get("toy"), p) == Toy(4, ("x", "y"))
    p.write_text("scael = 4\n")
    with pytest.raises(InvalidArgument, match="unknown setting"):
        config_from_toml(get("toy"), p)
    with pytest.raises(InvalidArgument, match="unknown experiment"):
        get("no-such")
    with pytest.raises(InvalidArgument, match="no profile"):
        TOY.profile("huge")


def test_cell_keys_depend_on_settings_and_seed_only():
    assert cell_key("toy", Toy(1), 1) == cell_key("toy", Toy(1), 1)
    assert len({cell_key("toy", Toy(1), 1), cell_key("toy", Toy(2), 1),
                cell_key("toy", Toy(1), 2), cell_key("other", Toy(1), 1)}) == 4


def test_the_command_line_runs_and_plots(tmp_path, capsys):
    assert main(["exp", "list"]) == 0
    assert "active_active" in capsys.readouterr().out
    assert main(["exp", "run", "toy", "--root", str(tmp_path)]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["ran"] == 4 and out["failed"] == 0
    # per profile, where graphrep paper build reads them
    assert out["root"] == str(tmp_path / "small")
    assert len(load("toy", tmp_path / "small")) > 0 and load("toy", tmp_path).empty
    assert main(["exp", "plot", "toy", "--root", str(tmp_path)]) == 2  # toy has no plot
    assert "no plot" in capsys.readouterr().err
    assert main(["exp", "plot", "toy", "--root", str(tmp_path), "--profile", "tiny"]) == 2
    assert "no finished results" in capsys.readouterr().err
    assert main(["exp", "plot", "toy", "--root", str(tmp_path / "empty")]) == 2
    assert main(["exp", "run", "nope"]) == 2


def test_the_active_active_experiment_runs_its_cells_and_plots(tmp_path):
    from graphrep.exp.active_active import ActiveCell

    exp = get("active_active")
    cells = [ActiveCell(writes=30), ActiveCell(policy="leader", writes=30)]
    r = run_sweep("active_active", cells, (7,), root=tmp_path, progress=False)
    assert r.ran == 2 and not r.failed
    frame = load("active_active", tmp_path)
    assert set(frame["cfg.policy"]) == {"crdt", "leader"}
    assert frame["converged"].all() and (frame["lost_max"] == 0).all()
    paths = exp.plot(frame, tmp_path / "figures")
    assert all(p.stat().st_size > 0 for p in paths)
    assert {p.suffix for p in paths} == {".png", ".pdf"}


def test_the_apply_scaling_experiment_measures_a_cell_and_plots(tmp_path):
    from graphrep.exp.apply_scaling import ApplyCell

    exp = get("apply_scaling")
    cells = [ApplyCell(n=n, inserts=30, dim=8, R=8, L=16, repeats=1) for n in (200, 400)]
    r = run_sweep("apply_scaling", cells, (7,), root=tmp_path, progress=False)
    assert r.ran == 2 and not r.failed
    frame = load("apply_scaling", tmp_path)
    assert sorted(frame["n"]) == [200, 400]
    assert (frame["apply_us"] > 0).all() and (frame["insert_us"] > 0).all()
    assert (frame["records_per_delta"] >= 1).all()
    assert {p.suffix for p in exp.plot(frame, tmp_path / "fig")} == {".png", ".pdf"}


def test_the_replication_cost_experiment_measures_cells_and_plots(tmp_path):
    from graphrep.exp.replication_cost import ReplicationCell

    exp = get("replication_cost")
    cells = [ReplicationCell(policy=p, initial=300, writes=60, dim=8, R=8, L=16, queries=20)
             for p in ("leader", "replay")]
    r = run_sweep("replication_cost", cells, (7,), root=tmp_path, progress=False)
    assert r.ran == 2 and not r.failed, r.failed
    frame = load("replication_cost", tmp_path).set_index("cfg.policy")
    assert frame["converged"].all() and (frame["lost_writes"] == 0).all()
    # a leader-policy follower applies deltas, a replay follower re-runs every insert
    assert frame.loc["leader", "replica_distance_computations_per_insert"] < \
        frame.loc["replay", "replica_distance_computations_per_insert"]
    assert {p.suffix for p in exp.plot(frame.reset_index(), tmp_path / "fig")} == \
        {".png", ".pdf"}
