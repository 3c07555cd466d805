"""The simulator's speed: deliveries per second of graphrep.sim's event loop on one
workload, against SimPy (callback and process styles) and a bare heapq loop.

A cell is one engine: ``experiments/sim_bench.py --worker ENGINE`` runs it in a fresh
process (5 nodes, 10 messages in flight per node, each delivery sending one message on
to a random other node with exponential latency of mean 10 ms) until ``deliveries``
deliveries have happened, timing only the event loop. One row: the engine, deliveries
per second, and which graphrep loop ran (``python``, or ``mypyc`` where ``make
fast-sim`` built the compiled one). Seeds are repetitions; cells run one at a time.

The SimPy engines run only where SimPy is installed (``pip install -e '.[bench]'``):
the profiles leave them out otherwise. Needs a source checkout (the script lives in
``experiments/``).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from graphrep.errors import InvalidArgument
from graphrep.exp.core import Experiment, Profile, register
from graphrep.exp.scripts import run_script
from graphrep.plotstyle import colors, new_figure, save_all, style

__all__ = ["SpeedCell", "engines", "run"]

ENGINES = ("graphrep", "graphrep_send", "simpy_callback", "simpy_process", "bare_heapq")


@dataclass(frozen=True)
class SpeedCell:
    engine: str = "graphrep"
    deliveries: int = 200_000


def engines() -> list[str]:
    """The engines this machine can run (the SimPy ones only where SimPy is installed)."""
    simpy = importlib.util.find_spec("simpy") is not None
    return [e for e in ENGINES if simpy or not e.startswith("simpy")]


def run(cell: SpeedCell, seed: int) -> list[dict[str, Any]]:
    if cell.engine not in ENGINES:
        raise InvalidArgument(f"unknown engine {cell.engine!r}; expected one of "
                              f"{', '.join(ENGINES)}")
    line, _ = run_script("sim_bench.py", ["--worker", cell.engine,
                                          "--deliveries", str(cell.deliveries)], out=False)
    return [{"engine": cell.engine, "deliveries_per_s": float(line["rate"]),
             "variant": line.get("variant") or ""}]


def plot(frame: Any, out: Path) -> list[Path]:
    """Deliveries per second per engine (median over repetitions, with their range)."""
    with style():
        fig = new_figure(6, 3.2)
        ax = fig.subplots()
        g = frame.groupby("engine")["deliveries_per_s"]
        order = [e for e in ENGINES if e in g.groups]
        med = g.median()[order]
        lo, hi = g.min()[order], g.max()[order]
        shade = colors(order)
        ax.bar(order, med.values, yerr=[med.values - lo.values, hi.values - med.values],
               color=[shade[e] for e in order], capsize=3)
        ax.set_ylabel("deliveries per second")
        ax.tick_params(axis="x", labelrotation=20)
        return save_all(fig, out / "sim_speed")


EXPERIMENT = register(Experiment(
    "sim_speed", SpeedCell, run,
    profiles={"tiny": Profile(lambda: [SpeedCell(e, 20_000) for e in engines()], (0,)),
              "small": Profile(lambda: [SpeedCell(e) for e in engines()], (0, 1, 2)),
              "full": Profile(lambda: [SpeedCell(e, 1_000_000) for e in engines()],
                              (0, 1, 2, 3, 4))},
    description="deliveries per second of the simulator's event loop against SimPy and "
                "a bare heapq loop",
    plot=plot,
    exclusive=True,
    caption="Deliveries per second of one message-passing workload (5 nodes, 10 messages "
            "in flight each, exponential latency) on graphrep.sim, on SimPy in its "
            "callback and process styles, and on a bare heapq loop; median over "
            "repetitions, bars from the slowest to the fastest."))
