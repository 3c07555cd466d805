"""Running a sweep: every (config, seed) cell through one ``concurrent.futures.Executor``.

:func:`run_sweep` submits each cell not finished yet (all of them with ``force``) to the
executor it is given, or to a :class:`~concurrent.futures.ProcessPoolExecutor` of
``jobs`` local processes (one for an ``exclusive`` experiment, whose cells time
themselves), started fresh ("spawn": forking a process that holds threads,
as one with a Dask client or Numba's pool does, can kill the child); a
``fresh_process`` experiment's cells each get a process of their own. For a Dask
cluster pass ``dask_executor(address)``
(``distributed.Client(address).get_executor()``): the same code path, the work on the
cluster's workers. A cell runs :func:`run_cell` in the worker, which looks the
experiment up by name (importing the module of its ``run`` if the worker has not), so
only plain data crosses to it; this process writes each result as it arrives
(:mod:`.store`). A cell that raises is recorded as failed, with its traceback and
seed, and the sweep goes on. A progress bar shows cells done, failed and the time left.
"""

from __future__ import annotations

import multiprocessing
import time
import traceback
from collections.abc import Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, as_completed
from contextlib import ExitStack
from dataclasses import dataclass, field
from importlib import import_module
from pathlib import Path
from typing import Any

from graphrep.errors import InvalidArgument
from graphrep.exp.core import cell_key, get, names, settings_of
from graphrep.exp.store import DEFAULT_ROOT, finished, machine, write_cell

__all__ = ["SweepReport", "dask_executor", "run_cell", "run_sweep"]


@dataclass
class SweepReport:
    """What a sweep did: cells run, skipped (finished before) and failed (with their
    seed and the last line of their traceback)."""

    experiment: str
    cells: int = 0
    ran: int = 0
    skipped: int = 0
    failed: list[dict[str, Any]] = field(default_factory=list)
    wall_s: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {"experiment": self.experiment, "cells": self.cells, "ran": self.ran,
                "skipped": self.skipped, "failed": len(self.failed),
                "failures": self.failed, "wall_s": round(self.wall_s, 1)}


def run_cell(exp_name: str, module: str, settings: dict[str, Any], seed: int
             ) -> tuple[list, float, str | None]:
    """Run one cell (in a worker): ``(rows, wall seconds, traceback or None)``. A fresh
    worker imports ``module`` (where the experiment's ``run`` lives), which registers
    it."""
    t0 = time.perf_counter()
    try:
        if exp_name not in names(registered_only=True):
            import_module(module)
        exp = get(exp_name)
        rows = exp.run(exp.config_of(_tuples(settings)), seed)
        return list(rows), time.perf_counter() - t0, None
    except Exception:  # recorded with the cell; the sweep goes on
        return [], time.perf_counter() - t0, traceback.format_exc()


def _tuples(settings: dict[str, Any]) -> dict[str, Any]:
    """Settings as the config declares them (JSON lists back to tuples)."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in settings.items()}


def dask_executor(address: str) -> Executor:
    """An executor whose work runs on the Dask cluster at ``address``
    (``tcp://HOST:PORT``)."""
    from distributed import Client

    return Client(address).get_executor()


def run_sweep(exp_name: str, configs: Sequence[Any], seeds: Sequence[int], *,
              root: Path = DEFAULT_ROOT, executor: Executor | None = None, jobs: int = 1,
              force: bool = False, progress: bool = True) -> SweepReport:
    """Run every (config, seed) cell of ``exp_name`` not finished under ``root`` (every
    cell with ``force``); see the module docstring."""
    exp = get(exp_name)
    if type(jobs) is not int or jobs < 1:
        raise InvalidArgument(f"jobs must be an int >= 1, got {jobs!r}")
    cells = [(settings_of(c), int(s)) for c in configs for s in seeds]
    report = SweepReport(exp.name, cells=len(cells))
    todo = []
    for settings, seed in cells:
        key = cell_key(exp.name, exp.config_of(_tuples(settings)), seed)
        if not force and finished(root, exp.name, key):
            report.skipped += 1
        else:
            todo.append((key, settings, seed))
    t0 = time.perf_counter()
    run_by = machine()
    with ExitStack() as stack:
        if executor is None:  # fresh processes: no fork of a process that holds threads
            executor = stack.enter_context(ProcessPoolExecutor(
                max_workers=1 if exp.exclusive else jobs,
                mp_context=multiprocessing.get_context("spawn"),
                max_tasks_per_child=1 if exp.fresh_process else None))
        module = exp.run.__module__
        futures = {executor.submit(run_cell, exp.name, module, settings, seed):
                   (key, settings, seed) for key, settings, seed in todo}
        bar = _bar(len(todo), exp.name) if progress else None
        for fut in as_completed(futures):
            key, settings, seed = futures[fut]
            try:
                rows, wall, error = fut.result()
            except Exception:  # the worker itself failed (not the cell's code)
                rows, wall, error = [], 0.0, traceback.format_exc()
            write_cell(root, exp.name, key, settings, seed, None if error else rows, wall,
                       error, run_by)
            report.ran += 1
            if error:
                last = error.strip().splitlines()[-1]
                report.failed.append({"cell": key, "seed": seed, "error": last})
            if bar is not None:
                bar.set_postfix(failed=len(report.failed))
                bar.update(1)
        if bar is not None:
            bar.close()
    report.wall_s = time.perf_counter() - t0
    return report


def _bar(total: int, name: str) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc=name, unit="cell")
