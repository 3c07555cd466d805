"""Every planted bug must be caught by the specification (the ci profile's budget),
and what the report gives (the shrunk steps) must replay to the same failure."""

from __future__ import annotations

import json

import pytest

from graphrep.cli import main
from graphrep.errors import InvariantViolation
from graphrep.spec import Step, WorldConfig, replay
from graphrep.spec.merge import check, run_merge_spec
from graphrep.spec.mutants import (
    ACTIVE_MUTANTS,
    MERGE_MUTANTS,
    MUTANTS,
    run_active_mutant,
    run_merge_mutant,
    run_mutant,
)


def test_there_are_at_least_eight_mutants_with_descriptions():
    assert len(MUTANTS) >= 8
    assert all(m.description and (m.replica or m.placer) for m in MUTANTS.values())


@pytest.mark.parametrize("name", sorted(MUTANTS))
def test_the_specification_catches(name):
    report = run_mutant(name)
    assert report["caught"], f"{name} survived {report['examples']} examples"
    assert report["invariant"] and report["shrunk_steps"]
    # the shrunk steps, replayed outside Hypothesis, break the same invariant
    mutant = MUTANTS[name]
    cfg = WorldConfig(seed=report["seed"], sync=report["sync"])
    steps = [Step.from_json(s) for s in report["steps_json"]]
    assert [repr(s) for s in steps] == report["shrunk_steps"]
    with pytest.raises(InvariantViolation) as exc:
        replay(cfg, steps, mutant.replica, mutant.placer)
    assert exc.value.invariant == report["invariant"]


def test_the_unmutated_protocol_passes_the_same_replays():
    """The shrunk schedule of a mutant is harmless to the real protocol: what breaks is
    the planted bug, not the schedule."""
    report = run_mutant("majority-one-ack-early")
    steps = [Step.from_json(s) for s in report["steps_json"]]
    replay(WorldConfig(seed=report["seed"], sync=report["sync"]), steps)


def test_mutants_command_reports_json(capsys):
    assert main(["mutants", "--only", "placement-ignores-regions", "--json"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["mutants"] == 1 and out["caught"] == 1
    (one,) = out["list"]
    assert one["invariant"] == "residency" and one["examples_to_failure"] >= 1


def test_mutants_command_refuses_unknown_names(capsys):
    assert main(["mutants", "--only", "no-such-bug"]) == 2
    assert "unknown mutant" in capsys.readouterr().err


@pytest.mark.parametrize("name", sorted(MERGE_MUTANTS))
def test_the_merge_specification_catches(name):
    # unshrunk (the mutants command's test below shrinks one): shrinking is most of the time
    report = run_merge_mutant(name, shrink=False)
    assert report["caught"] and report["invariant"].startswith("merge_")
    assert report["shrunk_steps"]
    # the failing program and orders, replayed outside Hypothesis, break the same invariant
    mutant = MERGE_MUTANTS[name]
    with pytest.raises(InvariantViolation) as exc:
        check(report["steps_json"], *report["orders"], mutant.graph, mutant.collector)
    assert exc.value.invariant == report["invariant"]
    # and the real merge passes them
    check(report["steps_json"], *report["orders"])


def test_the_real_merge_passes_the_merge_specification():
    assert run_merge_spec()["passed"]


def test_mutants_command_runs_a_merge_mutant(capsys):
    assert main(["mutants", "--only", "crdt-prune-in-arrival-order", "--json"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["caught"] == 1 and out["list"][0]["invariant"] == "merge_order_free"
    assert out["list"][0]["shrunk_steps"]


@pytest.mark.parametrize("name", sorted(ACTIVE_MUTANTS))
def test_the_active_active_run_catches(name):
    report = run_active_mutant(name)
    assert report["caught"] and report["invariant"] == "residency"
