"""Every option of every ``graphrep`` command is checked at the edge.

The tables are built from the parser itself, so a new option without a declared range
(``BoundedInt``) or ``choices`` fails here until it gets one. A refused value gives one
line on stderr naming the option and what it allows, exit status 2, at once: never a
traceback, never a long run that fails at its end.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import pytest

from graphrep import cli
from graphrep.cli import SEED_MAX, BoundedInt, build_parser, main
from graphrep.errors import InvalidArgument
from graphrep.net.cli import BoundedFloat

FREE_TEXT = {("demo", "--out"), ("sim-example", "--plot"), ("mutants", "--only"),
             ("sim", "--regions"),
             ("node", "--config"), ("node", "--name"), ("load", "--dir"), ("top", "--dir"),
             ("cluster up", "--tls"), ("exp run", "--scheduler"), ("exp run", "--root"),
             ("exp plot", "--root"), ("paper build", "--scheduler"),
             ("paper build", "--root"), ("paper build", "--out"),
             *((f"cluster {c}", "--dir") for c in ("up", "status", "stop", "kill", "start",
                                                  "down")),
             *((f"cluster {c}", "node") for c in ("stop", "kill", "start"))}
"""Options that take any text (a folder, a file, a node's name, a list checked after
parsing): checked when the command runs."""
POSITIONALS = {"sim-example": ["gossip"], "cluster start": ["n1"], "cluster stop": ["n1"],
               "cluster kill": ["n1"], "exp run": ["active_active"]}
"""What a command needs besides options, so that an option can be tried on its own."""


def _subparsers(p: argparse.ArgumentParser) -> argparse._SubParsersAction | None:
    return next((a for a in p._actions if isinstance(a, argparse._SubParsersAction)), None)


def _commands() -> dict[str, argparse.ArgumentParser]:
    """Every command, a command with subcommands as one entry per subcommand
    (``cluster up``, ``cluster status``, ...)."""
    out = {}
    for name, p in _subparsers(build_parser()).choices.items():
        nested = _subparsers(p)
        if nested is None:
            out[name] = p
        else:
            out.update({f"{name} {n}": q for n, q in nested.choices.items()})
    return out


def _options() -> list[tuple[str, argparse.Action]]:
    """Every (command, action) that takes a value, positional arguments included."""
    return [(name, a) for name, p in _commands().items() for a in p._actions
            if a.nargs != 0 and not isinstance(a, argparse._SubParsersAction)]


def _flag(a: argparse.Action) -> str:
    return a.option_strings[0] if a.option_strings else a.dest


def _argv(command: str, a: argparse.Action, value: str) -> list[str]:
    if a.option_strings:
        return [*command.split(), *POSITIONALS.get(command, []), a.option_strings[0], value]
    return [*command.split(), value]


def _bad_values() -> list:
    cases = []
    for command, a in _options():
        if isinstance(a.type, BoundedInt):
            lo, hi = a.type.lo, a.type.hi
            values = dict.fromkeys([str(10**30), "-1", str(lo - 1), str(hi + 1), "abc", "1.5",
                                    "1e3", "", "9" * 5000])
            cases += [pytest.param(command, a, v, f"must be an integer in [{lo}, {hi}]",
                                   id=f"{command} {_flag(a)} {v[:12]}") for v in values]
        elif isinstance(a.type, BoundedFloat):
            lo, hi = a.type.lo, a.type.hi
            cases += [pytest.param(command, a, v, f"must be a number in [{lo:g}, {hi:g}]",
                                   id=f"{command} {_flag(a)} {v[:12]}")
                      for v in ("abc", "", "nan", "inf", "-1", str(hi * 2), str(lo / 2))]
        elif a.choices is not None:
            cases.append(pytest.param(command, a, "bogus", "invalid choice: 'bogus'",
                                      id=f"{command} {_flag(a)} bogus"))
    return cases


def _run(capsys, argv: list[str]) -> tuple[int, str, str]:
    try:
        code = main(argv)
    except SystemExit as exc:  # main returns the status, but count an exit as one too
        code = exc.code if isinstance(exc.code, int) else 2
    out, err = capsys.readouterr()
    return code, out, err


def test_every_option_declares_what_it_allows():
    for command, a in _options():
        if (command, _flag(a)) in FREE_TEXT:
            continue
        assert a.type not in (int, float), f"{command} {_flag(a)}: use BoundedInt(lo, hi)"
        assert isinstance(a.type, (BoundedInt, BoundedFloat)) or a.choices is not None, \
            f"{command} {_flag(a)} takes any value: give it a range or choices"


def test_the_table_covers_every_command():
    commands = {c for c, _ in _options()} | {"exp list"}  # the one that takes no value
    assert commands == set(_commands()) == {
        "demo", "sim-example", "sim", "fuzz", "mutants", "node", "load", "cluster up",
        "cluster status", "cluster stop", "cluster kill", "cluster start", "cluster down",
        "top", "exp list", "exp run", "exp plot", "paper build"}
    assert len(_bad_values()) > 200


@pytest.mark.parametrize("command,action,value,expected", _bad_values())
def test_a_bad_value_is_refused_on_one_line_naming_the_option(capsys, command, action,
                                                              value, expected):
    t0 = time.perf_counter()
    code, out, err = _run(capsys, _argv(command, action, value))
    assert time.perf_counter() - t0 < 5
    assert code == 2 and out == ""
    assert "Traceback" not in err and err.count("\n") == 1, err
    assert err.startswith(f"graphrep {command}: error: argument {_flag(action)}: "), err
    assert expected in err


@pytest.mark.parametrize("command,action", [
    pytest.param(c, a, id=f"{c} {_flag(a)}") for c, a in _options()
    if isinstance(a.type, BoundedInt)])
def test_both_ends_of_every_range_are_accepted(command, action):
    parser = build_parser()
    for value in (action.type.lo, action.type.hi):
        args = parser.parse_args(_argv(command, action, str(value)))
        assert getattr(args, action.dest) == value


@pytest.mark.parametrize("argv,message", [
    (["demo", "--index", "--n", "5", "--inserts", "4"], "argument --n: --n 5 + --inserts 4 "
     "is 9 vectors, fewer than the 10 recall@10 needs"),
    (["demo", "--index", "--n", "20", "--inserts", "5", "--deletes", "16"], "argument "
     "--deletes: at most --n + --inserts - 10 = 15"),
    (["demo", "--index", "--n", "1000000", "--dim", "4096"], "argument --dim: (--n + "
     "--inserts) x --dim"),
    (["demo", "--inserts", "5", "--deletes", "6"], "argument --deletes: the live demo "
     "deletes vectors it inserts; at most --inserts 5, got 6"),
    (["load", "--writes", "5", "--deletes", "6"], "--deletes 6 exceeds --writes 5"),
    (["sim", "--replication", "4"], "argument --replication: at most --nodes (3)"),
    (["sim", "--writes", "10", "--deletes", "11"], "argument --deletes: at most --writes (10)"),
    (["sim", "--searches", "5", "--queries", "0"], "argument --searches: searches use the "
     "run's query vectors; set --queries"),
    (["sim", "--searches", "5", "--shards", "2"], "argument --searches: client searches run "
     "on one shard only"),
    (["sim", "--searches", "5", "--nodes", "4", "--replication", "3"],
     "argument --searches: client searches run on one shard only"),
    (["sim", "--dataset", "fmnist", "--dim", "16"], "argument --dim: --dataset fmnist has 784"),
    (["sim", "--dataset", "fmnist", "--writes", "60001", "--deletes", "0"],
     "argument --writes: --dataset fmnist has 60000 base vectors"),
    (["sim", "--dataset", "fmnist", "--queries", "10001"],
     "argument --queries: --dataset fmnist has 10000 query vectors"),
    (["sim", "--writes", "1000000", "--dim", "4096"], "argument --writes: --writes x --dim x "
     "--nodes = 1000000 x 4096 x 3"),
    (["sim", "--regions", "eu,mars"], "argument --regions: unknown region(s) 'mars'; known "
     "regions: eu, us, ap"),
    (["sim", "--regions", "eu,us,eu"], "argument --regions: 'eu' given more than once"),
    (["sim", "--regions", "eu,us,ap", "--nodes-per-region", "6"], "argument "
     "--nodes-per-region: --regions x --nodes-per-region = 3 x 6 = 18 nodes, more than 15"),
    (["sim", "--regions", "eu,us", "--nodes", "5"], "argument --nodes: --regions sets the "
     "nodes (2 regions x --nodes-per-region 3 = 6), got --nodes 5"),
    (["sim", "--regions", "eu,us", "--replication", "7"], "argument --replication: at most "
     "--nodes (6)"),
    (["sim", "--nemesis", "region-partition"], "argument --nemesis: region-partition cuts one "
     "region off the others; give --regions with at least two regions"),
    (["sim", "--regions", "us", "--nemesis", "region-partition"], "argument --nemesis: "
     "region-partition cuts one region off"),
    (["sim-example", "counter", "--bug", "no-retransmit"], "argument --bug: no-retransmit is "
     "not a bug of the counter example; it takes merge-sum or memory-only"),
    (["fuzz", "--start", str(SEED_MAX), "--seeds", "2"], "argument --seeds: --start "),
    (["mutants", "--only", "no-retransmit,nope"], "argument --only: unknown mutant(s) 'nope'"),
])
def test_options_that_do_not_fit_together_are_refused_naming_both(capsys, argv, message):
    code, out, err = _run(capsys, argv)
    assert code == 2 and out == "" and err.count("\n") == 1, err
    assert err.startswith(f"graphrep {argv[0]}: error: ") and message in err, err


def test_a_missing_command_or_help_exits_without_a_traceback(capsys):
    code, _, err = _run(capsys, [])
    assert code == 2 and err.count("\n") == 1 and "required: command" in err
    code, out, _ = _run(capsys, ["sim", "--help"])
    assert code == 0 and "--writes N" in out and "[0, 1000000]" in out


def test_an_error_while_running_is_one_line(capsys, monkeypatch):
    def refuse(args):
        raise InvalidArgument("something was wrong\nacross two lines")

    monkeypatch.setattr(cli, "_sim", refuse)
    code, _, err = _run(capsys, ["sim"])
    assert (code, err) == (2, "graphrep: error: something was wrong across two lines\n")

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_sim", interrupted)
    code, _, err = _run(capsys, ["sim"])
    assert (code, err) == (130, "graphrep: error: interrupted\n")


@pytest.mark.parametrize("argv", [
    ["sim", "--writes", str(10**30)],
    ["demo", "--inserts", "-1"],
    ["fuzz", "--seed", "-1"],
])
def test_the_command_line_process_prints_no_traceback(argv):
    run = subprocess.run([sys.executable, "-m", "graphrep.cli", *argv], capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 2 and run.stdout == ""
    assert "Traceback" not in run.stderr and run.stderr.count("\n") == 1, run.stderr
    assert f"argument {argv[1]}: must be an integer in [" in run.stderr


# ---------------------------------------------------------------------- the edges run

def test_demo_runs_with_no_inserts_and_exactly_ten_live_vectors(capsys, tmp_path):
    code, out, err = _run(capsys, ["demo", "--index", "--n", "30", "--dim", "8", "--inserts",
                                   "0",
                                   "--deletes", "20", "--queries", "3", "--out",
                                   str(tmp_path)])
    assert code == 0, err
    assert "insert              none (--inserts 0)" in out
    s = json.loads((tmp_path / "demo_summary.json").read_text())
    assert s["live"] == 10 and s["inserted"] == 0 and s["digests_equal"]
    assert s["insert_us"] is None and s["bytes_per_insert"] is None


@pytest.mark.parametrize("argv", [
    ["sim", "--writes", "10", "--deletes", "0", "--queries", "1"],  # exactly 10 live
    ["sim", "--writes", "0", "--deletes", "0"],
    ["sim", "--writes", "5", "--deletes", "0", "--queries", "0"],
    ["fuzz", "--seed", str(SEED_MAX), "--steps", "1"],
    ["fuzz", "--start", str(SEED_MAX), "--seeds", "1", "--steps", "1"],
])
def test_boundary_values_run(capsys, argv):
    code, out, err = _run(capsys, [*argv, "--json"])
    assert code == 0, err
    json.loads(out.strip().splitlines()[-1])


def test_the_human_summary_of_a_run_with_nothing_to_search(capsys):
    code, out, err = _run(capsys, ["sim", "--nodes", "3", "--shards", "4", "--replication",
                                   "2", "--writes", "0", "--deletes", "0", "--queries", "0"])
    assert code == 0, err
    assert "recall@10           none measured" in out
    assert "scatter-gather      recall@10 none measured" in out


def test_mutants_run_with_the_smallest_budget(capsys):
    code, out, err = _run(capsys, ["mutants", "--only", "no-retransmit", "--examples", "1",
                                   "--steps", "1", "--json"])
    s = json.loads(out.strip().splitlines()[-1])
    assert code in (0, 1) and s["mutants"] == 1 and s["list"][0]["examples"] >= 1, err


# ---------------------------------------------------------------------- the same as the library

def test_choices_and_limits_match_the_library():
    """``sim`` and ``sim-example`` take their choices and defaults from the library
    itself; the other commands list theirs, checked here."""
    from graphrep import demo
    from graphrep.cluster import DATASETS, NEMESES, READ_PREFERENCES, ClusterConfig
    from graphrep.protocol.config import CONCERNS, POLICIES, SYNC_POLICIES
    from graphrep.sim.examples import harness
    from graphrep.sim.examples.broadcast import BroadcastNode
    from graphrep.sim.examples.counter import CounterNode
    from graphrep.spec import fuzz, profiles
    from graphrep.spec.registry import policy_names

    ranges = {(c, _flag(a)): (a.type.lo, a.type.hi) for c, a in _options()
              if isinstance(a.type, BoundedInt)}
    sim = {_flag(a): a for a in _commands()["sim"]._actions}
    assert sim["--policy"].choices == POLICIES and sim["--concern"].choices == CONCERNS
    assert sim["--sync"].choices == SYNC_POLICIES and sim["--nemesis"].choices == NEMESES
    assert sim["--dataset"].choices == DATASETS
    assert sim["--read-preference"].choices == READ_PREFERENCES
    default = ClusterConfig()
    args = build_parser().parse_args(["sim"])
    assert cli._sim_config(args) == default  # every default is the library's own
    assert (sim["--policy"].default, sim["--max-inflight"].default) == (
        default.policy, default.setting("max_inflight"))
    example = {_flag(a): a for a in _commands()["sim-example"]._actions}
    assert example["--nemesis"].choices == harness.NEMESES
    assert set(example["--bug"].choices) == {
        b.replace("_", "-") for b in (*BroadcastNode.BUGS, *CounterNode.BUGS)}
    assert ranges[("sim-example", "--nodes")] == (2, harness.MAX_NODES)
    assert cli.SEARCH_K == demo.SEARCH_K
    assert cli.FUZZ_NEMESES == fuzz.NEMESES
    assert tuple(policy_names()) == cli.FUZZ_POLICIES
    assert cli.SEED_MAX == fuzz.MAX_SEED == demo.MAX_SEED
    assert cli.PROFILES == profiles.PROFILES
    assert cli.DEMO_FLOATS_MAX == demo.MAX_FLOATS
    assert ranges[("demo", "--n")] == (1, demo.MAX_N)
    assert ranges[("demo", "--inserts")] == ranges[("demo", "--deletes")] == (0, demo.MAX_N)
    assert ranges[("demo", "--dim")] == (1, demo.MAX_DIM)
    assert ranges[("demo", "--queries")] == (1, demo.MAX_QUERIES)


def test_the_largest_values_the_command_line_allows_are_valid_cluster_configs():
    sim = [a for c, a in _options() if c == "sim" and isinstance(a.type, BoundedInt)]
    largest = [x for a in sim for x in (a.option_strings[0], str(a.type.hi))]
    parser = build_parser()
    # searches run on unsharded clusters only; every other option at its largest at once
    for drop in ("--searches", "--shards"):
        argv = ["sim", *largest]
        i = argv.index(drop)
        args = parser.parse_args(argv[:i] + argv[i + 2:])
        cli._sim_config(args)


# ---------------------------------------------------------------------- the library checks

def test_the_functions_behind_the_commands_check_their_arguments():
    from graphrep.demo import run_demo
    from graphrep.spec.fuzz import draw_steps, fuzz, fuzz_seed
    from graphrep.spec.mutants import run_mutant

    for call, match in (
            (lambda: draw_steps(-1, 5), "fuzz seed"),
            (lambda: draw_steps(2**63, 5), "fuzz seed"),
            (lambda: draw_steps(True, 5), "fuzz seed"),
            (lambda: draw_steps(0, 0), "steps must be an int >= 1"),
            (lambda: fuzz_seed(-1, steps=5), "fuzz seed"),
            (lambda: fuzz(range(-1, 1), steps=5), "fuzz seed"),
            (lambda: fuzz(range(1), steps=5, jobs=True), "jobs"),
            (lambda: run_mutant("nope"), "unknown mutant 'nope'"),
            (lambda: run_mutant("no-retransmit", max_examples=-1), "max_examples"),
            (lambda: run_mutant("no-retransmit", max_examples=0), "max_examples"),
            (lambda: run_mutant("no-retransmit", steps=0), "steps"),
            (lambda: run_demo(n_insert=-1), "n_insert"),
            (lambda: run_demo(n_delete=-1), "n_delete"),
            (lambda: run_demo(n=5, n_insert=0, n_delete=0), "leaves 5 live vectors"),
            (lambda: run_demo(n=10**6, dim=4096), "floats"),
            (lambda: run_demo(nq=0), "nq"),
            (lambda: run_demo(seed=-1), "seed")):
        with pytest.raises(InvalidArgument, match=match):
            call()
