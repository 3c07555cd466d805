"""How does a follower's apply cost grow with the index, against the insert it replaces?

For each index size n: build an n-vector Gaussian-mixture index (d=128, R=64, L=100 by
default), then insert ``--inserts`` more vectors on a copy of it (a leader), keeping
each insert's delta as wire bytes. Timed, on fresh copies of the same index (process
CPU time, median of ``--repeats``):

- ``insert``: the leader's inserts, one at a time: what a ``replay`` follower spends
  per insert (it runs the same insert);
- ``apply``: a follower applying the deltas from their bytes in batches of
  ``--batch`` (``VamanaIndex.apply_bytes``): what a ``leader``-policy follower spends.

Also counted per delta: the node records it changes and the list values (neighbour ids)
it carries, since the apply kernel's work is proportional to them. The ratio
apply/insert is the per-follower version of the replication benchmark's replica-CPU
ratio (experiments/replication_cost.py).

Results go to ``experiments/results/apply_scaling.json`` and ``.png``; the last line
of output is one JSON object. The measurement is :mod:`graphrep.exp.apply_scaling`'s
(also run as ``graphrep exp run apply_scaling``).

Usage::

    python experiments/apply_scaling.py            # n = 10k, 30k, 100k (about 4 minutes)
    python experiments/apply_scaling.py --quick    # n = 2k, 5k, 10k
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
import one_thread  # noqa: E402,F401  (pins BLAS/numba threads before numpy work)
from bench_common import GRAPH_OPTIONS, add_options  # noqa: E402

from graphrep.exp.apply_scaling import ApplyCell, run  # noqa: E402

RESULTS = ROOT / "results"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[10_000, 30_000, 100_000])
    p.add_argument("--inserts", type=int, default=2_000)
    p.add_argument("--dim", type=int, default=128)
    add_options(p, GRAPH_OPTIONS)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--quick", action="store_true", help="n = 2k, 5k, 10k; 500 inserts")
    args = p.parse_args(argv)
    if args.quick:
        args.sizes, args.inserts = [2_000, 5_000, 10_000], 500
    rows = []
    for n in args.sizes:
        cell = ApplyCell(n=n, inserts=args.inserts, dim=args.dim, R=args.R, L=args.L,
                         batch=args.batch, repeats=args.repeats)
        (row,) = run(cell, args.seed)
        rows.append(row)
        print(f"n={n:>7}: insert {row['insert_us']:7.1f} us, apply {row['apply_us']:5.1f} "
              f"us (ratio {row['apply_over_insert']:.3f}); a delta changes "
              f"{row['records_per_delta']:.0f} records carrying "
              f"{row['values_per_delta']:.0f} values: "
              f"{row['apply_ns_per_record_or_value']:.0f} ns of apply per record or value",
              flush=True)
    result = {"workload": {"dim": args.dim, "R": args.R, "L": args.L, "inserts": args.inserts,
                           "batch": args.batch, "repeats": args.repeats, "seed": args.seed},
              "sizes": rows}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "apply_scaling.json").write_text(json.dumps(result, indent=2) + "\n")
    plot(rows, RESULTS / "apply_scaling.png")
    print(json.dumps(result))
    return 0


def plot(rows: list[dict], path: Path) -> None:
    """The package's figure of these rows (one seed: no band)."""
    import pandas as pd

    from graphrep.exp.apply_scaling import plot as draw

    written = draw(pd.DataFrame(rows), path.parent)
    png = next(p for p in written if p.suffix == ".png")
    if png != path:
        png.replace(path)


if __name__ == "__main__":
    raise SystemExit(main())
