"""The state a simulation's event loop runs on, and the loop's slow paths: :class:`LoopHost`.

The event loop (:func:`graphrep.sim._loop.run`, compiled or not) and the engine
(:class:`~graphrep.sim.engine.Simulation`) share one object, a :class:`LoopHost`: the
state the loop runs on (the heap of :class:`~graphrep.sim._loop.Event` s, the clock,
the counters, the trace's append) and the slow paths the loop calls (a delivery it
cannot take inline, a timer, a start, a scheduled call, an effect other than a send, a
new route, a faulty send, an error). The simulation owns a host, and its fault and
inspection methods work on the host's state.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from heapq import heappush
from typing import TYPE_CHECKING, Any

from graphrep.errors import SimulationError
from graphrep.sansio import Busy, CancelTimer, DurableWrite, Log, Metric, SetTimer, Sync, Work
from graphrep.sim.network import Network
from graphrep.sim.variant import (
    DELIVER,
    DOWN,
    FOREVER,
    NOT_RUN,
    PAUSED,
    START,
    TIMER,
    UP,
    Event,
    Node,
    Route,
)

if TYPE_CHECKING:
    from graphrep.sim.engine import Simulation

__all__ = ["LoopHost", "describe"]

_queue_delay = Network.queue_delay


class LoopHost:
    """The state a simulation's event loop runs on, and the slow paths it calls.

    This is the whole interface between :func:`graphrep.sim._loop.run` and the engine
    (see the module docstring). The loop reads the state once per run, keeps ``now``,
    ``in_flight``, ``events`` and ``delivered`` in locals and writes them back before
    it calls any method here; the methods are the loop's slow paths. The
    :class:`~graphrep.sim.engine.Simulation` that owns the host (``sim``) is the public
    face: its fault and inspection methods work on this same state.

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
        self.next_sample = sim.config.sample_ns or FOREVER
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
        delivered, 2 dropped; the effects, or ``NOT_RUN``)."""
        node, src, payload, size = ev.target, ev.src, ev.payload, ev.size
        if node.deferred:
            node.deferred.discard(ev.seq)
        if node.state is not UP:
            if node.state is PAUSED:
                node.held.append(ev)
                return 0, NOT_RUN
            self.drop(t, src, node.name, payload, "down")
            return 2, NOT_RUN
        link = (src, node.name)
        if link in self.network.blocked:
            self.drop(t, src, node.name, payload, "partition")
            return 2, NOT_RUN
        stash = self.network.held.get(link)
        if stash is not None:
            stash.append(ev)
            return 0, NOT_RUN
        if node.busy_until and self._wait_until_free(node, ev, t):
            return 0, NOT_RUN
        if self.record:
            self.record((t, "deliver", src, node.name, payload, size))
        try:
            return 1, node.on_message(node.local(t) if node.skewed else t, src, payload, size)
        except Exception as exc:
            raise self.fail(f"process raised {exc!r}", ev) from exc

    def fire_timer(self, ev: Event, t: int) -> Any:
        """A TIMER event: the process's ``on_timer`` effects, or ``NOT_RUN`` if the timer
        is gone or must wait (a paused or busy node)."""
        node, name, token, period = ev.target, ev.timer_name, ev.token, ev.period
        entry = node.timers.get(name)
        if entry is None or entry[0] != token:
            return NOT_RUN  # cancelled, replaced, or lost in a crash
        if node.state is PAUSED:
            node.held.append(ev)
            return NOT_RUN
        if node.busy_until and self._wait_until_free(node, ev, t):
            return NOT_RUN
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
        """A START event: the process's ``on_start`` effects, or ``NOT_RUN`` if the node
        crashed since (a stale incarnation) or is paused."""
        node = ev.target
        if node.state is PAUSED and node.incarnation == ev.incarnation:
            node.held.append(ev)
            return NOT_RUN
        self.starts -= 1
        if node.incarnation != ev.incarnation or node.state is DOWN:
            return NOT_RUN
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
        self.push(Event(now + delay + extra, next(self.counter), DELIVER, route.target,
                        node.name, payload, size))
        if not duplicated:
            return 1
        if record:
            record((now, "duplicate", node.name, link.dst, payload, None))
        wait = _queue_delay(link, now, size) if link.bps else 0
        self.push(Event(now + wait + link.dup_delay(), next(self.counter), DELIVER,
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
        exc = SimulationError(detail, event=describe(ev), time_ns=self.now, seed=self.seed)
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
            if ev.kind == DELIVER:
                node.deferred.add(key)
            return True
        node.busy_until = 0
        node.set_state(node.state)
        return False


def describe(ev: Event) -> str:
    """A short human description of an event, for error messages."""
    kind = ev.kind
    if kind == DELIVER:
        text = repr(ev.payload)
        if len(text) > 80:
            text = text[:77] + "..."
        return f"deliver {ev.src}->{ev.target.name} payload={text}"
    if kind == TIMER:
        return f"timer {ev.timer_name!r} on {ev.target.name}"
    if kind == START:
        return f"start {ev.target.name} (incarnation {ev.incarnation})"
    return f"scheduled call {getattr(ev.target, '__qualname__', ev.target)!r}"
