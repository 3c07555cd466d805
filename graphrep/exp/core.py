"""What an experiment is: a typed config, ``run(config, seed) -> rows``, and its sweeps.

An :class:`Experiment` names a frozen dataclass of settings (loadable from TOML with
:func:`config_from_toml`), a function that runs one (config, seed) *cell* and returns
its rows (a list of flat dicts of scalars), and its profiles: for each profile name
(``small``, ``full``) the grid of configs and the seeds to run each with. Register one
with :func:`register`; :func:`get` and :func:`names` read the registry.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from graphrep.errors import InvalidArgument

__all__ = ["Experiment", "Profile", "cell_key", "config_from_toml", "get", "names",
           "register", "settings_of"]

Row = dict[str, Any]


@dataclass(frozen=True)
class Profile:
    """A sweep: the configs of a grid and the seeds each runs with."""

    configs: Callable[[], Sequence[Any]]
    seeds: tuple[int, ...]


@dataclass(frozen=True)
class Experiment:
    """One experiment: ``config`` (a frozen dataclass type), ``run(config, seed) ->
    rows``, its ``profiles`` and, optionally, ``plot(frame, out_dir) -> paths``.
    ``exclusive``: its cells time themselves in wall-clock time, so local processes run
    them one at a time whatever ``jobs`` says (a Dask cluster's workers are the
    caller's to keep idle). ``fresh_process``: each cell runs in a local process of
    its own, for cells that measure the process (its peak resident memory, say), which
    a process that ran other cells before would distort."""

    name: str
    config: type
    run: Callable[[Any, int], list[Row]]
    profiles: Mapping[str, Profile]
    description: str = ""
    plot: Callable[..., list[Path]] | None = None
    caption: str = ""
    exclusive: bool = False
    fresh_process: bool = False

    def __post_init__(self) -> None:
        if not dataclasses.is_dataclass(self.config):
            raise InvalidArgument(f"experiment {self.name!r}: config must be a dataclass "
                                  f"type, got {self.config!r}")

    def profile(self, name: str) -> Profile:
        try:
            return self.profiles[name]
        except KeyError:
            raise InvalidArgument(f"experiment {self.name!r} has no profile {name!r}; it "
                                  f"has {', '.join(self.profiles)}") from None

    def config_of(self, settings: Mapping[str, Any]) -> Any:
        """The config with ``settings`` (field name -> value); unknown names refused."""
        known = {f.name for f in dataclasses.fields(self.config)}
        unknown = sorted(set(settings) - known)
        if unknown:
            raise InvalidArgument(f"experiment {self.name!r}: unknown setting(s) "
                                  f"{', '.join(unknown)}; the config has {', '.join(known)}")
        return self.config(**settings)


_REGISTRY: dict[str, Experiment] = {}


def register(exp: Experiment, replace: bool = False) -> Experiment:
    if exp.name in _REGISTRY and not replace:
        raise InvalidArgument(f"experiment {exp.name!r} is registered already; pass "
                              "replace=True to overwrite it")
    _REGISTRY[exp.name] = exp
    return exp


def names(registered_only: bool = False) -> list[str]:
    """The registered experiments, in registration order (the built-in ones loaded
    first, unless ``registered_only``)."""
    if not registered_only:
        _load_builtin()
    return list(_REGISTRY)


def get(name: str) -> Experiment:
    _load_builtin()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise InvalidArgument(f"unknown experiment {name!r}; registered: "
                              f"{', '.join(_REGISTRY) or 'none'}") from None


def _load_builtin() -> None:
    from graphrep.exp import (  # noqa: F401  (they register on import)
        active_active,
        ann_quality,
        apply_scaling,
        convergence,
        drift,
        lag,
        live_throughput,
        recall_timeline,
        replication_cost,
        sim_speed,
        soak,
    )


def settings_of(config: Any) -> dict[str, Any]:
    """A config as plain JSON-able settings (tuples as lists)."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


def cell_key(exp: str, config: Any, seed: int) -> str:
    """The name of a cell's results: a hash of the experiment, its settings and its
    seed (canonical JSON, sorted keys), so a rerun finds what it finished."""
    text = json.dumps([exp, settings_of(config), int(seed)], sort_keys=True)
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def config_from_toml(exp: Experiment, path: str | Path) -> Any:
    """The config of ``exp`` read from a TOML file of settings (field = value)."""
    with open(path, "rb") as fh:
        data = tomllib.load(fh)
    fields = {f.name: f for f in dataclasses.fields(exp.config)}
    for k, v in list(data.items()):  # TOML arrays come as lists: tuples where declared
        if k in fields and isinstance(v, list):
            data[k] = tuple(v)
    return exp.config_of(data)
