"""``graphrep demo`` end to end, as a user runs it: a small index built, mutated and
replayed, the printed summary, the plot and the JSON summary next to it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def _graphrep() -> list[str]:
    """The installed ``graphrep`` command of this interpreter's environment (or the same
    entry point through the interpreter, where the script is not installed)."""
    script = Path(sys.executable).with_name("graphrep")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "import sys; from graphrep.cli import main; "
            "sys.exit(main(sys.argv[1:]))"]


def test_demo_prints_its_summary_and_writes_the_plot(tmp_path):
    out = tmp_path / "demo"
    env = {**os.environ, "MPLCONFIGDIR": str(tmp_path / "mpl")}
    run = subprocess.run(
        [*_graphrep(), "demo", "--index", "--n", "200", "--dim", "8", "--inserts", "40",
         "--deletes", "20", "--queries", "20", "--seed", "3", "--out", str(out)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0].startswith("compiling the kernels")
    assert "build: 200 x 8 Gaussian mixture..." in lines
    assert any(line.startswith("recall@10           primary ") for line in lines)
    assert any(line.startswith("digests equal       True") for line in lines)
    assert "identical results   True" in lines
    assert "graph               220 live, " in run.stdout
    assert ", 0 distance computations in all" in run.stdout  # applying deltas: no search
    plot = out / "demo_recall_qps.png"
    assert f"plot                {plot}" in lines
    assert plot.read_bytes().startswith(b"\x89PNG")
    summary = json.loads((out / "demo_summary.json").read_text())
    assert (summary["n"], summary["inserted"], summary["deleted"], summary["live"]) == \
        (200, 40, 20, 220)
    assert summary["digests_equal"] and summary["identical_results"]
    assert summary["unreachable"] == 0 and summary["replica_distance_computations"] == 0
    assert summary["recall_at_10"] == summary["replica_recall_at_10"] > 0.9
