"""The event loop: integer virtual time, one heap, faults applied between events.

Why its own loop rather than SimPy or trio: the loop is the simulator's cost per
message, and a plain ``heapq`` of named tuples ordered by ``(time, counter)`` is about
the cheapest thing Python offers (``experiments/sim_bench.py`` measures it against
SimPy and a bare heap). The insertion counter breaks ties, so two events at the same
nanosecond run in the order they were scheduled and events never compare past it.
Cancelled timers are not removed from the heap: the node's timer table holds each live
timer's token, and a popped timer whose token is not there any more is skipped.

A node is UP, PAUSED (events addressed to it are held, in order, until ``resume``) or
DOWN (messages to it are dropped; its timers are gone; its disk keeps only what was
synced). Faults are methods called between ``run_until`` calls, or scheduled at a
virtual time with :meth:`Simulation.at`.

Two parts: the loop itself (:mod:`graphrep.sim._loop`, optionally compiled) and this
module. They share one object, a :class:`LoopHost`: the state the loop runs on (the
heap, the clock, the counters, the trace's append) and the slow paths it calls (a
delivery it cannot take inline, a timer, a start, a scheduled call, an effect other
than a send, a new route, a faulty send, an error). :class:`Simulation` is the public
face of a run: it owns a host, and its fault and inspection methods work on the host's
state. The events on the heap are :class:`~graphrep.sim._loop.Event` named tuples,
read by field name.
"""

from __future__ import annotations

import hashlib
import importlib
import itertools
import os
import warnings
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from heapq import heapify, heappush
from importlib.machinery import EXTENSION_SUFFIXES
from operator import attrgetter
from pathlib import Path
from types import ModuleType
from typing import Any, NamedTuple

from graphrep.errors import InvalidArgument, InvalidSchedule, SimulationError
from graphrep.sansio import (
    Busy,
    CancelTimer,
    DurableWrite,
    Log,
    Metric,
    Process,
    ProcessFactory,
    SetTimer,
    Sync,
    Work,
)
from graphrep.sim import _loop as _pure
from graphrep.sim.network import Network, NetworkConfig
from graphrep.sim.rng import RandomStreams
from graphrep.sim.trace import Trace

__all__ = ["DOWN", "LOOP_VARIANT", "PAUSED", "UP", "InFlight", "SimConfig", "Simulation"]

PURE_ENV = "GRAPHREP_SIM_PURE"
"""Set to 1 to run the plain-Python loop even where the compiled one was built."""


def source_digest() -> str:
    """The sha256 of ``_loop.py``: a compiled loop is used only if built from this source."""
    return hashlib.sha256(Path(_pure.__file__).read_bytes()).hexdigest()


def _implementation() -> ModuleType:
    """The loop module to run: the mypyc-compiled ``_loop_compiled`` if it was built
    (``make fast-sim``) from the current ``_loop.py`` and not switched off with
    ``GRAPHREP_SIM_PURE=1``, else the plain-Python ``_loop``. A stale build (the source
    changed since) is ignored with a warning rather than run: the two must behave
    identically, and only the same source guarantees it."""
    if os.environ.get(PURE_ENV, "") not in ("", "0"):
        return _pure
    try:
        compiled = importlib.import_module("graphrep.sim._loop_compiled")
    except ImportError:
        return _pure
    try:
        current = source_digest()
    except OSError:
        return _pure
    if not str(getattr(compiled, "__file__", "")).endswith(tuple(EXTENSION_SUFFIXES)):
        return _pure  # a leftover source copy from an interrupted build, not compiled code
    if getattr(compiled, "SOURCE_DIGEST", None) != current:
        warnings.warn("graphrep.sim: the compiled event loop was built from another version "
                      "of _loop.py; running the plain-Python loop (rebuild: make fast-sim)",
                      RuntimeWarning, stacklevel=2)
        return _pure
    return compiled


_impl = _implementation()
LOOP_VARIANT = "python" if _impl is _pure else "mypyc"
"""Which event loop this process runs: ``"mypyc"`` (compiled) or ``"python"``."""

# Everything the loop compares by identity or builds comes from the one module it runs.
Node = _impl.Node
Route = _impl.Route
Event = _impl.Event
_NOT_RUN = _impl.NOT_RUN
_DELIVER, _TIMER, _START, _CALL = _impl.DELIVER, _impl.TIMER, _impl.START, _impl.CALL
UP, PAUSED, DOWN = _impl.UP, _impl.PAUSED, _impl.DOWN
_FOREVER = _impl.FOREVER
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

    def __post_init__(self) -> None:
        for name in ("sample_ns", "cpu_ns_per_distance", "cpu_ns_per_entry"):
            value = getattr(self, name)
            if type(value) is not int or value < 0:
                raise InvalidArgument(f"{name} must be an int >= 0, got {value!r}")


class LoopHost:
    """The state a simulation's event loop runs on, and the slow paths it calls.

    This is the whole interface between :func:`graphrep.sim._loop.run` and the engine
    (see the module docstring). The loop reads the state once per run, keeps ``now``,
    ``in_flight``, ``events`` and ``delivered`` in locals and writes them back before
    it calls any method here; the methods are the loop's slow paths. The
    :class:`Simulation` that owns the host (``sim``) is the public face: its fault and
    inspection methods work on this same state.

    State: ``heap`` (the :class:`~graphrep.sim._loop.Event` s), ``counter`` (the events'
    sequence numbers), ``now``, ``in_flight`` (messages sent and not yet
    delivered or dropped), ``oneshot`` (one-shot timers pending), ``starts`` (START
    events not yet run), ``events``/``delivered``/``dropped`` (running totals),
    ``next_sample`` (the next sampling instant), ``record`` (the trace's append, or None
    when tracing is off), ``failure`` (the error that stopped the run, raised again by
    any later run), and the simulation's ``nodes``, ``network``, ``config``,
    ``metrics`` and ``logs``.
    """

    __slots__ = ("config", "counter", "delivered", "dropped", "events", "failure", "heap",
                 "in_flight", "logs", "metrics", "network", "next_sample", "nodes", "now",
                 "oneshot", "record", "samples", "seed", "sim", "starts", "trace")

    def __init__(self, sim: Simulation) -> None:
        self.sim = sim
        self.seed = sim.seed
        self.config = sim.config
        self.network = sim.network
        self.trace = sim.trace
        self.record: Callable[[tuple], None] | None = (
            sim.trace.append if sim.config.trace else None)
        self.nodes: dict[str, Node] = {}
        self.heap: list[Event] = []
        self.counter = itertools.count()
        self.now = 0
        self.in_flight = 0
        self.oneshot = 0
        self.starts = 0  # START events not yet run: a booting node is not quiet
        self.events = 0
        self.delivered = 0
        self.dropped = 0
        self.failure: SimulationError | None = None
        self.next_sample = sim.config.sample_ns or _FOREVER
        self.samples: dict[str, list[int]] = {
            "time_ns": [], "in_flight": [], "events": [], "delivered": [], "dropped": []}
        self.metrics: list[tuple[int, str, str, float]] = []
        self.logs: list[tuple[int, str, str]] = []

    # ------------------------------------------------------------------ the loop's slow paths

    def take_samples(self, t: int, processed: int, delivered: int) -> None:
        """Record the state at every sampling instant up to (and including) ``t``; the
        counters of the running loop (not yet written back) are passed in."""
        cols = self.samples
        step = self.config.sample_ns
        at = self.next_sample
        while at <= t:
            cols["time_ns"].append(at)
            cols["in_flight"].append(self.in_flight)
            cols["events"].append(self.events + processed)
            cols["delivered"].append(self.delivered + delivered)
            cols["dropped"].append(self.dropped)
            at += step
        self.next_sample = at

    def deliver_slow(self, ev: Event, t: int) -> tuple[int, Any]:
        """A delivery to a node that is not UP or has a skewed clock, or while some link
        is cut or held. Returns (how the message left the network: 0 still in it, 1
        delivered, 2 dropped; the effects, or ``_NOT_RUN``)."""
        node, src, payload, size = ev.target, ev.src, ev.payload, ev.size
        if node.deferred:
            node.deferred.discard(ev.seq)
        if node.state is not UP:
            if node.state is PAUSED:
                node.held.append(ev)
                return 0, _NOT_RUN
            self.drop(t, src, node.name, payload, "down")
            return 2, _NOT_RUN
        link = (src, node.name)
        if link in self.network.blocked:
            self.drop(t, src, node.name, payload, "partition")
            return 2, _NOT_RUN
        stash = self.network.held.get(link)
        if stash is not None:
            stash.append(ev)
            return 0, _NOT_RUN
        if node.busy_until and self._wait_until_free(node, ev, t):
            return 0, _NOT_RUN
        if self.record:
            self.record((t, "deliver", src, node.name, payload, size))
        try:
            return 1, node.on_message(node.local(t) if node.skewed else t, src, payload, size)
        except Exception as exc:
            raise self.fail(f"process raised {exc!r}", ev) from exc

    def fire_timer(self, ev: Event, t: int) -> Any:
        """A TIMER event: the process's ``on_timer`` effects, or ``_NOT_RUN`` if the timer
        is gone or must wait (a paused or busy node)."""
        node, name, token, period = ev.target, ev.timer_name, ev.token, ev.period
        entry = node.timers.get(name)
        if entry is None or entry[0] != token:
            return _NOT_RUN  # cancelled, replaced, or lost in a crash
        if node.state is PAUSED:
            node.held.append(ev)
            return _NOT_RUN
        if node.busy_until and self._wait_until_free(node, ev, t):
            return _NOT_RUN
        if period:
            self.push(Event.timer(t + period, next(self.counter), node, name, token, period))
        else:
            del node.timers[name]
            self.oneshot -= 1
        if self.record:
            self.record((t, "timer", node.name, None, None, name))
        try:
            return node.process.on_timer(node.local(t) if node.skewed else t, name)
        except Exception as exc:
            raise self.fail(f"process raised {exc!r}", ev) from exc

    def start(self, ev: Event, t: int) -> Any:
        """A START event: the process's ``on_start`` effects, or ``_NOT_RUN`` if the node
        crashed since (a stale incarnation) or is paused."""
        node = ev.target
        if node.state is PAUSED and node.incarnation == ev.incarnation:
            node.held.append(ev)
            return _NOT_RUN
        self.starts -= 1
        if node.incarnation != ev.incarnation or node.state is DOWN:
            return _NOT_RUN
        try:
            return node.process.on_start(node.local(t) if node.skewed else t)
        except Exception as exc:
            raise self.fail(f"process raised {exc!r}", ev) from exc

    def call(self, action: Callable[[Simulation], None]) -> None:
        """A CALL event: ``action(sim)``. A ``SimulationError`` it raises stops the run
        (and every later one), with the trace attached."""
        try:
            action(self.sim)
        except SimulationError as exc:
            self.failure = exc
            exc.trace = self.trace
            raise

    def route(self, node: Node, e: Any, ev: Event) -> Route:
        """Check a Send the hot loop could not take as is; the route, created on first use."""
        to, _, size = e
        if not isinstance(to, str) or to not in self.nodes:
            raise self.fail(f"malformed effect {e!r}: unknown node {to!r}", ev)
        if size.__class__ is not int or size < 0:
            raise self.fail(f"malformed effect {e!r}: size must be an int >= 0", ev)
        route = node.links.get(to)
        if route is None:
            dst = self.nodes[to]
            link = self.network.link(node.name, node.region, to, dst.region)
            route = node.links[to] = Route(link, dst)
        return route

    def faults(self, node: Node, route: Route, payload: Any, size: int, delay: int) -> int:
        """Loss, duplication and reordering of one send (the delay already drawn); puts
        the message (and its duplicate) on the heap; returns how many went in flight."""
        net = self.network
        link = route.link
        now = self.now
        extra = 0
        if net.reorder and link.reorder_coin() < net.reorder:
            extra = link.reorder_delay()  # drawn before loss: loss must not shift it
        lost = link.coin() < net.loss
        duplicated = link.coin() < net.duplicate  # always drawn: keeps the coin stream aligned
        record = self.record
        if lost:
            self.drop(now, node.name, link.dst, payload, "loss")
            return 0
        if extra and record:
            record((now, "reorder", node.name, link.dst, payload, extra))
        self.push(Event(now + delay + extra, next(self.counter), _DELIVER, route.target,
                        node.name, payload, size))
        if not duplicated:
            return 1
        if record:
            record((now, "duplicate", node.name, link.dst, payload, None))
        wait = _queue_delay(link, now, size) if link.bps else 0
        self.push(Event(now + wait + link.dup_delay(), next(self.counter), _DELIVER,
                        route.target, node.name, payload, size))
        return 2

    def apply(self, node: Node, e: Any, ev: Event) -> None:
        """Apply one effect other than Send (those are handled inline in the loop)."""
        now = self.now
        cls = type(e)
        if cls is SetTimer:
            delay = e.delay_ns
            if type(delay) is not int or delay < 0 or (e.periodic and delay == 0):
                raise self.fail(f"malformed effect {e!r}: delay must be an int >= 0 "
                                "(> 0 if periodic)", ev)
            try:
                hash(e.name)
            except TypeError:
                raise self.fail(f"malformed effect {e!r}: timer name must be hashable",
                                ev) from None
            if node.skewed:
                delay = node.global_delay(delay)
            old = node.timers.get(e.name)
            if old is not None and not old[1]:
                self.oneshot -= 1
            token = next(self.counter)
            node.timers[e.name] = (token, bool(e.periodic))
            if not e.periodic:
                self.oneshot += 1
            self.push(Event.timer(now + delay, token, node, e.name, token,
                                  delay if e.periodic else 0))
        elif cls is CancelTimer:
            old = node.timers.pop(e.name, None)
            if old is not None and not old[1]:
                self.oneshot -= 1
        elif cls is DurableWrite:
            node.unsynced[e.key] = e.value
        elif cls is Sync:
            node.disk.update(node.unsynced)
            node.unsynced.clear()
        elif cls is Metric:
            self.metrics.append((now, node.name, e.name, e.value))
        elif cls is Log:
            self.logs.append((now, node.name, e.text))
        elif cls is Busy or cls is Work:
            if cls is Work:
                if type(e.distances) is not int or type(e.entries) is not int \
                        or e.distances < 0 or e.entries < 0:
                    raise self.fail(f"malformed effect {e!r}: counts must be ints >= 0", ev)
                ns = (e.distances * self.config.cpu_ns_per_distance
                      + e.entries * self.config.cpu_ns_per_entry)
            else:
                ns = e.ns
                if type(ns) is not int or ns < 0:
                    raise self.fail(f"malformed effect {e!r}: ns must be an int >= 0", ev)
            if ns:
                node.busy_until = max(node.busy_until, now) + ns
                node.set_state(node.state)
        elif cls is tuple:
            raise self.fail(f"malformed effect {e!r}: a plain tuple stands for a Send only "
                            "as (to, payload, size), three items", ev)
        else:
            raise self.fail(f"malformed effect {e!r}: not an effect type", ev)

    def fail(self, detail: str, ev: Event) -> SimulationError:
        """Build (and remember) the error that stops the run; the trace stays attached."""
        exc = SimulationError(detail, event=_describe(ev), time_ns=self.now, seed=self.seed)
        exc.trace = self.trace
        self.failure = exc
        return exc

    # ------------------------------------------------------------------ for the engine

    def push(self, ev: Event) -> int:
        """Schedule ``ev`` (its ``seq`` drawn from ``counter``); returns that ``seq``."""
        heappush(self.heap, ev)
        return ev.seq

    def requeue(self, ev: Event, at: int) -> int:
        """Schedule ``ev`` again at ``at``, after every event already there; returns its
        new sequence number."""
        return self.push(ev._replace(at=at, seq=next(self.counter)))

    def drop(self, t: int, src: str, dst: str, payload: Any, why: str) -> None:
        """Count (and trace) a message lost at ``t``."""
        self.dropped += 1
        if self.record:
            self.record((t, "drop", src, dst, payload, why))

    def _wait_until_free(self, node: Node, ev: Event, t: int) -> bool:
        """A node that reported ``Busy`` until after ``t``: put the event back for when it
        is free and say so (a message waits in its queue, which a crash loses). Else end
        the busy spell and say the event can run."""
        if node.busy_until > t:
            key = self.requeue(ev, node.busy_until)
            if ev.kind == _DELIVER:
                node.deferred.add(key)
            return True
        node.busy_until = 0
        node.set_state(node.state)
        return False


class Simulation:
    """A deterministic run: ``Simulation(seed, config)``, ``add_node``, then ``run_until``."""

    def __init__(self, seed: int, config: SimConfig | None = None) -> None:
        self.seed = seed
        self.config = config if config is not None else SimConfig()
        self.streams = RandomStreams(seed)
        self.network = Network(self.config.network, self.streams)
        self.trace = Trace()
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
        return _impl.run(self._host, until, max_events, pred)

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
            if ev.kind == _DELIVER:
                host.in_flight -= 1
                host.drop(host.now, ev.src, name, ev.payload, "down")
            elif ev.kind == _START:
                host.starts -= 1
        node.held.clear()
        host.oneshot -= sum(1 for _, periodic in node.timers.values() if not periodic)
        node.timers.clear()
        node.unsynced.clear()
        node.busy_until = 0
        if node.deferred:  # received, not handled yet: lost with the process
            waiting, kept = [], []
            for ev in host.heap:
                (waiting if ev.kind == _DELIVER and ev.seq in node.deferred
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
                 for ev in self._host.heap if ev.kind == _DELIVER]
        found.sort(key=lambda m: (m.deliver_at, m.key))
        return found

    def _in_flight_message(self, key: int, what: str, take: bool) -> Event:
        """The DELIVER event of in-flight message ``key`` (taken off the heap if
        ``take``); an error naming ``what`` if there is none."""
        heap = self._host.heap
        for i, ev in enumerate(heap):
            if ev.kind == _DELIVER and ev.seq == key:
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
        host.push(Event(self.now + delay, next(host.counter), _DELIVER, route.target, src,
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


def _describe(ev: Event) -> str:
    """A short human description of an event, for error messages."""
    kind = ev.kind
    if kind == _DELIVER:
        text = repr(ev.payload)
        if len(text) > 80:
            text = text[:77] + "..."
        return f"deliver {ev.src}->{ev.target.name} payload={text}"
    if kind == _TIMER:
        return f"timer {ev.timer_name!r} on {ev.target.name}"
    if kind == _START:
        return f"start {ev.target.name} (incarnation {ev.incarnation})"
    return f"scheduled call {getattr(ev.target, '__qualname__', ev.target)!r}"
