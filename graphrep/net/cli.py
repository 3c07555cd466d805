"""The live runtime's commands: ``graphrep node``, ``graphrep cluster ...``,
``graphrep load`` and ``graphrep top`` (added to the ``graphrep`` parser by
:func:`add_commands`)."""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass
from typing import Any

__all__ = ["BoundedFloat", "add_commands"]


def add_commands(sub: argparse._SubParsersAction, int_arg: Any, choice_arg: Any) -> None:
    """Add ``node``, ``cluster``, ``load`` and ``top`` to the subcommands ``sub``."""
    from graphrep.net.load import DATASETS
    from graphrep.protocol.config import CONCERNS, POLICIES

    n = sub.add_parser("node", help="run one node of a live cluster (until SIGTERM/SIGINT)")
    n.add_argument("--config", required=True, help="the cluster file (TOML)")
    n.add_argument("--name", required=True, help="this node's name in the cluster file")
    n.set_defaults(func=_node, check=_no_check)

    c = sub.add_parser("cluster", help="a local cluster of node processes in one directory")
    csub = c.add_subparsers(dest="action", required=True)
    up = csub.add_parser("up", help="write DIR/cluster.toml, start the nodes, wait for "
                         "leaders, print the endpoints")
    int_arg(up, "--nodes", 1, 64, 3, "node processes")
    int_arg(up, "--shards", 1, 256, 1, "shards")
    int_arg(up, "--port", 1024, 65000, None, "first port (default: ports the OS picks)")
    int_arg(up, "--metrics-port", 1024, 65000, None, "first port of the nodes' HTTP "
            "endpoints /metrics, /healthz, /readyz (default: ports the OS picks)")
    int_arg(up, "--dim", 1, 4096, 32, "vector dimension")
    int_arg(up, "--replication", 1, 64, None, "replicas per shard (default: min(3, nodes))")
    choice_arg(up, "--policy", POLICIES, "leader", "replication policy")
    choice_arg(up, "--concern", CONCERNS, "majority", "the clients' default write concern")
    int_arg(up, "--wait", 1, 3600, 120, "seconds to wait for every shard's leader")
    up.add_argument("--tls", metavar="TLS_DIR", default=None,
                    help="run every connection over TLS with TLS_DIR/ca.pem, node.pem and "
                    "node.key (a certificate for 127.0.0.1, the key mode 600)")
    st = csub.add_parser("status", help="per node and shard: role, term, commit, applied, "
                         "lag, digest, up or down, ready (its /readyz)")
    st.add_argument("--json", action="store_true", help="print one JSON object")
    for action, text in (("stop", "SIGTERM one node"), ("kill", "SIGKILL one node"),
                         ("start", "start one stopped node from its store; returns once it "
                          "answers and its shards have leaders")):
        a = csub.add_parser(action, help=text)
        a.add_argument("node")
        if action == "start":
            int_arg(a, "--wait", 1, 3600, 60, "seconds to wait for it")
    csub.add_parser("down", help="stop every node")
    for a in csub.choices.values():
        a.add_argument("--dir", default="cluster", help="the cluster's directory "
                       "(default: %(default)s)")
    c.set_defaults(func=_cluster, check=_no_check)

    ld = sub.add_parser("load", help="drive a running cluster with writes through the "
                        "client; print a JSON summary")
    ld.add_argument("--dir", default="cluster", help="the cluster's directory")
    int_arg(ld, "--writes", 0, 10_000_000, 1000, "inserts")
    int_arg(ld, "--deletes", 0, 10_000_000, 0, "deletes (of ids this run inserts)")
    int_arg(ld, "--concurrency", 1, 1024, 4, "writes outstanding")
    int_arg(ld, "--first-id", 0, 2**62, None, "the first id (default: after the largest "
            "id any node holds)")
    choice_arg(ld, "--dataset", DATASETS, "gmm", "the vectors")
    choice_arg(ld, "--concern", CONCERNS, None, "write concern (default: the cluster's)")
    int_arg(ld, "--seed", 0, 2**63 - 1, 0)
    ld.set_defaults(func=_load, check=_load_check(ld))

    tp = sub.add_parser("top", help="a live view of a local cluster: per node and shard, "
                        "up, ready, role, term, commit, applied, lag, writes/s, fsync p99")
    tp.add_argument("--dir", default="cluster", help="the cluster's directory "
                    "(default: %(default)s)")
    tp.add_argument("--interval", type=BoundedFloat(0.1, 3600.0), default=1.0, metavar="S",
                    help="seconds between refreshes (a number in [0.1, 3600]; default "
                    "%(default)s)")
    tp.add_argument("--once", action="store_true", help="print one frame and exit (0 if "
                    "every node answered, 1 if not)")
    tp.set_defaults(func=_top, check=_no_check)


@dataclass(frozen=True)
class BoundedFloat:
    """An argparse ``type``: a number in ``[lo, hi]`` (``BoundedInt``'s counterpart for
    a duration in seconds). Anything else, ``nan`` and ``inf`` included, is refused
    with the range, which argparse prints after the option's name."""

    lo: float
    hi: float

    def __call__(self, text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not self.lo <= value <= self.hi:  # nan compares false
            shown = text if len(text) <= 24 else text[:20] + "..."
            raise argparse.ArgumentTypeError(
                f"must be a number in [{self.lo:g}, {self.hi:g}], got {shown!r}")
        return value


def _no_check(args: argparse.Namespace) -> None:
    pass


def _load_check(p: argparse.ArgumentParser) -> Any:
    def check(args: argparse.Namespace) -> None:
        if args.deletes > args.writes:
            p.error(f"--deletes {args.deletes} exceeds --writes {args.writes}")
    return check


def _node(args: argparse.Namespace) -> int:
    from graphrep.net.node import main

    return main(args.config, args.name)


def _cluster(args: argparse.Namespace) -> int:
    from graphrep.net import local

    if args.action == "up":
        cfg = local.up(args.dir, nodes=args.nodes, shards=args.shards, port=args.port,
                       dim=args.dim, replication=args.replication, policy=args.policy,
                       concern=args.concern, wait=args.wait, metrics_port=args.metrics_port,
                       tls=local.tls_dir(args.tls) if args.tls else None)
        print(f"cluster {cfg.cluster} is up: {args.dir}/cluster.toml")
        for name, spec in sorted(cfg.nodes.items()):
            print(f"  {name}  {spec.address}  log {args.dir}/{name}.log  metrics "
                  f"{spec.metrics_url}")
        return 0
    if args.action == "status":
        st = local.status(args.dir)
        if args.json:
            print(json.dumps(st))
        else:
            _print_status(st)
        return 0 if all(s.get("up") for s in st["nodes"].values()) else 1
    if args.action == "down":
        stopped = local.down(args.dir)
        print(f"stopped {', '.join(stopped) if stopped else 'nothing (no node was running)'}")
        return 0
    if args.action == "start":
        local.start(args.dir, args.node, wait=args.wait)
    else:
        getattr(local, args.action)(args.dir, args.node)
    print(f"{args.action}: {args.node}")
    return 0


def _top(args: argparse.Namespace) -> int:
    from graphrep.net.top import run

    return run(args.dir, interval=args.interval, once=args.once)


def _print_status(st: dict[str, Any]) -> None:
    print(f"cluster {st['cluster']}")
    print(f"{'node':6} {'state':6} {'ready':5} {'shard':>5} {'role':10} {'term':>5} "
          f"{'commit':>8} {'applied':>8} {'lag':>6}  digest")
    why = []
    for name, s in sorted(st["nodes"].items()):
        ready = {True: "yes", False: "no", None: "-"}[s.get("ready")]
        if s.get("ready") is False and s.get("up"):
            why.append(f"{name} not ready: {s.get('not_ready', '')}")
        if not s.get("up"):
            print(f"{name:6} {'down':6} {ready}")
            continue
        for row in s["shards"]:
            print(f"{name:6} {'up':6} {ready:5} {row['shard']:>5} {row['role']:10} "
                  f"{row['term']:>5} {row['commit']:>8} {row['applied']:>8} {row['lag']:>6}  "
                  f"{row['digest'][:16]}")
    for line in why:
        print(line)


def _load(args: argparse.Namespace) -> int:
    import trio
    from tqdm import tqdm

    from graphrep.errors import ClusterError
    from graphrep.net.client import Client
    from graphrep.net.config import ClusterFile
    from graphrep.net.load import dataset, drive, plan
    from graphrep.net.local import CONFIG

    path = f"{args.dir}/{CONFIG}"
    try:
        cfg = ClusterFile.load(path)
    except Exception as exc:
        raise ClusterError(f"no cluster in {args.dir}: {exc}") from None
    dim = 784 if args.dataset == "fmnist" else cfg.dim
    if dim != cfg.dim:
        raise ClusterError(f"--dataset {args.dataset} has {dim} dimensions; the cluster's "
                           f"index has {cfg.dim}")
    vectors = dataset(args.dataset, args.writes, dim, seed=args.seed)

    async def run() -> dict[str, Any]:
        async with Client(cfg, history=True) as client:
            st = await client.status(timeout=2.0, digest=False)
            if not any(s.get("up") for s in st["nodes"].values()):
                # otherwise every write would wait out the client's timeout
                raise ClusterError(f"no node of the cluster in {args.dir} answers; see "
                                   f"`graphrep cluster status --dir {args.dir}`")
            first = args.first_id
            if first is None:
                first = 0
                for node in sorted(cfg.nodes):
                    for shard in sorted(cfg.shards):
                        if node in cfg.replicas_of(shard):
                            try:
                                _, ids = await client.ids(node, shard, timeout=2.0)
                            except Exception:
                                continue
                            if len(ids):
                                first = max(first, int(ids.max()) + 1)
            ops = plan(vectors, first, args.deletes, seed=args.seed)
            with tqdm(total=len(ops), unit="w", file=sys.stderr) as bar:
                return await drive(client, ops, concurrency=args.concurrency,
                                   concern=args.concern, progress=bar.update)

    summary = trio.run(run)
    print(json.dumps(summary))
    return 0 if summary["failed"] == 0 else 1
