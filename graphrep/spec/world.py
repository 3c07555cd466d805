"""The world the specification drives: a sharded, replicated index in the simulator.

A :class:`SpecWorld` is a :class:`~graphrep.sim.engine.Simulation` with one
:class:`~graphrep.protocol.host.ShardHost` per node (shards placed within their
allowed regions by :func:`~graphrep.protocol.placement.place`) and a client node. It
is driven by :class:`Step` values, plain data such as
``Step("insert", shard=0, replica=1, concern="majority", count=2)`` (two inserts sent to
the shard's second replica): the stateful machines of :mod:`graphrep.spec.machine` let
Hypothesis choose them, the fuzzer draws them from a seed, and :func:`replay` runs a
list of them again. After every step
:meth:`SpecWorld.check` evaluates the invariants that must hold at every instant;
:meth:`SpecWorld.finish` undoes every fault, waits for quiescence and checks the
end-state invariants. A broken invariant raises
:class:`~graphrep.errors.InvariantViolation` naming it.

Invariants during the run (DESIGN.md, "Invariants"):

* ``graph_health``: every replica's graph: out-degree <= R, no edge to an unknown id
  (``VamanaIndex.graph_problems``).
* ``durability``: an acknowledged write is, when the client receives the
  acknowledgement, on the synced disk of the replicas its write concern names
  (``one``: the acknowledging replica; ``majority``; ``all``).
* ``one_leader_per_term``: no two replicas of a shard are elected in the same term.
* ``term_never_decreases``: a replica's term only grows (terms fence deposed leaders).
* ``committed_entries_agree``: an entry committed anywhere is the entry every replica
  commits at that position.
* ``residency``: no message of a shard is delivered to a node outside the shard's
  allowed regions.
* ``read_your_writes``: a search answered ``ok`` reflects the session token it carried,
  and returns only ids that were written to that shard.
* ``no_process_error``: no replica raises.

At the end, after heal and quiescence: ``convergence`` (equal digests), ``identical_results``
(the same top-k on every replica), ``no_lost_writes``, ``reachability`` (no unreachable
live node) and ``recall`` (within the policy's epsilon of one writer applying the same
writes). Policies that do not promise convergence (``replay``) skip the first two.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import msgpack
import numpy as np

from graphrep.ann import VamanaIndex
from graphrep.errors import InvalidArgument, InvariantViolation, ProtocolError, SimulationError
from graphrep.protocol.host import ShardHost
from graphrep.protocol.messages import (
    ClientSearch,
    ClientWrite,
    SearchReply,
    WriteReply,
    decode,
    encode,
)
from graphrep.protocol.placement import ShardPlacement, place
from graphrep.protocol.replica import (
    LEADER,
    Replica,
    ReplicaConfig,
    shard_settled,
    wal_entry,
)
from graphrep.sansio import BaseProcess, Send
from graphrep.sim.engine import SimConfig, Simulation
from graphrep.sim.network import LatencyModel, NetworkConfig
from graphrep.spec.registry import ReplicaClass, get_policy

__all__ = ["STEP_KINDS", "SpecWorld", "Step", "WorldConfig", "replay"]

MS = 1_000_000
CLIENT = "client"
CONCERNS = ("one", "majority", "all")


@dataclass(frozen=True)
class WorldConfig:
    """Everything besides the steps that decides a run."""

    policy: str = "leader"
    seed: int = 0
    sync: str = "always"
    nodes: tuple[tuple[str, str], ...] = (("n0", "eu"), ("n1", "eu"), ("n2", "eu"),
                                          ("n3", "us"))
    """(name, region) of every node; the client sits in the first node's region."""
    shards: tuple[tuple[int, tuple[str, ...]], ...] = ((0, ("eu",)), (1, ("eu", "us")))
    """(shard, allowed regions)."""
    replication: int = 3
    dim: int = 4
    R: int = 8
    L: int = 16
    snapshot_every: int = 4
    log_keep: int = 1
    anti_entropy_ticks: int = 20
    snapshot_ticks: int = 20
    latency_ns: int = 2 * MS
    step_ns: int = 5 * MS
    """Virtual time every step lets pass after its action."""
    settle_ns: int = 5_000 * MS
    queries: int = 12

    def __post_init__(self) -> None:
        get_policy(self.policy)  # raises for an unknown policy
        if not isinstance(self.step_ns, int) or self.step_ns < 0:
            raise InvalidArgument(f"step_ns must be an int >= 0, got {self.step_ns!r}")


STEP_KINDS = ("insert", "delete", "search", "partition", "one_way", "region_split",
              "isolate_leader", "split_brain", "heal", "crash", "restart", "kill_leader", "drop",
              "duplicate", "delay", "hold_message", "hold", "release", "advance",
              "anti_entropy", "corrupt")


class Step:
    """One action on the world, as data: ``Step(kind, **args)``.

    Prints as a readable call (``insert(concern='majority', replica=1, shard=0)``) and
    round-trips through JSON (:meth:`to_json` / :meth:`from_json`), so a failing
    schedule can be printed, saved and replayed.
    """

    __slots__ = ("args", "kind")

    def __init__(self, kind: str, **args: Any) -> None:
        if kind not in STEP_KINDS:
            raise InvalidArgument(f"unknown step {kind!r}; choose from {STEP_KINDS}")
        self.kind = kind
        self.args = dict(sorted(args.items()))

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v!r}" for k, v in self.args.items())
        return f"{self.kind}({inner})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Step) and (self.kind, self.args) == (other.kind, other.args)

    def __hash__(self) -> int:
        return hash((self.kind, json.dumps(self.args, sort_keys=True)))

    def to_json(self) -> list:
        return [self.kind, self.args]

    @classmethod
    def from_json(cls, data: Any) -> Step:
        if not (isinstance(data, list | tuple) and len(data) == 2
                and isinstance(data[1], dict)):
            raise InvalidArgument(f"a step is [kind, {{args}}], got {data!r}")
        args = {k: _untuple(v) for k, v in data[1].items()}
        return cls(data[0], **args)


def _untuple(v: Any) -> Any:
    """JSON turns tuples into lists; steps use tuples for groups."""
    if isinstance(v, list):
        return tuple(_untuple(x) for x in v)
    return v


@dataclass(frozen=True)
class Ack:
    shard: int
    op: str
    id: int
    term: int
    pos: int
    concern: str
    node: str
    at: int


class SpecClient(BaseProcess):
    """The client node: the world sends its requests (``Simulation.send``); it follows
    ``not_leader`` hints (up to three hops) and hands every answer to the world."""

    def __init__(self, world: SpecWorld) -> None:
        self.world = world
        self.requests: dict[int, list] = {}  # req -> [message, hops]
        self.read_after: dict[int, int] = {}  # write req -> replica to search once acked

    def on_message(self, now: int, src: str, payload: Any, size: int) -> list:
        try:
            msg = decode(payload)
        except ProtocolError:
            return []
        entry = self.requests.get(msg.req)
        if entry is None:
            return []
        if isinstance(msg, WriteReply):
            if msg.status == "not_leader" and msg.leader and entry[1] < 3:
                entry[1] += 1
                replicas = self.world.placement[msg.shard].replicas
                if msg.leader in replicas:
                    data = encode(entry[0])
                    return [Send(msg.leader, data, len(data))]
                return []
            if msg.status == "ok":
                self.world._on_ack(now, src, entry[0], msg)
                read = self.read_after.pop(msg.req, None)
                if read is not None:
                    return [self.world._read_after_write(entry[0], read)]
        elif isinstance(msg, SearchReply):
            self.world._on_search_reply(src, entry[0], msg)
        return []


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
        self.replica_configs = {
            p.shard: ReplicaConfig(
                replicas=p.replicas, dim=cfg.dim, shard=p.shard, R=cfg.R, L=cfg.L,
                search_L=cfg.L, index_seed=cfg.seed, snapshot_every=cfg.snapshot_every,
                log_keep=cfg.log_keep, anti_entropy_ticks=cfg.anti_entropy_ticks,
                snapshot_ticks=cfg.snapshot_ticks, sync=cfg.sync, **self.policy.config)
            for p in placements}
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
        self.next_id = 0
        self.next_req = 1
        self.inserted: dict[int, list[int]] = {s: [] for s in self.placement}
        self.delete_sent: set[int] = set()  # membership only
        self.acks: list[Ack] = []
        self.token: dict[int, int] = {s: 0 for s in self.placement}
        self.leaders: dict[tuple[int, int], str] = {}
        self.violations: list[InvariantViolation] = []
        self._trace_seen = 0
        self._metrics_seen = 0
        self._terms: dict[tuple[str, int], int] = {}
        self._committed: dict[int, dict[int, tuple[int | None, str]]] = {
            s: {} for s in self.placement}
        self._checked: dict[tuple[str, int], int] = {}
        # nodes in a region some shard may not live in: residency is checked on them
        self._restricted = {n for n, r in self.regions.items()
                            if any(r not in p.regions for p in placements)}
        self.searches = {"sent": 0, "ok": 0, "stale": 0}

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

    def do(self, step: Step) -> None:
        """Run one step, then let ``step_ns`` of virtual time pass (``advance``: its own
        duration); check the run-time invariants."""
        self.steps.append(step)
        try:
            getattr(self, f"_do_{step.kind}")(**step.args)
            ms = step.args.get("ms", 0) if step.kind == "advance" else 0
            self.sim.run_until(self.sim.now + self.config.step_ns + ms * MS)
        except SimulationError as exc:
            raise InvariantViolation("no_process_error", f"{exc} (after step {step!r})") \
                from exc
        self.check()

    def _request(self, replica: int, msg: Any) -> None:
        """Send a client request to the ``replica``-th replica of the message's shard (a
        client addresses only the shard's replicas: anything else would itself carry the
        shard's data out of its regions)."""
        self.sim.send(CLIENT, self._register(msg, replica), encode(msg))

    def _register(self, msg: Any, replica: int) -> str:
        """Note a client request (for its reply) and say which node it goes to."""
        self.client.requests[msg.req] = [msg, 0]
        replicas = self.placement[msg.shard].replicas
        return replicas[replica % len(replicas)]

    def _req(self) -> int:
        self.next_req += 1
        return self.next_req

    def _do_insert(self, shard: int, replica: int, concern: str, count: int = 1,
                   read: int = -1) -> None:
        """``count`` inserts of new ids, sent back to back. ``read`` >= 0: as each is
        acknowledged, the client searches for its vector at the shard's ``read``-th
        replica with the new session token (read-your-writes, exercised where it is
        hardest: right after the write, at a replica that may lag)."""
        for _ in range(count):
            id_ = self.next_id
            self.next_id += 1
            self.inserted[shard].append(id_)
            vec = self.vector(id_).astype("<f4").tobytes()
            req = self._req()
            if read >= 0:
                self.client.read_after[req] = read
            self._request(replica, ClientWrite(shard, req, "insert", id_, vec, concern))

    def _do_delete(self, shard: int, replica: int, concern: str, pick: int) -> None:
        ids = self.inserted[shard]
        if not ids:
            return
        id_ = ids[pick % len(ids)]
        self.delete_sent.add(id_)
        self._request(replica, ClientWrite(shard, self._req(), "delete", id_, b"", concern))

    def _do_search(self, shard: int, replica: int, pick: int) -> None:
        q = self.queries[pick % len(self.queries)].astype("<f4").tobytes()
        self.searches["sent"] += 1
        self._request(replica, ClientSearch(shard, self._req(), q, 5, self.token[shard]))

    def _do_partition(self, groups: tuple[tuple[str, ...], ...]) -> None:
        self.sim.partition([list(g) for g in groups])

    def _do_one_way(self, sources: tuple[str, ...], destinations: tuple[str, ...]) -> None:
        self.sim.partition_one_way(list(sources), list(destinations))

    def _do_region_split(self) -> None:
        regions = sorted(set(self.regions.values()))
        self.sim.partition_regions([[r] for r in regions])

    def _do_heal(self) -> None:
        self.sim.heal()

    def _do_isolate_leader(self, shard: int) -> None:
        """Cut the shard's leader off from every other node (the client included)."""
        leader = self.leader_of(shard)
        if leader is not None:
            others = [n for n in self.sim.nodes if n != leader and n != CLIENT]
            self.sim.partition([[leader], others])

    def _do_split_brain(self, shard: int, count: int) -> None:
        """Jepsen's classic: cut the shard's leader off from every other node (the client
        still reaches it) and write to it at ``one``; let the others elect a leader and
        write there at ``majority``; heal. The deposed leader's writes must give way."""
        old = self.leader_of(shard)
        if old is None:
            return
        replicas = self.placement[shard].replicas
        self._do_isolate_leader(shard)
        self._do_insert(shard, replicas.index(old), "one", count)
        self.sim.run_until(self.sim.now + 400 * MS)
        new = self.leader_of(shard)
        if new is not None and new != old:
            self._do_insert(shard, replicas.index(new), "majority", count)
            self.sim.run_until(self.sim.now + 20 * MS)
        self.sim.heal()

    def _do_crash(self, node: str) -> None:
        self.sim.crash(node)

    def _do_restart(self, node: str) -> None:
        self.sim.restart(node)

    def _do_kill_leader(self, shard: int) -> None:
        leader = self.leader_of(shard)
        if leader is not None:
            self.sim.crash(leader)

    def _pick_message(self, pick: int) -> int | None:
        msgs = self.sim.messages_in_flight()
        return msgs[pick % len(msgs)].key if msgs else None

    def _do_drop(self, pick: int) -> None:
        key = self._pick_message(pick)
        if key is not None:
            self.sim.drop_message(key)

    def _do_duplicate(self, pick: int, ms: int) -> None:
        key = self._pick_message(pick)
        if key is not None:
            self.sim.duplicate_message(key, ms * MS)

    def _do_delay(self, pick: int, ms: int) -> None:
        key = self._pick_message(pick)
        if key is not None:
            self.sim.delay_message(key, ms * MS)

    def _do_hold_message(self, pick: int) -> None:
        """Hold the link of one message in flight: it and what follows on that link wait
        until the link is released (or the end-of-run heal)."""
        msgs = self.sim.messages_in_flight()
        if msgs:
            m = msgs[pick % len(msgs)]
            self.sim.hold(m.src, m.dst)

    def _do_hold(self, src: str, dst: str) -> None:
        self.sim.hold(src, dst)

    def _do_release(self, src: str, dst: str) -> None:
        self.sim.release(src, dst)

    def _do_advance(self, ms: int) -> None:
        pass  # do() lets the time pass

    def _do_anti_entropy(self, shard: int) -> None:
        leader = self.leader_of(shard)
        if leader is not None:
            self.sim.set_timer(leader, (shard, "anti_entropy"))

    def _do_corrupt(self, shard: int, node: str, pick: int) -> None:
        """Change one neighbour of one record of a follower's graph behind the protocol's
        back (a bit flip, a bad disk): the graph stays valid, only different."""
        r = self.replica(node, shard)
        if r is None or r.role == LEADER or not self.policy.repairs_damage:
            return
        ids = r.index.ids()
        if len(ids) < 3:
            return
        victim = int(ids[pick % len(ids)])
        records = r.index.export_records([victim])
        mine = set(records.neighbours.tolist())
        spare = [int(i) for i in ids if int(i) != victim and int(i) not in mine]
        if not spare or not records.neighbours.size:
            return
        nbrs = records.neighbours.copy()
        nbrs[pick % nbrs.size] = spare[pick % len(spare)]
        nbrs.sort()
        r.index.overwrite_records(replace(records, neighbours=nbrs))
        r.tree = None

    # ------------------------------------------------------------------ client callbacks

    def _on_ack(self, now: int, src: str, req: Any, msg: WriteReply) -> None:
        ack = Ack(req.shard, req.op, req.id, msg.term, msg.seq, req.concern, src, now)
        self.acks.append(ack)
        self.token[req.shard] = max(self.token[req.shard], msg.seq + 1)
        replicas = self.placement[req.shard].replicas
        holders = [n for n in replicas if self._durable_at(n, ack)]
        need = {"one": 1, "majority": len(replicas) // 2 + 1, "all": len(replicas)}
        if req.concern == "one":
            r = self.replica(src, req.shard)
            ok = src in holders or (r is not None and r.term > msg.term)
        else:
            ok = len(holders) >= need[req.concern]
        if not ok:
            self.violations.append(InvariantViolation(
                "durability", f"{req.op} of id {req.id} acknowledged at {req.concern} by "
                f"{src} as (term {msg.term}, position {msg.seq}), but only "
                f"{holders or 'no replica'} hold it on disk (needed "
                f"{need[req.concern]} of {list(replicas)})"))

    def _read_after_write(self, write: ClientWrite, replica: int) -> Send:
        """The client's search for a vector it just wrote, with the new token."""
        msg = ClientSearch(write.shard, self._req(), write.vector, 5, self.token[write.shard])
        to = self._register(msg, replica)
        self.searches["sent"] += 1
        data = encode(msg)
        return Send(to, data, len(data))

    def _durable_at(self, node: str, ack: Ack) -> bool:
        disk = self.sim.disk(node)
        entry = wal_entry(disk.get((ack.shard, ("log", ack.pos))))
        if entry is not None and entry[0] == ack.term:
            return True
        snap = disk.get((ack.shard, "snapshot"))
        return snap is not None and snap[0] > ack.pos

    def _on_search_reply(self, src: str, req: Any, msg: SearchReply) -> None:
        if msg.status == "stale":
            self.searches["stale"] += 1
            return
        if msg.status != "ok":
            return
        self.searches["ok"] += 1
        if msg.seq < req.min_seq:
            self.violations.append(InvariantViolation(
                "read_your_writes", f"{src} answered a search of shard {req.shard} with "
                f"session token {req.min_seq} having applied only {msg.seq} entries"))
        ids = np.frombuffer(msg.ids, dtype="<i8").tolist()
        known = set(self.inserted[req.shard])
        unknown = [i for i in ids if i >= 0 and i not in known]  # -1 pads a short answer
        if unknown:
            self.violations.append(InvariantViolation(
                "read_your_writes", f"{src} returned ids {unknown} never written to shard "
                f"{req.shard}"))

    # ------------------------------------------------------------------ invariants

    def check(self) -> None:
        """The invariants that hold at every instant (see the module docstring)."""
        if self.violations:
            raise self.violations[0]
        for shard in self.placement:
            for node, r in self.replicas(shard):
                if r is None:
                    continue
                problems = r.index.graph_problems()
                if problems:
                    raise InvariantViolation("graph_health", f"shard {shard} on {node}: "
                                             f"{'; '.join(problems)}")
        for shard in self.placement:
            for node, r in self.replicas(shard):
                if r is not None:
                    self._check_log(shard, node, r)
        metrics = self.sim.metrics
        for _, node, name, value in metrics[self._metrics_seen:]:
            if name.startswith("leader_elected@"):
                key = (int(name.rsplit("@", 1)[1]), int(value))
                first = self.leaders.setdefault(key, node)
                if first != node:
                    raise InvariantViolation(
                        "one_leader_per_term", f"shard {key[0]}: {first} and {node} were "
                        f"both elected in term {key[1]}")
        self._metrics_seen = len(metrics)
        records = self.sim.trace.records
        for rec in records[self._trace_seen:]:
            if rec[1] != "deliver" or rec[3] not in self._restricted:
                continue
            shard = _peek_shard(rec[4])
            pl = self.placement.get(shard)  # type: ignore[arg-type]
            region = self.regions.get(rec[3])
            if pl is not None and region not in pl.regions:
                raise InvariantViolation(
                    "residency", f"a shard {shard} message from {rec[2]} reached {rec[3]} "
                    f"in region {region!r}; the shard may live only in {list(pl.regions)}")
        self._trace_seen = len(records)

    def _check_log(self, shard: int, node: str, r: Replica) -> None:
        """``term_never_decreases`` (terms are what fence a deposed leader) and
        ``committed_entries_agree`` (an entry committed anywhere is, at its position, the
        entry every replica commits there: Raft's state machine safety)."""
        key = (node, shard)
        highest = self._terms.get(key, 0)
        if r.term < highest:
            raise InvariantViolation("term_never_decreases", f"shard {shard} on {node}: term "
                                     f"went from {highest} back to {r.term}")
        self._terms[key] = r.term
        terms = self._committed[shard]
        for pos in range(max(self._checked.get(key, 0), r.log_start), min(r.commit, r.end)):
            term = r.term_at(pos)
            first = terms.setdefault(pos, (term, node))
            if first[0] != term:
                raise InvariantViolation(
                    "committed_entries_agree", f"shard {shard}: position {pos} was "
                    f"committed with an entry of term {first[0]} on {first[1]}, but {node} "
                    f"commits one of term {term} there")
        self._checked[key] = max(self._checked.get(key, 0), min(r.commit, r.end))

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
                self._do_anti_entropy(shard)
            sim.run_until(sim.now + 100 * MS)
            sim.run_until(lambda s: s.now >= deadline or self._settled())
        except SimulationError as exc:
            raise InvariantViolation("no_process_error", f"{exc} (while settling)") from exc
        return self._settled()

    def _settled(self) -> bool:
        return all(shard_settled([r for _, r in self.replicas(shard)])
                   for shard in self.placement)

    def finish(self) -> dict[str, Any]:
        """Settle, then check the end-state invariants; returns a summary."""
        settled = self.settle()
        self.check()
        if not settled:
            state = {s: [(n, None if r is None else (r.role, r.term, r.end, r.commit,
                                                     r.applied))
                         for n, r in self.replicas(s)] for s in self.placement}
            raise InvariantViolation("convergence", f"not settled "
                                     f"{self.config.settle_ns // MS} ms after the heal: "
                                     f"(role, term, end, commit, applied) {state}")
        summary: dict[str, Any] = {"shards": {}}
        for shard in self.placement:
            summary["shards"][shard] = self._check_shard(shard)
        summary["acks"] = len(self.acks)
        summary["steps"] = len(self.steps)
        summary["searches"] = dict(self.searches)
        return summary

    def _check_shard(self, shard: int) -> dict[str, Any]:
        reps = [(n, r) for n, r in self.replicas(shard) if r is not None]
        digests = {n: r.index.digest().hex()[:16] for n, r in reps}
        if self.policy.converges and len(set(digests.values())) != 1:
            raise InvariantViolation("convergence", f"shard {shard} digests differ after "
                                     f"quiescence: {digests}")
        results = {}
        for n, r in reps:
            if len(r.index):
                results[n] = r.index.search(self.queries, k=10, L=self.config.L)[0]
        if self.policy.converges and results:
            first_n, first = next(iter(results.items()))
            for n, ids in results.items():
                if not np.array_equal(ids, first):
                    raise InvariantViolation("identical_results", f"shard {shard}: {n} and "
                                             f"{first_n} return different top-10")
        leader = self.replica(self.leader_of(shard) or "", shard)
        final_term = leader.term if leader is not None else -1
        for a in self.acks:
            if a.shard != shard or (a.concern == "one" and a.term != final_term):
                continue  # "one" promises nothing across a failover
            for n, r in reps:
                live = a.id in r.index and not r.index.is_deleted(a.id)
                if (a.op == "insert" and not live and a.id not in self.delete_sent) or \
                        (a.op == "delete" and live):
                    raise InvariantViolation(
                        "no_lost_writes", f"{a.op} of id {a.id} (shard {shard}) acknowledged "
                        f"at {a.concern} as (term {a.term}, position {a.pos}) is not in "
                        f"effect on {n}")
        for n, r in reps:
            unreachable = r.index.unreachable_count() if len(r.index) else 0
            if unreachable:
                raise InvariantViolation("reachability", f"shard {shard} on {n}: "
                                         f"{unreachable} live nodes unreachable")
        recall = self._recall_check(shard, reps, leader)
        return {"digests": digests, "recall": recall}

    def _recall_check(self, shard: int, reps: Sequence[tuple[str, Replica]],
                      leader: Replica | None) -> dict[str, float]:
        if leader is None or len(leader.index) == 0:
            return {}
        single = self._single_writer(leader, self.replica_configs[shard])
        live = leader.index.ids()
        X = np.stack([self.vector(int(i)) for i in live])
        d = ((self.queries[:, None, :] - X[None, :, :]) ** 2).sum(-1)
        k = min(10, len(live))
        gt = live[np.argsort(d, axis=1, kind="stable")[:, :k]]
        def recall_of(index: VamanaIndex) -> float:
            found = index.search(self.queries, k=k, L=self.config.L)[0]
            return float(np.mean([len(set(found[i].tolist()) & set(gt[i].tolist())) / k
                                  for i in range(len(gt))]))
        base = recall_of(single)
        out = {"single_writer": base}
        eps = self.policy.recall_eps
        for n, r in reps:
            if len(r.index) == 0:
                continue
            out[n] = recall_of(r.index)
            if out[n] < base - eps:
                raise InvariantViolation("recall", f"shard {shard} on {n}: recall@{k} "
                                         f"{out[n]:.3f} < single writer {base:.3f} - {eps}")
        return out

    def _single_writer(self, leader: Replica, cfg: ReplicaConfig) -> VamanaIndex:
        """One index that applies the leader's surviving writes in its log order."""
        events = sorted([(p, 0, i) for i, p in leader.id_pos.items()]
                        + [(p, 1, i) for i, p in leader.deleted_pos.items()])
        index = cfg.index()
        for _, kind, i in events:
            if kind == 0 and i not in index:
                index.insert(i, self.vector(i))
            elif kind == 1 and i in index and not index.is_deleted(i):
                index.delete(i)
        return index


def _peek_shard(payload: Any) -> int | None:
    """The shard field of a message frame ``[version, type, shard, ...]`` without
    validating the rest (None if it is not such a frame)."""
    try:
        frame = msgpack.unpackb(payload)
    except Exception:  # any undecodable bytes: not a shard message
        return None
    if isinstance(frame, list) and len(frame) > 2 and isinstance(frame[2], int):
        return frame[2]
    return None


def replay(config: WorldConfig, steps: Iterable[Step], replica: ReplicaClass | None = None,
           placer: Placer | None = None) -> dict[str, Any]:
    """Run ``steps`` on a fresh world and finish it: the same config and steps give the
    same run (a failing schedule printed by the specification replays with this)."""
    world = SpecWorld(config, replica, placer)
    for step in steps:
        world.do(step)
    return world.finish()


def config_json(config: WorldConfig) -> dict[str, Any]:
    return asdict(config)
