"""The ``graphrep`` command line (argparse: one subcommand per job)."""

from __future__ import annotations

import argparse
import json
import sys

from graphrep.errors import GraphrepError


def _demo(args: argparse.Namespace) -> int:
    from graphrep.demo import run_demo

    s = run_demo(n=args.n, dim=args.dim, n_insert=args.inserts, n_delete=args.deletes,
                 nq=args.queries, seed=args.seed, out=args.out, progress=not args.json)
    if args.json:
        print(json.dumps(s))
        return 0 if s["digests_equal"] else 1
    print()
    print(f"recall@10           primary {s['recall_at_10']:.4f}   replica "
          f"{s['replica_recall_at_10']:.4f}")
    print(f"digests equal       {s['digests_equal']}  ({s['digest']}...)")
    print(f"identical results   {s['identical_results']}")
    print(f"graph               {s['live']} live, max degree {s['max_degree']}, "
          f"{s['unreachable']} unreachable")
    print(f"build               {s['build_s']:.2f} s")
    print(f"insert              {s['insert_us']:.0f} us/point, "
          f"{s['insert_distance_computations']} distance computations")
    print(f"apply (batched)     {s['apply_us_per_insert']:.1f} us/insert "
          f"({s['insert_over_apply']:.0f}x cheaper), "
          f"{s['replica_distance_computations']} distance computations in all")
    b = s["bytes_per_insert"]
    print(f"bytes per insert    {b['total']} (vector {b['vector']}, edges {b['edges']}, "
          f"metadata {b['metadata']})")
    print(f"plot                {s['plot']}")
    return 0 if s["digests_equal"] else 1


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="graphrep", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    d = sub.add_parser("demo", help="build, mutate and replicate an index; print a summary and "
                       "write a recall/QPS plot")
    d.add_argument("--n", type=int, default=10_000, help="vectors in the initial build")
    d.add_argument("--dim", type=int, default=64)
    d.add_argument("--inserts", type=int, default=2_000)
    d.add_argument("--deletes", type=int, default=1_000)
    d.add_argument("--queries", type=int, default=500)
    d.add_argument("--seed", type=int, default=7)
    d.add_argument("--out", default="results/demo", help="folder for the plot and summary")
    d.add_argument("--json", action="store_true", help="print only the JSON summary")
    d.set_defaults(func=_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except GraphrepError as e:
        print(f"graphrep: {type(e).__name__}: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
