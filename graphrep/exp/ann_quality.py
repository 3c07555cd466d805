"""ANN quality: recall@10 against queries per second, graphrep's Vamana index against
hnswlib, faiss (HNSW) and diskannpy, one thread each (the ann-benchmarks plot).

A cell is one library on one data set: ``experiments/ann_bench.py`` runs it in a process
of its own (the references in the reference environment ``.venv-ref``, which it creates
on first use, since diskannpy pins an older numpy than graphrep needs), builds the
index, sweeps the search beam (``L`` or ``ef``), and inserts the last tenth of the base
one point at a time. One row per sweep point: recall@10 and QPS with the queries as one
batch and one at a time, with the cell's build seconds and microseconds per insert.
``graphrep-u8`` is graphrep's index searched on one-byte codes of its vectors
(:mod:`graphrep.ann.codes`), the beam re-ranked on the vectors; its build and insert are
its own cell's graphrep's.

Timings are wall times on whatever else the machine runs: each is the best of
``repeats``, and only ratios between libraries measured in one sweep mean much. The
references need a source checkout (the script and its reference runner live in
``experiments/``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from graphrep.errors import InvalidArgument
from graphrep.exp.core import Experiment, Profile, register
from graphrep.exp.scripts import run_script
from graphrep.plotstyle import colors, new_figure, save_all, style

__all__ = ["LIBRARIES", "AnnCell", "qps_at", "run", "table"]

LIBRARIES = ("graphrep", "graphrep-u8", "hnswlib", "faiss", "diskannpy")
QUICK_SWEEP = (10, 20, 40, 80, 160, 320)


@dataclass(frozen=True)
class AnnCell:
    library: str = "graphrep"
    dataset: str = "gmm"
    n: int = 20_000
    queries: int = 200
    sweep: tuple[int, ...] = QUICK_SWEEP
    repeats: int = 1
    insert_frac: float = 0.1


def run(cell: AnnCell, seed: int) -> list[dict[str, Any]]:
    if cell.library not in LIBRARIES:
        raise InvalidArgument(f"unknown library {cell.library!r}; expected one of "
                              f"{', '.join(LIBRARIES)}")
    mine = cell.library.startswith("graphrep")
    data, _ = run_script("ann_bench.py", [
        "--datasets", cell.dataset, "--libs", "graphrep" if mine else cell.library,
        "--n", str(cell.n), "--nq", str(cell.queries), "--seed", str(seed),
        "--sweep", ",".join(map(str, cell.sweep)), "--repeats", str(cell.repeats),
        "--insert-frac", str(cell.insert_frac),
        *(["--no-codes"] if cell.library == "graphrep" else [])],
        report="ann_bench.json")
    ds = data["datasets"].get(cell.dataset)
    if ds is None:
        reason = data["summary"]["datasets"].get(cell.dataset, {}).get("error", "no result")
        raise RuntimeError(f"{cell.dataset}: {reason}")
    res = ds["libs"][cell.library]
    if "error" in res:
        raise RuntimeError(f"{cell.library} on {cell.dataset}: {res['error']}")
    if mine:
        from graphrep import __version__ as version
    else:
        version = str(res.get("version", ""))
    common = {"lib": cell.library, "version": version,
              "n_base": int(ds["n"]), "dim": int(ds["dim"]), "nq": int(ds["nq"]),
              "build_s": float(res["build_s"]),
              "insert_us": float(res.get("insert", {}).get("us_per_insert", float("nan")))}
    return [{**common, "L": int(p["L"]), "recall_batched": float(p["recall_batched"]),
             "qps_batched": float(p["qps_batched"]), "recall_single": float(p["recall_single"]),
             "qps_single": float(p["qps_single"])} for p in res["sweep"]]


def qps_at(frame: Any, mode: str, target: float) -> float | None:
    """The highest QPS among ``frame``'s sweep points whose recall reaches ``target``
    (None if none does)."""
    ok = frame[frame[f"recall_{mode}"] >= target][f"qps_{mode}"]
    return float(ok.max()) if len(ok) else None


TARGETS = (0.90, 0.95, 0.99)


def table(frame: Any) -> str:
    """A Markdown table per data set: each library's build seconds, QPS at recall@10
    0.90, 0.95 and 0.99 (batched / one at a time; - where no sweep point reaches it) and
    microseconds per insert."""
    out = []
    for name in sorted(set(frame["cfg.dataset"])):
        sel = frame[frame["cfg.dataset"] == name]
        first = sel.iloc[0]
        out.append(f"{name}, {int(first['n_base']):,} x {int(first['dim'])}, "
                   f"{int(first['nq']):,} queries:\n")
        out.append("| library | build (s) | " + " | ".join(
            f"QPS at {t:.2f} (batch / single)" for t in TARGETS) + " | insert (us) |")
        out.append("|---|---:|" + "---:|" * len(TARGETS) + "---:|")
        for lib in [x for x in LIBRARIES if x in set(sel["lib"])]:
            g = sel[sel["lib"] == lib]
            cells = []
            for t in TARGETS:
                b, q = qps_at(g, "batched", t), qps_at(g, "single", t)
                cells.append(f"{'-' if b is None else f'{b:,.0f}'} / "
                             f"{'-' if q is None else f'{q:,.0f}'}")
            out.append(f"| {lib} | {g['build_s'].iloc[0]:.2f} | " + " | ".join(cells)
                       + f" | {g['insert_us'].iloc[0]:.0f} |")
        out.append("")
    return "\n".join(out)


def plot(frame: Any, out: Path) -> list[Path]:
    """Recall@10 against QPS (log scale), batched and one query at a time, one row of
    panels per data set."""
    with style():
        sets = sorted(set(frame["cfg.dataset"]))
        fig = new_figure(10, 3.6 * len(sets))
        axes = fig.subplots(len(sets), 2, squeeze=False)
        shade = colors(LIBRARIES)
        for row, name in zip(axes, sets, strict=True):
            sel = frame[frame["cfg.dataset"] == name]
            for ax, mode in zip(row, ("batched", "single"), strict=True):
                for lib, g in sel.groupby("lib"):
                    g = g.sort_values("L")
                    ax.plot(g[f"recall_{mode}"], g[f"qps_{mode}"], marker="o", ms=3,
                            color=shade[lib],
                            label=f"{lib} (build {g['build_s'].iloc[0]:.1f} s)")
                ax.set_yscale("log")
                ax.set_xlabel("recall@10")
                ax.set_ylabel("queries per second (one thread)")
                first = sel.iloc[0]
                ax.set_title(f"{name} {int(first['n_base']):,} x {int(first['dim'])}: "
                             f"{mode} queries")
                ax.legend()
        return save_all(fig, out / "ann_quality")


def _cells(sets: tuple[tuple[str, int], ...], **kw: Any) -> list[AnnCell]:
    return [AnnCell(lib, name, n, **kw) for name, n in sets for lib in LIBRARIES]


EXPERIMENT = register(Experiment(
    "ann_quality", AnnCell, run,
    profiles={"tiny": Profile(lambda: [AnnCell("graphrep", "gmm", 2_000, queries=50,
                                               sweep=(10, 20, 40))], (0,)),
              "small": Profile(lambda: _cells((("gmm", 20_000),)), (0,)),
              "full": Profile(lambda: _cells((("gmm", 100_000), ("fmnist", 60_000)),
                                             queries=1_000, repeats=3,
                                             sweep=(10, 12, 14, 16, 18, 20, 25, 30, 40, 50,
                                                    60, 80, 100, 120, 150, 200, 300, 400,
                                                    600, 800)), (0,))},
    description="recall@10 against queries per second: graphrep, hnswlib, faiss, diskannpy",
    plot=plot,
    exclusive=True,
    caption="Recall@10 against queries per second on one thread, each library built with "
            "its benchmark settings (graphrep and diskannpy R 64, L 100, alpha 1.2; HNSW M 32, "
            "efConstruction 200), sweeping the search beam; the best of the cell's repeats."))
