"""``experiments/live_soak.py`` in a very short mode (about 15 s: a 6 s soak): it drives a live
3-node cluster through one kill and restart, takes the cluster down, and its last stdout
line is the summary, with nothing acknowledged lost and no read-your-writes violation."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "live_soak.py"


def test_a_short_soak_runs_and_loses_nothing(tmp_path):
    keep = tmp_path / "cluster"
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--duration", "6", "--kill-every", "0.5", "--down",
         "0.3", "--base", "200", "--probe-seconds", "1", "--agreement-queries", "5",
         "--keep", str(keep), "--out", str(out)],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["kills"] == 1 and summary["restarts_failed"] == 0, summary
    assert summary["converged"] and summary["digests_equal"], summary
    assert summary["lost_acknowledged_writes"] == 0 and summary["phantoms"] == 0, summary
    assert summary["ryw_checks"] > 0 and summary["ryw_violations"] == 0, summary
    assert summary["top10_agreement"] == 1.0, summary
    assert summary["writes"]["acknowledged"] > 0, summary
    assert set(summary["goals"]) >= {"no acknowledged write lost", "read-your-writes"}
    assert (out / "live_soak.json").is_file() and (out / "live_soak.png").is_file()
    detail = json.loads((out / "live_soak.json").read_text())
    assert detail["incarnations"] and detail["minutes"], detail.keys()
    # the cluster went down with the script: every node logged its graceful stop
    for n in ("n1", "n2", "n3"):
        lines = [x for x in (keep / f"{n}.log").read_text().splitlines() if x.strip()]
        assert lines and lines[-1].endswith(f"{n}: stopped"), lines[-3:]
        assert not (keep / f"{n}.pid").exists()
