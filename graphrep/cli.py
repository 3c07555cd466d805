"""The ``graphrep`` command line (argparse: one subcommand per job)."""

from __future__ import annotations

import argparse
import json
import sys

from graphrep.errors import GraphrepError, InvalidArgument


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


_SIM_EXAMPLES = {"gossip": "broadcast", "broadcast": "broadcast", "counter": "counter"}


def _sim_example(args: argparse.Namespace) -> int:
    """Run an example protocol under a nemesis; exit 0 if its checker says valid, else 1."""
    from graphrep.sim.examples.broadcast import simulate_broadcast
    from graphrep.sim.examples.counter import simulate_counter
    from graphrep.sim.examples.harness import MS

    example = _SIM_EXAMPLES.get(args.example)
    if example is None:
        raise InvalidArgument(f"unknown example {args.example!r}; choose one of "
                              f"{', '.join(_SIM_EXAMPLES)}")
    if args.duration_ms < 1:
        raise InvalidArgument(f"--duration-ms must be >= 1, got {args.duration_ms}")
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


def _sim(args: argparse.Namespace) -> int:
    from graphrep.sim.cluster import FMNIST_DIM, ClusterConfig, run_cluster

    dim = args.dim if args.dim is not None else FMNIST_DIM if args.dataset == "fmnist" else 16
    cfg = ClusterConfig(policy=args.policy, nodes=args.nodes, writes=args.writes,
                        deletes=args.deletes, dim=dim, queries=args.queries,
                        concern=args.concern, seed=args.seed, nemesis=args.nemesis,
                        dataset=args.dataset, searches=args.searches,
                        read_preference=args.read_preference, sync=args.sync,
                        cpu_ns_per_distance=args.cpu_ns_per_distance,
                        cpu_ns_per_entry=args.cpu_ns_per_entry,
                        max_inflight=args.max_inflight, shards=args.shards,
                        replication=args.replication)
    s = run_cluster(cfg)
    ok = s["converged"] and s["lost_writes"] == 0 and s["read_your_writes_violations"] == 0
    if args.json:
        print(json.dumps(s))
        return 0 if ok else 1
    b = s["bytes_per_insert"]
    shape = (f"{cfg.nodes} nodes, {cfg.shards} shard(s) of {len(s['shards']['0'])} "
             f"replicas" if cfg.sharded else f"{cfg.nodes} replicas")
    print(f"policy {s['policy']}, {shape}, seed {s['seed']}, nemesis "
          f"{s['nemesis']} ({s['faults']} faults), concern {cfg.concern}")
    if cfg.sharded:
        print("placement           " + "; ".join(
            f"shard {k}: {', '.join(v)}" for k, v in s["shards"].items()))
    print(f"converged           {s['converged']} (after heal: {s['converge_ms_after_heal']} ms)")
    missing = (f" (missing {s['lost_write_replicas']} replica copies)"
               if s["lost_write_replicas"] else "")
    print(f"writes              {s['acked_writes']} acknowledged, {s['lost_writes']} lost"
          f"{missing}, {s['failed_writes']} refused, {s['unacked_writes']} unacknowledged")
    print(f"bytes per insert    {b['total']:.0f} (vector {b['vector']:.0f}, edges "
          f"{b['edges']:.0f}, metadata {b['metadata']:.0f}, snapshot {b['snapshot']:.0f}, "
          f"repair {b['repair']:.0f})")
    print(f"replica distance computations per insert "
          f"{s['replica_distance_computations_per_insert']:.1f}")
    lag = s["lag_ms"]
    print(f"lag                 p50 {lag['p50']:.1f} ms, p95 {lag['p95']:.1f}, "
          f"p99 {lag['p99']:.1f}")
    recall = ", ".join(f"{n} {r:.3f}" for n, r in s["recall_at_10"].items())
    print(f"recall@10           {recall}; top-10 agreement {s['topk_agreement']:.3f}")
    if cfg.sharded:
        print(f"scatter-gather      recall@10 {s['recall_at_10_merged']:.3f} (each shard's "
              "first replica, merged by distance)")
    print(f"elections           {s['elections']}; protocol errors {s['protocol_errors']}")
    if cfg.searches:
        q, sl = s["searches"], s["search_latency_ms"]
        print(f"searches            {q['sent']} to {cfg.read_preference}: {q['ok']} ok, "
              f"{q['stale']} stale ({q['retried']} retried at the leader), {q['errors']} "
              f"errors, {q['unanswered']} unanswered; read-your-writes violations "
              f"{s['read_your_writes_violations']}; latency p50 {sl['p50']:.1f} ms, "
              f"p99 {sl['p99']:.1f}")
    print(f"trace hash          {s['trace_hash']}")
    return 0 if ok else 1


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
    if args.seeds < 1:
        raise InvalidArgument(f"--seeds must be >= 1, got {args.seeds}")

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
    from graphrep.spec.mutants import MUTANTS, run_mutant
    from graphrep.spec.profiles import load

    load(args.profile)
    names = args.only.split(",") if args.only else list(MUTANTS)
    unknown = [n for n in names if n not in MUTANTS]
    if unknown:
        raise InvalidArgument(f"unknown mutant(s) {unknown}; choose from {list(MUTANTS)}")
    reports = []
    for name in names:
        r = run_mutant(name, max_examples=args.examples, steps=args.steps)
        reports.append(r)
        if not args.json:
            verdict = (f"caught by {r['invariant']} after {r['examples_to_failure']} "
                       f"example(s); shrunk to {len(r['shrunk_steps'])} steps (world seed "
                       f"{r['seed']}, sync {r['sync']})" if r["caught"] else
                       f"NOT caught in {r['examples']} examples")
            print(f"{name:28s} {verdict}", flush=True)
            for step in r["shrunk_steps"]:
                print(f"    {step}")
    caught = sum(r["caught"] for r in reports)
    print(json.dumps({"mutants": len(reports), "caught": caught, "list": reports}))
    return 0 if caught == len(reports) else 1


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
    e = sub.add_parser("sim-example", help="run an example protocol in the simulator under "
                       "faults and check it (exit 0 if valid, 1 if not)")
    e.add_argument("example", help="gossip (alias broadcast): gossip broadcast of distinct "
                   "values; counter: a grow-only counter CRDT")
    e.add_argument("--nodes", type=int, default=5, help="server nodes (>= 2)")
    e.add_argument("--seed", type=int, default=7)
    e.add_argument("--nemesis", default="mixed",
                   help="none, partitions, crashes, loss or mixed (default: mixed)")
    e.add_argument("--bug", default=None, help="run a planted bug instead of the correct "
                   "protocol: ack-before-sync or no-retransmit (gossip), merge-sum or "
                   "memory-only (counter)")
    e.add_argument("--duration-ms", type=int, default=1_000,
                   help="virtual ms of workload and faults, before the repair and settle")
    e.add_argument("--plot", metavar="DIR", default=None,
                   help="write a message sequence chart and a fault timeline (SVG) to DIR")
    e.add_argument("--json", action="store_true", help="print only the JSON summary")
    e.set_defaults(func=_sim_example)
    c = sub.add_parser("sim", help="run a simulated replicated index under faults; print the "
                       "summary (exit 0 if converged with no lost write and no "
                       "read-your-writes violation)")
    c.add_argument("--policy", default="leader",
                   help="leader (edge deltas), replay (every replica inserts) or snapshot "
                   "(the leader ships its whole index periodically)")
    c.add_argument("--nodes", type=int, default=3, help="nodes (replicas of the shard, "
                   "when there is one)")
    c.add_argument("--shards", type=int, default=1, help="shards: id i lives in shard "
                   "i %% shards; every node hosts one replica per shard placed on it")
    c.add_argument("--replication", type=int, default=0,
                   help="replicas per shard (0: every node holds every shard)")
    c.add_argument("--writes", type=int, default=500, help="inserts")
    c.add_argument("--deletes", type=int, default=50, help="deletes of inserted ids")
    c.add_argument("--dim", type=int, default=None,
                   help="vector dimension (default 16; fmnist: 784, the only value it takes)")
    c.add_argument("--sync", default="always", help="when replicas sync their log: always "
                   "(every append) or tick (group commit; acknowledgements wait for it)")
    c.add_argument("--max-inflight", type=int, default=0, help="Append messages with "
                   "entries a leader keeps in flight per follower; entries beyond wait and "
                   "leave together (0: no limit, one message per write)")
    c.add_argument("--cpu-ns-per-distance", type=int, default=0, help="CPU cost model: "
                   "virtual ns per distance computation, so that lag includes CPU time "
                   "(0: off)")
    c.add_argument("--cpu-ns-per-entry", type=int, default=0,
                   help="CPU cost model: virtual ns a follower spends applying a log entry")
    c.add_argument("--dataset", default="gmm",
                   help="gmm (Gaussian mixture, default), uniform, or fmnist (Fashion-MNIST: "
                   "apt-get install dataset-fashion-mnist)")
    c.add_argument("--queries", type=int, default=100,
                   help="queries for recall/agreement (searches cycle through them)")
    c.add_argument("--concern", default="majority", help="write concern: one, majority, all")
    c.add_argument("--nemesis", default="none",
                   help="none, partitions, crashes, loss, leader-kill or mixed")
    c.add_argument("--seed", type=int, default=7)
    c.add_argument("--searches", type=int, default=0,
                   help="client searches spread over the write phase, each carrying a "
                   "read-your-writes session token (default 0)")
    c.add_argument("--read-preference", default="leader",
                   help="where searches go: leader, nearest (lowest configured latency) or "
                   "any (a seeded random replica)")
    c.add_argument("--json", action="store_true", help="print only the JSON summary")
    c.set_defaults(func=_sim)
    f = sub.add_parser("fuzz", help="fuzz the protocol: long seeded runs with random faults, "
                       "every invariant checked (exit 0 if all held)")
    f.add_argument("--policy", default="leader", help="a registered policy: leader, replay, "
                   "snapshot")
    f.add_argument("--seeds", type=int, default=100, help="how many seeds to run")
    f.add_argument("--start", type=int, default=0, help="the first seed")
    f.add_argument("--seed", type=int, default=None,
                   help="replay this one seed and print its steps")
    f.add_argument("--steps", type=int, default=200, help="steps per seed")
    f.add_argument("--nemesis", default="mixed",
                   help="none, partitions, crashes, loss or mixed (default: mixed)")
    f.add_argument("--jobs", type=int, default=1, help="processes")
    f.add_argument("--json", action="store_true", help="print only the JSON summary")
    f.set_defaults(func=_fuzz)
    m = sub.add_parser("mutants", help="run the specification against planted bugs; exit 0 "
                       "if every one is caught")
    m.add_argument("--only", default=None, help="comma-separated mutant names")
    m.add_argument("--examples", type=int, default=None,
                   help="examples per mutant (default: 4x the profile's, 200 under ci)")
    m.add_argument("--steps", type=int, default=50, help="steps per example at most")
    m.add_argument("--profile", default="ci", help="Hypothesis profile: ci, dev, nightly")
    m.add_argument("--json", action="store_true", help="print only the JSON summary")
    m.set_defaults(func=_mutants)
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
