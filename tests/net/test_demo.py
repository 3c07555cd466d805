"""``graphrep demo`` as a user runs it, small: the live demo (three node processes, the
leader SIGKILLed mid-write) and the in-process index demo (``--index``), both with
``--json``."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

GRAPHREP = [sys.executable, "-m", "graphrep.cli"]


def _node_processes_of(directory_prefix: str) -> list[int]:
    """Node processes whose cluster file lies under a directory starting with
    ``directory_prefix``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                args = (entry / "cmdline").read_bytes().split(b"\0")
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
                if b"node" in args and state != "Z" and any(
                        a.startswith(directory_prefix.encode()) for a in args):
                    found.append(int(entry.name))
    return found


def run_demo(tmp_path: Path, *args: str, timeout: float = 300) -> dict:
    env = {**os.environ, "MPLCONFIGDIR": str(tmp_path / "mpl"),
           "TMPDIR": str(tmp_path)}  # the live demo's cluster lives in a temporary dir
    try:
        run = subprocess.run([*GRAPHREP, "demo", "--json", "--out", str(tmp_path / "out"),
                              *args], capture_output=True, text=True, timeout=timeout,
                             env=env, cwd=tmp_path, stdin=subprocess.DEVNULL)
    finally:  # the demo takes its cluster down on every way out; make sure of it
        leftovers = _node_processes_of(str(tmp_path))
        for pid in leftovers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    assert not leftovers, f"the demo left node processes running: {leftovers}"
    assert run.returncode == 0, run.stderr[-3000:]
    lines = run.stdout.strip().splitlines()
    assert len(lines) == 1, run.stdout  # --json: one JSON object, no progress bars
    return json.loads(lines[0])


def test_live_demo(tmp_path):
    s = run_demo(tmp_path, "--n", "1500", "--inserts", "300", "--deletes", "30",
                 "--queries", "50")
    assert (s["nodes"], s["base_vectors"], s["inserts"], s["deletes"]) == (3, 1500, 300, 30)
    assert s["acknowledged_writes_lost"] == 0
    assert s["digests_equal"] is True and len(set(s["digests"].values())) == 1
    assert sorted(s["digests"]) == ["n1", "n2", "n3"]
    assert s["top10_agreement"] == 1.0
    assert s["killed"] in s["digests"]
    # every write acknowledged, failed (timed out in the failover), or skipped (a delete
    # whose insert failed)
    assert s["writes_acknowledged"] + s["writes_failed"] + s["writes_skipped"] == 330
    assert s["writes_acknowledged"] >= 300
    assert 0 < s["time_to_new_leader_s"] < 10
    assert s["converged_after_restart_s"] >= 0
    assert all(0.8 < r <= 1.0 for r in s["recall_at_10"].values()), s["recall_at_10"]
    assert len(set(s["recall_at_10"].values())) == 1  # the same graph answers alike
    plot = Path(s["plot"])
    assert plot == tmp_path / "out" / "live-demo.png"
    assert plot.read_bytes().startswith(b"\x89PNG")
    assert json.loads((tmp_path / "out" / "summary.json").read_text()) == s


def test_index_demo(tmp_path):
    s = run_demo(tmp_path, "--index", "--n", "300", "--dim", "8", "--inserts", "40",
                 "--deletes", "20", "--queries", "20", timeout=240)
    assert (s["n"], s["inserted"], s["deleted"], s["live"]) == (300, 40, 20, 320)
    assert s["digests_equal"] and s["identical_results"]
    assert s["replica_distance_computations"] == 0
    assert Path(s["plot"]).read_bytes().startswith(b"\x89PNG")
