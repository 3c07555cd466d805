"""Where results live: ``<root>/<experiment>/<cell key>/``, one directory per cell.

A finished cell holds ``rows.parquet`` (its rows, pyarrow) and ``meta.json``: the
experiment, config settings, seed, ``status`` (``ok`` or ``failed``), the traceback of a
failure, wall time, graphrep's version, the git commit of the working tree (when there is
one), the versions of the packages the numbers depend on, and the machine. A failed
cell has no rows; a rerun runs it again, and skips the cells whose status is ``ok``.
:func:`load` reads every finished cell of an experiment into one pandas DataFrame, each
row with its cell's settings and seed.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = ["DEFAULT_ROOT", "cell_dir", "finished", "load", "machine", "write_cell"]

DEFAULT_ROOT = Path("results")
_PACKAGES = ("numpy", "numba", "pyarrow", "pandas", "msgpack", "hypothesis", "dask",
             "distributed")


def cell_dir(root: Path, exp: str, key: str) -> Path:
    return Path(root) / exp / key


def finished(root: Path, exp: str, key: str) -> bool:
    """Whether the cell ran to the end (its ``meta.json`` says ``ok``)."""
    meta = cell_dir(root, exp, key) / "meta.json"
    if not meta.exists():
        return False
    try:
        return json.loads(meta.read_text()).get("status") == "ok"
    except json.JSONDecodeError:
        return False


def machine() -> dict[str, Any]:
    """What ran it: graphrep's version, the git commit, package versions, the machine."""
    from graphrep import __version__

    versions = {}
    for p in _PACKAGES:
        try:
            versions[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            versions[p] = None
    return {"graphrep": __version__, "git_commit": _git_commit(), "packages": versions,
            "python": platform.python_version(), "platform": platform.platform(),
            "cpus": os.cpu_count()}


def _git_commit() -> str | None:
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True,
                             text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def write_cell(root: Path, exp: str, key: str, settings: dict[str, Any], seed: int,
               rows: Sequence[dict[str, Any]] | None, wall_s: float,
               error: str | None, run_by: dict[str, Any]) -> Path:
    """Write one cell: its rows (if it finished) and its metadata; returns its directory.
    The metadata goes last, so a cell interrupted while writing is not ``ok``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    d = cell_dir(root, exp, key)
    d.mkdir(parents=True, exist_ok=True)
    if error is None:
        table = pa.Table.from_pylist(list(rows or []))
        pq.write_table(table, d / "rows.parquet")
    meta = {"experiment": exp, "key": key, "settings": settings, "seed": seed,
            "status": "ok" if error is None else "failed", "error": error,
            "rows": None if rows is None else len(rows), "wall_s": round(wall_s, 3),
            **run_by}
    tmp = d / "meta.json.tmp"
    tmp.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    tmp.replace(d / "meta.json")
    return d


def load(exp: str, root: Path = DEFAULT_ROOT) -> Any:
    """Every finished cell's rows of ``exp`` as one pandas DataFrame, each row with its
    cell's settings (columns ``cfg.<name>``), ``seed`` and ``cell``; empty if none."""
    import pandas as pd
    import pyarrow.parquet as pq

    frames = []
    base = Path(root) / exp
    for meta_path in sorted(base.glob("*/meta.json")):
        meta = json.loads(meta_path.read_text())
        if meta.get("status") != "ok":
            continue
        frame = pq.read_table(meta_path.parent / "rows.parquet").to_pandas()
        for k, v in meta["settings"].items():
            frame[f"cfg.{k}"] = [v] * len(frame) if isinstance(v, list) else v
        frame["seed"] = meta["seed"]
        frame["cell"] = meta["key"]
        frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
