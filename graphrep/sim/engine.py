"""The event loop: integer virtual time, one heap, faults applied between events.

Why its own loop rather than SimPy or trio: the loop is the simulator's cost per
message, and a plain ``heapq`` of tuples ``(time, counter, kind, ...)`` is the cheapest
thing Python offers (see ANCHORS.md). The insertion counter breaks ties, so two events
at the same nanosecond run in the order they were scheduled and tuples never compare
past their second field. Cancelled timers are not removed from the heap: the node's
timer table holds each live timer's token, and a popped timer whose token is not there
any more is skipped.

A node is UP, PAUSED (events addressed to it are held, in order, until ``resume``) or
DOWN (messages to it are dropped; its timers are gone; its disk keeps only what was
synced). Faults are methods called between ``run_until`` calls, or scheduled at a
virtual time with :meth:`Simulation.at`.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from heapq import heappop, heappush
from typing import Any

from graphrep.errors import InvalidArgument, InvalidSchedule, SimulationError
from graphrep.sim.network import Link, Network, NetworkConfig
from graphrep.sim.process import (
    CancelTimer,
    DurableWrite,
    Log,
    Metric,
    Process,
    ProcessFactory,
    Send,
    SetTimer,
    Sync,
)
from graphrep.sim.rng import RandomStreams
from graphrep.sim.trace import Trace

__all__ = ["DOWN", "PAUSED", "UP", "SimConfig", "Simulation"]

# event kinds (small ints: compared with ``==`` in the hot loop)
_DELIVER, _TIMER, _START, _CALL = 0, 1, 2, 3
UP, PAUSED, DOWN = "up", "paused", "down"


@dataclass(frozen=True)
class SimConfig:
    """Everything besides the seed that decides a run (nodes are added explicitly)."""

    network: NetworkConfig = field(default_factory=NetworkConfig)
    trace: bool = True


class _Node:
    __slots__ = ("disk", "drift_ppm", "factory", "held", "incarnation", "links", "name",
                 "offset_ns", "process", "region", "skewed", "state", "timers", "unsynced")

    def __init__(self, name: str, factory: ProcessFactory, region: str) -> None:
        self.name = name
        self.factory = factory
        self.region = region
        self.process: Process | None = None
        self.state = DOWN
        self.disk: dict[Hashable, Any] = {}
        self.unsynced: dict[Hashable, Any] = {}
        self.timers: dict[Hashable, tuple[int, bool]] = {}  # name -> (token, periodic)
        self.held: list[tuple] = []
        self.incarnation = 0
        self.links: dict[str, Link] = {}
        self.skewed = False  # local clock = now + offset_ns + now * drift_ppm / 1e6
        self.offset_ns = 0
        self.drift_ppm = 0

    def local(self, t: int) -> int:
        """The node's clock reading at global virtual time ``t``."""
        return t + self.offset_ns + (t * self.drift_ppm) // 1_000_000

    def global_delay(self, delay: int) -> int:
        """A delay measured on the node's clock, in global nanoseconds (at least 1 if > 0)."""
        if not self.drift_ppm or not delay:
            return delay
        return max(1, (delay * 1_000_000) // (1_000_000 + self.drift_ppm))


class Simulation:
    """A deterministic run: ``Simulation(seed, config)``, ``add_node``, then ``run_until``."""

    def __init__(self, seed: int, config: SimConfig | None = None) -> None:
        self.seed = seed
        self.config = config if config is not None else SimConfig()
        self.streams = RandomStreams(seed)
        self.network = Network(self.config.network, self.streams)
        self.now = 0
        self.trace = Trace()
        self.metrics: list[tuple[int, str, str, float]] = []
        self.logs: list[tuple[int, str, str]] = []
        self.events_processed = 0
        self._nodes: dict[str, _Node] = {}
        self._heap: list[tuple] = []
        self._counter = itertools.count()
        self._in_flight = 0
        self._oneshot = 0
        self._starts = 0  # START events not yet run: a booting node is not quiet
        self._failure: SimulationError | None = None
        self._record = self.trace.append if self.config.trace else None

    # ------------------------------------------------------------------ nodes

    def add_node(self, name: str, factory: ProcessFactory, region: str = "local") -> None:
        """Add a node; its process is built from an empty disk and started at ``now``."""
        if not isinstance(name, str) or not name:
            raise InvalidArgument(f"node name must be a non-empty str, got {name!r}")
        if name in self._nodes:
            raise InvalidArgument(f"node {name!r} already exists")
        node = _Node(name, factory, region)
        self._nodes[name] = node
        self._boot(node, "start")

    @property
    def nodes(self) -> list[str]:
        """Node names in the order they were added."""
        return list(self._nodes)

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

    @property
    def in_flight(self) -> int:
        """Messages sent and not yet delivered or dropped (held ones included)."""
        return self._in_flight

    @property
    def pending_oneshot_timers(self) -> int:
        """One-shot timers set and not yet fired or cancelled."""
        return self._oneshot

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
        def quiet(sim: Simulation) -> bool:
            return sim._in_flight == 0 and sim._oneshot == 0 and sim._starts == 0

        if quiet(self):
            return True
        self._run(max_time, max_events, quiet)
        return quiet(self)

    def at(self, time_ns: int, action: Callable[[Simulation], None]) -> None:
        """Call ``action(self)`` at virtual time ``time_ns`` (a fault, a workload step)."""
        if not isinstance(time_ns, int) or time_ns < self.now:
            raise InvalidSchedule(f"cannot schedule at {time_ns!r}: not an int >= now",
                                  event="at", time_ns=self.now, seed=self.seed)
        heappush(self._heap, (time_ns, next(self._counter), _CALL, action))

    def _run(self, until: int | None, max_events: int | None,
             pred: Callable[[Simulation], bool] | None) -> bool:
        if self._failure is not None:
            raise self._failure
        heap = self._heap
        nodes = self._nodes
        record = self._record
        network = self.network
        blocked = network.blocked  # never reassigned (cleared in place), so bind once
        held = network.held
        counter = self._counter.__next__
        budget = -1 if max_events is None else max_events
        limit = until if until is not None else float("inf")
        processed = 0
        reached = False
        ran_out = False  # no event left before the time limit (not: the budget)
        while True:
            if processed == budget:
                break
            if not heap:
                reached = pred is None
                ran_out = True
                break
            ev = heap[0]
            t = ev[0]
            if t > limit:
                reached = pred is None
                ran_out = True
                break
            heappop(heap)
            self.now = t
            kind = ev[2]
            if kind == _DELIVER:
                src, dst, payload = ev[3], ev[4], ev[5]
                node = nodes[dst]
                if node.state is not UP:
                    if node.state is PAUSED:
                        node.held.append(ev)
                        continue
                    self._in_flight -= 1
                    if record:
                        record((t, "drop", src, dst, payload, "down"))
                    continue
                if blocked or held:
                    if (src, dst) in blocked:
                        self._in_flight -= 1
                        if record:
                            record((t, "drop", src, dst, payload, "partition"))
                        continue
                    stash = held.get((src, dst))
                    if stash is not None:
                        stash.append(ev)
                        continue
                self._in_flight -= 1
                if record:
                    record((t, "deliver", src, dst, payload, ev[6]))
                try:
                    effects = node.process.on_message(
                        node.local(t) if node.skewed else t, src, payload, ev[6])
                except Exception as exc:
                    raise self._fail(f"process raised {exc!r}", ev) from exc
            elif kind == _TIMER:
                node = nodes[ev[3]]
                name = ev[4]
                entry = node.timers.get(name)
                if entry is None or entry[0] != ev[5]:
                    continue  # cancelled, replaced, or lost in a crash
                if node.state is PAUSED:
                    node.held.append(ev)
                    continue
                period = ev[6]
                if period:
                    heappush(heap, (t + period, next(self._counter), _TIMER, node.name, name,
                                    ev[5], period))
                else:
                    del node.timers[name]
                    self._oneshot -= 1
                if record:
                    record((t, "timer", node.name, None, None, name))
                try:
                    effects = node.process.on_timer(node.local(t) if node.skewed else t, name)
                except Exception as exc:
                    raise self._fail(f"process raised {exc!r}", ev) from exc
            elif kind == _START:
                node = nodes[ev[3]]
                if node.state is PAUSED and node.incarnation == ev[4]:
                    node.held.append(ev)
                    continue
                self._starts -= 1
                if node.incarnation != ev[4] or node.state is DOWN:
                    continue
                try:
                    effects = node.process.on_start(node.local(t) if node.skewed else t)
                except Exception as exc:
                    raise self._fail(f"process raised {exc!r}", ev) from exc
            else:
                try:
                    ev[3](self)
                except SimulationError as exc:
                    self._failure = exc
                    exc.trace = self.trace
                    raise
                effects = None
                node = None
            processed += 1
            if effects:
                if effects.__class__ is not list and effects.__class__ is not tuple:
                    raise self._fail(
                        f"process returned {type(effects).__name__}, not a list", ev)
                # Send is inlined: it is the one effect nearly every event produces
                for e in effects:
                    if e.__class__ is not Send:
                        self._apply(node, e, ev)
                        continue
                    to = e.to
                    size = e.size
                    if to not in nodes or size.__class__ is not int or size < 0:
                        raise self._fail(f"malformed effect {e!r}: unknown node or bad size", ev)
                    link = node.links.get(to)
                    if link is None:
                        link = self._new_link(node, to)
                    delay = link.delay()  # drawn even if lost: loss must not shift delays
                    link.messages += 1
                    link.bytes += size
                    if link.bps:
                        delay += network.queue_delay(link, t, size)
                    if record:
                        record((t, "send", node.name, to, e.payload, size))
                    if network.faulty and self._faults(node, link, e, size):
                        continue
                    heappush(heap, (t + delay, counter(), _DELIVER, node.name, to,
                                    e.payload, size))
                    self._in_flight += 1
            if pred is not None and pred(self):
                reached = True
                break
        self.events_processed += processed
        if ran_out and until is not None:
            self.now = max(self.now, until)  # nothing happens until then: time still passes
        return reached

    # ------------------------------------------------------------------ effects

    def _new_link(self, node: _Node, to: str) -> Link:
        link = node.links[to] = self.network.link(node.name, node.region, to,
                                                  self._nodes[to].region)
        return link

    def _faults(self, node: _Node, link: Link, e: Send, size: int) -> bool:
        """Loss and duplication of one send; returns True if the message is lost."""
        net = self.network
        lost = link.coin() < net.loss
        duplicated = link.coin() < net.duplicate  # always drawn: keeps the coin stream aligned
        record = self._record
        if lost:
            if record:
                record((self.now, "drop", node.name, e.to, e.payload, "loss"))
            return True
        if duplicated:
            if record:
                record((self.now, "duplicate", node.name, e.to, e.payload, None))
            extra = self.network.queue_delay(link, self.now, size) if link.bps else 0
            heappush(self._heap, (self.now + extra + link.dup_delay(), next(self._counter),
                                  _DELIVER,
                                  node.name, e.to, e.payload, size))
            self._in_flight += 1
        return False

    def _apply(self, node: _Node, e: Any, ev: tuple) -> None:
        """Apply one effect other than Send (those are handled inline in the loop)."""
        now = self.now
        heap = self._heap
        cls = type(e)
        if cls is SetTimer:
            delay = e.delay_ns
            if type(delay) is not int or delay < 0 or (e.periodic and delay == 0):
                raise self._fail(f"malformed effect {e!r}: delay must be an int >= 0 "
                                 "(> 0 if periodic)", ev)
            if node.skewed:
                delay = node.global_delay(delay)
            old = node.timers.get(e.name)
            if old is not None and not old[1]:
                self._oneshot -= 1
            token = next(self._counter)
            node.timers[e.name] = (token, e.periodic)
            if not e.periodic:
                self._oneshot += 1
            heappush(heap, (now + delay, token, _TIMER, node.name, e.name, token,
                            delay if e.periodic else 0))
        elif cls is CancelTimer:
            old = node.timers.pop(e.name, None)
            if old is not None and not old[1]:
                self._oneshot -= 1
        elif cls is DurableWrite:
            node.unsynced[e.key] = e.value
        elif cls is Sync:
            node.disk.update(node.unsynced)
            node.unsynced.clear()
        elif cls is Metric:
            self.metrics.append((now, node.name, e.name, e.value))
        elif cls is Log:
            self.logs.append((now, node.name, e.text))
        else:
            raise self._fail(f"malformed effect {e!r}: not an effect type", ev)

    def _fail(self, detail: str, ev: tuple) -> SimulationError:
        """Build (and remember) the error that stops the run; the trace stays attached."""
        exc = SimulationError(detail, event=_describe(ev), time_ns=self.now, seed=self.seed)
        exc.trace = self.trace
        self._failure = exc
        return exc

    # ------------------------------------------------------------------ faults

    def _node(self, name: str, what: str) -> _Node:
        node = self._nodes.get(name)
        if node is None:
            raise InvalidSchedule(f"unknown node {name!r}", event=what, time_ns=self.now,
                                  seed=self.seed)
        return node

    def _boot(self, node: _Node, kind: str) -> None:
        node.incarnation += 1
        try:
            node.process = node.factory(node.name, dict(node.disk))
        except Exception as exc:
            raise self._fail(f"factory raised {exc!r}", (self.now, -1, _START, node.name,
                                                            node.incarnation)) from exc
        node.state = UP
        if self._record:
            self._record((self.now, kind, node.name, None, None, node.incarnation))
        heappush(self._heap, (self.now, next(self._counter), _START, node.name,
                              node.incarnation))
        self._starts += 1

    def crash(self, name: str) -> None:
        """Lose the node's volatile state, timers, held events and unsynced writes.

        Crashing a node that is already down is a no-op, so generated schedules need no
        preconditions.
        """
        node = self._node(name, "crash")
        if node.state is DOWN:
            return
        for ev in node.held:
            if ev[2] == _DELIVER:
                self._in_flight -= 1
                if self._record:
                    self._record((self.now, "drop", ev[3], ev[4], ev[5], "down"))
            elif ev[2] == _START:
                self._starts -= 1
        node.held.clear()
        self._oneshot -= sum(1 for _, periodic in node.timers.values() if not periodic)
        node.timers.clear()
        node.unsynced.clear()
        node.process = None
        node.state = DOWN
        node.incarnation += 1
        if self._record:
            self._record((self.now, "crash", name, None, None, None))

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
            node.state = PAUSED
            if self._record:
                self._record((self.now, "pause", name, None, None, None))

    def resume(self, name: str) -> None:
        """Run what a paused node missed, in the original order, starting now."""
        node = self._node(name, "resume")
        if node.state is not PAUSED:
            return
        node.state = UP
        if self._record:
            self._record((self.now, "resume", name, None, None, None))
        for ev in node.held:  # a held timer keeps its token: the timer table still names it
            heappush(self._heap, (self.now, next(self._counter), *ev[2:]))
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
        if self._record:
            self._record((self.now, "partition", None, None, None,
                          ["groups", [sorted(g) for g in names]]))

    def partition_one_way(self, sources: list[str], destinations: list[str]) -> None:
        """Drop messages from any of ``sources`` to any of ``destinations`` (not back)."""
        srcs = [self._node(n, "partition").name for n in sources]
        dsts = [self._node(n, "partition").name for n in destinations]
        for x in srcs:
            for y in dsts:
                if x != y:
                    self.network.blocked.add((x, y))
        if self._record:
            self._record((self.now, "partition", None, None, None,
                          ["one-way", sorted(srcs), sorted(dsts)]))

    def partition_regions(self, groups: list[list[str]]) -> None:
        """:meth:`partition` with groups of regions: each node goes with its region's group."""
        by_region = {r: i for i, g in enumerate(groups) for r in g}
        node_groups: list[list[str]] = [[] for _ in groups]
        for node in self._nodes.values():
            i = by_region.get(node.region)
            if i is not None:
                node_groups[i].append(node.name)
        self.partition(node_groups)

    def heal(self) -> None:
        """Remove every partition."""
        self.network.blocked.clear()
        if self._record:
            self._record((self.now, "heal", None, None, None, None))

    def hold(self, src: str, dst: str) -> None:
        """Hold the link ``src -> dst``: messages arriving on it wait until :meth:`release`."""
        self._node(src, "hold")
        self._node(dst, "hold")
        self.network.held.setdefault((src, dst), [])
        if self._record:
            self._record((self.now, "hold", src, dst, None, None))

    def release(self, src: str, dst: str) -> None:
        """Deliver what a held link kept, in arrival order, from now on (no-op if not held)."""
        self._node(src, "release")
        self._node(dst, "release")
        stash = self.network.held.pop((src, dst), None)
        if stash is None:
            return
        if self._record:
            self._record((self.now, "release", src, dst, None, len(stash)))
        for ev in stash:
            heappush(self._heap, (self.now, next(self._counter), *ev[2:]))

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

    def link_stats(self) -> list[dict[str, Any]]:
        """Messages and bytes sent per directed link (sorted), as columns for experiments."""
        rows = [{"src": link.src, "dst": link.dst, "messages": link.messages,
                 "bytes": link.bytes}
                for node in self._nodes.values() for link in node.links.values()]
        return sorted(rows, key=lambda r: (r["src"], r["dst"]))

    def set_network_faults(self, *, loss: float | None = None,
                           duplicate: float | None = None) -> None:
        """Change loss/duplication probabilities from now on."""
        self.network.set_faults(loss=loss, duplicate=duplicate)


def _describe(ev: tuple) -> str:
    """A short human description of a heap entry, for error messages."""
    kind = ev[2]
    if kind == _DELIVER:
        text = repr(ev[5])
        if len(text) > 80:
            text = text[:77] + "..."
        return f"deliver {ev[3]}->{ev[4]} payload={text}"
    if kind == _TIMER:
        return f"timer {ev[4]!r} on {ev[3]}"
    if kind == _START:
        return f"start {ev[3]} (incarnation {ev[4]})"
    return f"scheduled call {getattr(ev[3], '__qualname__', ev[3])!r}"


