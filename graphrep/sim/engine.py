"""The simulator's public face, :class:`Simulation`: integer virtual time, one heap,
faults applied between events.

Why its own loop rather than SimPy or trio: the loop is the simulator's cost per
message, and a ``heapq`` of named tuples ordered by ``(time, counter)`` keeps it
cheap (``experiments/sim_bench.py`` measures it against SimPy and a bare heap). The
insertion counter breaks ties, so two events at the same nanosecond run in the order
they were scheduled and events never compare past it. Cancelled timers are not
removed from the heap: the node's timer table holds each live timer's token, and a
popped timer whose token is not there any more is skipped.

A node is UP, PAUSED (events addressed to it are held, in order, until ``resume``) or
DOWN (messages to it are dropped; its timers are gone; its disk keeps only what was
synced). Faults are methods called between ``run_until`` calls, or scheduled at a
virtual time with :meth:`Simulation.at`.

The simulator's other parts, each a module of its own: the loop itself
(:mod:`graphrep.sim._loop`, optionally compiled; :mod:`graphrep.sim.variant` chooses
which copy runs) and the state it runs on with its slow paths
(:class:`~graphrep.sim.host.LoopHost`). :class:`Simulation` owns a host, and its fault
and inspection methods work on the host's state. The events on the heap are
:class:`~graphrep.sim._loop.Event` named tuples, read by field name. Importers of this
module also find here ``LoopHost``, the node states ``UP``/``PAUSED``/``DOWN`` and, from
:mod:`~graphrep.sim.variant`, ``LOOP_VARIANT``, ``PURE_ENV`` and ``source_digest``.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from heapq import heapify
from operator import attrgetter
from typing import Any, NamedTuple

from graphrep.errors import InvalidArgument, InvalidSchedule
from graphrep.sansio import Process, ProcessFactory, SetTimer
from graphrep.sim.host import LoopHost
from graphrep.sim.network import Network, NetworkConfig
from graphrep.sim.rng import RandomStreams
from graphrep.sim.trace import Trace
from graphrep.sim.variant import (
    DELIVER,
    DOWN,
    LOOP_VARIANT,
    PAUSED,
    PURE_ENV,
    START,
    UP,
    Event,
    Node,
    loop,
    source_digest,
)

__all__ = ["DOWN", "LOOP_VARIANT", "PAUSED", "PURE_ENV", "UP", "InFlight", "LoopHost",
           "SimConfig", "Simulation", "source_digest"]

_queue_delay = Network.queue_delay


class InFlight(NamedTuple):
    """One message on its way (see :meth:`Simulation.messages_in_flight`)."""

    key: int
    """Names the message for ``drop_message``/``delay_message``/``duplicate_message``."""
    deliver_at: int
    src: str
    dst: str
    size: int
    payload: Any


@dataclass(frozen=True)
class SimConfig:
    """Everything besides the seed that decides a run (nodes are added explicitly).

    ``sample_ns`` > 0 records, every ``sample_ns`` of virtual time, the messages in
    flight and the running totals of events, deliveries and drops (see
    :meth:`Simulation.samples`). A sample at time T sees every event before T and none
    at T. Sampling adds no events, so it changes nothing in the run.
    """

    network: NetworkConfig = field(default_factory=NetworkConfig)
    trace: bool = True
    sample_ns: int = 0
    cpu_ns_per_distance: int = 0
    """Virtual CPU time a ``Work`` effect's distance computation costs (0: free)."""
    cpu_ns_per_entry: int = 0
    """Virtual CPU time a ``Work`` effect's applied log entry costs (0: free)."""
    trace_digest_only: Callable[[Any], bool] | None = None
    """Payloads for which this is true are traced as their digest alone (see
    :class:`~graphrep.sim.trace.Trace`): for large messages nothing reads back from the
    trace, so that the trace does not keep them all alive. The hash is the same."""

    def __post_init__(self) -> None:
        for name in ("sample_ns", "cpu_ns_per_distance", "cpu_ns_per_entry"):
            value = getattr(self, name)
            if type(value) is not int or value < 0:
                raise InvalidArgument(f"{name} must be an int >= 0, got {value!r}")


class Simulation:
    """A deterministic run: ``Simulation(seed, config)``, ``add_node``, then ``run_until``."""

    def __init__(self, seed: int, config: SimConfig | None = None) -> None:
        self.seed = seed
        self.config = config if config is not None else SimConfig()
        self.streams = RandomStreams(seed)
        self.network = Network(self.config.network, self.streams)
        self.trace = Trace(self.config.trace_digest_only)
        self._host = LoopHost(self)
        self.metrics = self._host.metrics
        """``(time_ns, node, name, value)`` of every ``Metric`` effect, in order."""
        self.logs = self._host.logs
        """``(time_ns, node, text)`` of every ``Log`` effect, in order."""

    # the run's clock and counters, read-only: its LoopHost's
    now = property(attrgetter("_host.now"), doc="The virtual time in ns.")
    events_processed = property(attrgetter("_host.events"), doc="Events run so far "
                                "(deliveries, timers, starts, scheduled calls).")
    delivered = property(attrgetter("_host.delivered"), doc="Messages delivered so far.")
    dropped = property(attrgetter("_host.dropped"), doc="Messages lost so far (loss, "
                       "partitions, down nodes, a nemesis).")
    in_flight = property(attrgetter("_host.in_flight"), doc="Messages sent and not yet "
                         "delivered or dropped (held ones included).")
    pending_oneshot_timers = property(attrgetter("_host.oneshot"), doc="One-shot timers "
                                      "set and not yet fired or cancelled.")

    # ------------------------------------------------------------------ nodes

    def add_node(self, name: str, factory: ProcessFactory, region: str = "local") -> None:
        """Add a node; its process is built from an empty disk and started at ``now``."""
        if not isinstance(name, str) or not name:
            raise InvalidArgument(f"node name must be a non-empty str, got {name!r}")
        if name in self._host.nodes:
            raise InvalidArgument(f"node {name!r} already exists")
        if not isinstance(region, str) or not region:
            raise InvalidArgument(f"region must be a non-empty str, got {region!r}")
        node = Node(name, factory, region)
        self._host.nodes[name] = node
        self._boot(node, "start")

    @property
    def nodes(self) -> list[str]:
        """Node names in the order they were added."""
        return list(self._host.nodes)

    def region(self, name: str) -> str:
        """The region a node was added in."""
        return self._node(name, "region").region

    def process(self, name: str) -> Process | None:
        """The live process object of a node (None while down); for checkers and tests."""
        return self._node(name, "process").process

    def state(self, name: str) -> str:
        """``"up"``, ``"paused"`` or ``"down"``."""
        return self._node(name, "state").state

    def disk(self, name: str) -> dict[Hashable, Any]:
        """A copy of a node's synced disk."""
        return dict(self._node(name, "disk").disk)

    def rng(self, component: str):
        """The random stream of a component (a workload, a nemesis) by name."""
        return self.streams.generator(component)

    # ------------------------------------------------------------------ running

    def run_until(self, target: int | Callable[[Simulation], bool],
                  max_events: int | None = None) -> bool:
        """Run to virtual time ``target`` (inclusive), or until ``target(self)`` is true.

        Returns whether the target was reached: False if ``max_events`` ran out first,
        or (for a predicate) if no event was left to run.
        """
        if callable(target):
            if target(self):
                return True
            return self._run(None, max_events, target)
        if not isinstance(target, int) or target < self.now:
            raise InvalidSchedule(f"cannot run until {target!r}: not an int >= now",
                                  event="run_until", time_ns=self.now, seed=self.seed)
        return self._run(target, max_events, None)

    def quiesce(self, max_time: int, max_events: int | None = None) -> bool:
        """Run until no message is in flight and no one-shot timer is pending.

        Periodic timers keep firing and do not count; a node whose ``on_start`` has not run
        yet counts; calls scheduled with :meth:`at` do not. Stops at virtual time
        ``max_time`` (absolute; the clock is then at ``max_time``) or after ``max_events``;
        returns whether it got quiet.
        """
        host = self._host

        def quiet(sim: Simulation) -> bool:
            return host.in_flight == 0 and host.oneshot == 0 and host.starts == 0

        if quiet(self):
            return True
        self._run(max_time, max_events, quiet)
        return quiet(self)

    def at(self, time_ns: int, action: Callable[[Simulation], None]) -> None:
        """Call ``action(self)`` at virtual time ``time_ns`` (a fault, a workload step)."""
        if not isinstance(time_ns, int) or time_ns < self.now:
            raise InvalidSchedule(f"cannot schedule at {time_ns!r}: not an int >= now",
                                  event="at", time_ns=self.now, seed=self.seed)
        self._host.push(Event.call(time_ns, next(self._host.counter), action))

    def _run(self, until: int | None, max_events: int | None,
             pred: Callable[[Simulation], bool] | None) -> bool:
        """The event loop: :func:`graphrep.sim._loop.run`, compiled if it was built."""
        return loop.run(self._host, until, max_events, pred)

    def samples(self) -> dict[str, list[int]]:
        """Columns sampled every ``SimConfig.sample_ns``: ``time_ns``, ``in_flight`` and
        running totals of ``events``, ``delivered`` and ``dropped`` (empty if off)."""
        return {k: list(v) for k, v in self._host.samples.items()}

    def metric_columns(self) -> dict[str, list[Any]]:
        """The processes' ``Metric`` records as columns: time_ns, node, name, value."""
        return {"time_ns": [m[0] for m in self.metrics], "node": [m[1] for m in self.metrics],
                "name": [m[2] for m in self.metrics], "value": [m[3] for m in self.metrics]}

    # ------------------------------------------------------------------ faults

    def _node(self, name: str, what: str) -> Node:
        node = self._host.nodes.get(name)
        if node is None:
            raise InvalidSchedule(f"unknown node {name!r}", event=what, time_ns=self.now,
                                  seed=self.seed)
        return node

    def _boot(self, node: Node, kind: str) -> None:
        host = self._host
        node.incarnation += 1
        start = Event.start(host.now, next(host.counter), node, node.incarnation)
        try:
            node.process = node.factory(node.name, dict(node.disk))
            node.on_message = node.process.on_message
        except Exception as exc:
            raise host.fail(f"factory raised {exc!r}", start) from exc
        node.set_state(UP)
        if host.record:
            host.record((host.now, kind, node.name, None, None, node.incarnation))
        host.push(start)
        host.starts += 1

    def crash(self, name: str) -> None:
        """Lose the node's volatile state, timers, held events and unsynced writes.

        Crashing a node that is already down is a no-op, so generated schedules need no
        preconditions.
        """
        node = self._node(name, "crash")
        if node.state is DOWN:
            return
        host = self._host
        for ev in node.held:
            if ev.kind == DELIVER:
                host.in_flight -= 1
                host.drop(host.now, ev.src, name, ev.payload, "down")
            elif ev.kind == START:
                host.starts -= 1
        node.held.clear()
        host.oneshot -= sum(1 for _, periodic in node.timers.values() if not periodic)
        node.timers.clear()
        node.unsynced.clear()
        node.busy_until = 0
        if node.deferred:  # received, not handled yet: lost with the process
            waiting, kept = [], []
            for ev in host.heap:
                (waiting if ev.kind == DELIVER and ev.seq in node.deferred
                 else kept).append(ev)
            host.heap[:] = kept
            heapify(host.heap)
            for ev in sorted(waiting, key=lambda e: (e.at, e.seq)):
                host.in_flight -= 1
                host.drop(host.now, ev.src, name, ev.payload, "down")
            node.deferred.clear()
        node.process = None
        node.on_message = None
        node.set_state(DOWN)
        node.incarnation += 1
        self._record("crash", name)

    def restart(self, name: str) -> None:
        """Rebuild a down node's process from its synced disk and start it (no-op if not down)."""
        node = self._node(name, "restart")
        if node.state is not DOWN:
            return
        self._boot(node, "restart")

    def pause(self, name: str) -> None:
        """Stop running the node's callbacks; its messages and timers wait, in order."""
        node = self._node(name, "pause")
        if node.state is UP:
            node.set_state(PAUSED)
            self._record("pause", name)

    def resume(self, name: str) -> None:
        """Run what a paused node missed, in the original order, starting now."""
        node = self._node(name, "resume")
        if node.state is not PAUSED:
            return
        node.set_state(UP)
        self._record("resume", name)
        for ev in node.held:  # a held timer keeps its token: the timer table still names it
            self._host.requeue(ev, self.now)
        node.held.clear()

    def partition(self, groups: list[list[str]]) -> None:
        """Cut every link between nodes of different groups, both ways.

        Nodes in no group keep all their links. A link is checked when a message
        arrives, so messages already in flight on a cut link are dropped, and a message
        sent during a partition that heals before it lands gets through (as a packet
        would). Blocks add up until :meth:`heal`.
        """
        names = [[self._node(n, "partition").name for n in g] for g in groups]
        blocked = self.network.blocked
        for i, a in enumerate(names):
            for j, b in enumerate(names):
                if i != j:
                    for x in a:
                        for y in b:
                            blocked.add((x, y))
        self._record("partition", detail=["groups", [sorted(g) for g in names]])

    def partition_one_way(self, sources: list[str], destinations: list[str]) -> None:
        """Drop messages from any of ``sources`` to any of ``destinations`` (not back)."""
        srcs = [self._node(n, "partition").name for n in sources]
        dsts = [self._node(n, "partition").name for n in destinations]
        for x in srcs:
            for y in dsts:
                if x != y:
                    self.network.blocked.add((x, y))
        self._record("partition", detail=["one-way", sorted(srcs), sorted(dsts)])

    def partition_regions(self, groups: list[list[str]]) -> None:
        """:meth:`partition` with groups of regions: each node goes with its region's group."""
        by_region = {r: i for i, g in enumerate(groups) for r in g}
        node_groups: list[list[str]] = [[] for _ in groups]
        for node in self._host.nodes.values():
            i = by_region.get(node.region)
            if i is not None:
                node_groups[i].append(node.name)
        self.partition(node_groups)

    def heal(self) -> None:
        """Remove every partition."""
        self.network.blocked.clear()
        self._record("heal")

    def hold(self, src: str, dst: str) -> None:
        """Hold the link ``src -> dst``: messages arriving on it wait until :meth:`release`."""
        self._node(src, "hold")
        self._node(dst, "hold")
        self.network.held.setdefault((src, dst), [])
        self._record("hold", src, dst)

    def release(self, src: str, dst: str) -> None:
        """Deliver what a held link kept, in arrival order, from now on (no-op if not held)."""
        self._node(src, "release")
        self._node(dst, "release")
        stash = self.network.held.pop((src, dst), None)
        if stash is None:
            return
        self._record("release", src, dst, detail=len(stash))
        for ev in stash:
            self._host.requeue(ev, self.now)

    def _record(self, kind: str, src: str | None = None, dst: str | None = None,
                payload: Any = None, detail: Any = None) -> None:
        """Trace a fault or another change made from outside the processes, at ``now``."""
        if self._host.record:
            self._host.record((self.now, kind, src, dst, payload, detail))

    # ------------------------------------------------------------------ one message

    def messages_in_flight(self) -> list[InFlight]:
        """The messages on their way (not those held by a paused node or a held link),
        in delivery order: for a nemesis that picks one message to drop, duplicate or
        delay (a stateful test lets Hypothesis pick which). O(messages) per call."""
        found = [InFlight(ev.seq, ev.at, ev.src, ev.target.name, ev.size, ev.payload)
                 for ev in self._host.heap if ev.kind == DELIVER]
        found.sort(key=lambda m: (m.deliver_at, m.key))
        return found

    def _in_flight_message(self, key: int, what: str, take: bool) -> Event:
        """The DELIVER event of in-flight message ``key`` (taken off the heap if
        ``take``); an error naming ``what`` if there is none."""
        heap = self._host.heap
        for i, ev in enumerate(heap):
            if ev.kind == DELIVER and ev.seq == key:
                if take:
                    last = heap.pop()
                    if i < len(heap):
                        heap[i] = last
                        heapify(heap)
                return ev
        raise InvalidSchedule(f"no message with key {key!r} is in flight (it was delivered "
                              "or dropped already); pick one from messages_in_flight()",
                              event=what, time_ns=self.now, seed=self.seed)

    def send(self, src: str, dst: str, payload: Any, size: int | None = None) -> None:
        """Send a message from ``src`` now, as if its process had (a driver's request
        from a client node, say): it takes the network's latency, faults and trace like
        any other. ``size`` defaults to ``len(payload)``."""
        node = self._node(src, "send")
        self._node(dst, "send")
        if size is None:
            size = len(payload)
        if not isinstance(size, int) or size < 0:
            raise InvalidArgument(f"size must be an int >= 0, got {size!r}")
        if node.state is not UP:
            raise InvalidSchedule(f"node {src!r} is {node.state}: it cannot send",
                                  event="send", time_ns=self.now, seed=self.seed)
        host = self._host
        route = node.links.get(dst) or host.route(
            node, (dst, payload, size), Event.call(self.now, 0, self.send))
        delay = next(route.delays)
        route.messages += 1
        route.bytes += size
        if route.bps:
            delay += _queue_delay(route.link, self.now, size)
        self._record("send", src, dst, payload, size)
        if self.network.faulty:
            host.in_flight += host.faults(node, route, payload, size, delay)
            return
        host.push(Event(self.now + delay, next(host.counter), DELIVER, route.target, src,
                        payload, size))
        host.in_flight += 1

    def set_timer(self, name: str, timer: Hashable, delay_ns: int = 0) -> None:
        """Set a one-shot timer on a node from outside, as if its process had returned
        ``SetTimer(timer, delay_ns)`` (an operator's command, such as "run anti-entropy
        now"). The node must be up or paused."""
        node = self._node(name, "set_timer")
        if node.state is DOWN:
            raise InvalidSchedule(f"node {name!r} is down: it has no timers",
                                  event="set_timer", time_ns=self.now, seed=self.seed)
        if not isinstance(delay_ns, int) or delay_ns < 0:
            raise InvalidArgument(f"delay must be an int >= 0, got {delay_ns!r}")
        try:
            hash(timer)
        except TypeError:
            raise InvalidArgument(f"a timer name must be hashable, got {timer!r}") from None
        self._host.apply(node, SetTimer(timer, delay_ns),
                         Event.call(self.now, 0, self.set_timer))

    def drop_message(self, key: int) -> None:
        """Lose one in-flight message (``key`` from :meth:`messages_in_flight`)."""
        ev = self._in_flight_message(key, "drop_message", take=True)
        self._host.in_flight -= 1
        self._host.drop(self.now, ev.src, ev.target.name, ev.payload, "nemesis")

    def delay_message(self, key: int, delay_ns: int) -> None:
        """Deliver one in-flight message ``delay_ns`` later than it would have arrived."""
        self._again(key, delay_ns, "delay_message", "delay", take=True)

    def duplicate_message(self, key: int, delay_ns: int = 0) -> None:
        """Deliver one in-flight message twice: again ``delay_ns`` after its arrival."""
        self._again(key, delay_ns, "duplicate_message", "duplicate", take=False)
        self._host.in_flight += 1

    def _again(self, key: int, delay_ns: int, what: str, kind: str, take: bool) -> None:
        """Schedule in-flight message ``key`` again, ``delay_ns`` after its arrival time,
        taking the original off the heap if ``take`` (a delay) or not (a duplicate)."""
        if not isinstance(delay_ns, int) or delay_ns < 0:
            raise InvalidSchedule(f"delay must be an int >= 0, got {delay_ns!r}",
                                  event=what, time_ns=self.now, seed=self.seed)
        ev = self._in_flight_message(key, what, take)
        self._host.requeue(ev, ev.at + delay_ns)
        self._record(kind, ev.src, ev.target.name, ev.payload, delay_ns)

    def set_clock(self, name: str, offset_ns: int = 0, drift_ppm: int = 0) -> None:
        """Skew a node's clock: it reads ``now + offset_ns + now * drift_ppm / 1e6``.

        Callbacks receive that reading and timer delays are measured on it, so a node
        whose clock runs fast fires its timers early in global time. The trace keeps
        global time.
        """
        node = self._node(name, "set_clock")
        if not isinstance(offset_ns, int) or not isinstance(drift_ppm, int) \
                or drift_ppm <= -1_000_000:
            raise InvalidSchedule(f"bad clock for {name!r}: offset {offset_ns!r}, drift "
                                  f"{drift_ppm!r} ppm (ints, drift > -1e6)",
                                  event="set_clock", time_ns=self.now, seed=self.seed)
        node.offset_ns = offset_ns
        node.drift_ppm = drift_ppm
        node.skewed = bool(offset_ns or drift_ppm)
        node.set_state(node.state)
        self._record("clock", name, detail=[offset_ns, drift_ppm])

    def link_stats(self) -> list[dict[str, Any]]:
        """Messages and bytes sent per directed link (sorted), as columns for experiments."""
        rows = [{"src": node.name, "dst": dst, "messages": route.messages,
                 "bytes": route.bytes}
                for node in self._host.nodes.values() for dst, route in node.links.items()]
        return sorted(rows, key=lambda r: (r["src"], r["dst"]))

    def set_network_faults(self, *, loss: float | None = None, duplicate: float | None = None,
                           reorder: float | None = None) -> None:
        """Change loss/duplication/reordering probabilities from now on (None: keep)."""
        try:
            self.network.set_faults(loss=loss, duplicate=duplicate, reorder=reorder)
        except InvalidArgument as exc:
            raise InvalidSchedule(str(exc), event="set_network_faults", time_ns=self.now,
                                  seed=self.seed) from None
        net = self.network
        self._record("network", detail=[net.loss, net.duplicate, net.reorder])
