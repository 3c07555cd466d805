"""Measurement hooks: how a driver times a replica's work without subclassing it.

A replica takes one :class:`ReplicaHooks` object (``Replica(..., hooks=...)``) and
enters one of its context managers around each kind of work:

* ``callback()``: a whole callback (``on_start``, ``on_message``, ``on_decoded``,
  ``on_timer``);
* ``op()``: the leader's own insert or delete on its index (the work a bare index
  would do too);
* ``apply()``: replication work: applying log entries, re-indexing in bulk, checking
  an index against the log before a snapshot, installing a snapshot.

Hooks of one kind never nest (an ``apply`` is never entered inside another ``apply``),
so a timer can add up what it measures. ``op`` and ``apply`` are entered inside
``callback``, except during construction (recovery applies the durable log before the
first callback). The protocol itself reads no clock: the default hooks do nothing, and
what a hook measures never changes what the replica does.

Example: a driver that adds up CPU time per replica::

    class CpuHooks(ReplicaHooks):
        def __init__(self):
            self.seconds = {"callback": 0.0, "op": 0.0, "apply": 0.0}
        def callback(self): return _Timer(self.seconds, "callback")
        def op(self): return _Timer(self.seconds, "op")
        def apply(self): return _Timer(self.seconds, "apply")

where ``_Timer.__enter__``/``__exit__`` read ``time.process_time``.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

__all__ = ["NO_HOOKS", "ReplicaHooks"]

_NOTHING: AbstractContextManager[None] = nullcontext()


class ReplicaHooks:
    """The default hooks: every context manager does nothing. Subclass and override
    the kinds you measure (see the module docstring)."""

    def callback(self) -> AbstractContextManager[object]:
        """Entered around a whole callback."""
        return _NOTHING

    def op(self) -> AbstractContextManager[object]:
        """Entered around the leader's own insert or delete on its index."""
        return _NOTHING

    def apply(self) -> AbstractContextManager[object]:
        """Entered around replication work (applying, re-indexing, installing)."""
        return _NOTHING


NO_HOOKS = ReplicaHooks()
"""The shared do-nothing hooks."""
