"""The simulator's hot loop and the records it touches on every event.

Why a module of its own: this is the only code whose speed decides the simulator's,
and it is written so that it runs unchanged as plain Python *and* compiled by mypyc
(``make fast-sim``, see :mod:`graphrep.sim.build_fast`). The compiled copy is an
optional accelerator: :mod:`graphrep.sim.variant` chooses it when it was built from
this very source and falls back to this module otherwise, with identical results (the
pinned trace hashes in ``tests/sim/test_engine_equivalence.py`` hold both ways).

What that asks of the code: every value the loop touches per event is typed precisely
(``int`` counters and times become machine integers when compiled), and the records
read per event, :class:`Node` and :class:`Route`, are classes of this module, which
mypyc turns into C structs (an attribute read is a field load instead of a dictionary
or descriptor lookup).

The loop and the engine talk through one object, a
:class:`~graphrep.sim.host.LoopHost` (plain Python): :func:`run` reads its state once
per run (``heap``, ``counter``, ``record``, ``network``, ``now``, ``in_flight``,
``next_sample``, ``failure``), keeps the counters in locals, and calls its methods only
on slow paths (``deliver_slow``, ``fire_timer``, ``start``, ``call``, ``apply``,
``route``, ``faults``, ``fail``, ``take_samples``), after writing ``now`` and
``in_flight`` back; at its end it writes ``now``, ``in_flight``, ``events`` and
``delivered`` back. Nothing else of the engine is visible here.

An event is an :class:`Event`, a named tuple: it orders like a tuple, by its first
fields (time, then sequence number), and its fields are read by name. The hot loop
takes one apart with a single unpacking in field order and builds a delivery with
``tuple.__new__(Event, ...)``, which skips the class's Python-level ``__new__``
(``Event(...)`` there costs about as much again). What a named tuple costs over a
plain one is building, unpacking and freeing a tuple subclass: measured on the
fault-free workload of ``experiments/sim_bench.py``, 15 to 20% of the deliveries per
second, either loop; a few percent on runs with faults and slow paths.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator
from heapq import heappop, heappush
from typing import TYPE_CHECKING, Any, Final, NamedTuple

from graphrep.errors import SimulationError
from graphrep.sansio import Send
from graphrep.sim.network import Link, Network

if TYPE_CHECKING:
    from graphrep.sim.host import LoopHost

# ``Final`` lets mypyc inline these instead of reading the module's globals per event.
DELIVER: Final = 0
TIMER: Final = 1
START: Final = 2
CALL: Final = 3
NOT_RUN: Any = object()  # a slow path's "no callback ran" (None means "ran, no effects")
UP: Final = "up"
PAUSED: Final = "paused"
DOWN: Final = "down"
FOREVER: Final = 2**63 - 1
SMALL: Final = 2**62 - 1
"""The largest int mypyc keeps unboxed; comparing with a bigger one (FOREVER, or the
benchmark's ``run_until(2**62)``) goes through a slow generic path, so the loop compares
times with its limits clipped to SMALL first, and with the exact limit only if that
says stop (never for times below 2**62 ns, about 146 years)."""
queue_delay = Network.queue_delay


class Event(NamedTuple):
    """One heap entry: something that happens to a node at a virtual time.

    Events order as tuples do, by ``at`` and then ``seq``. ``seq`` is unique, so two
    events never compare past it: the other fields need no order. The first four
    fields are common to every kind; the last three carry what the kind needs. They
    are named for a delivery, the common kind, and the other kinds read them under
    their own names (properties of the same fields):

    ========  =================  ===========  ==========
    kind      ``src``            ``payload``  ``size``
    ========  =================  ===========  ==========
    DELIVER   the sender's name  the message  its bytes
    TIMER     ``timer_name``     ``token``    ``period``
    START     ``incarnation``    None         None
    CALL      None               None         None
    ========  =================  ===========  ==========

    A delivery is built with the class, the other kinds with :meth:`timer`,
    :meth:`start` and :meth:`call`, which name their fields.
    """

    at: int
    """Virtual time (ns) at which it happens."""
    seq: int
    """Insertion counter: events at the same time run in the order they were scheduled."""
    kind: int
    """DELIVER (a message arriving), TIMER (a timer firing), START (a node's
    ``on_start``) or CALL (an action scheduled with ``Simulation.at``)."""
    target: Any
    """The :class:`Node` it happens to; for CALL, the action (called with the simulation)."""
    src: Any = None
    """DELIVER: the sender's name (TIMER: the timer's name; START: the incarnation)."""
    payload: Any = None
    """DELIVER: the message (TIMER: the token)."""
    size: Any = None
    """DELIVER: the message's size in bytes (TIMER: the period)."""

    @property
    def timer_name(self) -> Hashable:
        """TIMER: the name the process set the timer under."""
        return self.src

    @property
    def token(self) -> int:
        """TIMER: the token its node holds while the timer is live. A timer whose token
        its node no longer holds (cancelled, replaced, lost in a crash) is skipped."""
        return self.payload

    @property
    def period(self) -> int:
        """TIMER: ns between firings, measured on global time (0: one-shot)."""
        return self.size

    @property
    def incarnation(self) -> int:
        """START: the node's incarnation when it booted; a crash since makes it stale."""
        return self.src

    @classmethod
    def timer(cls, at: int, seq: int, node: Node, name: Hashable, token: int,
              period: int) -> Event:
        """A TIMER event: timer ``name`` of ``node`` fires."""
        return cls(at, seq, TIMER, node, name, token, period)

    @classmethod
    def start(cls, at: int, seq: int, node: Node, incarnation: int) -> Event:
        """A START event: ``node``'s process runs ``on_start``."""
        return cls(at, seq, START, node, incarnation)

    @classmethod
    def call(cls, at: int, seq: int, action: Callable[[Any], None]) -> Event:
        """A CALL event: ``action(sim)`` runs."""
        return cls(at, seq, CALL, action)


class Node:
    """One node of the simulation: its process, state, clock, timers, disk and routes."""

    __slots__ = ("busy_until", "deferred", "disk", "drift_ppm", "factory", "fast", "held",
                 "incarnation", "links", "name", "offset_ns", "on_message", "process",
                 "region", "skewed", "state", "timers", "unsynced")

    def __init__(self, name: str, factory: Callable[..., Any], region: str) -> None:
        self.name = name
        self.factory = factory
        self.region = region
        self.process: Any = None
        self.on_message: Any = None  # the process's, bound once
        self.state = DOWN
        self.fast = False  # UP and not skewed: the hot loop's one test per delivery
        self.disk: dict[Hashable, Any] = {}
        self.unsynced: dict[Hashable, Any] = {}
        self.timers: dict[Hashable, tuple[int, bool]] = {}  # name -> (token, periodic)
        self.held: list[Event] = []
        self.incarnation = 0
        self.links: dict[str, Route] = {}  # destination name -> route, made on first send
        self.skewed = False  # local clock = now + offset_ns + now * drift_ppm / 1e6
        self.offset_ns = 0
        self.drift_ppm = 0
        self.busy_until = 0  # virtual time until which a Busy effect keeps it occupied
        self.deferred: set[int] = set()  # keys of messages it received while busy

    def set_state(self, state: str) -> None:
        self.state = state
        self.fast = state is UP and not self.skewed and not self.busy_until

    def local(self, t: int) -> int:
        """The node's clock reading at global virtual time ``t``."""
        return t + self.offset_ns + (t * self.drift_ppm) // 1_000_000

    def global_delay(self, delay: int) -> int:
        """A delay measured on the node's clock, in global nanoseconds (at least 1 if > 0)."""
        if not self.drift_ppm or not delay:
            return delay
        return max(1, (delay * 1_000_000) // (1_000_000 + self.drift_ppm))


class Route:
    """The sending side of a directed link, as the hot loop needs it.

    ``delays`` is the link's delay stream, ``target`` the destination's :class:`Node`,
    ``bps`` the link's bandwidth (0: none); ``messages`` and ``bytes`` count what was
    sent on it. The :class:`~graphrep.sim.network.Link` (random streams and queue) is
    reached only on slow paths: loss, duplication, reordering, bandwidth.
    """

    __slots__ = ("bps", "bytes", "delays", "link", "messages", "target")

    def __init__(self, link: Link, target: Node) -> None:
        self.link = link
        self.delays: Iterator[int] = link.delays
        self.target = target
        self.bps: int = link.bps
        self.messages = 0
        self.bytes = 0


def _caused(error: SimulationError, cause: Exception) -> SimulationError:
    """``error`` with ``cause`` as its ``__cause__``: what ``raise error from cause`` does,
    spelled out because mypyc-compiled code leaves the ``from`` out."""
    error.__cause__ = cause
    return error


def run(host: LoopHost, until: int | None, max_events: int | None,
        pred: Callable[[Any], bool] | None) -> bool:
    """The event loop (see ``Simulation.run_until``); returns whether the target was reached.

    Its common case, a delivery to an UP node with no partition or hold anywhere and
    fault-free sends, runs inline with every counter in a local; anything else calls a
    method of ``host`` (see the module docstring). The locals are written back to
    ``host`` before anything outside the loop can look at them: a slow path, a scheduled
    call, the predicate (called with ``host.sim``), an error, the return.
    """
    if host.failure is not None:
        raise host.failure
    heap: list[Event] = host.heap
    # Builtins and globals bound to locals: neither variant looks them up per event
    # (compiled, a call of the builtin ``next`` would otherwise fetch it from the
    # builtins module every time).
    pop = heappop
    push = heappush
    take = next
    new = tuple.__new__  # builds an Event without the class's Python-level ``__new__``
    send_type = Send
    sim = host.sim
    record: Callable[[tuple], None] | None = host.record
    network = host.network
    blocked: set[tuple[str, str]] = network.blocked  # never reassigned (cleared in place)
    held: dict[tuple[str, str], list[Any]] = network.held  # of events; only tested: empty?
    faulty: bool = network.faulty
    # ``next(it)`` beats calling ``it.__next__``; Any, not int: the sequence number goes
    # into the heap entry as the object it is (no unboxing and boxing again, compiled)
    counter: Iterator[Any] = host.counter
    budget = -1 if max_events is None else max_events
    limit: int = until if until is not None else FOREVER
    small_limit = min(limit, SMALL)
    next_sample: int = host.next_sample
    small_sample = min(next_sample, SMALL)
    processed = 0
    delivered = 0
    in_flight: int = host.in_flight
    t: int = host.now
    reached = False
    ran_out = False  # no event left before the time limit (not: the budget)
    # An event's fields, unpacked; Any, not int: compiled, the loop converts only the
    # fields it computes with (time, kind) and hands the time's object itself to the
    # process (converting it back would allocate a new int for every event).
    when: Any
    _: Any
    kind_: Any
    target: Any
    try:
        while processed != budget:
            try:
                ev = pop(heap)
            except IndexError:  # cheaper than testing ``heap`` before every pop
                reached = pred is None
                ran_out = True
                break
            when, _, kind_, target, src, payload, size = ev  # at, seq, kind, target, ...
            at: int = when  # an int for arithmetic and comparisons, ``when`` to pass on
            if at > small_limit and at > limit:
                push(heap, ev)  # the same event: it keeps its place in the order
                reached = pred is None
                ran_out = True
                break
            t = at
            kind: int = kind_
            if t >= small_sample and t >= next_sample:
                host.in_flight = in_flight
                host.take_samples(t, processed, delivered)
                next_sample = host.next_sample
                small_sample = min(next_sample, SMALL)
            effects: Any
            if kind == DELIVER:
                node: Node = target
                if node.fast and not blocked and not held:
                    in_flight -= 1
                    delivered += 1
                    if record is not None:
                        record((when, "deliver", src, node.name, payload, size))
                    try:
                        effects = node.on_message(when, src, payload, size)
                    except Exception as exc:
                        host.now = t
                        raise _caused(host.fail(f"process raised {exc!r}", ev), exc) from exc
                else:
                    host.now = t
                    left, effects = host.deliver_slow(ev, t)
                    if left:
                        in_flight -= 1
                        delivered += left == 1
                    if effects is NOT_RUN:
                        continue
            elif kind != CALL:  # TIMER or START
                node = target
                host.now = t
                effects = host.fire_timer(ev, t) if kind == TIMER else host.start(ev, t)
                if effects is NOT_RUN:
                    continue
            else:
                host.now = t
                host.in_flight = in_flight
                host.call(target)
                in_flight = host.in_flight
                faulty = network.faulty
                effects = None
            processed += 1
            if effects:
                if type(effects) is not list:
                    if type(effects) is not tuple:
                        host.now = t
                        raise host.fail(
                            f"process returned {type(effects).__name__}, not a list", ev)
                    effects = list(effects)
                todo: list[Any] = effects  # typed: compiled, a list is walked by index
                links = node.links
                for e in todo:
                    cls = type(e)
                    if (cls is not tuple or len(e) != 3) and cls is not send_type:
                        host.now = t
                        host.apply(node, e, ev)
                        continue
                    send: tuple[Any, Any, Any] = e
                    to, payload, size = send
                    route = links.get(to)
                    if route is None or type(size) is not int or size < 0:
                        host.now = t
                        route = host.route(node, e, ev)
                    nbytes: int = size
                    # drawn even if the message is lost: loss must not shift later delays
                    delay: int = take(route.delays)
                    route.messages += 1
                    route.bytes += nbytes
                    if route.bps:
                        delay += queue_delay(route.link, t, nbytes)
                    if record is not None:
                        record((t, "send", node.name, to, payload, size))
                    if faulty:
                        host.now = t
                        in_flight += host.faults(node, route, payload, nbytes, delay)
                        continue
                    # Event(at, seq, kind, target, src, payload, size)
                    push(heap, new(Event, (t + delay, take(counter), DELIVER, route.target,
                                           node.name, payload, size)))
                    in_flight += 1
            if pred is not None:
                host.now = t
                host.in_flight = in_flight
                if pred(sim):
                    reached = True
                    break
    finally:
        host.in_flight = in_flight
        host.events += processed
        host.delivered += delivered
        host.now = t
    if ran_out and until is not None and until > host.now:
        if host.next_sample <= until:
            host.take_samples(until, 0, 0)
        host.now = until  # nothing happens until then: time still passes
    return reached
