"""How a follower's apply cost grows with the index, against the insert it replaces.

A cell builds an ``n``-vector Gaussian-mixture index, then inserts ``inserts`` more
vectors on a copy of it (a leader), keeping each insert's delta as wire bytes. Timed on
fresh copies of the same index (process CPU time, median of ``repeats``):

* ``insert_us``: the leader's inserts, one at a time, per insert: what a ``replay``
  follower spends (it runs the same insert);
* ``apply_us``: a follower applying the deltas from their bytes in batches of
  ``batch`` (``VamanaIndex.apply_bytes``), per insert: what a ``leader``-policy follower
  spends.

Also per delta: the node records it changes and the list values it carries (the apply
kernel's work is proportional to them), and its bytes. The follower's digest must equal
the leader's, or the cell fails.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from graphrep.exp.core import Experiment, Profile, register
from graphrep.plotstyle import new_figure, save_all, style

__all__ = ["ApplyCell", "run", "warm_up"]


@dataclass(frozen=True)
class ApplyCell:
    n: int = 10_000
    inserts: int = 2_000
    dim: int = 128
    R: int = 64
    L: int = 100
    batch: int = 32
    repeats: int = 3


def warm_up(dim: int) -> None:
    """Compile or load every kernel used here once, outside the timings."""
    from graphrep.ann import VamanaIndex

    rng = np.random.default_rng(0)
    a = VamanaIndex(dim, R=8, L=16)
    a.build(rng.random((64, dim), dtype=np.float32))
    b = VamanaIndex.from_bytes(a.to_bytes())
    d = [a.insert(1000 + i, rng.random(dim, dtype=np.float32)).to_bytes() for i in range(3)]
    b.apply_bytes(d)
    a.digest()


def run(cell: ApplyCell, seed: int) -> list[dict[str, Any]]:
    from graphrep.ann import EdgeDelta, VamanaIndex
    from graphrep.datasets import gmm_dataset

    warm_up(cell.dim)
    n, k = cell.n, cell.inserts
    X, _ = gmm_dataset(n + k, 1, cell.dim, n_clusters=100, seed=seed)
    X = np.ascontiguousarray(X[: n + k], dtype=np.float32)
    index = VamanaIndex(cell.dim, R=cell.R, L=cell.L, seed=seed)
    t0 = time.perf_counter()
    index.build(X[:n], np.arange(n))
    build_s = time.perf_counter() - t0
    base = index.to_bytes()
    del index
    insert_s: list[float] = []
    deltas: list[bytes] = []
    for _ in range(cell.repeats):
        leader = VamanaIndex.from_bytes(base)
        t0 = time.process_time()
        out = [leader.insert(i, X[i]) for i in range(n, n + k)]
        insert_s.append(time.process_time() - t0)
        deltas = [d.to_bytes() for d in out]
    apply_s: list[float] = []
    for _ in range(cell.repeats):
        follower = VamanaIndex.from_bytes(base)
        t0 = time.process_time()
        for j in range(0, len(deltas), cell.batch):
            follower.apply_bytes(deltas[j: j + cell.batch])
        apply_s.append(time.process_time() - t0)
    if follower.digest() != leader.digest():
        raise RuntimeError(f"n={n}: the follower's digest differs from the leader's")
    decoded = [EdgeDelta.from_bytes(b) for b in deltas]
    records = float(np.mean([d.n_records for d in decoded]))
    values = float(np.mean([d.values.shape[0] for d in decoded]))
    us_insert = 1e6 * statistics.median(insert_s) / k
    us_apply = 1e6 * statistics.median(apply_s) / k
    return [{
        "n": n, "build_s": round(build_s, 1),
        "insert_us": round(us_insert, 1), "apply_us": round(us_apply, 1),
        "apply_over_insert": round(us_apply / us_insert, 4),
        "records_per_delta": round(records, 1), "values_per_delta": round(values, 1),
        "apply_ns_per_record_or_value": round(1e3 * us_apply / (records + values), 1),
        "bytes_per_delta": round(float(np.mean([len(b) for b in deltas])), 1),
    }]


def plot(frame: Any, out: Path) -> list[Path]:
    """CPU per insert of an insert and of an apply against the index size (median over
    seeds, the band from the lowest to the highest seed), and their ratio."""
    with style():
        g = frame.groupby("n")
        n = list(g.groups)
        fig = new_figure(10, 4)
        ax1, ax2 = fig.subplots(1, 2)
        for col, label in (("insert_us", "insert (a replay follower)"),
                           ("apply_us", "apply the delta (a leader-policy follower)")):
            ax1.plot(n, g[col].median(), "o-", label=label)
            ax1.fill_between(n, g[col].min(), g[col].max(), alpha=0.2)
        ax1.set_xscale("log")
        ax1.set_yscale("log")
        ax1.set_xlabel("index size (vectors)")
        ax1.set_ylabel("CPU per insert, one follower (µs)")
        ax1.legend()
        ratio = 100 * g["apply_over_insert"].median()
        ax2.plot(n, ratio, "o-")
        ax2.fill_between(n, 100 * g["apply_over_insert"].min(),
                         100 * g["apply_over_insert"].max(), alpha=0.2)
        ax2.axhline(2.0, color="grey", linestyle="--", label="2% of an insert")
        ax2.set_xscale("log")
        ax2.set_xlabel("index size (vectors)")
        ax2.set_ylabel("apply / insert (%)")
        ax2.set_ylim(bottom=0)
        ax2.legend()
        return save_all(fig, out / "apply_scaling")


EXPERIMENT = register(Experiment(
    "apply_scaling", ApplyCell, run,
    profiles={"tiny": Profile(lambda: [ApplyCell(n, 50, dim=16, R=16, L=32, repeats=1)
                                       for n in (300, 600)], (7,)),
              "small": Profile(lambda: [ApplyCell(n, 500) for n in (2_000, 5_000, 10_000)],
                               (7,)),
              "full": Profile(lambda: [ApplyCell(n) for n in (10_000, 30_000, 100_000)],
                              (7, 8, 9))},
    description="a follower's apply against the insert it replaces, as the index grows",
    plot=plot,
    caption="A follower's CPU per insert: applying the leader's delta against running the "
            "insert itself (d=128, R=64, L=100); median over seeds, band min to max."))
