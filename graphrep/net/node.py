"""One live node: the shards the cluster file places on it, as a ``ShardHost`` run by the
driver, with its store in ``data_dir/<name>/store.sqlite3``.

``graphrep node --config cluster.toml --name n1`` calls :func:`main`. The node compiles
(or loads from Numba's cache) the index kernels before it opens its port, so its first
election is not lost to JIT time; it logs ``ready`` once it accepts connections.
With a ``metrics`` address in the cluster file, it serves ``/metrics``, ``/healthz`` and
``/readyz`` there (:mod:`graphrep.net.metrics`), from its own loop. SIGTERM or SIGINT
stops it gracefully: it stops taking inputs, lets the commit in
progress finish, and exits 0. A failed commit exits 70; a damaged store refuses to start
(exit 2) with a message that says what to do.
"""

from __future__ import annotations

import logging
import signal
import sys
import zlib
from typing import Any

import numpy as np
import trio

from graphrep.errors import ConfigError, GraphrepError, StoreDamaged, StoreError
from graphrep.net.config import ClusterFile
from graphrep.net.driver import NodeDriver, Residency, counter_totals
from graphrep.net.metrics import MetricsServer, NodeMetrics, ObservedHost
from graphrep.net.store import SQLiteStore
from graphrep.net.transport import Transport
from graphrep.net.wire import control
from graphrep.protocol.host import ShardHost
from graphrep.protocol.messages import decode, vector_of

__all__ = ["build_node", "main", "status_of", "warm_up"]

log = logging.getLogger("graphrep.net")

EXIT_STORE_FAILED = 70
EXIT_BAD_START = 2


def _rng_for(name: str):
    def rng(shard: int) -> np.random.Generator:
        return np.random.default_rng([zlib.crc32(name.encode()), shard])
    return rng


def status_of(driver: NodeDriver, digest: bool = True) -> dict[str, Any]:
    """What ``status`` answers: this node's shards and its store, as plain values.
    ``digest=False`` leaves the index digests out (``""``): a digest hashes the whole
    index in the node's loop (about 0.3 s for 100k x 128), too much for a status polled
    several times a second."""
    host: ShardHost = driver.process
    shards = []
    for shard, r in sorted(host.replicas.items()):
        shards.append({
            "shard": shard, "role": r.role, "term": r.term, "leader": r.leader,
            "commit": r.commit, "applied": r.applied, "end": r.end,
            "log_start": r.log_start, "size": len(r.index),
            "digest": r.index.digest().hex() if digest else "", "errors": r.errors})
    store = driver.store
    secs = sorted(store.commit_seconds[-4096:])
    def pct(q: float) -> float:
        return round(secs[min(len(secs) - 1, int(q * len(secs)))] * 1e3, 3) if secs else 0.0
    return {"name": driver.name, "up": True, "shards": shards,
            "store": {"commits": store.commits, "rows": store.rows_written,
                      "commit_ms_p50": pct(0.5), "commit_ms_p99": pct(0.99)},
            "counters": {**dict(sorted(counter_totals(driver).items())),
                         "peer_bytes_sent": sum(x.bytes_sent for x in driver.links.values()),
                         "peer_frames_sent": sum(x.frames_sent for x in driver.links.values())},
            "metrics": {k: v for k, v in sorted(driver.metrics.items())},
            "links": {p: link.connected for p, link in sorted(driver.links.items())},
            "protocol_errors": host.errors}


def _control(driver: NodeDriver, request: list) -> bytes:
    kind = request[1]
    req = request[2] if len(request) > 2 else 0
    if kind == "status":  # [0, "status", req, digest?]
        digest = request[3] is not False if len(request) > 3 else True
        return control("status", req, status_of(driver, digest=digest))
    if kind == "ids":  # [0, "ids", req, shard]: the shard's live ids (int64 bytes)
        host: ShardHost = driver.process
        shard = request[3] if len(request) > 3 else 0
        replica = host.replicas.get(shard) if type(shard) is int else None
        if replica is None:
            return control("error", req, f"node {driver.name} hosts no shard {shard!r}")
        ids = np.asarray(replica.index.ids(), dtype="<i8")
        return control("ids", req, replica.applied, ids.tobytes())
    if kind == "ping":
        return control("pong", req)
    return control("error", req, f"unknown control request {kind!r}; this node answers "
                                 "status and ping")


def build_node(cfg: ClusterFile, name: str, transport: Transport | None = None,
               store: SQLiteStore | None = None) -> NodeDriver:
    """The driver of node ``name`` (not started): its store, its shards, its peers."""
    if name not in cfg.nodes:
        raise ConfigError(f"node {name!r} is not in the cluster file; nodes: "
                          f"{sorted(cfg.nodes)}")
    configs = cfg.replica_configs(name)
    if store is None:
        store = SQLiteStore(cfg.node_dir(name) / "store.sqlite3")
    if transport is None:
        transport = cfg.transport()
    peers = sorted({p for c in configs for p in c.replicas} - {name})

    def factory(node: str, disk: dict) -> ShardHost:
        return ObservedHost(node, disk, configs, _rng_for(node))

    config = cfg.driver_config()
    config.keys = cfg.keys()
    if not config.keys.configured:
        log.warning("%s: the cluster file names no secrets ([security]): any process that "
                    "can reach this node's port can join or write", name)
    if "stall_warning" not in cfg.limits:  # half the shortest election timeout
        config.stall_warning = min(c.election_timeout_ns[0] for c in configs) / 2e9
    region = cfg.region_of(name)
    for c in configs:  # the placement honours residency; refuse to start if it did not
        outside = [n for n in c.replicas if cfg.region_of(n) not in cfg.shards[c.shard]]
        if outside:
            raise ConfigError(f"the placement puts shard {c.shard} on {outside}, outside its "
                              f"regions {list(cfg.shards[c.shard])}: fix [nodes] or [shards]")
    residency = Residency({n: s.region for n, s in cfg.nodes.items()},
                          {s: tuple(r) for s, r in cfg.shards.items()})
    latency = {p: d for p in peers
               if (d := cfg.delay_between(region, cfg.region_of(p))) is not None}
    return NodeDriver(name, factory, store, transport, cluster=cfg.cluster, peers=peers,
                      config=config, control=_control, decode=decode, residency=residency,
                      latency=latency)


def warm_up(dim: int, metric: str = "l2", R: int = 32, L: int = 64,
            alpha: float = 1.2) -> None:
    """Compile (or load from the cache) every kernel a replica runs: insert, delete,
    search, apply a delta, a snapshot round trip, the digest."""
    from graphrep.ann import VamanaIndex

    rng = np.random.default_rng(0)
    a = VamanaIndex(dim, metric, R=R, L=L, alpha=alpha)
    b = VamanaIndex(dim, metric, R=R, L=L, alpha=alpha)
    for i in range(48):
        delta = a.insert(i, rng.standard_normal(dim).astype(np.float32))
        if i % 2:
            b.apply(delta)
        else:
            b.apply_bytes([delta.to_bytes()])
    b.apply(a.delete(3))
    query = rng.standard_normal(dim).astype(np.float32)
    a.search(query, k=5)
    # and as a node searches: the query a read-only view of the request's bytes, which
    # numba compiles apart from a writable array (2 s on a cold cache otherwise, in the
    # node's loop, at its first search)
    a.search(vector_of(query.tobytes(), dim), k=5)
    b.digest()
    VamanaIndex.from_bytes(a.to_bytes()).digest()


async def serve(driver: NodeDriver, metrics: MetricsServer | None = None) -> None:
    """Run ``driver`` until SIGTERM or SIGINT, then stop it gracefully. Signals are
    received until the driver has stopped, so a second one during the graceful stop is
    absorbed instead of killing the node before it closes its store. ``metrics`` is
    served in the same nursery (so from the node's loop); it listens before the driver
    starts, so a metrics port in use stops the node before it joins its cluster."""
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:

            async def stop_on_signal() -> None:
                async for signum in signals:
                    log.info("%s: %s, stopping", driver.name, signal.Signals(signum).name)
                    if metrics is not None:
                        metrics.metrics.stopping = True  # /readyz: 503 from now on
                    driver.shutdown()

            async def run_driver(task_status: trio.TaskStatus[None]) -> None:
                await driver.run(task_status=task_status)
                nursery.cancel_scope.cancel()  # stopped: stop receiving signals

            nursery.start_soon(stop_on_signal)
            if metrics is not None:
                await nursery.start(metrics.run)
                log.info("%s: metrics on %s/metrics", driver.name, metrics.url)
            await nursery.start(run_driver)
            log.info("%s: ready", driver.name)
            print(f"{driver.name}: ready", flush=True)


def main(config: str, name: str) -> int:
    """Run node ``name`` of the cluster file ``config``; the process's exit code."""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # the store commits in a worker thread; a short switch interval lets it take the GIL
    # back quickly from a loop that is inserting (each SQL statement needs the GIL)
    sys.setswitchinterval(0.0005)
    try:
        cfg = ClusterFile.load(config)
        warm_up(cfg.dim, cfg.metric, cfg.R, cfg.L, cfg.alpha)
        driver = build_node(cfg, name)
        address = cfg.nodes[name].metrics
        server = MetricsServer(NodeMetrics(driver), address) if address else None
    except StoreDamaged as exc:
        log.critical("%s", exc)
        print(f"graphrep node: {exc}", file=sys.stderr)
        return EXIT_BAD_START
    except GraphrepError as exc:
        print(f"graphrep node: {exc}", file=sys.stderr)
        return EXIT_BAD_START
    code = 0
    try:
        trio.run(serve, driver, server)
    except BaseException as exc:  # trio wraps task errors in exception groups
        fatal = (_first(exc, StoreDamaged) or _first(exc, StoreError)
                 or _first(exc, OSError))
        if fatal is None:
            raise
        log.critical("%s: %s", name, fatal)
        print(f"graphrep node: {name}: {fatal}", file=sys.stderr)
        # a store found damaged when loaded refuses the start (2); a failed commit is 70
        code = (EXIT_STORE_FAILED if isinstance(fatal, StoreError)
                and not isinstance(fatal, StoreDamaged) else EXIT_BAD_START)
    finally:
        driver.store.close()
    if code:
        return code
    log.info("%s: stopped", name)
    return 0


def _first(exc: BaseException, kind: type[BaseException]) -> BaseException | None:
    """The first ``kind`` in ``exc`` or the exception groups it nests."""
    if isinstance(exc, kind):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = _first(inner, kind)
            if found is not None:
                return found
    return None
