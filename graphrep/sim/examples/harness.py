"""What the example protocols share: a client workload, named nemeses, the run loop, and
the skeleton of a gossiping server (:class:`GossipNode`) with its runner
(:class:`Example`), so that an example module holds only its protocol, plan and checker.

A run has four phases, all on the virtual clock:

1. **workload** ``[0, duration_ns)``: the client process ``c0`` invokes operations at
   the times of a plan drawn from ``sim.rng("workload")``; each gets a timeout, and an
   operation without a reply by then is *indeterminate* (it may or may not have taken
   effect; the client never retries it, since a retried add would count twice);
2. **faults**: a schedule (drawn from ``sim.rng("nemesis")`` by name, or given) runs
   alongside the workload;
3. **repair** at ``max(duration_ns, last fault + 1)``: heal, loss, duplication and
   reordering back to 0, held links released, skewed clocks reset, every node resumed
   and restarted. The repair is itself a list of
   :class:`~graphrep.sim.nemesis.Fault` values, so a plot can draw it like any fault;
4. **settle and final reads**: after ``settle_ns`` the client reads every node, retrying
   until it gets an answer (nothing is faulty any more, so it does), and the run
   quiesces.

The checker then sees only the client's history, as in Maelstrom: what was invoked,
what was acknowledged when, and what each read returned. It never looks inside a node.

Faults may name only the server nodes: a crashed client would lose the history the
checker needs. The client keeps all its links in a partition (it is in no group), but
loss and duplication reach its messages too.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from graphrep.errors import InvalidArgument
from graphrep.sansio import MS, BaseProcess, CancelTimer, Effects, Process, Send, SetTimer
from graphrep.sim.engine import SimConfig, Simulation
from graphrep.sim.nemesis import Fault, apply_schedule, draw_schedule, validate_schedule
from graphrep.sim.network import LatencyModel, NetworkConfig

__all__ = [
    "CLIENT",
    "GOSSIP_NS",
    "NEMESES",
    "Client",
    "Example",
    "ExampleRun",
    "GossipNode",
    "Op",
    "PlannedOp",
    "body_size",
    "draw_nemesis",
    "exponential_plan",
    "fault_to_json",
    "repair_faults",
    "run_scenario",
]

CLIENT = "c0"
NEMESES: tuple[str, ...] = ("none", "partitions", "crashes", "loss", "mixed")
MAX_NODES = 50
OP_TIMEOUT_NS = 100 * MS
READ_RETRY_NS = 50 * MS
GOSSIP_NS = 20 * MS
"""How often an example server gossips with its peers, by default."""

# request field that carries an operation's argument, by operation (Maelstrom's names)
_ARG_FIELD = {"broadcast": "message", "add": "delta"}

PlannedOp = tuple[int, str, str, Any]
"""``(at_ns, f, node, arg)``: invoke operation ``f`` with ``arg`` on ``node`` at ``at_ns``."""


@dataclass
class Op:
    """One client operation and what became of it: an entry of the client's history.

    ``complete_ns`` is set when the reply arrived (the operation is *definite*); an op
    whose timeout fired first stays incomplete (*indeterminate*), even if a late reply
    shows up, as a Maelstrom client would record ``:info``.
    """

    id: int
    f: str
    node: str
    arg: Any
    invoke_ns: int
    final: bool = False
    complete_ns: int | None = None
    result: Mapping[str, Any] | None = None
    attempts: int = 1

    @property
    def ok(self) -> bool:
        """Whether the operation was acknowledged in time."""
        return self.complete_ns is not None


def body_size(body: Mapping[str, Any]) -> int:
    """A rough wire size of a message body: a header plus 8 bytes per number carried.

    Only byte counts and bandwidth use it, so rough is enough; it must be deterministic.
    """
    n = 0
    for v in body.values():
        n += 8 * len(v) if isinstance(v, tuple) else 8
    return 16 + n


class Client(BaseProcess):
    """The workload: invokes planned operations, records the history, then reads every node.

    It is a process like the nodes (its messages cross the simulated network and show up
    in the trace), so it learns time only from its callbacks. Every operation has a
    timeout; a final read is retried every ``retry_ns`` until answered.
    """

    def __init__(self, plan: Sequence[PlannedOp], nodes: Sequence[str], final_read_ns: int,
                 *, timeout_ns: int = OP_TIMEOUT_NS, retry_ns: int = READ_RETRY_NS) -> None:
        self.plan = list(plan)
        self.nodes = list(nodes)
        self.final_read_ns = final_read_ns
        self.timeout_ns = timeout_ns
        self.retry_ns = retry_ns
        self.ops: list[Op] = []
        self.pending: dict[int, Op] = {}
        self.next_op = 0
        self.final_started = False

    @property
    def done(self) -> bool:
        """Whether every final read has been answered."""
        return self.final_started and all(op.ok for op in self.ops if op.final)

    def on_start(self, now: int) -> Effects:
        effects: list = [SetTimer("final", max(0, self.final_read_ns - now))]
        if self.plan:
            effects.append(SetTimer("next", max(0, self.plan[0][0] - now)))
        return effects

    def _request(self, op: Op) -> list:
        body: dict[str, Any] = {"type": op.f, "msg_id": op.id}
        arg_field = _ARG_FIELD.get(op.f)
        if arg_field is not None:
            body[arg_field] = op.arg
        delay = self.retry_ns if op.final else self.timeout_ns
        return [Send(op.node, body, body_size(body)), SetTimer(("timeout", op.id), delay)]

    def _invoke(self, now: int, f: str, node: str, arg: Any, final: bool = False) -> list:
        op = Op(len(self.ops), f, node, arg, now, final=final)
        self.ops.append(op)
        self.pending[op.id] = op
        return self._request(op)

    def on_timer(self, now: int, name: Hashable) -> Effects:
        effects: list = []
        if name == "next":
            while self.next_op < len(self.plan) and self.plan[self.next_op][0] <= now:
                _, f, node, arg = self.plan[self.next_op]
                self.next_op += 1
                effects += self._invoke(now, f, node, arg)
            if self.next_op < len(self.plan):
                effects.append(SetTimer("next", self.plan[self.next_op][0] - now))
        elif name == "final":
            self.final_started = True
            for node in self.nodes:
                effects += self._invoke(now, "read", node, None, final=True)
        elif isinstance(name, tuple) and name[0] == "timeout":
            op = self.pending.get(name[1])
            if op is None:
                return None
            if op.final:
                op.attempts += 1
                effects += self._request(op)
            else:
                del self.pending[op.id]  # indeterminate from now on
        return effects

    def on_message(self, now: int, src: str, payload: Any, size: int) -> Effects:
        op = self.pending.pop(payload.get("in_reply_to"), None)
        if op is None:
            return None  # a late, duplicated or foreign reply
        op.complete_ns = now
        op.result = payload
        return [CancelTimer(("timeout", op.id))]


# ---------------------------------------------------------------------------- nemeses


def _periods(rng: np.random.Generator, kind: str, duration_ns: int, rate: float,
             mean_ns: int, p_low: float, p_high: float) -> list[Fault]:
    """Non-overlapping periods of loss (or duplication): probability ``p`` on, then 0."""
    out: list[Fault] = []
    gap = 1e9 / rate
    t = int(rng.exponential(gap))
    while t < duration_ns:
        end = t + int(rng.exponential(mean_ns)) + 1
        p = round(float(rng.uniform(p_low, p_high)), 3)
        out.append(Fault(t, kind, p=p))  # type: ignore[arg-type]
        out.append(Fault(end, kind, p=0.0))  # type: ignore[arg-type]
        t = end + int(rng.exponential(gap))
    return out


def draw_nemesis(name: str, rng: np.random.Generator, nodes: Sequence[str],
                 duration_ns: int) -> list[Fault]:
    """The fault schedule of the nemesis ``name`` over ``[0, duration_ns)``.

    ``partitions``, ``crashes`` and the node faults of ``mixed`` come from
    :func:`~graphrep.sim.nemesis.draw_schedule` (every fault undone after an exponential
    time, mean 100 ms); ``loss`` (and ``mixed``) add non-overlapping periods of message
    loss (and, in ``mixed``, of duplication and reordering), each ended by a
    ``Fault(kind="loss", p=0.0)`` (and so on). Rates are per virtual second. Pass a stream
    of its own (``sim.rng("nemesis")``).
    """
    if name not in NEMESES:
        raise InvalidArgument(f"unknown nemesis {name!r}; choose one of {', '.join(NEMESES)}")
    mean = 100 * MS
    if name == "none":
        return []
    if name == "partitions":
        return draw_schedule(rng, nodes, duration_ns, partition_rate=5.0, mean_fault_ns=mean)
    if name == "crashes":
        return draw_schedule(rng, nodes, duration_ns, crash_rate=5.0, mean_fault_ns=mean)
    if name == "loss":
        return _periods(rng, "loss", duration_ns, 5.0, mean, 0.1, 0.5)
    out = draw_schedule(rng, nodes, duration_ns, crash_rate=2.0, pause_rate=2.0,
                        partition_rate=2.0, mean_fault_ns=mean)
    out += _periods(rng, "loss", duration_ns, 2.0, mean, 0.1, 0.5)
    out += _periods(rng, "duplicate", duration_ns, 2.0, mean, 0.1, 0.3)
    out += _periods(rng, "reorder", duration_ns, 2.0, mean, 0.1, 0.5)
    out.sort(key=lambda f: f.time_ns)  # stable: equal times keep draw order
    return out


def repair_faults(time_ns: int, nodes: Sequence[str],
                  schedule: Sequence[Fault] = ()) -> list[Fault]:
    """Undo every fault at ``time_ns``: heal; no loss, duplication or reordering; release
    the links and reset the clocks ``schedule`` held or skewed; resume and restart all.

    Only links and clocks the schedule names are listed, so the repair stays a few
    faults long however many nodes there are.
    """
    out = [Fault(time_ns, "heal"), Fault(time_ns, "loss", p=0.0),
           Fault(time_ns, "duplicate", p=0.0), Fault(time_ns, "reorder", p=0.0)]
    held = sorted({(f.node, f.peer) for f in schedule if f.kind == "hold"})
    out += [Fault(time_ns, "release", node=a, peer=b) for a, b in held]
    skewed = sorted({f.node for f in schedule if f.kind == "clock"})
    out += [Fault(time_ns, "clock", node=n) for n in skewed]
    out += [Fault(time_ns, "resume", node=n) for n in nodes]
    out += [Fault(time_ns, "restart", node=n) for n in nodes]
    return out


def fault_to_json(f: Fault) -> dict[str, Any]:
    """A fault as a JSON-able dict holding only the fields its kind uses."""
    row: dict[str, Any] = {"time_ns": f.time_ns, "kind": f.kind}
    if f.kind in ("crash", "restart", "pause", "resume"):
        row["node"] = f.node
    elif f.kind in ("hold", "release"):
        row["node"], row["peer"] = f.node, f.peer
    elif f.kind == "clock":
        row["node"], row["offset_ns"], row["drift_ppm"] = f.node, f.offset_ns, f.drift_ppm
    elif f.kind in ("partition", "partition_one_way", "partition_regions"):
        row["groups"] = [list(g) for g in f.groups]
    elif f.kind in ("loss", "duplicate", "reorder"):
        row["p"] = f.p
    return row


# ---------------------------------------------------------------------------- runs


@dataclass
class ExampleRun:
    """A finished run: the simulation (trace included), its schedules and its summary."""

    example: str
    sim: Simulation
    nodes: list[str]
    schedule: list[Fault]
    repair: list[Fault]
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def all_nodes(self) -> list[str]:
        """Server nodes, then the client: the lifelines of a message chart."""
        return [*self.nodes, CLIENT]

    @property
    def client(self) -> Client:
        proc = self.sim.process(CLIENT)
        assert isinstance(proc, Client)
        return proc


def _check_int(name: str, value: Any, low: int, high: int | None = None) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < low or (
            high is not None and value > high):
        bound = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise InvalidArgument(f"{name} must be an int {bound}, got {value!r}")
    return value


def run_scenario(*, example: str,
                 make_factory: Callable[[list[str]], Callable[[str, Mapping], Process]],
                 make_plan: Callable[[np.random.Generator, list[str], int], list[PlannedOp]],
                 check: Callable[[Sequence[Op], Sequence[str]], dict[str, Any]],
                 nodes: int, seed: int, nemesis: str, schedule: Sequence[Fault] | None,
                 bug: str | None, duration_ns: int, settle_ns: int, trace: bool = True,
                 latency: LatencyModel | None = None) -> ExampleRun:
    """Run one scenario of an example (see the module docstring for the phases).

    ``make_factory(names)`` builds the server nodes' process factory, ``make_plan(rng,
    names, duration_ns)`` the client's plan, and ``check(ops, names)`` the verdict.
    ``trace=False`` records no trace (``trace_hash`` is then None): hashing the trace
    costs more than the run itself, and a search over schedules needs only the verdict.
    The run itself is the same either way.
    """
    _check_int("nodes", nodes, 2, MAX_NODES)
    _check_int("seed", seed, 0)
    _check_int("duration_ns", duration_ns, 1)
    _check_int("settle_ns", settle_ns, 1)
    if not isinstance(nemesis, str) or nemesis not in NEMESES:
        raise InvalidArgument(f"unknown nemesis {nemesis!r}; choose one of {', '.join(NEMESES)}")
    if schedule is not None and nemesis != "none":
        raise InvalidArgument(f"pass either a schedule or a nemesis, not both (nemesis "
                              f"{nemesis!r} with a schedule of {len(schedule)} faults)")
    names = [f"n{i}" for i in range(nodes)]
    net = NetworkConfig(default=latency or LatencyModel.exponential(2 * MS, jitter_ns=MS))
    sim = Simulation(seed, SimConfig(network=net, trace=trace))
    if schedule is None:
        faults = draw_nemesis(nemesis, sim.rng("nemesis"), names, duration_ns)
        label = nemesis
    else:
        faults = list(schedule)
        validate_schedule(faults, names, seed)  # server nodes only: never the client
        label = "custom"
    last = max((f.time_ns for f in faults), default=-1)
    repair_at = max(duration_ns, last + 1)
    final_at = repair_at + settle_ns
    repair = repair_faults(repair_at, names, faults)
    plan = make_plan(sim.rng("workload"), names, duration_ns)

    factory = make_factory(names)
    for n in names:
        sim.add_node(n, factory)
    sim.add_node(CLIENT, lambda name, disk: Client(plan, names, final_at))
    apply_schedule(sim, [*sorted(faults, key=lambda f: f.time_ns), *repair])
    # quiet = every final read answered and nothing in flight. Nothing is faulty any
    # more, so a read is answered within milliseconds; the bound (ten read retries) only
    # stops a protocol that never goes quiet (merge_sum gossips forever).
    sim.quiesce(max_time=final_at + 10 * READ_RETRY_NS)

    run = ExampleRun(example, sim, names, faults, repair)
    verdict = check(run.client.ops, names)
    run.summary = {
        "example": example,
        "bug": bug,
        "seed": seed,
        "nodes": nodes,
        "nemesis": label,
        "faults": len(faults),
        "schedule": [fault_to_json(f) for f in faults],
        "repair_ns": repair_at,
        "final_read_ns": final_at,
        "virtual_duration_ns": sim.now,
        "events": sim.events_processed,
        "sends": sum(row["messages"] for row in sim.link_stats()),
        "deliveries": sim.delivered,
        "drops": sim.dropped,
        "valid": bool(verdict["valid"]),
        "checker": verdict,
        "trace_hash": sim.trace.hash() if trace else None,
    }
    return run


def exponential_plan(rng: np.random.Generator, names: Sequence[str], duration_ns: int,
                     draw_op: Callable[[np.random.Generator, int], tuple[str, Any]],
                     mean_gap_ns: int = 10 * MS) -> list[PlannedOp]:
    """Poisson arrivals of mean gap ``mean_gap_ns`` on random nodes over ``[0, duration)``.

    ``draw_op(rng, i)`` gives the ``i``-th operation's ``(f, arg)``.
    """
    plan: list[PlannedOp] = []
    t = 0
    while True:
        t += int(rng.exponential(mean_gap_ns)) + 1
        if t >= duration_ns:
            return plan
        node = names[int(rng.integers(len(names)))]
        f, arg = draw_op(rng, len(plan))
        plan.append((t, f, node, arg))


# ---------------------------------------------------------------------------- examples


class GossipNode(BaseProcess):
    """What every example server shares: its name, its peers (every other server), the
    planted bug it runs (one of the class's ``BUGS``, or None for the correct protocol)
    and a periodic ``gossip`` timer every ``gossip_ns``. A subclass names its example
    (``EXAMPLE``) and bugs, builds its state from the synced disk (:meth:`restore`), and
    handles messages and the timer."""

    EXAMPLE: ClassVar[str] = ""
    BUGS: ClassVar[tuple[str, ...]] = ()

    def __init__(self, name: str, disk: Mapping[Hashable, Any], peers: Sequence[str], *,
                 bug: str | None = None, gossip_ns: int = GOSSIP_NS) -> None:
        self.check_bug(bug)
        self.name = name
        self.bug = bug
        self.gossip_ns = gossip_ns
        self.peers = [p for p in peers if p != name]
        self.restore(disk)

    def restore(self, disk: Mapping[Hashable, Any]) -> None:
        """Build the node's state from ``disk`` (what it synced before a crash; ``{}``
        the first time): durable state from it, volatile state anew."""

    @classmethod
    def check_bug(cls, bug: str | None) -> None:
        """Refuse a bug this example does not plant."""
        if bug is not None and bug not in cls.BUGS:
            raise InvalidArgument(f"unknown {cls.EXAMPLE} bug {bug!r}; choose one of "
                                  f"{', '.join(cls.BUGS)} (or None for the correct protocol)")

    @classmethod
    def factory(cls, nodes: Sequence[str], *, bug: str | None = None,
                gossip_ns: int = GOSSIP_NS) -> Callable[[str, Mapping], GossipNode]:
        """A factory for ``Simulation.add_node``: every node gossips with all the others."""
        cls.check_bug(bug)
        peers = list(nodes)

        def build(name: str, disk: Mapping[Hashable, Any]) -> GossipNode:
            return cls(name, disk, peers, bug=bug, gossip_ns=gossip_ns)

        return build

    def on_start(self, now: int) -> Effects:
        return [SetTimer("gossip", self.gossip_ns, periodic=True)]


@dataclass(frozen=True)
class Example:
    """An example protocol: its server class, the client's plan and the checker, and the
    runs :func:`run_scenario` makes of them."""

    node: type[GossipNode]
    plan: Callable[[np.random.Generator, list[str], int], list[PlannedOp]]
    check: Callable[[Sequence[Op], Sequence[str]], dict[str, Any]]

    @property
    def name(self) -> str:
        return self.node.EXAMPLE

    def simulate(self, nodes: int = 5, seed: int = 7, *, nemesis: str = "none",
                 schedule: Sequence[Fault] | None = None, bug: str | None = None,
                 duration_ns: int = 1_000 * MS, settle_ns: int = 500 * MS,
                 gossip_ns: int = GOSSIP_NS, trace: bool = True) -> ExampleRun:
        """Run one scenario and keep the simulation (for plots and inspection).

        ``schedule`` (faults on nodes ``n0..``) replaces the named ``nemesis``; give one
        or the other. Faults are all undone before the settle phase (see this module's
        docstring for the phases). ``trace=False`` skips the trace (and its hash) for
        speed.
        """
        self.node.check_bug(bug)
        return run_scenario(
            example=self.name,
            make_factory=lambda names: self.node.factory(names, bug=bug, gossip_ns=gossip_ns),
            make_plan=self.plan, check=self.check, nodes=nodes, seed=seed, nemesis=nemesis,
            schedule=schedule, bug=bug, duration_ns=duration_ns, settle_ns=settle_ns,
            trace=trace)

    def run(self, nodes: int = 5, seed: int = 7, *, nemesis: str = "none",
            schedule: Sequence[Fault] | None = None, bug: str | None = None,
            duration_ns: int = 1_000 * MS, settle_ns: int = 500 * MS,
            gossip_ns: int = GOSSIP_NS, trace: bool = True) -> dict[str, Any]:
        """Run one scenario; its JSON-able summary (``valid``, ``checker``, hash...)."""
        return self.simulate(nodes, seed, nemesis=nemesis, schedule=schedule, bug=bug,
                             duration_ns=duration_ns, settle_ns=settle_ns,
                             gossip_ns=gossip_ns, trace=trace).summary
