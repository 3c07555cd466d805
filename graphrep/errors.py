"""Every error graphrep raises on purpose.

All of them derive from :class:`GraphrepError`, so a caller can catch the
family at once; each subclass names one kind of mistake, and its message says
what was wrong and what to do about it. An operation that raises one of these
has changed nothing: the index (or replica) is exactly as it was before the
call, and its digest is unchanged.
"""

from __future__ import annotations


class GraphrepError(Exception):
    """Base class of every error graphrep raises deliberately."""


class InvalidArgument(GraphrepError, ValueError):
    """A parameter is outside its allowed range (k < 1, R < 2, unknown metric...)."""


class DimensionMismatch(InvalidArgument):
    """A vector, a batch of vectors or a delta has another dimension than the index."""


class InvalidVector(InvalidArgument):
    """A vector is not a finite numeric array of the right shape (NaN, inf, ragged, strings)."""


class InvalidId(InvalidArgument):
    """An id is not an integer in the range the index can store."""


class DuplicateId(GraphrepError, KeyError):
    """An id is already in the index (ids are never reused: an update is delete + new id)."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


class UnknownId(GraphrepError, KeyError):
    """An id is not in the index, or is already deleted."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class EmptyIndex(GraphrepError):
    """The operation needs at least one live vector in the index."""


class IndexNotEmpty(GraphrepError):
    """``build`` was called on an index that already holds vectors."""


class DeltaError(GraphrepError):
    """A delta cannot be applied to this index."""


class DeltaOutOfOrder(DeltaError):
    """A delta's sequence number is not the next one this index expects."""


class CorruptDelta(DeltaError):
    """Serialized delta bytes are truncated, malformed or fail their checksum."""


class CorruptIndexFile(GraphrepError):
    """A saved index file is missing, truncated, malformed or of an unknown format version."""


class DatasetUnavailable(GraphrepError):
    """A real dataset is not installed on this machine; the message says how to install it."""


class SimulationError(GraphrepError):
    """The simulator stopped a run: a process raised, returned a malformed effect, or a
    fault named something that does not exist.

    A failing run is only useful if it can be replayed, so the message always names the
    event being processed, the virtual time and the master seed; ``trace`` (set by the
    engine) holds every record up to the failure.
    """

    def __init__(self, detail: str, *, event: str, time_ns: int, seed: int) -> None:
        super().__init__(f"{detail} (event: {event}; virtual time {time_ns} ns; seed {seed})")
        self.detail = detail
        self.event = event
        self.time_ns = time_ns
        self.seed = seed
        self.trace: object = None


class InvalidSchedule(SimulationError, ValueError):
    """A fault or schedule entry is invalid: unknown node, negative time, bad probability."""


class ProtocolError(GraphrepError):
    """A replication message could not be accepted; the replica counts it and keeps running."""


class MalformedMessage(ProtocolError, ValueError):
    """A message's bytes do not decode to a known message with well-typed fields."""


class UnsupportedVersion(ProtocolError):
    """A peer speaks a protocol version this replica does not: upgrade one side."""


class OversizedMessage(ProtocolError):
    """A message is larger than the configured frame limit: raise the limit or batch less."""


class DamagedEntry(ProtocolError):
    """A log entry's body is not what its kind promises (a delta whose checksum fails, an
    operation that does not decode): the entry is refused and the leader sends it again."""


class UnknownShard(ProtocolError):
    """A message for a shard this node does not host (a misrouted or hostile message)."""


class PlacementError(GraphrepError, ValueError):
    """A shard cannot be placed: too few nodes in its allowed regions, or a bad layout."""


class InvariantViolation(GraphrepError, AssertionError):
    """A replication invariant failed (graphrep.spec): ``invariant`` names which one."""

    def __init__(self, invariant: str, detail: str) -> None:
        super().__init__(f"{invariant}: {detail}")
        self.invariant = invariant
        self.detail = detail


class NetError(GraphrepError):
    """The live runtime (graphrep.net) could not do what was asked over the network."""


class FrameError(ProtocolError):
    """A connection sent bytes that are not a well-formed frame (a length over the limit, a
    frame cut short, a malformed hello): that connection is closed, nothing else changes."""


class HandshakeRefused(NetError):
    """A peer refused the hello (another wire version, another cluster, a bad role or
    secret), or sent one this node refuses; the message says which side and why."""


class AuthenticationFailed(HandshakeRefused):
    """A handshake's proof failed: this side or the peer does not hold the cluster key or
    the client token the other expects (another secret file, a token of another cluster,
    a replayed handshake)."""


class NodeBusy(HandshakeRefused):
    """A node at one of its limits (connections) refused the connection at once; retry
    after a pause. The client does, with backoff and jitter: it raises this only when it
    is out of time."""


class PermissionDenied(NetError):
    """The connection's role may not do this (a read token's write); use a write token."""


class RequestTimeout(NetError, TimeoutError):
    """A client call got no answer in time; the message names the call and the timeout."""


class NoLeader(NetError):
    """No replica of the shard accepted the write as its leader before the timeout."""


class StoreError(GraphrepError):
    """The durable store failed (a commit or fsync error is fatal to the node)."""


class StoreDamaged(StoreError):
    """The store on disk does not pass its integrity check; the message says what to do."""


class ConfigError(GraphrepError, ValueError):
    """A cluster file (TOML) or a command-line choice is wrong; the message names the key."""


class ClusterError(GraphrepError):
    """A local cluster command cannot do its job (no cluster in the directory, a port in
    use, a node already running or not running)."""


class WriteRefused(NetError):
    """A replica refused a client's request (its reason is in the message: an id already
    used, a vector the index refuses); nothing changed."""
