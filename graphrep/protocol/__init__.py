"""The replication protocol: the replicas of one shard as sans-IO state machines.

Modules:

* :mod:`.config`: :class:`ReplicaConfig` and the choices in it (:class:`Policy`,
  :class:`Concern`, :class:`SyncPolicy`).
* :mod:`.replica`: :class:`Replica`, the consensus core (Raft: terms, elections, the
  log, commit, compaction, snapshot transfer), with its collaborators :mod:`.log`,
  :mod:`.terms`, :mod:`.elections`, :mod:`.progress` (one :class:`Progress` per
  follower), :mod:`.snapshots`, :mod:`.recovery` and :mod:`.clients`.
* :mod:`.appliers`: what a policy does with the log (an :class:`Applier` per policy,
  registered by name); :mod:`.antientropy`: repairing damaged graphs.
* :mod:`.seams`: the collaborator classes a replica is built from (:class:`Seams`);
  :mod:`.hooks`: measuring a replica (:class:`ReplicaHooks`).
* :mod:`.messages` (the wire), :mod:`.entries` (log entries on disk), :mod:`.merkle`,
  :mod:`.host` (several shards' replicas on one node), :mod:`.placement`.

One delta, from ``insert`` on the leader to ``apply`` on a follower (``leader`` policy):

1. **core** (leader): ``Replica._on_write`` runs the insert on the leader's index
   (``Replica._execute`` -> ``Applier.execute`` -> ``VamanaIndex.insert``, which returns
   the ``EdgeDelta``), turns it into a log entry (``DeltaApplier.entry_for``:
   ``(term, DELTA, delta bytes)``), appends it (``Log.append``, synced) and calls
   ``Replica.send_append`` for each follower.
2. **progress**: ``send_append`` reads the follower's :class:`Progress` (``next``,
   ``match``, ``paused()``), takes the entries ``[next, stop)`` (``Log.slice``) and
   records them as sent (``Progress.sent(stop)``).
3. **wire**: the ``Append`` is encoded (``messages.encode``) into a ``Send`` effect;
   the driver delivers it; the follower's ``Replica.on_message`` decodes it
   (``messages.decode``) and dispatches it to ``Replica._on_append``.
4. **core** (follower): ``_on_append`` places the entries (``Log.anchor``), refuses
   what no correct leader sends (``Log.check_append``), follows the leader
   (``Replica.hear_leader``, ``Terms.admits``), stores the entries (``Log.accept``),
   moves ``commit`` up to what the leader committed and confirmed, and acknowledges
   (``AppendReply``; on the leader ``Progress.acknowledged`` and
   ``Replica.advance_commit`` -> ``Tracker.quorum_end``).
5. **applier**: with the entry committed, ``Replica.catch_up`` -> ``Replica._apply_to``
   -> ``Applier.apply_to(log, commit)``, which gathers the run of ``DELTA`` entries.
6. **index**: ``Applier.apply_deltas`` -> ``VamanaIndex.apply_bytes(blobs)``: one kernel
   call decodes and applies the run, without a distance computation; the follower's
   graph equals the leader's, and ``id_pos`` notes where each id was written.

The names below are importable from this package (loaded on first use, so importing
one light module such as :mod:`.messages` does not load the index).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from graphrep.protocol.appliers import (
        APPLIERS,
        Applier,
        DeltaApplier,
        ReplayApplier,
        SnapshotApplier,
        SnapshotSchedule,
        applier_class,
        register_applier,
    )
    from graphrep.protocol.config import (
        CANDIDATE,
        CONCERNS,
        FOLLOWER,
        LEADER,
        POLICIES,
        SYNC_POLICIES,
        Concern,
        Policy,
        ReplicaConfig,
        SyncPolicy,
    )
    from graphrep.protocol.hooks import ReplicaHooks
    from graphrep.protocol.log import Log
    from graphrep.protocol.progress import Inflights, Progress, Refusal, Tracker
    from graphrep.protocol.replica import Replica
    from graphrep.protocol.seams import Seams

_WHERE = {
    "config": ("CANDIDATE", "CONCERNS", "FOLLOWER", "LEADER", "POLICIES", "SYNC_POLICIES",
               "Concern", "Policy", "ReplicaConfig", "SyncPolicy"),
    "replica": ("Replica",),
    "appliers": ("APPLIERS", "Applier", "DeltaApplier", "ReplayApplier", "SnapshotApplier",
                 "SnapshotSchedule", "applier_class", "register_applier"),
    "hooks": ("ReplicaHooks",),
    "log": ("Log",),
    "progress": ("Inflights", "Progress", "Refusal", "Tracker"),
    "seams": ("Seams",),
}
_MODULE_OF = {name: module for module, names in _WHERE.items() for name in names}

__all__ = [
    "APPLIERS",
    "CANDIDATE",
    "CONCERNS",
    "FOLLOWER",
    "LEADER",
    "POLICIES",
    "SYNC_POLICIES",
    "Applier",
    "Concern",
    "DeltaApplier",
    "Inflights",
    "Log",
    "Policy",
    "Progress",
    "Refusal",
    "ReplayApplier",
    "Replica",
    "ReplicaConfig",
    "ReplicaHooks",
    "Seams",
    "SnapshotApplier",
    "SnapshotSchedule",
    "SyncPolicy",
    "Tracker",
    "applier_class",
    "register_applier",
]


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
