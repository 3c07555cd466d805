"""The fuzzer: seeded programs, every invariant, the same summary for any number of jobs,
and failures it can actually find (a planted bug), each with a reproduce command."""

from __future__ import annotations

import json

import pytest

from graphrep.cli import main
from graphrep.errors import InvalidArgument
from graphrep.spec.fuzz import NEMESES, draw_steps, fuzz, fuzz_seed
from graphrep.spec.mutants import MUTANTS


def test_a_seed_draws_the_same_program_every_time():
    a = draw_steps(11, 60, "mixed")
    b = draw_steps(11, 60, "mixed")
    assert a[0] == b[0] and a[1] == b[1]
    assert draw_steps(12, 60, "mixed")[1] != a[1]


@pytest.mark.parametrize("nemesis", NEMESES)
def test_each_nemesis_draws_its_own_faults(nemesis):
    _, program = draw_steps(3, 300, nemesis)
    kinds = {s.kind for s in program}
    assert {"insert", "search"} <= kinds
    assert ("partition" in kinds) == (nemesis in ("partitions", "mixed"))
    assert ("crash" in kinds) == (nemesis in ("crashes", "mixed"))
    assert ("drop" in kinds) == (nemesis in ("loss", "mixed"))
    assert ("corrupt" in kinds) == (nemesis == "mixed")


def test_the_correct_protocol_survives_and_jobs_do_not_change_the_summary():
    one = fuzz(range(3), "leader", steps=120, nemesis="mixed", jobs=1)
    two = fuzz(range(3), "leader", steps=120, nemesis="mixed", jobs=2)
    assert one["failures"] == 0 and one["seeds"] == 3 and one["acks"] > 0
    drop = ("seconds", "seeds_per_second")
    assert {k: v for k, v in one.items() if k not in drop} == \
        {k: v for k, v in two.items() if k not in drop}


def test_the_fuzzer_finds_a_planted_bug_and_says_how_to_reproduce_it():
    s = fuzz(range(3), "leader", steps=120, nemesis="mixed",
             replica=MUTANTS["search-ignores-token"].replica)
    assert s["failures"] >= 1
    f = s["failed"][0]
    assert f["invariant"] == "read_your_writes"
    assert f["reproduce"] == (f"graphrep fuzz --policy leader --nemesis mixed --steps 120 "
                              f"--seed {f['seed']}")
    again = fuzz_seed(f["seed"], "leader", 120, "mixed", MUTANTS["search-ignores-token"].replica)
    assert (again.invariant, again.failed_at_step) == (f["invariant"], f["failed_at_step"])


def test_cli_fuzz_prints_a_json_summary_last(capsys):
    assert main(["fuzz", "--policy", "replay", "--seeds", "2", "--steps", "60",
                 "--nemesis", "crashes", "--json"]) == 0
    s = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert s["seeds"] == 2 and s["failures"] == 0 and s["policy"] == "replay"
    assert s["seeds_per_second"] > 0


def test_cli_fuzz_replays_one_seed_with_its_steps(capsys):
    assert main(["fuzz", "--seed", "5", "--steps", "40", "--nemesis", "loss"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("seed 5: leader, nemesis loss")
    assert out[1].strip().startswith("0 advance(ms=300)")
    assert json.loads(out[-1])["ok"] is True


def test_bad_arguments_are_refused():
    with pytest.raises(InvalidArgument, match="nemesis"):
        fuzz(range(1), nemesis="earthquake")
    with pytest.raises(InvalidArgument, match="jobs"):
        fuzz(range(1), jobs=0)
    with pytest.raises(InvalidArgument, match="policy"):
        fuzz(range(1), policy="nope")
