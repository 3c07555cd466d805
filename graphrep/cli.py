"""The ``graphrep`` command line (argparse: one subcommand per job).

Every numeric option has an allowed range, declared once where the option is added
(``type=BoundedInt(lo, hi)``); an option that names one of a few things has
``choices``. A value out of range, not an integer or not a choice is refused before
anything runs, on one line naming the option and what it allows (``graphrep sim: error:
argument --writes: must be an integer in [0, 1000000], got '1e9'``), exit status 2.
Constraints between options (``--deletes`` at most ``--writes``, say) are checked right
after parsing and refused the same way, naming both. An error graphrep raises while
running (any :class:`~graphrep.errors.GraphrepError`) is printed as one line
``graphrep: error: ...``, exit status 2; an interrupt (Ctrl-C) exits with 130.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from graphrep.errors import GraphrepError

if TYPE_CHECKING:
    from graphrep.cluster import ClusterConfig

SEED_MAX = 2**63 - 1
"""Seeds are any integer in [0, SEED_MAX] (the index and the random streams take them)."""
SIM_FLOATS_MAX = 2**30
"""``graphrep sim``: ``--writes`` x ``--dim`` x ``--nodes`` at most (about 4 GiB of float32
vectors held by the replicas; the run's other state per write comes on top of it)."""
DEMO_FLOATS_MAX = 2**28
"""``graphrep demo``: (``--n`` + ``--inserts``) x ``--dim`` at most (1 GiB per float32
copy of the data; the demo keeps a few). Equal to ``graphrep.demo.MAX_FLOATS``."""
SEARCH_K = 10
"""The k of recall@k in ``demo``: that many vectors must stay live."""

# The choices of ``sim`` and ``sim-example`` options, and their defaults, come from the
# library (graphrep.cluster, graphrep.protocol.replica, graphrep.sim.examples) when the
# parser is built; those of the other commands are listed here, and the tests check
# them against the library's own lists.
FUZZ_POLICIES = ("leader", "replay", "snapshot", "crdt", "lww", "ordered")
FUZZ_NEMESES = ("none", "partitions", "crashes", "loss", "mixed")
PROFILES = ("ci", "dev", "nightly")


@dataclass(frozen=True)
class BoundedInt:
    """An argparse ``type``: an integer in ``[lo, hi]``. Anything else is refused with
    the range, which argparse prints after the option's name."""

    lo: int
    hi: int

    def __call__(self, text: str) -> int:
        try:
            value: int | None = int(text)
        except ValueError:  # not an integer (or more than Python's 4300 digits)
            value = None
        if value is None or not self.lo <= value <= self.hi:
            shown = text if len(text) <= 24 else text[:20] + "..."
            raise argparse.ArgumentTypeError(
                f"must be an integer in [{self.lo}, {self.hi}], got {shown!r}")
        return value


class _Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line: ``prog: error: message``."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())} "
                     f"(see {self.prog} --help)\n")


def _int_arg(p: argparse.ArgumentParser, flag: str, lo: int, hi: int, default: int | None,
             help: str = "") -> None:
    """Add the integer option ``flag`` allowing ``[lo, hi]``; its help says so."""
    allowed = f"an integer in [{lo}, {hi}]" + ("" if default is None else
                                                "; default %(default)s")
    p.add_argument(flag, type=BoundedInt(lo, hi), default=default, metavar="N",
                   help=f"{help} ({allowed})" if help else allowed)


def _demo(args: argparse.Namespace) -> int:
    if not args.index:
        return _live_demo(args)
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
    if s["inserted"]:
        print(f"insert              {s['insert_us']:.0f} us/point, "
              f"{s['insert_distance_computations']} distance computations")
        print(f"apply (batched)     {s['apply_us_per_insert']:.1f} us/insert "
              f"({s['insert_over_apply']:.0f}x cheaper), "
              f"{s['replica_distance_computations']} distance computations in all")
        b = s["bytes_per_insert"]
        print(f"bytes per insert    {b['total']} (vector {b['vector']}, edges {b['edges']}, "
              f"metadata {b['metadata']})")
    else:
        print("insert              none (--inserts 0)")
    print(f"plot                {s['plot']}")
    return 0 if s["digests_equal"] else 1


def _live_demo(args: argparse.Namespace) -> int:
    from graphrep.net.demo import run_live_demo

    s = run_live_demo(n=args.n, dim=args.dim, inserts=args.inserts, deletes=args.deletes,
                      queries=args.queries, concurrency=args.concurrency, seed=args.seed,
                      out=args.out, progress=not args.json)
    ok = s["acknowledged_writes_lost"] == 0 and s["digests_equal"]
    if args.json:
        print(json.dumps(s))
        return 0 if ok else 1
    print()
    print(f"cluster             3 node processes, up in {s['cluster_up_s']} s; base "
          f"{s['base_vectors']} x {s['dim']} loaded in {s['base_load_s']} s "
          f"({s['base_writes_per_s']} writes/s)")
    print(f"writes              {s['writes_acknowledged']} acknowledged at majority, "
          f"{s['writes_failed']} failed (timed out during failover)")
    print(f"lost                {s['acknowledged_writes_lost']} acknowledged writes missing "
          f"on some node")
    print(f"failover            killed leader {s['killed']}; writes acknowledged by a new "
          f"leader {s['time_to_new_leader_s']} s later; all converged "
          f"{s['converged_after_restart_s']} s after its restart")
    print(f"digests             {'equal' if s['digests_equal'] else 'DIFFERENT'}: "
          + ", ".join(f"{n} {d}" for n, d in s["digests"].items()))
    print("recall@10           " + ", ".join(f"{n} {r:.4f}" for n, r in
                                              s["recall_at_10"].items()))
    print(f"top-10 agreement    {s['top10_agreement']:.4f}")
    print(f"write latency       p50 {s['write_latency_ms_p50']} ms, p99 "
          f"{s['write_latency_ms_p99']} ms")
    print(f"bytes per write     {s['replication_bytes_per_write']} (node to node, "
          f"heartbeats included, the killed node's counters lost)")
    print(f"plot                {s['plot']}")
    return 0 if ok else 1


_SIM_EXAMPLES = {"gossip": "broadcast", "broadcast": "broadcast", "counter": "counter"}


def _example_bugs() -> dict[str, tuple[str, ...]]:
    """The planted bugs of each example, as the command line spells them."""
    from graphrep.sim.examples.broadcast import BROADCAST
    from graphrep.sim.examples.counter import COUNTER

    return {example.name: tuple(b.replace("_", "-") for b in example.node.BUGS)
            for example in (BROADCAST, COUNTER)}


def _sim_example(args: argparse.Namespace) -> int:
    """Run an example protocol under a nemesis; exit 0 if its checker says valid, else 1."""
    from graphrep.sansio import MS
    from graphrep.sim.examples.broadcast import simulate_broadcast
    from graphrep.sim.examples.counter import simulate_counter

    example = _SIM_EXAMPLES[args.example]
    simulate = simulate_broadcast if example == "broadcast" else simulate_counter
    bug = args.bug.replace("-", "_") if args.bug else None
    run = simulate(nodes=args.nodes, seed=args.seed, nemesis=args.nemesis, bug=bug,
                   duration_ns=args.duration_ms * MS)
    s = dict(run.summary)
    if args.plot:
        from pathlib import Path

        from graphrep.sim.plots import fault_timeline, sequence_chart

        out = Path(args.plot)
        head = f"{example} seed {args.seed}, nemesis {args.nemesis}"
        s["plots"] = [
            str(sequence_chart(run.sim.trace, run.all_nodes, out / f"{example}-messages.svg",
                               max_messages=300, title=f"messages: {head}")),
            str(fault_timeline(run.sim.trace, run.all_nodes, out / f"{example}-timeline.svg",
                               title=f"faults: {head}")),
        ]
    code = 0 if s["valid"] else 1
    if args.json:
        print(json.dumps(s))
        return code
    c = s["checker"]
    what = f"bug {bug}" if bug else "correct protocol"
    print(f"{example}: {s['nodes']} nodes, seed {s['seed']}, nemesis {s['nemesis']} "
          f"({s['faults']} faults), {what}")
    print(f"virtual time    {s['virtual_duration_ns'] / 1e9:.3f} s ({s['events']} events)")
    print(f"messages        {s['sends']} sent, {s['deliveries']} delivered, "
          f"{s['drops']} dropped")
    verdict = "VALID" if s["valid"] else "INVALID"
    if example == "broadcast":
        print(f"checker         {verdict}: {c['attempted']} broadcast, {c['acknowledged']} "
              f"acknowledged, {c['lost_count']} lost, {c['stale_count']} stale (worst "
              f"{c['max_stale_ns'] / 1e6:.1f} ms), {c['unexpected_count']} unexpected")
        if c["lost"]:
            print(f"lost            {c['lost'][:20]}{' ...' if len(c['lost']) > 20 else ''}")
    else:
        reads = sorted(set(c["final_reads"].values()))
        shown = ", ".join(str(v) for v in reads[:5]) + (" ..." if len(reads) > 5 else "")
        print(f"checker         {verdict}: {c['adds']} adds ({c['definite']} definite, "
              f"{c['uncertain']} uncertain); final reads {shown} within "
              f"[{c['lower']}, {c['upper']}]: {not c['out_of_bounds']}; converged "
              f"{c['converged']}")
    if c["missing_final_reads"]:
        print(f"no final read   {', '.join(c['missing_final_reads'])}")
    print(f"trace hash      {s['trace_hash']}")
    if args.plot:
        print(f"plots           {', '.join(s['plots'])}")
    return code


def _sim_regions(args: argparse.Namespace) -> tuple[str, ...]:
    """The regions ``--regions`` names, in order (empty without ``--regions``)."""
    if args.regions is None:
        return ()
    return tuple(r.strip() for r in args.regions.split(","))


def _sim_nodes(args: argparse.Namespace) -> int:
    """The run's nodes: ``--nodes``, or with ``--regions`` ``--nodes-per-region`` in each."""
    regions = _sim_regions(args)
    return len(regions) * args.nodes_per_region if regions else args.nodes


def _sim_config(args: argparse.Namespace) -> ClusterConfig:
    """The ``ClusterConfig`` of a ``graphrep sim`` command line. With ``--regions``, the
    nodes, their regions and the latencies between regions come from the presets of
    :mod:`graphrep.sim.regions`."""
    from graphrep.cluster import ClusterConfig
    from graphrep.sim.regions import nodes_in_regions, region_latency

    regions = _sim_regions(args)
    placed = {} if not regions else {
        "replica_regions": nodes_in_regions(regions, args.nodes_per_region),
        "region_latency": region_latency(regions)}
    return ClusterConfig(nodes=_sim_nodes(args), writes=args.writes, deletes=args.deletes,
                         dim=_sim_dim(args), queries=args.queries, concern=args.concern,
                         seed=args.seed, nemesis=args.nemesis, dataset=args.dataset,
                         searches=args.searches, read_preference=args.read_preference,
                         cpu_ns_per_distance=args.cpu_ns_per_distance,
                         cpu_ns_per_entry=args.cpu_ns_per_entry, shards=args.shards,
                         replication=args.replication,
                         replica={"policy": args.policy, "sync": args.sync,
                                  "max_inflight": args.max_inflight}, **placed)


def _active(args: argparse.Namespace) -> bool:
    """Whether ``graphrep sim`` runs active-active (graphrep.cluster.active): writers in
    every region, for ``--policy crdt`` with ``--regions`` or ``--writers-per-region``."""
    return args.regions is not None and (args.policy in ("crdt", "lww", "ordered")
                                         or args.writers_per_region is not None)


def _sim_active(args: argparse.Namespace) -> int:
    from graphrep.cluster.active import ActiveConfig, active_lines, run_active

    cfg = ActiveConfig(regions=_sim_regions(args), nodes_per_region=args.nodes_per_region,
                       writers_per_region=args.writers_per_region or 1, writes=args.writes,
                       deletes=args.deletes, policy=args.policy, nemesis=args.nemesis,
                       dim=_sim_dim(args), queries=max(args.queries, 1), seed=args.seed)
    s = run_active(cfg)
    ok = s["converged"] and s["digests_equal"] and not any(s["lost"].values())
    print(json.dumps(s) if args.json else "\n".join(active_lines(s)))
    return 0 if ok else 1


def _sim(args: argparse.Namespace) -> int:
    from graphrep.cluster import render, run_cluster

    if _active(args):
        return _sim_active(args)
    cfg = _sim_config(args)
    s = run_cluster(cfg)
    ok = s["converged"] and s["lost_writes"] == 0 and s["read_your_writes_violations"] == 0
    print(json.dumps(s) if args.json else render(s, cfg))
    return 0 if ok else 1


def _sim_dim(args: argparse.Namespace) -> int:
    """``--dim``, or its default: the cluster's, or the only one ``--dataset fmnist`` takes."""
    from graphrep.cluster.config import FMNIST_DIM, ClusterConfig

    if args.dim is not None:
        return int(args.dim)
    return FMNIST_DIM if args.dataset == "fmnist" else ClusterConfig().dim


def _fuzz(args: argparse.Namespace) -> int:
    """Fuzz seeds (or replay one with --seed); exit 0 if every invariant held."""
    from graphrep.spec.fuzz import draw_steps, fuzz, fuzz_seed
    from graphrep.spec.world import WorldConfig

    if args.seed is not None:
        cfg, program = draw_steps(args.seed, args.steps, args.nemesis,
                                  WorldConfig(policy=args.policy))
        r = fuzz_seed(args.seed, args.policy, args.steps, args.nemesis)
        if not args.json:
            print(f"seed {args.seed}: {args.policy}, nemesis {args.nemesis}, sync {cfg.sync}")
            shown = program if r.ok else program[: r.failed_at_step]
            for i, step in enumerate(shown):
                print(f"  {i:4d} {step!r}")
            print("ok: every invariant held" if r.ok else
                  f"FAILED at step {r.failed_at_step - 1}: {r.detail}")
        print(json.dumps({"seed": r.seed, "ok": r.ok, "invariant": r.invariant,
                          "detail": r.detail, "failed_at_step": r.failed_at_step,
                          "acks": r.acks}))
        return 0 if r.ok else 1

    def bar(results, total):  # a progress bar on stderr, unless --json
        if args.json:
            return results
        from tqdm import tqdm

        return tqdm(results, total=total, unit="seed", file=sys.stderr)

    seeds = range(args.start, args.start + args.seeds)
    s = fuzz(seeds, args.policy, args.steps, args.nemesis, args.jobs, progress=bar)
    if not args.json:
        for f in s["failed"]:
            print(f"seed {f['seed']}: {f['invariant']} at step {f['failed_at_step'] - 1}; "
                  f"reproduce: {f['reproduce']}")
        print(f"{s['seeds']} seeds, {s['failures']} failed, {s['seeds_per_second']} seeds/s")
    print(json.dumps(s))
    return 0 if s["failures"] == 0 else 1


def _mutants(args: argparse.Namespace) -> int:
    """Run the specification against every planted bug; exit 0 if all are caught."""
    from graphrep.spec.mutants import (
        ACTIVE_MUTANTS,
        MERGE_MUTANTS,
        MUTANTS,
        run_active_mutant,
        run_merge_mutant,
        run_mutant,
    )
    from graphrep.spec.profiles import load

    load(args.profile)
    names = args.only.split(",") if args.only else [*MUTANTS, *MERGE_MUTANTS,
                                                    *ACTIVE_MUTANTS]
    reports = []
    for name in names:
        if name in ACTIVE_MUTANTS:  # a whole active-active run, checked by the run
            r = run_active_mutant(name)
            reports.append(r)
            if not args.json:
                verdict = (f"caught by {r['invariant']}: {r['detail']}" if r["caught"]
                           else "NOT caught by the active-active run")
                print(f"{name:36s} {verdict}", flush=True)
            continue
        if name in MERGE_MUTANTS:  # the crdt merge's planted bugs: the merge specification
            r = run_merge_mutant(name, max_examples=args.examples or 150)
            reports.append(r)
            if not args.json:
                verdict = (f"caught by {r['invariant']}; shrunk to {len(r['shrunk_steps'])} "
                           "steps of the merge specification" if r["caught"] else
                           "NOT caught by the merge specification")
                print(f"{name:36s} {verdict}", flush=True)
                for step in r["shrunk_steps"]:
                    print(f"    {step}")
            continue
        r = run_mutant(name, max_examples=args.examples, steps=args.steps)
        reports.append(r)
        if not args.json:
            verdict = (f"caught by {r['invariant']} after {r['examples_to_failure']} "
                       f"example(s); shrunk to {len(r['shrunk_steps'])} steps (world seed "
                       f"{r['seed']}, sync {r['sync']})" if r["caught"] else
                       f"NOT caught in {r['examples']} examples")
            print(f"{name:36s} {verdict}", flush=True)
            for step in r["shrunk_steps"]:
                print(f"    {step}")
    caught = sum(r["caught"] for r in reports)
    print(json.dumps({"mutants": len(reports), "caught": caught, "list": reports}))
    return 0 if caught == len(reports) else 1


# ---------------------------------------------------------------------- constraints between
# options, checked after parsing (each names the options involved)

def _check_demo(p: argparse.ArgumentParser, a: argparse.Namespace) -> None:
    live = not a.index
    for name, live_default, index_default in (("dim", 32, 64), ("deletes", 200, 1000),
                                              ("queries", 200, 500)):
        if getattr(a, name) is None:
            setattr(a, name, live_default if live else index_default)
    if a.out is None:
        a.out = "results/live-demo" if live else "results/demo"
    if live and a.deletes > a.inserts:
        p.error(f"argument --deletes: the live demo deletes vectors it inserts; at most "
                f"--inserts {a.inserts}, got {a.deletes}")
    total = a.n + a.inserts
    if total < SEARCH_K:
        p.error(f"argument --n: --n {a.n} + --inserts {a.inserts} is {total} vectors, fewer "
                f"than the {SEARCH_K} recall@{SEARCH_K} needs")
    if a.deletes > total - SEARCH_K:
        p.error(f"argument --deletes: at most --n + --inserts - {SEARCH_K} = "
                f"{total - SEARCH_K} ({SEARCH_K} vectors must stay live for "
                f"recall@{SEARCH_K}), got {a.deletes}")
    if (a.n + a.inserts) * a.dim > DEMO_FLOATS_MAX:
        p.error(f"argument --dim: (--n + --inserts) x --dim = ({a.n} + {a.inserts}) x "
                f"{a.dim} = {(a.n + a.inserts) * a.dim} floats, more than the demo's "
                f"{DEMO_FLOATS_MAX} (1 GiB per copy of the data): lower one of them")


def _check_sim_example(p: argparse.ArgumentParser, a: argparse.Namespace) -> None:
    bugs = _example_bugs()[_SIM_EXAMPLES[a.example]]
    if a.bug is not None and a.bug not in bugs:
        p.error(f"argument --bug: {a.bug} is not a bug of the {a.example} example; it takes "
                f"{' or '.join(bugs)}")


def _check_sim_regions(p: argparse.ArgumentParser, a: argparse.Namespace) -> None:
    """``--regions`` names known regions, each once, and few enough nodes; it sets the
    nodes itself; ``--nemesis region-partition`` needs two regions or more."""
    from graphrep.cluster.config import ClusterConfig
    from graphrep.sim.regions import known_regions

    regions = _sim_regions(a)
    if a.regions is not None:
        known = ", ".join(known_regions())
        unknown = [r for r in regions if r not in known_regions()]
        if unknown:
            p.error(f"argument --regions: unknown region(s) {', '.join(map(repr, unknown))}; "
                    f"known regions: {known} (comma-separated, as eu,us,ap)")
        repeated = [r for i, r in enumerate(regions) if r in regions[:i]]
        if repeated:
            p.error(f"argument --regions: {', '.join(map(repr, repeated))} given more than "
                    f"once; name each region once")
        n = len(regions) * a.nodes_per_region
        if n > 15:
            p.error(f"argument --nodes-per-region: --regions x --nodes-per-region = "
                    f"{len(regions)} x {a.nodes_per_region} = {n} nodes, more than 15")
        if a.nodes not in (ClusterConfig().nodes, n):
            p.error(f"argument --nodes: --regions sets the nodes ({len(regions)} regions x "
                    f"--nodes-per-region {a.nodes_per_region} = {n}), got --nodes {a.nodes}: "
                    f"leave --nodes out")
    if a.nemesis == "region-partition" and len(regions) < 2:
        p.error("argument --nemesis: region-partition cuts one region off the others; give "
                "--regions with at least two regions (as --regions eu,us,ap)")
    if a.writers_per_region is not None and a.regions is None:
        p.error("argument --writers-per-region: writers go in regions; give --regions (as "
                "--regions eu,us,ap)")
    if _active(a):
        if a.policy not in ("crdt", "lww", "ordered", "leader"):
            p.error(f"argument --policy: writers in every region run crdt, lww or ordered "
                    f"(a group per region) or leader (one group stretched across them), got "
                    f"{a.policy}")
        if a.nemesis not in ("none", "region-partition"):
            p.error(f"argument --nemesis: writers in every region run with none or "
                    f"region-partition, got {a.nemesis}")
        if a.deletes > a.writes // 2:
            p.error(f"argument --deletes: with writers per region, at most half of each "
                    f"writer's --writes ({a.writes // 2}), got {a.deletes}")


def _check_sim(p: argparse.ArgumentParser, a: argparse.Namespace) -> None:
    from graphrep.cluster.config import FMNIST_BASE, FMNIST_DIM, FMNIST_QUERIES

    _check_sim_regions(p, a)
    nodes = _sim_nodes(a)
    if a.replication > nodes:
        p.error(f"argument --replication: at most --nodes ({nodes}) replicas per shard, "
                f"got {a.replication}")
    if a.deletes > a.writes:
        p.error(f"argument --deletes: at most --writes ({a.writes}): only written ids are "
                f"deleted, got {a.deletes}")
    sharded = a.shards > 1 or a.replication not in (0, nodes)
    if a.searches and not a.queries:
        p.error("argument --searches: searches use the run's query vectors; set --queries "
                "to 1 or more")
    if a.searches and sharded:
        p.error("argument --searches: client searches run on one shard only (no "
                "scatter-gather client); leave out --searches with --shards or "
                "--replication (the summary's recall covers every shard without them)")
    if a.dataset == "fmnist":
        if a.dim is not None and a.dim != FMNIST_DIM:
            p.error(f"argument --dim: --dataset fmnist has {FMNIST_DIM} dimensions, got "
                    f"{a.dim}: leave --dim out")
        if a.writes > FMNIST_BASE:
            p.error(f"argument --writes: --dataset fmnist has {FMNIST_BASE} base vectors, got "
                    f"{a.writes}")
        if a.queries > FMNIST_QUERIES:
            p.error(f"argument --queries: --dataset fmnist has {FMNIST_QUERIES} query "
                    f"vectors, got {a.queries}")
    dim = _sim_dim(a)
    if a.writes * dim * nodes > SIM_FLOATS_MAX:
        p.error(f"argument --writes: --writes x --dim x --nodes = {a.writes} x {dim} x "
                f"{nodes} = {a.writes * dim * nodes} floats, more than "
                f"{SIM_FLOATS_MAX} (about 4 GiB of vectors held by the replicas): lower "
                f"one of them")


def _check_fuzz(p: argparse.ArgumentParser, a: argparse.Namespace) -> None:
    if a.start + a.seeds - 1 > SEED_MAX:
        p.error(f"argument --seeds: --start {a.start} + --seeds {a.seeds} runs past the "
                f"last seed {SEED_MAX}")


def _check_mutants(p: argparse.ArgumentParser, a: argparse.Namespace) -> None:
    if a.only is None:
        return
    from graphrep.spec.mutants import ACTIVE_MUTANTS, MERGE_MUTANTS, MUTANTS

    known = [*MUTANTS, *MERGE_MUTANTS, *ACTIVE_MUTANTS]
    unknown = [n for n in a.only.split(",") if n not in known]
    if unknown:
        p.error(f"argument --only: unknown mutant(s) {', '.join(map(repr, unknown))}; "
                f"choose from {', '.join(known)}")


def _with_check(p: argparse.ArgumentParser,
                check: Callable[[argparse.ArgumentParser, argparse.Namespace], None],
                ) -> Callable[[argparse.Namespace], None]:
    return lambda args: check(p, args)


# ---------------------------------------------------------------------- the parser

def _choice_arg(p: argparse.ArgumentParser, flag: str, choices: tuple[str, ...],
                default: str | None, help: str) -> None:
    """Add the option ``flag`` taking one of ``choices``; its help names the default."""
    p.add_argument(flag, default=default, choices=choices,
                   help=help if default is None else f"{help} (default: %(default)s)")


def _add_sim_example(sub: argparse._SubParsersAction) -> None:
    from graphrep.sim.examples.harness import MAX_NODES, NEMESES

    e = sub.add_parser("sim-example", help="run an example protocol in the simulator under "
                       "faults and check it (exit 0 if valid, 1 if not)")
    e.add_argument("example", choices=tuple(_SIM_EXAMPLES),
                   help="gossip (alias broadcast): gossip broadcast of distinct values; "
                   "counter: a grow-only counter CRDT")
    _int_arg(e, "--nodes", 2, MAX_NODES, 5, "server nodes")
    _int_arg(e, "--seed", 0, SEED_MAX, 7)
    _choice_arg(e, "--nemesis", NEMESES, "mixed", "the faults")
    bugs = _example_bugs()
    _choice_arg(e, "--bug", sum(bugs.values(), ()), None,
                "run a planted bug instead of the correct protocol: " + ", ".join(
                    f"{' or '.join(b)} ({'gossip' if name == 'broadcast' else name})"
                    for name, b in bugs.items()))
    _int_arg(e, "--duration-ms", 1, 60_000, 1_000,
             "virtual ms of workload and faults, before the repair and settle")
    e.add_argument("--plot", metavar="DIR", default=None,
                   help="write a message sequence chart and a fault timeline (SVG) to DIR")
    e.add_argument("--json", action="store_true", help="print only the JSON summary")
    e.set_defaults(func=_sim_example, check=_with_check(e, _check_sim_example))


def _add_sim(sub: argparse._SubParsersAction) -> None:
    """``graphrep sim``: its choices and defaults are graphrep.cluster's and the
    protocol's own (a ``ClusterConfig()`` and its replica settings)."""
    from graphrep.cluster.config import (
        DATASETS,
        FMNIST_DIM,
        NEMESES,
        READ_PREFERENCES,
        ClusterConfig,
    )
    from graphrep.protocol.config import CONCERNS, POLICIES, SYNC_POLICIES
    from graphrep.sim.regions import known_regions

    default = ClusterConfig()
    c = sub.add_parser("sim", help="run a simulated replicated index under faults; print the "
                       "summary (exit 0 if converged with no lost write and no "
                       "read-your-writes violation)")

    def option(flag: str, allowed: tuple, help_text: str = "") -> None:
        """``flag`` takes one of ``allowed``, or an integer in ``allowed = (lo, hi)``; its
        default is that of the ClusterConfig field, or replica setting, of its name."""
        name = flag[2:].replace("-", "_")
        value = getattr(default, name) if hasattr(default, name) else default.setting(name)
        if isinstance(allowed[0], str):
            _choice_arg(c, flag, allowed, value, help_text)
        else:
            _int_arg(c, flag, *allowed, value, help_text)

    option("--policy", POLICIES, "leader (edge deltas), replay (every replica inserts), "
           "snapshot (the leader ships its whole index periodically); active-active, with "
           "--regions: crdt (merged candidate additions), lww (records, last writer wins) "
           "or ordered (every write everywhere in timestamp order)")
    option("--nodes", (1, 15), "nodes (replicas of the shard, when there is one)")
    c.add_argument("--regions", metavar="R,R,...", default=None,
                   help=f"put the nodes in these geo regions, comma-separated, of "
                   f"{', '.join(known_regions())} (eu,us,ap): --nodes-per-region in each "
                   "(r0.. in the first), with the regions' preset one-way latencies between "
                   "them (graphrep.sim.regions; instead of --nodes; the client keeps its own "
                   "region)")
    _int_arg(c, "--nodes-per-region", 1, 15, 3, "nodes in each of --regions")
    _int_arg(c, "--writers-per-region", 1, 8, None, "active-active (with --regions; the "
             "default for --policy crdt, lww or ordered, one writer each): writers in every "
             "region at once, each making --writes writes (--deletes of them deletes) to its "
             "own region's group (crdt, lww, ordered: a group per region) or to one group "
             "stretched across the regions (leader); only --policy crdt|lww|ordered|leader, "
             "--nodes-per-region, --writes, --deletes, --dim, --queries, --seed and "
             "--nemesis none|region-partition apply")
    option("--shards", (1, 64), "shards: id i lives in shard i %% shards; every node hosts "
           "one replica per shard placed on it")
    option("--replication", (0, 15), "replicas per shard, at most --nodes (0: every node "
           "holds every shard)")
    option("--writes", (0, 1_000_000), "inserts")
    option("--deletes", (0, 1_000_000), "deletes of inserted ids, at most --writes")
    _int_arg(c, "--dim", 1, 4096, None, f"vector dimension (default {default.dim}; fmnist: "
             f"{FMNIST_DIM}, the only value it takes)")
    option("--sync", SYNC_POLICIES, "when replicas sync their log: always (every append) or "
           "tick (group commit; acknowledgements wait for it)")
    option("--max-inflight", (0, 10_000), "Append messages with entries a leader keeps in "
           "flight per follower; entries beyond wait and leave together (0: no limit, one "
           "message per write)")
    option("--cpu-ns-per-distance", (0, 1_000_000), "CPU cost model: virtual ns per distance "
           "computation, so that lag includes CPU time (0: off)")
    option("--cpu-ns-per-entry", (0, 10_000_000), "CPU cost model: virtual ns a follower "
           "spends applying a log entry")
    option("--dataset", DATASETS, "gmm (Gaussian mixture), uniform, or fmnist "
           "(Fashion-MNIST: apt-get install dataset-fashion-mnist)")
    option("--queries", (0, 100_000), "queries for recall/agreement (searches cycle through "
           "them)")
    option("--concern", CONCERNS, "write concern")
    option("--nemesis", NEMESES, "the faults (region-partition: one of --regions, drawn "
           "from the seed, cut off from the others for part of the write phase)")
    option("--seed", (0, SEED_MAX))
    option("--searches", (0, 1_000_000), "client searches spread over the write phase, each "
           "carrying a read-your-writes session token")
    option("--read-preference", READ_PREFERENCES, "where searches go: leader, nearest "
           "(lowest configured latency) or any (a seeded random replica)")
    c.add_argument("--json", action="store_true", help="print only the JSON summary")
    c.set_defaults(func=_sim, check=_with_check(c, _check_sim))


def _no_check(a: argparse.Namespace) -> None:
    return None


def _sweep_options(p: argparse.ArgumentParser, jobs: int, root_help: str) -> None:
    """The options of a command that runs sweeps: ``--profile``, ``--scheduler``,
    ``--jobs`` (default ``jobs``) and ``--root``."""
    p.add_argument("--profile", default="small", choices=("tiny", "small", "full"),
                   help="the sweeps: tiny (a smoke test), small or full")
    p.add_argument("--scheduler", default=None, metavar="tcp://HOST:PORT",
                   help="run the cells on this Dask cluster (default: local processes)")
    _int_arg(p, "--jobs", 1, 256, jobs, "local processes (without --scheduler)")
    p.add_argument("--root", default="results", help=root_help)


def _add_exp(sub: Any) -> None:
    """``graphrep exp list|run|plot``: the experiments of :mod:`graphrep.exp`."""
    e = sub.add_parser("exp", help="experiments: list them, run a sweep (local processes "
                       "or a Dask cluster), plot its results")
    esub = e.add_subparsers(dest="exp_command", required=True)
    ls = esub.add_parser("list", help="the registered experiments and their profiles")
    ls.set_defaults(func=_exp_list, check=_no_check)
    r = esub.add_parser("run", help="run the cells of a sweep not finished yet; print a "
                        "JSON summary last (exit 0 if no cell failed)")
    from graphrep.exp.core import names

    r.add_argument("name", choices=names(), help="an experiment (graphrep exp list)")
    _sweep_options(r, 1, "where results go (per profile: ROOT/PROFILE/NAME, the results "
                   "graphrep paper build reads)")
    r.add_argument("--force", action="store_true", help="run finished cells again")
    r.set_defaults(func=_exp_run, check=_no_check)
    pl = esub.add_parser("plot", help="plot an experiment's results (PNG, PDF and a "
                         "caption file)")
    pl.add_argument("name", choices=names(), help="an experiment (graphrep exp list)")
    pl.add_argument("--profile", default="small", choices=("tiny", "small", "full"),
                    help="whose results to plot (those under ROOT/PROFILE)")
    pl.add_argument("--root", default="results", help="where results are (per profile)")
    pl.set_defaults(func=_exp_plot, check=_no_check)


def _paper_build(args: argparse.Namespace) -> int:
    from graphrep import paper
    from graphrep.exp import dask_executor

    executor = dask_executor(args.scheduler) if args.scheduler else None
    summary = paper.build(args.profile, Path(args.root),
                          Path(args.out) if args.out else paper.PAPER, executor=executor,
                          jobs=args.jobs, progress=sys.stderr.isatty())
    print(json.dumps(summary))
    return 0


def _exp_list(args: argparse.Namespace) -> int:
    from graphrep.exp import get, names

    for n in names():
        e = get(n)
        print(f"{n:20s} profiles {', '.join(e.profiles)}: {e.description}")
    return 0


def _exp_run(args: argparse.Namespace) -> int:
    from graphrep.exp import dask_executor, get, run_sweep

    exp = get(args.name)
    prof = exp.profile(args.profile)
    executor = dask_executor(args.scheduler) if args.scheduler else None
    root = Path(args.root) / args.profile  # where graphrep paper build reads them
    report = run_sweep(exp.name, prof.configs(), prof.seeds, root=root,
                       executor=executor, jobs=args.jobs, force=args.force,
                       progress=sys.stderr.isatty())
    print(json.dumps({**report.to_json(), "profile": args.profile, "root": str(root)}))
    return 0 if not report.failed else 1


def _exp_plot(args: argparse.Namespace) -> int:
    from graphrep.errors import InvalidArgument
    from graphrep.exp import get, load

    exp = get(args.name)
    root = Path(args.root) / args.profile
    frame = load(exp.name, root)
    if frame.empty:
        raise InvalidArgument(f"no finished results of {exp.name!r} under {root}: run "
                              f"graphrep exp run {exp.name} --profile {args.profile} first")
    if exp.plot is None:
        raise InvalidArgument(f"experiment {exp.name!r} has no plot")
    out = root / exp.name / "figures"
    paths = exp.plot(frame, out)
    caption = out / f"{exp.name}.caption.txt"
    seeds = sorted(set(frame["seed"].tolist()))
    caption.write_text(f"{exp.caption}\nFrom {len(frame)} rows of {frame['cell'].nunique()} "
                       f"cells (seeds {seeds}) under {root}/{exp.name}, made by "
                       f"`graphrep exp run {exp.name} --profile {args.profile}` and "
                       f"`graphrep exp plot {exp.name} --profile {args.profile}`."
                       "\n")
    print(json.dumps({"figures": [str(p) for p in paths], "caption": str(caption)}))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The whole command line; every option's allowed values are declared here."""
    p = _Parser(prog="graphrep", description="Replicate graph ANN indexes by their edge "
                "deltas: a demo, a simulated cluster, its specification. Each command's "
                "--help lists its options and the values each allows.")
    sub = p.add_subparsers(dest="command", required=True)
    d = sub.add_parser("demo", help="the main job: a live 3-node cluster on this machine, "
                       "its leader killed mid-write; print a summary and write a plot "
                       "(--index: the index and its deltas alone)")
    d.add_argument("--index", action="store_true", help="build, mutate and replicate one "
                   "index in this process instead (no cluster)")
    _int_arg(d, "--n", 1, 1_000_000, 10_000, "base vectors")
    _int_arg(d, "--dim", 1, 4096, None, "vector dimension (default: 32 live, 64 --index)")
    _int_arg(d, "--inserts", 0, 1_000_000, 2_000, "vectors inserted one at a time")
    _int_arg(d, "--deletes", 0, 1_000_000, None, "vectors deleted (at least 10 stay live; "
             "default: 200 live, 1000 --index)")
    _int_arg(d, "--queries", 1, 100_000, None, "queries for recall (default: 200 live, 500 "
             "--index)")
    _int_arg(d, "--concurrency", 1, 256, 8, "live: writes outstanding")
    _int_arg(d, "--seed", 0, SEED_MAX, 7)
    d.add_argument("--out", default=None, help="folder for the plot and summary (default: "
                   "results/live-demo, results/demo with --index)")
    d.add_argument("--json", action="store_true", help="print only the JSON summary")
    d.set_defaults(func=_demo, check=_with_check(d, _check_demo))

    _add_sim_example(sub)
    _add_sim(sub)

    f = sub.add_parser("fuzz", help="fuzz the protocol: long seeded runs with random faults, "
                       "every invariant checked (exit 0 if all held)")
    _choice_arg(f, "--policy", FUZZ_POLICIES, "leader", "a registered policy")
    _int_arg(f, "--seeds", 1, 1_000_000, 100, "how many seeds to run")
    _int_arg(f, "--start", 0, SEED_MAX, 0, "the first seed")
    _int_arg(f, "--seed", 0, SEED_MAX, None, "replay this one seed and print its steps")
    _int_arg(f, "--steps", 1, 100_000, 200, "steps per seed")
    _choice_arg(f, "--nemesis", FUZZ_NEMESES, "mixed", "the faults")
    _int_arg(f, "--jobs", 1, 64, 1, "processes")
    f.add_argument("--json", action="store_true", help="print only the JSON summary")
    f.set_defaults(func=_fuzz, check=_with_check(f, _check_fuzz))

    m = sub.add_parser("mutants", help="run the specification against planted bugs; exit 0 "
                       "if every one is caught")
    m.add_argument("--only", default=None, help="comma-separated mutant names")
    _int_arg(m, "--examples", 1, 100_000, None,
             "examples per mutant (default: 8x the profile's, 400 under ci)")
    _int_arg(m, "--steps", 1, 1_000, 50, "steps per example at most")
    _choice_arg(m, "--profile", PROFILES, "ci", "Hypothesis profile")
    m.add_argument("--json", action="store_true", help="print only the JSON summary")
    m.set_defaults(func=_mutants, check=_with_check(m, _check_mutants))

    _add_exp(sub)
    pa = sub.add_parser("paper", help="the write-up papers/edge-delta-replication")
    psub = pa.add_subparsers(dest="paper_command", required=True)
    b = psub.add_parser("build", help="run its sweeps (finished cells reused), draw its "
                        "figures and render paper.md from the results")
    _sweep_options(b, 2, "where results go (per profile)")
    b.add_argument("--out", default=None, help="where the paper goes (default: "
                   "papers/edge-delta-replication)")
    b.set_defaults(func=_paper_build, check=_no_check)

    from graphrep.net.cli import add_commands

    add_commands(sub, _int_arg, _choice_arg)
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status. Every error is one line on stderr:
    a refused argument (argparse's ``prog: error: ...``, status 2), a ``GraphrepError``
    while running (``graphrep: error: ...``, status 2) or an interrupt (status 130)."""
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        args.check(args)
        return int(args.func(args))
    except SystemExit as exc:  # argparse: --help (0) or a refused argument (2), printed
        return exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 2
    except GraphrepError as exc:
        print(f"graphrep: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("graphrep: error: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
