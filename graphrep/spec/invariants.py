"""The invariants of a specification world, one function each.

Run-time invariants hold at every instant; :data:`RUN_TIME` lists their checks, each a
function of the world that raises :class:`~graphrep.errors.InvariantViolation` naming
the invariant. :meth:`graphrep.spec.world.SpecWorld.check` runs them in that order after
every step of the fuzzer and of :func:`~graphrep.spec.world.replay`; the stateful
machine of :mod:`graphrep.spec.machine` runs the same functions as its ``@invariant``
methods, which Hypothesis calls in the order of their names, the order of
:data:`RUN_TIME`.

* ``committed_entries_agree``: an entry committed anywhere is the entry every replica
  commits at that position (Raft's state machine safety).
* ``durability``: an acknowledged write is, when the client receives the
  acknowledgement, on the synced disk of the replicas its write concern names
  (``one``: the acknowledging replica; ``majority``; ``all``). Checked by the client as
  the acknowledgement arrives (:func:`ack_durability`), raised here.
* ``graph_health``: every replica's graph: out-degree <= R, no edge to an unknown id
  (``VamanaIndex.graph_problems``).
* ``one_leader_per_term``: no two replicas of a shard are elected in the same term.
* ``read_your_writes``: a search answered ``ok`` reflects the session token it carried,
  and returns only ids that were written to that shard. Checked by the client as the
  answer arrives (:func:`search_answer_problems`), raised here.
* ``residency``: no message of a shard is delivered to a node outside the shard's
  allowed regions.
* ``term_never_decreases``: a replica's term only grows (terms fence deposed leaders).

A replica that raises breaks ``no_process_error``; the world raises it from the step
during which it happened (``SpecWorld.act``), so it has no check here.

End-state invariants hold once every fault is undone and the world is quiet
(``SpecWorld.finish``): :func:`settled` (every shard settles, reported as
``convergence``), then per shard (:func:`end_state`) ``convergence`` (equal digests),
``identical_results`` (the same top-k on every replica), ``no_lost_writes``,
``reachability`` (no unreachable live node) and ``recall`` (within the policy's epsilon
of one writer applying the same writes). Policies that do not promise convergence
(``replay``) skip the first two. Checking them needs the heal and quiescence that
``finish`` brings about, so they are not Hypothesis ``@invariant`` methods; the
machine's teardown checks them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import msgpack
import numpy as np

from graphrep.ann import VamanaIndex
from graphrep.datasets import recall_at_k
from graphrep.errors import InvariantViolation
from graphrep.protocol.messages import ClientSearch, SearchReply
from graphrep.protocol.replica import Replica, ReplicaConfig, wal_entry
from graphrep.sansio import MS

if TYPE_CHECKING:
    from graphrep.spec.client import Ack
    from graphrep.spec.world import SpecWorld

__all__ = ["RUN_TIME", "Observed", "ack_durability", "committed_entries_agree", "durability",
           "end_state", "graph_health", "one_leader_per_term", "read_your_writes",
           "residency", "search_answer_problems", "settled", "term_never_decreases"]


@dataclass
class Observed:
    """What the run-time checks remember between two calls (one per world)."""

    terms: dict[tuple[str, int], int] = field(default_factory=dict)
    """(node, shard) -> the highest term seen."""
    committed: dict[int, dict[int, tuple[int | None, str]]] = field(default_factory=dict)
    """shard -> position -> (term of the committed entry, the first node seen commit it)."""
    checked: dict[tuple[str, int], int] = field(default_factory=dict)
    """(node, shard) -> the end of the committed positions already compared."""
    leaders: dict[tuple[int, int], str] = field(default_factory=dict)
    """(shard, term) -> the node elected."""
    metrics_seen: int = 0
    trace_seen: int = 0


# ---------------------------------------------------------------------- as answers arrive

def ack_durability(world: SpecWorld, ack: Ack) -> InvariantViolation | None:
    """``durability`` of one acknowledgement, as the client receives it: what broke,
    or None."""
    replicas = world.placement[ack.shard].replicas
    holders = [n for n in replicas if _durable_at(world, n, ack)]
    need = {"one": 1, "majority": len(replicas) // 2 + 1, "all": len(replicas)}
    if ack.concern == "one":
        r = world.replica(ack.node, ack.shard)
        ok = ack.node in holders or (r is not None and r.term > ack.term)
    else:
        ok = len(holders) >= need[ack.concern]
    if ok:
        return None
    return InvariantViolation(
        "durability", f"{ack.op} of id {ack.id} acknowledged at {ack.concern} by "
        f"{ack.node} as (term {ack.term}, position {ack.pos}), but only "
        f"{holders or 'no replica'} hold it on disk (needed "
        f"{need[ack.concern]} of {list(replicas)})")


def _durable_at(world: SpecWorld, node: str, ack: Ack) -> bool:
    disk = world.sim.disk(node)
    entry = wal_entry(disk.get((ack.shard, ("log", ack.pos))))
    if entry is not None and entry[0] == ack.term:
        return True
    snap = disk.get((ack.shard, "snapshot"))
    return snap is not None and snap[0] > ack.pos


def search_answer_problems(world: SpecWorld, src: str, req: ClientSearch,
                           msg: SearchReply) -> list[InvariantViolation]:
    """``read_your_writes`` of one search answered ``ok``: what broke (nothing: [])."""
    out = []
    if msg.seq < req.min_seq:
        out.append(InvariantViolation(
            "read_your_writes", f"{src} answered a search of shard {req.shard} with "
            f"session token {req.min_seq} having applied only {msg.seq} entries"))
    ids = np.frombuffer(msg.ids, dtype="<i8").tolist()
    known = set(world.client.inserted[req.shard])
    unknown = [i for i in ids if i >= 0 and i not in known]  # -1 pads a short answer
    if unknown:
        out.append(InvariantViolation(
            "read_your_writes", f"{src} returned ids {unknown} never written to shard "
            f"{req.shard}"))
    return out


# ---------------------------------------------------------------------- run-time checks

def _raise_reported(world: SpecWorld, invariant: str) -> None:
    for v in world.client.violations:
        if v.invariant == invariant:
            raise v


def committed_entries_agree(world: SpecWorld) -> None:
    """An entry committed anywhere is, at its position, the entry every replica commits
    there (each position compared once per replica)."""
    seen = world.observed
    for shard in world.placement:
        terms = seen.committed.setdefault(shard, {})
        for node, r in world.replicas(shard):
            if r is None:
                continue
            key = (node, shard)
            start = max(seen.checked.get(key, 0), r.log_start)
            for pos in range(start, min(r.commit, r.end)):
                term = r.term_at(pos)
                first = terms.setdefault(pos, (term, node))
                if first[0] != term:
                    raise InvariantViolation(
                        "committed_entries_agree", f"shard {shard}: position {pos} was "
                        f"committed with an entry of term {first[0]} on {first[1]}, but "
                        f"{node} commits one of term {term} there")
            seen.checked[key] = max(seen.checked.get(key, 0), min(r.commit, r.end))


def durability(world: SpecWorld) -> None:
    """Raise the first ``durability`` violation the client found (:func:`ack_durability`)."""
    _raise_reported(world, "durability")


def graph_health(world: SpecWorld) -> None:
    """Every live replica's graph passes ``VamanaIndex.graph_problems``."""
    for shard in world.placement:
        for node, r in world.replicas(shard):
            if r is None:
                continue
            problems = r.index.graph_problems()
            if problems:
                raise InvariantViolation("graph_health", f"shard {shard} on {node}: "
                                         f"{'; '.join(problems)}")


def one_leader_per_term(world: SpecWorld) -> None:
    """No two nodes reported an election as leader of the same shard in the same term
    (the ``leader_elected@shard`` metrics since the last call)."""
    seen = world.observed
    metrics = world.sim.metrics
    for _, node, name, value in metrics[seen.metrics_seen:]:
        if name.startswith("leader_elected@"):
            key = (int(name.rsplit("@", 1)[1]), int(value))
            first = seen.leaders.setdefault(key, node)
            if first != node:
                raise InvariantViolation(
                    "one_leader_per_term", f"shard {key[0]}: {first} and {node} were "
                    f"both elected in term {key[1]}")
    seen.metrics_seen = len(metrics)


def read_your_writes(world: SpecWorld) -> None:
    """Raise the first ``read_your_writes`` violation the client found
    (:func:`search_answer_problems`)."""
    _raise_reported(world, "read_your_writes")


def residency(world: SpecWorld) -> None:
    """No message of a shard was delivered (since the last call) to a node in a region
    the shard may not live in."""
    seen = world.observed
    restricted = {n for n, r in world.regions.items()
                  if any(r not in p.regions for p in world.placement.values())}
    records = world.sim.trace.records
    for rec in records[seen.trace_seen:]:
        if rec[1] != "deliver" or rec[3] not in restricted:
            continue
        shard = _peek_shard(rec[4])
        pl = world.placement.get(shard)  # type: ignore[arg-type]
        region = world.regions.get(rec[3])
        if pl is not None and region not in pl.regions:
            raise InvariantViolation(
                "residency", f"a shard {shard} message from {rec[2]} reached {rec[3]} "
                f"in region {region!r}; the shard may live only in {list(pl.regions)}")
    seen.trace_seen = len(records)


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


def term_never_decreases(world: SpecWorld) -> None:
    """A replica's term is never below the highest term seen on it (terms are what fence
    a deposed leader)."""
    seen = world.observed
    for shard in world.placement:
        for node, r in world.replicas(shard):
            if r is None:
                continue
            key = (node, shard)
            highest = seen.terms.get(key, 0)
            if r.term < highest:
                raise InvariantViolation("term_never_decreases", f"shard {shard} on "
                                         f"{node}: term went from {highest} back to {r.term}")
            seen.terms[key] = r.term


RUN_TIME: tuple[Callable[[SpecWorld], None], ...] = (
    committed_entries_agree, durability, graph_health, one_leader_per_term, read_your_writes,
    residency, term_never_decreases)
"""The run-time checks, by name: the order in which Hypothesis calls the machine's
``@invariant`` methods, so that the world and the machine report the same invariant
when a step breaks several."""


# ---------------------------------------------------------------------- end state

def settled(world: SpecWorld, ok: bool) -> None:
    """``convergence``: every shard settled (``ok``, from ``SpecWorld.settle``)."""
    if ok:
        return
    state = {s: [(n, None if r is None else (r.role, r.term, r.end, r.commit, r.applied))
                 for n, r in world.replicas(s)] for s in world.placement}
    raise InvariantViolation("convergence", f"not settled "
                             f"{world.config.settle_ns // MS} ms after the heal: "
                             f"(role, term, end, commit, applied) {state}")


def end_state(world: SpecWorld, shard: int) -> dict[str, Any]:
    """The end-state invariants of one quiet shard, in order: ``convergence``,
    ``identical_results``, ``no_lost_writes``, ``reachability``, ``recall``; returns
    the shard's digests and recalls."""
    reps = [(n, r) for n, r in world.replicas(shard) if r is not None]
    digests = convergence(world, shard, reps)
    identical_results(world, shard, reps)
    leader = world.replica(world.leader_of(shard) or "", shard)
    no_lost_writes(world, shard, reps, leader)
    reachability(world, shard, reps)
    return {"digests": digests, "recall": recall(world, shard, reps, leader)}


def convergence(world: SpecWorld, shard: int,
                reps: Sequence[tuple[str, Replica]]) -> dict[str, str]:
    """Every replica's digest is the same (if the policy promises it); returns the
    digests (their first 16 hex digits) by node."""
    digests = {n: r.index.digest().hex()[:16] for n, r in reps}
    if world.policy.converges and len(set(digests.values())) != 1:
        raise InvariantViolation("convergence", f"shard {shard} digests differ after "
                                 f"quiescence: {digests}")
    return digests


def identical_results(world: SpecWorld, shard: int,
                      reps: Sequence[tuple[str, Replica]]) -> None:
    """Every non-empty replica returns the same top-10 for the world's queries (if the
    policy promises convergence)."""
    results = {}
    for n, r in reps:
        if len(r.index):
            results[n] = r.index.search(world.queries, k=10, L=world.config.L)[0]
    if world.policy.converges and results:
        first_n, first = next(iter(results.items()))
        for n, ids in results.items():
            if not np.array_equal(ids, first):
                raise InvariantViolation("identical_results", f"shard {shard}: {n} and "
                                         f"{first_n} return different top-10")


def no_lost_writes(world: SpecWorld, shard: int, reps: Sequence[tuple[str, Replica]],
                   leader: Replica | None) -> None:
    """Every write acknowledged at ``majority`` or ``all`` (at ``one``: in the final
    leader's term) is in effect on every replica: an insert is live unless a delete of
    it was sent, a delete is."""
    final_term = leader.term if leader is not None else -1
    client = world.client
    for a in client.acks:
        if a.shard != shard or (a.concern == "one" and a.term != final_term):
            continue  # "one" promises nothing across a failover
        for n, r in reps:
            live = a.id in r.index and not r.index.is_deleted(a.id)
            if (a.op == "insert" and not live and a.id not in client.delete_sent) or \
                    (a.op == "delete" and live):
                raise InvariantViolation(
                    "no_lost_writes", f"{a.op} of id {a.id} (shard {shard}) acknowledged "
                    f"at {a.concern} as (term {a.term}, position {a.pos}) is not in "
                    f"effect on {n}")


def reachability(world: SpecWorld, shard: int, reps: Sequence[tuple[str, Replica]]) -> None:
    """Every live node of every replica's graph is reachable from its entry point."""
    for n, r in reps:
        unreachable = r.index.unreachable_count() if len(r.index) else 0
        if unreachable:
            raise InvariantViolation("reachability", f"shard {shard} on {n}: "
                                     f"{unreachable} live nodes unreachable")


def recall(world: SpecWorld, shard: int, reps: Sequence[tuple[str, Replica]],
           leader: Replica | None) -> dict[str, float]:
    """Every replica's recall@k (k = 10, or the live count if smaller) on the world's
    queries is at least that of :func:`single_writer` minus the policy's ``recall_eps``; returns the
    recalls by node and ``single_writer``'s (nothing without a non-empty leader)."""
    if leader is None or len(leader.index) == 0:
        return {}
    single = single_writer(world, leader, world.replica_configs[shard])
    live = leader.index.ids()
    X = np.stack([world.vector(int(i)) for i in live])
    d = ((world.queries[:, None, :] - X[None, :, :]) ** 2).sum(-1)
    k = min(10, len(live))
    gt = live[np.argsort(d, axis=1, kind="stable")[:, :k]]

    def recall_of(index: VamanaIndex) -> float:
        return recall_at_k(index.search(world.queries, k=k, L=world.config.L)[0], gt, k)

    base = recall_of(single)
    out = {"single_writer": base}
    eps = world.policy.recall_eps
    for n, r in reps:
        if len(r.index) == 0:
            continue
        out[n] = recall_of(r.index)
        if out[n] < base - eps:
            raise InvariantViolation("recall", f"shard {shard} on {n}: recall@{k} "
                                     f"{out[n]:.3f} < single writer {base:.3f} - {eps}")
    return out


def single_writer(world: SpecWorld, leader: Replica, cfg: ReplicaConfig) -> VamanaIndex:
    """One index that applies the leader's surviving writes in its log order."""
    events = sorted([(p, 0, i) for i, p in leader.id_pos.items()]
                    + [(p, 1, i) for i, p in leader.deleted_pos.items()])
    index = cfg.index()
    for _, kind, i in events:
        if kind == 0 and i not in index:
            index.insert(i, world.vector(i))
        elif kind == 1 and i in index and not index.is_deleted(i):
            index.delete(i)
    return index
