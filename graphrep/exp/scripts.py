"""Experiments whose cell runs one of the benchmark scripts of ``experiments/`` (which
therefore need a source checkout): :func:`run_script` runs it in a fresh process and
returns the JSON it reports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from graphrep.errors import InvalidArgument

__all__ = ["SCRIPTS", "run_script"]

SCRIPTS = Path(__file__).resolve().parents[2] / "experiments"
"""Where the scripts are, in a source checkout."""


def run_script(name: str, args: Sequence[str], *, out: bool = True,
               report: str | None = None, check: bool = True) -> tuple[Any, int]:
    """Run ``experiments/<name>`` with ``args`` (and ``--out`` a fresh temporary directory
    if ``out``) under this interpreter, ``PYTHONHASHSEED=0``; return ``(the JSON of
    <out>/<report>, or of the last line of its output without report, its exit code)``.
    Raises ``InvalidArgument`` if the script is missing, ``RuntimeError`` if it exits
    non-zero (with ``check``) or reports nothing."""
    path = SCRIPTS / name
    if not path.exists():
        raise InvalidArgument(f"{path} is missing: this experiment runs its script from a "
                              "source checkout")
    with tempfile.TemporaryDirectory(prefix=f"{path.stem}_") as tmp:
        cmd = [sys.executable, str(path), *args, *(["--out", tmp] if out else [])]
        proc = subprocess.run(cmd, capture_output=True, text=True,
                              env={**os.environ, "PYTHONHASHSEED": "0"})
        failed = RuntimeError(f"{name} exited with {proc.returncode}: {proc.stderr[-2000:]}")
        if check and proc.returncode != 0:
            raise failed
        if report is not None:
            file = Path(tmp) / report
            if not file.exists():
                raise failed
            return json.loads(file.read_text()), proc.returncode
    lines = proc.stdout.strip().splitlines()
    try:
        return json.loads(lines[-1]), proc.returncode
    except (IndexError, ValueError):  # it ended without its JSON line
        raise failed from None
