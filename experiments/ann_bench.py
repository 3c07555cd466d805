"""graphrep's Vamana against diskannpy, hnswlib and faiss: same data, same machine, one thread.

What it measures, per dataset and library:

- build: seconds to build an index on the whole base set;
- search: recall@k against the exact top-k, and queries per second, for a
  sweep of search list sizes (L for Vamana/diskannpy, ef for HNSW), both as one
  batched call for all queries and as one call per query;
- insert: build on the first 90% of the base set, then insert the last 10% one
  point at a time: microseconds per insert;
- graphrep only, apply: replay graphrep's build deltas onto an empty index,
  then replay its insert deltas one at a time, and compare microseconds per
  applied insert with microseconds per computed insert (the saving a replica
  gets from edge deltas); the replica's digest must equal the writer's;
- graphrep-u8 (skip with ``--no-codes``): graphrep's same index searched on
  one-byte codes of its vectors fit on the base set (``VamanaIndex.use_codes``,
  ``graphrep.ann.codes``), the beam re-ranked on the float32 vectors; its
  build and insert columns are graphrep's.

Fairness: everything runs on ONE thread (OMP/MKL/OpenBLAS/Numba thread counts
are set to 1 before anything loads; hnswlib ``num_threads=1``, faiss
``omp_set_num_threads(1)``, diskannpy ``num_threads=1``, graphrep
``numba.set_num_threads(1)``), JIT code is warmed up before timing, and each
timing is the best of ``--repeats`` runs.

The references need numpy 1.25 (diskannpy 0.7.0 pins it) while graphrep needs
numpy 2, so they run in a separate virtual environment, ``.venv-ref`` at the
repository root, created on first use (``python3 -m venv`` + pip) and reused
afterwards. Each reference runs in a subprocess of that venv's python
(``experiments/ann_refs.py``); the data goes over as ``.npy`` files in
``<out>/work/<dataset>/``.

Outputs in ``--out`` (default ``experiments/results``, gitignored):
``ann_bench.json`` (everything, including every sweep point) and
``ann_bench_<dataset>.png`` (recall@k vs QPS). The LAST line of stdout is one
JSON object: per dataset and library the build seconds, the QPS (batched and
single) at recall 0.90 / 0.95 / 0.99 (the highest QPS among sweep points that
reach the recall, null if none does), insert microseconds per point, graphrep's
apply microseconds per insert and insert/apply ratio, and the ratios of
graphrep to each reference.

Examples::

    .venv/bin/python experiments/ann_bench.py --quick
    .venv/bin/python experiments/ann_bench.py --datasets gmm,fmnist
    .venv/bin/python experiments/ann_bench.py --libs hnswlib,faiss,diskannpy   # references only
"""

from __future__ import annotations

import one_thread  # noqa: F401  (first: one thread for every library)

# isort: split
import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run from a checkout without installing graphrep
    sys.path.insert(0, str(REPO))

from bench_common import (  # noqa: E402  (experiments/ is on sys.path)
    INDEX_OPTIONS,
    SWEEP_OPTIONS,
    add_options,
    forward,
    run_info,
    search_sweep,
)

from graphrep.datasets import (  # noqa: E402
    gaussian_mixture,
    gmm_dataset,
    ground_truth,
    load_fashion_mnist,
    recall_at_k,
)
from graphrep.errors import DatasetUnavailable  # noqa: E402

REFS = ("hnswlib", "faiss", "diskannpy")
ALL_LIBS = ("graphrep", *REFS)
TARGETS = (0.90, 0.95, 0.99)
REF_PACKAGES = ("numba", "hnswlib==0.8.0", "faiss-cpu==1.11.0.post1", "diskannpy==0.7.0")
# a replica receives deltas in batches (the protocol ships them so); one kernel call each
APPLY_BATCH = 64
DEFAULT_SWEEP = (
    10, 12, 14, 16, 18, 20, 25, 30, 40, 50, 60, 80, 100, 120, 150, 200, 300, 400, 600, 800,
)
QUICK_SWEEP = (10, 20, 40, 80, 160, 320)


def log(msg: str) -> None:
    print(f"[ann_bench] {msg}", file=sys.stderr, flush=True)


def _rel(path: Path) -> str:
    """A path for the report: relative to the working directory when it can be."""
    try:
        return os.path.relpath(path)
    except ValueError:
        return str(path)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, bytes):
        return obj.hex()
    if isinstance(obj, Path):
        return str(obj)
    return repr(obj)


# --------------------------------------------------------------------------- reference venv


def ref_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def ref_venv_ready(venv: Path) -> bool:
    py = ref_python(venv)
    if not py.exists():
        return False
    check = subprocess.run(
        [str(py), "-c", "import numpy, hnswlib, faiss, diskannpy"],
        capture_output=True,
        text=True,
    )
    return check.returncode == 0


def ensure_ref_venv(venv: Path, base_python: str | None) -> Path:
    """Create the reference venv once (python3 -m venv + pip install); reuse it afterwards."""
    if ref_venv_ready(venv):
        return ref_python(venv)
    py = base_python or shutil.which("python3") or sys.executable
    log(f"creating reference venv {_rel(venv)} with {py} (once; pip builds hnswlib from source)")
    if not ref_python(venv).exists():
        subprocess.run([py, "-m", "venv", str(venv)], check=True)
    subprocess.run(
        [str(ref_python(venv)), "-m", "pip", "install", *REF_PACKAGES],
        check=True,
        stdout=sys.stderr,
    )
    if not ref_venv_ready(venv):
        raise SystemExit(f"reference venv {venv} still cannot import hnswlib, faiss, diskannpy")
    return ref_python(venv)


# --------------------------------------------------------------------------- data


def load_dataset(name: str, n: int | None, nq: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    if name == "gmm":
        return gmm_dataset(n or 100_000, nq, 128, n_clusters=100, seed=seed)
    if name == "fmnist":
        base, queries = load_fashion_mnist()
        if n is not None:
            base = base[:n]
        return np.ascontiguousarray(base), np.ascontiguousarray(queries[:nq])
    raise SystemExit(f"unknown dataset {name!r}; expected gmm or fmnist")


def prepare(name: str, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    base, queries = load_dataset(name, args.n, args.nq, args.seed)
    log(f"{name}: base {base.shape}, queries {queries.shape}; exact ground truth")
    t0 = time.perf_counter()
    gt_ids, gt_d = ground_truth(base, queries, args.k, args.metric)
    log(f"{name}: ground truth {time.perf_counter() - t0:.1f} s")
    work.mkdir(parents=True, exist_ok=True)
    np.save(work / "base.npy", base)
    np.save(work / "queries.npy", queries)
    np.save(work / "gt_ids.npy", gt_ids)
    np.save(work / "gt_dists.npy", gt_d)
    return {"base": base, "queries": queries, "gt": gt_ids}


# --------------------------------------------------------------------------- timing helpers


def qps_at(sweep: list[dict[str, Any]], mode: str, target: float) -> float | None:
    """Highest QPS among sweep points whose recall reaches ``target`` (None if none does)."""
    ok = [p[f"qps_{mode}"] for p in sweep if p[f"recall_{mode}"] >= target]
    return max(ok) if ok else None


# --------------------------------------------------------------------------- graphrep


def _compact(obj: Any) -> Any:
    """Long lists (e.g. an in-degree histogram) become {index: value} of their non-zeros."""
    if isinstance(obj, dict):
        return {k: _compact(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | np.ndarray) and len(obj) > 128:
        return {"len": len(obj), "nonzero": {str(i): v for i, v in enumerate(obj) if v}}
    return obj


def run_graphrep(data: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    import numba

    numba.set_num_threads(1)
    from graphrep.ann import CodeBook, VamanaIndex

    base, queries, gt = data["base"], data["queries"], data["gt"]
    n, dim = base.shape
    k = args.k

    def new_index() -> Any:
        return VamanaIndex(dim=dim, metric=args.metric, R=args.R, L=args.L, alpha=args.alpha,
                           new_degree=args.new_degree)

    # Warm up every JIT path (build, insert, search 1-d and 2-d, apply) on tiny data.
    log("graphrep: JIT warm-up")
    t0 = time.perf_counter()
    small = gaussian_mixture(300, dim, n_clusters=5, seed=12345)
    w = new_index()
    wd = w.build(small[:250], ids=None)
    wi = [w.insert(i, small[i]) for i in range(250, 300)]
    w.search(small[:8], k=k, L=args.L)
    w.search(small[0], k=k, L=args.L)
    w2 = new_index()
    w2.apply(wd)
    for d in wi:
        w2.apply(d)
    w2.digest()
    del w, w2, wd, wi
    log(f"graphrep: warm-up {time.perf_counter() - t0:.1f} s")

    result: dict[str, Any] = {
        "lib": "graphrep", **run_info(n, int(queries.shape[0]), dim, k),
        "numba": numba.__version__, "numba_threads": numba.get_num_threads(),
        "params": {"R": args.R, "L": args.L, "alpha": args.alpha,
                   "new_degree": args.new_degree or args.R},
    }

    log(f"graphrep: build on {n} x {dim}")
    idx = new_index()
    t0 = time.perf_counter()
    idx.build(base)
    result["build_s"] = time.perf_counter() - t0
    log(f"graphrep: build {result['build_s']:.2f} s")
    try:
        result["stats"] = _compact(idx.stats())
    except Exception as exc:  # stats are informative only
        result["stats"] = {"error": repr(exc)}

    def sweep(name: str) -> list[dict[str, Any]]:
        return search_sweep(
            name, lambda Q, L: idx.search(Q, k=k, L=L)[0],
            lambda q, L: idx.search(q, k=k, L=L)[0],
            queries, gt, k, args.sweep, args.repeats, args.stop_recall, log,
        )

    result["sweep"] = sweep("graphrep")
    if args.codes:
        # the same graph, searched on one-byte codes fit on the base (graphrep.ann.codes)
        t0 = time.perf_counter()
        idx.use_codes(CodeBook.fit(base))
        encode_s = time.perf_counter() - t0
        log(f"graphrep: search codes for {n} vectors in {encode_s:.2f} s")
        idx.search(queries[:2], k=k, L=args.sweep[0])
        result["codes"] = {"encode_s": encode_s, "bytes": int(n * dim),
                           "sweep": sweep("graphrep-u8")}
    idx = None  # free the full index before building the insert pair

    if args.insert_frac > 0:
        n_ins = max(1, round(n * args.insert_frac))
        n_build = n - n_ins
        log(f"graphrep: build on {n_build}, then insert {n_ins} one at a time")
        writer = new_index()
        t0 = time.perf_counter()
        build_deltas = writer.build(base[:n_build])
        build_s = time.perf_counter() - t0
        insert_deltas = []
        t0 = time.perf_counter()
        for i in range(n_build, n):
            insert_deltas.append(writer.insert(i, base[i]))
        ins_s = time.perf_counter() - t0
        ids_w, _ = writer.search(queries, k=k, L=args.L)
        recall_after = recall_at_k(np.asarray(ids_w), gt, k)

        log("graphrep: replay build deltas, then insert deltas one at a time, on a copy")
        replica = new_index()
        t0 = time.perf_counter()
        replica.apply(build_deltas)
        apply_build_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        for d in insert_deltas:
            replica.apply(d)
        apply_s = time.perf_counter() - t0
        digest_equal = replica.digest() == writer.digest()
        ids_r, _ = replica.search(queries, k=k, L=args.L)
        del replica
        log(f"graphrep: replay insert deltas in batches of {APPLY_BATCH}, on a second copy")
        replica = new_index()
        replica.apply(build_deltas)
        t0 = time.perf_counter()
        for b in range(0, n_ins, APPLY_BATCH):
            replica.apply(insert_deltas[b : b + APPLY_BATCH])
        apply_batched_s = time.perf_counter() - t0
        digest_equal = digest_equal and replica.digest() == writer.digest()
        del replica
        us_ins = ins_s / n_ins * 1e6
        us_apply = apply_s / n_ins * 1e6
        us_apply_batched = apply_batched_s / n_ins * 1e6
        result["insert"] = {
            "n_build": n_build,
            "n_insert": n_ins,
            "build_s": build_s,
            "insert_s": ins_s,
            "us_per_insert": us_ins,
            "recall_after_at_L": args.L,
            "recall_after": recall_after,
        }
        result["apply"] = {
            "n_build_deltas": len(build_deltas),
            "apply_build_s": apply_build_s,
            "apply_build_us_per_point": apply_build_s / n_build * 1e6,
            "apply_s": apply_s,
            "us_per_apply": us_apply,
            "insert_over_apply": us_ins / us_apply if us_apply > 0 else None,
            "batch": APPLY_BATCH,
            "apply_batched_s": apply_batched_s,
            "us_per_apply_batched": us_apply_batched,
            "insert_over_apply_batched": us_ins / us_apply_batched
            if us_apply_batched > 0 else None,
            "digest_equal": bool(digest_equal),
            "replica_same_results": bool(np.array_equal(np.asarray(ids_r), np.asarray(ids_w))),
        }
        log(
            f"graphrep: insert {us_ins:.1f} us/point, apply {us_apply:.1f} us/insert "
            f"(x{result['apply']['insert_over_apply'] or float('nan'):.1f}), batched "
            f"{us_apply_batched:.1f} us/insert "
            f"(x{result['apply']['insert_over_apply_batched'] or float('nan'):.1f}), "
            f"digest equal: {digest_equal}"
        )
    return result


# --------------------------------------------------------------------------- references


def run_ref(lib: str, py: Path, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    out = work / f"ref_{lib}.json"
    out.unlink(missing_ok=True)
    cmd = [
        str(py),
        str(REPO / "experiments" / "ann_refs.py"),
        "--lib", lib,
        "--work", str(work),
        "--out", str(out),
        "--metric", args.metric,
        "--k", str(args.k),
        "--sweep", ",".join(str(v) for v in args.sweep),
        "--repeats", str(args.repeats),
        *forward(args, SWEEP_OPTIONS + INDEX_OPTIONS),
    ]  # fmt: skip
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
        env[var] = "1"
    env.pop("PYTHONPATH", None)  # the reference venv must not see graphrep's numpy 2 stack
    proc = subprocess.run(cmd, env=env, stdout=sys.stderr)
    if proc.returncode != 0 or not out.exists():
        return {"lib": lib, "error": f"ann_refs.py exited with {proc.returncode}"}
    return json.loads(out.read_text())


# --------------------------------------------------------------------------- report


def summarize_lib(res: dict[str, Any]) -> dict[str, Any]:
    if "error" in res:
        return {"error": res["error"]}
    sweep = res.get("sweep", [])
    s: dict[str, Any] = {
        "build_s": res.get("build_s"),
        "qps_batched": {f"{t:.2f}": qps_at(sweep, "batched", t) for t in TARGETS},
        "qps_single": {f"{t:.2f}": qps_at(sweep, "single", t) for t in TARGETS},
        "max_recall": max((p["recall_batched"] for p in sweep), default=None),
        "insert_us": res.get("insert", {}).get("us_per_insert"),
    }
    if "apply" in res:
        s["apply_us"] = res["apply"]["us_per_apply"]
        s["insert_over_apply"] = res["apply"]["insert_over_apply"]
        s["apply_batched_us"] = res["apply"]["us_per_apply_batched"]
        s["insert_over_apply_batched"] = res["apply"]["insert_over_apply_batched"]
        s["apply_digest_equal"] = res["apply"]["digest_equal"]
    return s


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b


def summarize_dataset(libs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    summary = {lib: summarize_lib(res) for lib, res in libs.items()}
    ratios: dict[str, Any] = {}
    for mine in ("graphrep", "graphrep-u8"):
        g = summary.get(mine)
        if g is None or "error" in g:
            continue
        key = "graphrep_vs" if mine == "graphrep" else "graphrep_u8_vs"
        ratios[key] = {}
        for lib, s in summary.items():
            if lib.startswith("graphrep") or "error" in s:
                continue
            ratios[key][lib] = {
                "build_time": _ratio(g["build_s"], s["build_s"]),
                **{f"qps_{mode}_{t}": _ratio(g[f"qps_{mode}"][t], s[f"qps_{mode}"][t])
                   for mode in ("batched", "single") for t in ("0.90", "0.95", "0.99")},
                "insert_time": _ratio(g["insert_us"], s["insert_us"]),
            }
    return {"libs": summary, **ratios}


def plot_dataset(name: str, meta: dict[str, Any], libs: dict[str, dict[str, Any]], path: Path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), sharey=True)
    for ax, mode in zip(axes, ("batched", "single"), strict=True):
        for lib, res in libs.items():
            sweep = res.get("sweep") or []
            if not sweep:
                continue
            r = [p[f"recall_{mode}"] for p in sweep]
            q = [p[f"qps_{mode}"] for p in sweep]
            ax.plot(r, q, marker="o", ms=3, label=f"{lib} (build {res['build_s']:.1f} s)")
        for t in TARGETS:
            ax.axvline(t, color="grey", lw=0.6, ls="--")
        ax.set_yscale("log")
        ax.set_xlabel(f"recall@{meta['k']}")
        ax.set_title(f"{mode} queries")
        ax.grid(True, which="both", lw=0.3)
    axes[0].set_ylabel("queries per second (1 thread)")
    axes[0].legend(fontsize=8)
    fig.suptitle(f"{name}: {meta['n']} x {meta['dim']}, {meta['nq']} queries, one thread")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    p.add_argument("--datasets", default="gmm,fmnist", help="comma list of gmm, fmnist")
    p.add_argument(
        "--libs", default=",".join(ALL_LIBS), help="comma list of " + ", ".join(ALL_LIBS)
    )
    p.add_argument("--n", type=int, default=None, help="base size (gmm 100000, fmnist 60000)")
    p.add_argument("--nq", type=int, default=None, help="number of queries (default 1000)")
    p.add_argument("--quick", action="store_true", help="smoke run: n=20000, nq=200, short sweep")
    p.add_argument("--out", default=None, help="results directory (default experiments/results)")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--new-degree", type=int, default=None,
                   help="graphrep's new_degree: the most a new node's own prune keeps "
                        "(default R)")
    p.add_argument("--metric", default="l2", choices=("l2",), help="metric (both sets are l2)")
    p.add_argument("--sweep", default=None, help="comma list of search L / ef values")
    p.add_argument("--repeats", type=int, default=None, help="timings take the best of this many")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-codes", dest="codes", action="store_false",
                   help="skip the graphrep-u8 row (graphrep's index searched on one-byte "
                        "codes, graphrep.ann.codes)")
    add_options(p, SWEEP_OPTIONS + INDEX_OPTIONS)
    p.add_argument("--ref-venv", default=None, help="reference venv (default <repo>/.venv-ref)")
    p.add_argument("--ref-base-python", default=None, help="python that creates the ref venv")
    args = p.parse_args(argv)
    if args.quick:
        args.n = args.n or 20_000
        args.nq = args.nq or 200
        args.repeats = args.repeats or 1
        args.sweep = args.sweep or ",".join(str(v) for v in QUICK_SWEEP)
    args.nq = args.nq or 1000
    args.repeats = args.repeats or 3
    args.sweep = [int(v) for v in (args.sweep or ",".join(map(str, DEFAULT_SWEEP))).split(",")]
    args.datasets = [d for d in args.datasets.split(",") if d]
    args.libs = [lib for lib in args.libs.split(",") if lib]
    bad = [lib for lib in args.libs if lib not in ALL_LIBS]
    if bad:
        p.error(f"unknown libs {bad}; expected some of {ALL_LIBS}")
    args.out = Path(args.out) if args.out else REPO / "experiments" / "results"
    args.ref_venv = Path(args.ref_venv) if args.ref_venv else REPO / ".venv-ref"
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    refs = [lib for lib in args.libs if lib in REFS]
    py = ensure_ref_venv(args.ref_venv, args.ref_base_python) if refs else None

    report: dict[str, Any] = {
        "bench": "ann_bench",
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "cpus": os.cpu_count(),
        },
        "config": {
            k: (str(v) if isinstance(v, Path) else v)
            for k, v in vars(args).items()
            if k not in ("out", "ref_venv", "ref_base_python")
        },
        "datasets": {},
    }
    summary: dict[str, Any] = {
        "k": args.k,
        "threads": 1,
        "targets": list(TARGETS),
        "qps_at": "highest QPS among sweep points with recall >= target; null if none",
        "graphrep_vs": "graphrep / ref: build_time, insert_time < 1 and qps > 1 favour graphrep",
        "datasets": {},
    }

    for name in args.datasets:
        work = args.out / "work" / name
        try:
            data = prepare(name, args, work)
        except DatasetUnavailable as exc:
            log(f"{name}: skipped: {exc}")
            summary["datasets"][name] = {"error": str(exc)}
            continue
        n, dim = data["base"].shape
        meta = {"n": n, "nq": int(data["queries"].shape[0]), "dim": dim, "k": args.k}
        libs: dict[str, dict[str, Any]] = {}
        for lib in args.libs:
            load_before = os.getloadavg()
            if lib == "graphrep":
                try:
                    libs[lib] = run_graphrep(data, args)
                except ImportError as exc:
                    log(f"graphrep unavailable: {exc}")
                    libs[lib] = {"lib": lib, "error": f"import failed: {exc}"}
                codes = libs[lib].pop("codes", None)
                if codes is not None:  # the same index searched on codes: a row of its own
                    same = {k: v for k, v in libs[lib].items() if k != "apply"}
                    libs["graphrep-u8"] = {**same, "lib": "graphrep-u8",
                                           "sweep": codes.pop("sweep"), "codes": codes}
            else:
                assert py is not None
                libs[lib] = run_ref(lib, py, work, args)
            # other work on the machine skews timings: keep the load next to them
            libs[lib]["loadavg_before_after"] = [load_before[0], os.getloadavg()[0]]
        del data
        png = args.out / f"ann_bench_{name}.png"
        plot_dataset(name, meta, libs, png)
        report["datasets"][name] = {**meta, "libs": libs, "plot": png.name}
        summary["datasets"][name] = {**meta, **summarize_dataset(libs)}
        # write after every dataset, so a long run leaves partial results behind
        (args.out / "ann_bench.json").write_text(
            json.dumps({**report, "summary": summary}, indent=2, default=_json_default)
        )

    summary["results"] = _rel(args.out / "ann_bench.json")
    for name, ds in summary["datasets"].items():
        if "libs" not in ds:
            continue
        print(f"== {name}: {ds['n']} x {ds['dim']}, {ds['nq']} queries, k={args.k}, one thread")
        print(f"{'lib':10} {'build s':>8} {'QPS@.90 b/s':>15} {'QPS@.95 b/s':>15} "
              f"{'QPS@.99 b/s':>15} {'insert us':>10}")  # fmt: skip
        for lib, s in ds["libs"].items():
            if "error" in s:
                print(f"{lib:10} error: {s['error']}")
                continue

            def fmt(t: str, s: dict[str, Any] = s) -> str:
                b, q = s["qps_batched"][t], s["qps_single"][t]
                return f"{'-' if b is None else f'{b:.0f}'}/{'-' if q is None else f'{q:.0f}'}"

            ins = "-" if s["insert_us"] is None else f"{s['insert_us']:.1f}"
            print(f"{lib:10} {s['build_s']:8.2f} {fmt('0.90'):>15} {fmt('0.95'):>15} "
                  f"{fmt('0.99'):>15} {ins:>10}")  # fmt: skip
            if "apply_us" in s:
                ratio = s["insert_over_apply"]
                print(f"{'':10} apply {s['apply_us']:.1f} us/insert, insert/apply "
                      f"{ratio:.1f}x, digest equal {s['apply_digest_equal']}")  # fmt: skip
    print(json.dumps(summary, default=_json_default))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
