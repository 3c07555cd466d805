"""The paper is built from results: every number in its text is one the results give."""

from __future__ import annotations

import json
import re

import pytest

from graphrep import paper
from graphrep.exp import load


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    base = tmp_path_factory.mktemp("paper")
    summary = paper.build("tiny", base / "results", base / "paper", jobs=2, progress=False)
    return base, summary


def test_the_paper_is_the_template_filled_with_its_numbers(built):
    base, summary = built
    assert set(summary["sweeps"]) == set(paper.EXPERIMENTS)
    assert all(s["failed"] == 0 for s in summary["sweeps"].values())
    text = (base / "paper" / "paper.md").read_text()
    recorded = json.loads((base / "paper" / "numbers.json").read_text())
    template = (paper.PAPER / "paper.md.in").read_text()
    assert text == paper.render(template, {**recorded["numbers"], "profile": "tiny"})
    assert not re.search(r"\{[a-z0-9_]+(:[^}]*)?\}", text)  # nothing left unfilled
    for fig in re.findall(r"\]\((figures/[^)]+)\)", text):
        assert (base / "paper" / fig).stat().st_size > 0


def test_the_numbers_are_what_the_results_say(built):
    base, _ = built
    root = base / "results" / "tiny"
    n = json.loads((base / "paper" / "numbers.json").read_text())["numbers"]
    rc = load("replication_cost", root)
    big = rc[(rc["cfg.initial"] == rc["cfg.initial"].max()) & (rc["cfg.nemesis"] == "none")]
    for pol in ("leader", "replay"):
        g = big[big["cfg.policy"] == pol]
        assert n[f"rc_{pol}_none_cpu_us"] == g["replica_cpu_us_per_insert"].median()
        assert n[f"rc_{pol}_none_bytes"] == g["bytes_per_insert.total"].median()
    aa = load("active_active", root)
    for pol in ("crdt", "lww", "ordered", "leader"):
        assert n[f"aa_{pol}_converged"] == int(aa[aa["cfg.policy"] == pol]["converged"].sum())
    ap = load("apply_scaling", root)
    top = ap[ap["n"] == ap["n"].max()]
    assert n["ap_ratio_max_n"] == pytest.approx(100 * top["apply_over_insert"].median())


def test_a_template_naming_an_unknown_number_is_refused():
    from graphrep.errors import InvalidArgument

    with pytest.raises(InvalidArgument, match="no_such_number"):
        paper.render("{no_such_number:.1f}", {})


def test_the_template_types_no_number_by_hand():
    template = (paper.PAPER / "paper.md.in").read_text()
    prose = re.sub(r"\{[a-z0-9_]+(:[^}]*)?\}", "", template)
    prose = re.sub(r"\]\([^)]*\)", "]", prose)  # figure paths
    words = {w.strip("(),.;:`*") for w in re.findall(r"\S*\d\S*", prose)}
    assert words <= {"p99", "recall@10", "top-10"}, words


def test_the_ann_numbers_compare_graphrep_with_the_best_reference():
    import pandas as pd

    def rows(lib, build, points):
        return [{"cfg.dataset": "gmm", "lib": lib, "n_base": 1000, "dim": 8, "nq": 50,
                 "build_s": build, "insert_us": 10.0, "L": L, "recall_batched": r,
                 "qps_batched": q, "recall_single": r, "qps_single": q / 2}
                for L, r, q in points]

    frame = pd.DataFrame(rows("graphrep", 2.0, [(10, 0.93, 900.0), (20, 0.97, 600.0)])
                         + rows("hnswlib", 1.0, [(10, 0.96, 800.0), (20, 0.99, 500.0)])
                         + rows("faiss", 4.0, [(10, 0.94, 5000.0), (20, 0.951, 700.0)]))
    n = paper._ann_numbers(frame)
    assert n["aq_graphrep_batched"] == "600" and n["aq_best_batched"] == "hnswlib"
    assert n["aq_ratio_batched"] == 0.75 and n["aq_ratio_single"] == 0.75
    assert n["aq_fastest_build"] == "hnswlib" and n["aq_build_ratio"] == 2.0
    assert "| graphrep | 2.00 | 900 / 450 | 600 / 300 | - / - | 10 |" in n["aq_table"]
    assert n["aq_codes_batched"] == "n/a"  # no graphrep-u8 cell
    alone = paper._ann_numbers(frame[frame["lib"] == "graphrep"])
    assert alone["aq_ratio_batched"] == "n/a" and alone["aq_references"] == "none"
    # the same index on codes is graphrep's, never a reference
    coded = pd.DataFrame(rows("graphrep-u8", 2.0, [(10, 0.95, 1200.0), (20, 0.99, 900.0)]))
    both = paper._ann_numbers(pd.concat([frame, coded]))
    assert both["aq_best_batched"] == "hnswlib" and "graphrep-u8" not in both["aq_references"]
    assert both["aq_codes_batched"] == "1,200" and both["aq_codes_ratio_batched"] == 1.5
