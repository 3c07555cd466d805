"""The world the specification drives: a sharded, replicated index in the simulator.

A :class:`SpecWorld` is a :class:`~graphrep.sim.engine.Simulation` with one
:class:`~graphrep.protocol.host.ShardHost` per node (shards placed within their
allowed regions by :func:`~graphrep.protocol.placement.place`) and a client node
(:class:`~graphrep.spec.client.SpecClient`). :class:`WorldConfig` decides everything
about a run besides its steps; the steps (:mod:`graphrep.spec.steps`) drive it.

:meth:`SpecWorld.do` runs one step (:meth:`SpecWorld.act`) and then checks the
invariants that must hold at every instant (:meth:`SpecWorld.check`, the checks of
:mod:`graphrep.spec.invariants`); :meth:`SpecWorld.finish` undoes every fault, waits
for quiescence and checks the end-state invariants. A broken invariant raises
:class:`~graphrep.errors.InvariantViolation` naming it. :func:`replay` runs a list of
steps on a fresh world and finishes it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from graphrep.errors import InvalidArgument, InvariantViolation, ProtocolError, SimulationError
from graphrep.protocol.host import ShardHost
from graphrep.protocol.placement import ShardPlacement, place
from graphrep.protocol.replica import LEADER, Replica, ReplicaConfig, shard_settled
from graphrep.sansio import MS
from graphrep.sim.engine import SimConfig, Simulation
from graphrep.sim.network import LatencyModel, NetworkConfig
from graphrep.spec import invariants
from graphrep.spec.client import CLIENT, SpecClient
from graphrep.spec.registry import ReplicaClass, get_policy
from graphrep.spec.steps import Step, StepActions

__all__ = ["REPLICA_SETTINGS", "Placer", "SpecWorld", "WorldConfig", "replay"]

REPLICA_SETTINGS: Mapping[str, Any] = {
    "dim": 4, "R": 8, "L": 16, "snapshot_every": 4, "log_keep": 1, "anti_entropy_ticks": 20,
    "snapshot_ticks": 20, "sync": "always"}
"""The replica settings of a world unless its config says otherwise: small graphs and
frequent snapshots and anti-entropy rounds, so that short runs reach every code path.
Every other ``ReplicaConfig`` field keeps ``ReplicaConfig``'s default."""

WORLD_DECIDES = {
    "replicas": "the placement", "shard": "the placement", "index_seed": "seed",
    "search_L": "L (the end-state checks search at L too)",
    "policy": "the registered policy's config"}
"""``ReplicaConfig`` fields a world sets itself, and from what."""

_NODES = (("n0", "eu"), ("n1", "eu"), ("n2", "eu"), ("n3", "us"))
_SHARDS = ((0, ("eu",)), (1, ("eu", "us")))


@dataclass(frozen=True, init=False)
class WorldConfig:
    """Everything besides the steps that decides a run.

    ``WorldConfig(seed=50, sync="tick")``: the world's own fields by keyword; any other
    keyword is a :class:`~graphrep.protocol.replica.ReplicaConfig` field that every
    replica of every shard gets (checked against ``ReplicaConfig``'s fields and values
    when the config is made). ``replica_settings`` holds those settings, over
    :data:`REPLICA_SETTINGS`; each also reads as an attribute (``config.sync``,
    ``config.L``). ``dataclasses.replace(config, sync="tick")`` changes one.
    """

    policy: str
    """A registered policy (:func:`graphrep.spec.register_policy`)."""
    seed: int
    """Seeds the simulator, the vectors, the queries and every replica's index."""
    nodes: tuple[tuple[str, str], ...]
    """(name, region) of every node; the client sits in the first node's region."""
    shards: tuple[tuple[int, tuple[str, ...]], ...]
    """(shard, allowed regions)."""
    replication: int
    latency_ns: int
    """Mean of the exponential message latency."""
    step_ns: int
    """Virtual time every step lets pass after its action."""
    settle_ns: int
    """How long ``SpecWorld.settle`` waits at most for every shard to settle."""
    queries: int
    """Queries of the searches and of the end-state recall checks."""
    replica_settings: dict[str, Any] = field(hash=False)
    """``ReplicaConfig`` field -> value for every replica (names sorted)."""

    def __init__(self, policy: str = "leader", seed: int = 0,
                 nodes: Iterable[tuple[str, str]] = _NODES,
                 shards: Iterable[tuple[int, Iterable[str]]] = _SHARDS,
                 replication: int = 3, latency_ns: int = 2 * MS, step_ns: int = 5 * MS,
                 settle_ns: int = 5_000 * MS, queries: int = 12,
                 replica_settings: Mapping[str, Any] | None = None,
                 **settings: Any) -> None:
        get_policy(policy)  # raises for an unknown policy
        if not isinstance(step_ns, int) or step_ns < 0:
            raise InvalidArgument(f"step_ns must be an int >= 0, got {step_ns!r}")
        merged = {**REPLICA_SETTINGS, **(replica_settings or {}), **settings}
        known = {f.name for f in fields(ReplicaConfig)}
        for name in sorted(merged):
            if name in WORLD_DECIDES:
                raise InvalidArgument(f"the world sets the replicas' {name} from "
                                      f"{WORLD_DECIDES[name]}; it is not a world setting")
            if name not in known:
                settable = sorted(known - WORLD_DECIDES.keys())
                raise InvalidArgument(f"{name!r} is neither a WorldConfig field nor a "
                                      f"ReplicaConfig field a world sets "
                                      f"({', '.join(settable)})")
        put = object.__setattr__
        put(self, "policy", policy)
        put(self, "seed", seed)
        put(self, "nodes", tuple((n, r) for n, r in nodes))
        put(self, "shards", tuple((s, tuple(regions)) for s, regions in shards))
        put(self, "replication", replication)
        put(self, "latency_ns", latency_ns)
        put(self, "step_ns", step_ns)
        put(self, "settle_ns", settle_ns)
        put(self, "queries", queries)
        put(self, "replica_settings", dict(sorted(merged.items())))
        try:  # the values: ReplicaConfig checks them
            self.replica_config(ShardPlacement(0, (), ("n",)))
        except ProtocolError as exc:
            raise InvalidArgument(f"bad replica setting: {exc}") from exc

    def __getattr__(self, name: str) -> Any:
        """A replica setting read as an attribute (called only for names that are not
        fields or methods)."""
        settings = self.__dict__.get("replica_settings")
        if settings is not None and name in settings:
            return settings[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def replica_config(self, placement: ShardPlacement) -> ReplicaConfig:
        """The config of the replicas of ``placement``'s shard: the replica settings, the
        placement, ``index_seed=seed``, ``search_L=L`` and the policy's own settings
        (``PolicySpec.config``, which take precedence)."""
        s = self.replica_settings
        return ReplicaConfig(**{
            **s, "replicas": placement.replicas, "shard": placement.shard,
            "index_seed": self.seed, "search_L": s["L"],
            **get_policy(self.policy).config})


Placer = Callable[[Mapping[str, str], Mapping[int, Sequence[str]], int],
                  list[ShardPlacement]]


class SpecWorld:
    """See the module docstring. ``replica`` overrides the policy's replica class and
    ``placer`` the placement function (the planted bugs of :mod:`graphrep.spec.mutants`
    are such replacements)."""

    def __init__(self, config: WorldConfig, replica: ReplicaClass | None = None,
                 placer: Placer | None = None) -> None:
        self.config = cfg = config
        self.policy = get_policy(cfg.policy)
        self.replica_class = replica if replica is not None else self.policy.replica
        self.regions = dict(cfg.nodes)
        placements = (placer or place)(self.regions, dict(cfg.shards), cfg.replication)
        self.placement: dict[int, ShardPlacement] = {p.shard: p for p in placements}
        self.replica_configs = {p.shard: cfg.replica_config(p) for p in placements}
        net = NetworkConfig(default=LatencyModel.exponential(cfg.latency_ns))
        self.sim = Simulation(cfg.seed, SimConfig(network=net))
        self._boots = {name: 0 for name in self.regions}
        for name, region in cfg.nodes:
            self.sim.add_node(name, self._host, region)
        self.client = SpecClient(self)
        self.sim.add_node(CLIENT, lambda n, d: self.client, cfg.nodes[0][1])
        rng = np.random.default_rng([cfg.seed, 1])
        self.queries = rng.standard_normal((cfg.queries, cfg.dim)).astype(np.float32)
        self.steps: list[Step] = []
        self.actions = StepActions(self)
        self.observed = invariants.Observed()

    # ------------------------------------------------------------------ nodes

    def _host(self, name: str, disk: dict) -> ShardHost:
        self._boots[name] += 1
        boot = self._boots[name]
        configs = [c for c in self.replica_configs.values() if name in c.replicas]
        return ShardHost(name, disk, configs,
                         lambda shard: self.sim.rng(f"replica:{name}:{shard}:{boot}"),
                         replica=self.replica_class)

    def replica(self, node: str, shard: int) -> Replica | None:
        """The live replica of ``shard`` on ``node`` (None if the node is down or does not
        hold the shard)."""
        host = self.sim.process(node)
        return None if host is None else host.replicas.get(shard)

    def replicas(self, shard: int) -> list[tuple[str, Replica | None]]:
        """(node, live replica or None) for every node placed to hold ``shard``."""
        return [(n, self.replica(n, shard)) for n in self.placement[shard].replicas]

    def leader_of(self, shard: int) -> str | None:
        """The replica of ``shard`` that is up and leads in the highest term, if any."""
        best = None
        for n, r in self.replicas(shard):
            if r is not None and r.role == LEADER and self.sim.state(n) == "up" \
                    and (best is None or r.term > best[1]):
                best = (n, r.term)
        return best[0] if best else None

    def vector(self, id_: int) -> np.ndarray:
        """The vector of id ``id_`` (a function of the seed and the id only)."""
        return np.random.default_rng([self.config.seed, 2, id_]).standard_normal(
            self.config.dim).astype(np.float32)

    # ------------------------------------------------------------------ steps

    def act(self, step: Step) -> None:
        """Run one step (its handler in ``actions.table``), then let ``step_ns`` of
        virtual time pass (``advance``: plus its own duration). A replica that raises
        meanwhile breaks ``no_process_error``."""
        self.steps.append(step)
        try:
            self.actions.table[step.kind](**step.args)
            ms = step.args.get("ms", 0) if step.kind == "advance" else 0
            self.sim.run_until(self.sim.now + self.config.step_ns + ms * MS)
        except SimulationError as exc:
            raise InvariantViolation("no_process_error", f"{exc} (after step {step!r})") \
                from exc

    def do(self, step: Step) -> None:
        """:meth:`act`, then :meth:`check` the run-time invariants."""
        self.act(step)
        self.check()

    def check(self) -> None:
        """The run-time invariants (``invariants.RUN_TIME``, in that order)."""
        for check in invariants.RUN_TIME:
            check(self)

    # ------------------------------------------------------------------ the end

    def settle(self) -> bool:
        """Undo every fault (heal, release, restart, resume; loss and duplication off)
        and run until every shard has one leader and every replica has applied its whole
        log, or ``settle_ns`` passes. Returns whether it settled."""
        sim = self.sim
        sim.heal()
        for src, dst in sorted(sim.network.held):
            sim.release(src, dst)
        sim.set_network_faults(loss=0.0, duplicate=0.0, reorder=0.0)
        for n in self.regions:
            sim.resume(n)
            sim.restart(n)
        deadline = sim.now + self.config.settle_ns
        try:
            sim.run_until(lambda s: s.now >= deadline or self._settled())
            # one explicit anti-entropy round per shard, then settle again
            for shard in self.placement:
                self.actions.anti_entropy(shard)
            sim.run_until(sim.now + 100 * MS)
            sim.run_until(lambda s: s.now >= deadline or self._settled())
        except SimulationError as exc:
            raise InvariantViolation("no_process_error", f"{exc} (while settling)") from exc
        return self._settled()

    def _settled(self) -> bool:
        return all(shard_settled([r for _, r in self.replicas(shard)])
                   for shard in self.placement)

    def finish(self) -> dict[str, Any]:
        """Settle, check the run-time invariants, then the end-state ones; returns a
        summary (per shard: digests and recalls; acknowledgements, steps, searches)."""
        ok = self.settle()
        self.check()
        invariants.settled(self, ok)
        summary: dict[str, Any] = {"shards": {}}
        for shard in self.placement:
            summary["shards"][shard] = invariants.end_state(self, shard)
        summary["acks"] = len(self.client.acks)
        summary["steps"] = len(self.steps)
        summary["searches"] = dict(self.client.searches)
        return summary


def replay(config: WorldConfig, steps: Iterable[Step], replica: ReplicaClass | None = None,
           placer: Placer | None = None) -> dict[str, Any]:
    """Run ``steps`` on a fresh world and finish it: the same config and steps give the
    same run (a failing schedule printed by the specification replays with this)."""
    world = SpecWorld(config, replica, placer)
    for step in steps:
        world.do(step)
    return world.finish()
