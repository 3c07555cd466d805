"""The seams of a replica: the collaborator classes it builds, bundled so that a variant
(a planted bug of :mod:`graphrep.spec.mutants`, an experiment) replaces one of them
instead of overriding the replica's private methods.

``Replica(name, disk, config, rng, seams=Seams(...))``. Each seam is a class with a
documented public method where its rule lives, so a refactoring of the replica that
keeps the seams keeps every variant armed:

=================  ===================================  ==================================
seam               class (module)                       where the rule lives
=================  ===================================  ==================================
``log``            :class:`~.log.Log`                   ``durable_end`` (durability),
                                                        ``anchor`` (gaps, conflicts),
                                                        ``accept`` (a follower's copy)
``terms``          :class:`~.terms.Terms`               ``admits`` (the term fence)
``progress``       :class:`~.progress.Progress`         ``rewind`` (retransmission) and
                                                        the other transitions
``tracker``        :class:`~.progress.Tracker`          ``quorum_end`` (the majority)
``appliers``       :class:`~.appliers.Applier` by       ``apply_deltas`` and the rest of
                   policy (overrides the registry)      the applier interface
``anti_entropy``   :class:`~.antientropy.AntiEntropy`   ``differing_leaves``
``snapshots``      :class:`~.snapshots.Snapshots`       ``installed_end``, ``maybe_take``
``clients``        :class:`~.clients.Clients`           ``can_answer`` (read-your-writes),
                                                        ``satisfied`` (concerns)
=================  ===================================  ==================================

Measurement is not a seam: it goes through :class:`~.hooks.ReplicaHooks`, which cannot
change what a replica does.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from graphrep.protocol.antientropy import AntiEntropy
from graphrep.protocol.appliers import Applier, applier_class
from graphrep.protocol.clients import Clients
from graphrep.protocol.log import Log
from graphrep.protocol.progress import Progress, Tracker
from graphrep.protocol.snapshots import Snapshots
from graphrep.protocol.terms import Terms

__all__ = ["DEFAULT_SEAMS", "Seams"]


@dataclass(frozen=True)
class Seams:
    """The classes a replica builds its collaborators from (the defaults: the protocol
    as specified). ``appliers`` maps a policy name to the applier class that replaces
    the registered one for that policy only."""

    log: type[Log] = Log
    terms: type[Terms] = Terms
    progress: type[Progress] = Progress
    tracker: type[Tracker] = Tracker
    appliers: Mapping[str, type[Applier]] = field(default_factory=dict)
    anti_entropy: type[AntiEntropy] = AntiEntropy
    snapshots: type[Snapshots] = Snapshots
    clients: type[Clients] = Clients

    def applier(self, policy: str) -> type[Applier]:
        """The applier class for ``policy``: the override, else the registered one."""
        return self.appliers.get(policy) or applier_class(policy)


DEFAULT_SEAMS = Seams()
