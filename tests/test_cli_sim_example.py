"""``graphrep sim-example``: JSON and human summaries, plots, exit codes, bad input."""

from __future__ import annotations

import json
import re

import pytest

from graphrep.cli import main


def run_json(capsys, *argv: str) -> tuple[int, dict]:
    code = main(["sim-example", *argv, "--json"])
    out = capsys.readouterr().out
    return code, json.loads(out)


@pytest.mark.parametrize("example", ["gossip", "counter"])
def test_json_summary_of_a_run_under_partitions(capsys, example):
    code, s = run_json(capsys, example, "--nodes", "5", "--seed", "7", "--nemesis",
                       "partitions")
    assert code == 0 and s["valid"] is True and s["checker"]["valid"] is True
    assert s["example"] == ("broadcast" if example == "gossip" else "counter")
    assert (s["seed"], s["nodes"], s["nemesis"], s["bug"]) == (7, 5, "partitions", None)
    assert s["faults"] == len(s["schedule"]) > 0
    assert {f["kind"] for f in s["schedule"]} <= {"partition", "heal"}
    assert s["virtual_duration_ns"] >= s["final_read_ns"] > s["repair_ns"] >= 1_000_000_000
    assert s["sends"] >= s["deliveries"] > 0 and s["drops"] > 0
    assert re.fullmatch(r"[0-9a-f]{64}", s["trace_hash"])
    again = run_json(capsys, example, "--nodes", "5", "--seed", "7", "--nemesis",
                     "partitions")[1]
    assert again == s


def test_a_planted_bug_exits_1(capsys):
    code, s = run_json(capsys, "counter", "--nodes", "3", "--bug", "merge-sum",
                       "--duration-ms", "200", "--nemesis", "none")
    assert code == 1 and s["valid"] is False and s["bug"] == "merge_sum"
    assert s["checker"]["out_of_bounds"]


def test_human_summary(capsys):
    code = main(["sim-example", "gossip", "--nodes", "3", "--seed", "2", "--duration-ms",
                 "300"])
    out = capsys.readouterr().out
    assert code == 0
    assert out.startswith("broadcast: 3 nodes, seed 2, nemesis mixed")
    assert "checker         VALID:" in out and re.search(r"trace hash +[0-9a-f]{64}", out)

    code = main(["sim-example", "counter", "--nodes", "3", "--seed", "1", "--duration-ms",
                 "300", "--nemesis", "crashes", "--bug", "memory-only"])
    out = capsys.readouterr().out
    assert "bug memory_only" in out and "adds" in out
    assert ("INVALID" in out) == (code == 1) and code in (0, 1)


def test_plots_show_the_run_and_its_faults(capsys, tmp_path):
    # seed 3: the mixed nemesis draws crashes, pauses, partitions and loss in 600 ms
    code, s = run_json(capsys, "gossip", "--nodes", "3", "--seed", "3", "--duration-ms",
                       "600", "--plot", str(tmp_path / "plots"))
    assert code == 0
    chart = tmp_path / "plots" / "broadcast-messages.svg"
    timeline = tmp_path / "plots" / "broadcast-timeline.svg"
    assert s["plots"] == [str(chart), str(timeline)]
    drawn = chart.read_text().count('id="deliver-') + chart.read_text().count('id="drop-')
    assert drawn == min(300, s["deliveries"] + s["drops"])  # capped at 300 messages
    text = timeline.read_text()
    kinds = {f["kind"] for f in s["schedule"] if f.get("p", 1) > 0}
    for kind, gid in (("crash", "down-"), ("pause", "paused-"),
                      ("partition", "partition-"), ("loss", "loss-")):
        assert (f'id="{gid}' in text) == (kind in kinds), kind
    assert {"crash", "pause", "partition", "loss"} <= kinds


@pytest.mark.parametrize("argv,message", [
    (["gossip", "--nemesis", "chaos"], "argument --nemesis: invalid choice: 'chaos'"),
    (["counter", "--nodes", "1"], "argument --nodes: must be an integer in [2, 50], got '1'"),
    (["paxos"], "argument example: invalid choice: 'paxos'"),
    (["gossip", "--bug", "merge-sum"], "argument --bug: merge-sum is not a bug of the gossip "
                                       "example; it takes ack-before-sync or no-retransmit"),
    (["gossip", "--duration-ms", "0"], "argument --duration-ms: must be an integer in [1, "),
    (["gossip", "--seed", "-3"], "argument --seed: must be an integer in [0, "),
])
def test_bad_input_exits_2_with_a_clear_message(capsys, argv, message):
    assert main(["sim-example", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("graphrep sim-example: error: ") and message in err
    assert err.count("\n") == 1
