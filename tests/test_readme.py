"""The README's examples run as written (docs are true on the commit that lands them):
every Python block, and the live runtime's shell block around the Python block that
talks to the cluster it starts."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
TEXT = README.read_text()
BLOCKS = re.findall(r"```python\n(.*?)```", TEXT, flags=re.S)
SHELL = re.findall(r"```sh\n(.*?)```", TEXT, flags=re.S)
LIVE = [b for b in BLOCKS if "graphrep.net" in b]
LOCAL = [b for b in BLOCKS if b not in LIVE]


def _commands(block: str) -> list[list[str]]:
    """The block's commands: comments dropped, lines split at ``;``."""
    out = []
    for line in block.splitlines():
        for part in line.split("#", 1)[0].split(";"):
            if part.strip():
                out.append(shlex.split(part))
    return out


def test_the_readme_has_examples():
    assert len(LOCAL) >= 3 and len(LIVE) == 1


@pytest.mark.parametrize("block", LOCAL, ids=[f"example{i}" for i in range(len(LOCAL))])
def test_a_readme_example_runs(block: str):
    exec(compile(block, str(README), "exec"), {"__name__": "readme_example"})


def test_the_live_example_runs(tmp_path, monkeypatch):
    """``graphrep cluster up ... status`` from the README, then its client example on
    that cluster, then ``down`` (run whatever happens)."""
    live = next(b for b in SHELL if "graphrep cluster up" in b)
    commands = _commands(live)
    assert all(c[0] == "graphrep" for c in commands)
    down = [c for c in commands if c[1:3] == ["cluster", "down"]]
    assert down, "the example must take its cluster down"
    monkeypatch.chdir(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(README.parent)}
    try:
        for c in commands:
            if c in down:
                continue
            run = subprocess.run([sys.executable, "-m", "graphrep.cli", *c[1:]], env=env,
                                 capture_output=True, text=True, timeout=300)
            assert run.returncode == 0, f"{shlex.join(c)}: {run.stderr[-2000:]}"
        exec(compile(LIVE[0], str(README), "exec"), {"__name__": "readme_example"})
    finally:
        for c in down:
            subprocess.run([sys.executable, "-m", "graphrep.cli", *c[1:]], env=env,
                           capture_output=True, timeout=120)
