"""Experiments: one convention for every sweep, a result store, one execution path.

* :mod:`.core`: an :class:`Experiment` is a typed config (a frozen dataclass, loadable
  from TOML), ``run(config, seed) -> rows`` and its profiles (``small``, ``full``: the
  grid of configs and the seeds);
* :mod:`.store`: each (config, seed) cell's rows as Parquet and its metadata as JSON
  under ``<root>/<experiment>/<cell key>/`` (the command line's root is
  ``results/<profile>``, where ``graphrep paper build`` reads); :func:`load` reads them
  into pandas;
* :mod:`.runner`: :func:`run_sweep` runs the cells not finished yet through one
  ``concurrent.futures.Executor``: local processes, or a Dask cluster
  (:func:`dask_executor`).

``graphrep exp list``, ``graphrep exp run NAME --profile small|full [--jobs N]
[--scheduler tcp://HOST:PORT] [--force]`` and ``graphrep exp plot NAME --profile
small|full`` drive them.
"""

from graphrep.exp.core import (
    Experiment,
    Profile,
    cell_key,
    config_from_toml,
    get,
    names,
    register,
)
from graphrep.exp.runner import SweepReport, dask_executor, run_sweep
from graphrep.exp.store import load

__all__ = ["Experiment", "Profile", "SweepReport", "cell_key", "config_from_toml",
           "dask_executor", "get", "load", "names", "register", "run_sweep"]
