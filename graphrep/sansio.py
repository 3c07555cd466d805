"""The sans-IO process interface: what a protocol author implements.

A process is a state machine. The driver (today the simulator, graphrep.sim) calls
one of three methods with the current time in integer nanoseconds and gets back a list
of *effects*, plain values describing what the process wants done. The process never
reads a clock, opens a socket, sleeps or draws from a global random source: everything
it knows comes in as arguments, so the same inputs always give the same effects. That is
what lets the simulator replay a run bit for bit from (seed, config).

Lifecycle::

    proc = factory(name, disk)          # disk: what was *synced* before; {} the first time
    effects = proc.on_start(now)
    effects = proc.on_message(now, src, payload, size)
    effects = proc.on_timer(now, name)

Rules the driver relies on:

* Effects are applied in list order, at the same virtual time as the call.
* Payloads are values: do not mutate an object after sending it (the trace digests it
  lazily, and a duplicated message delivers the same object twice).
* ``DurableWrite`` goes to a write buffer; only ``Sync`` makes buffered writes survive a
  crash. A crash loses all volatile state and unsynced writes; a restart calls the
  factory again with the synced disk (a dict copy) and then ``on_start``.
* Setting a timer whose name is already set replaces it; cancelling an unknown timer is
  a no-op. Periodic timers fire every ``delay_ns`` until cancelled or the node crashes.
* Returning ``None`` means "no effects". Anything in the list that is not one of the
  effect classes below (exactly) stops the run with a ``SimulationError``.

A send may also be spelled as a plain tuple ``(to, payload, size)``, exactly three items:
the driver treats it as ``Send(to, payload, size)``. That spelling is for hot paths: a
plain tuple costs a fraction of a class call, and in a small simulated protocol building
the ``Send`` is a large part of the cost of a message.

Effects are ``NamedTuple`` classes: immutable, cheap to build (one is built for nearly
every message, so their construction is a large share of a simulated message's cost),
and readable (``Send(to="b", payload=x)``). The driver tells them apart by their class,
never by value: like any tuples, ``CancelTimer("t") == Log("t")`` is true, so compare
effects in tests together with their types.

This module imports nothing but the standard library: the simulator (``graphrep.sim``),
the protocol (``graphrep.protocol``) and any other driver depend on it, and it on none
of them. ``graphrep.sim.process`` re-exports it.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from typing import Any, NamedTuple, Protocol, TypeAlias

__all__ = [
    "BaseProcess",
    "Busy",
    "CancelTimer",
    "DurableWrite",
    "Effect",
    "Effects",
    "Log",
    "Metric",
    "Process",
    "ProcessFactory",
    "Send",
    "SetTimer",
    "Sync",
    "Work",
]

MS = 1_000_000
"""Nanoseconds in a millisecond: times in this interface are integer nanoseconds."""


class Send(NamedTuple):
    """Send ``payload`` to node ``to``; ``size`` (bytes) feeds bandwidth and byte counts."""

    to: str
    payload: Any
    size: int = 0


class SetTimer(NamedTuple):
    """Fire ``on_timer(now, name)`` after ``delay_ns``; again every ``delay_ns`` if periodic."""

    name: Hashable
    delay_ns: int
    periodic: bool = False


class CancelTimer(NamedTuple):
    """Cancel the timer ``name`` if it is set."""

    name: Hashable


class DurableWrite(NamedTuple):
    """Buffer ``disk[key] = value``; it survives a crash only after a later ``Sync``."""

    key: Hashable
    value: Any


class Sync(NamedTuple):
    """Make every buffered ``DurableWrite`` durable (an fsync)."""


class Metric(NamedTuple):
    """Record a numeric observation; collected by the driver, not part of the trace."""

    name: str
    value: float


class Busy(NamedTuple):
    """The callback used ``ns`` of CPU time: the node handles nothing else (messages and
    timers wait, in order) until ``ns`` after now. A deterministic model of CPU cost in
    virtual time, set by the process (from the work it did), never measured."""

    ns: int


class Work(NamedTuple):
    """Work the callback did, counted in the process's own units: ``distances`` (vector
    distance computations) and ``entries`` (log entries applied). The process reads no
    clock and knows no cost: a driver decides what work costs. The simulator turns it
    into modelled CPU time like ``Busy`` (``SimConfig.cpu_ns_per_distance`` and
    ``cpu_ns_per_entry``; free by default)."""

    distances: int = 0
    entries: int = 0


class Log(NamedTuple):
    """Record a line of text for debugging; collected by the driver, not part of the trace."""

    text: str


Effect: TypeAlias = (Send | SetTimer | CancelTimer | DurableWrite | Sync | Metric | Log | Busy
                     | Work)
Effects: TypeAlias = "list[Effect] | None"


class Process(Protocol):
    """What the driver calls. Implement all three (or subclass :class:`BaseProcess`)."""

    def on_start(self, now: int) -> Effects:
        """Called once after construction (first boot and every restart)."""
        ...

    def on_message(self, now: int, src: str, payload: Any, size: int) -> Effects:
        """Called when a message from ``src`` is delivered."""
        ...

    def on_timer(self, now: int, name: Hashable) -> Effects:
        """Called when the timer ``name`` fires."""
        ...


ProcessFactory: TypeAlias = Callable[[str, Mapping[Hashable, Any]], Process]
"""Builds a process from its node name and its synced disk (empty on first boot)."""


class BaseProcess:
    """Convenience base class: every callback returns no effects unless overridden."""

    def on_start(self, now: int) -> Effects:
        return None

    def on_message(self, now: int, src: str, payload: Any, size: int) -> Effects:
        return None

    def on_timer(self, now: int, name: Hashable) -> Effects:
        return None
