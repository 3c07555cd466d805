"""A simulated replicated index: replicas, a client workload, a nemesis and the checker.

``run_cluster(ClusterConfig(...))`` builds a :class:`~graphrep.sim.engine.Simulation`
with one :class:`~graphrep.protocol.replica.Replica` per node and one client process,
runs the workload under the named nemesis, undoes every fault, runs until the cluster
has converged (or a bound), and returns the JSON-able summary the ``graphrep sim`` CLI
prints. The checker asserts nothing: it measures (convergence, lost acknowledged
writes, lag, recall, top-k agreement) and the tests assert on the summary.

Phases, in virtual time: the client issues writes at a fixed rate, with at most
``max_outstanding`` unacknowledged; faults happen during the write phase only; then
every fault is undone (heal, restart, loss off) and the run continues until every
replica has applied the leader's whole log and the client holds no unacknowledged
write, or ``settle_ns`` passes.

Searches (``searches`` > 0): the client also sends ``searches`` k-NN searches (k=10, the
run's query vectors in turn), evenly spread over the write phase (the virtual time
before the faults are undone, ``write_phase_ns``): one every ``write_phase_ns //
(searches + 1)``. Where a search goes is the ``read_preference``: ``leader`` (the
replica the client believes leads), ``nearest`` (the replica with the lowest expected
one-way latency from the client's region, ties broken in ring order from the client's
*home* replica ``r{seed % nodes}``; with every node in one region, as by default, that
is always the home replica) or ``any`` (a replica drawn from the ``reads`` random
stream, which no other component draws from). Each search carries a session token for
read-your-writes: a write acknowledged at log position ``p`` means entries ``[0, p]``
exist, so the token is ``p + 1`` for the highest acknowledged ``p`` and the replica must
have applied that many entries. A ``stale`` reply is retried once at the leader (the
replier's hint, else the client's belief); a search is never retried on silence, so one
sent to a crashed or cut-off replica stays ``unanswered``. The checker counts an ``ok``
reply whose applied position is below the token it carried as a read-your-writes
violation (zero for a correct replica).

Shards (``shards`` > 1, or ``replication`` below ``nodes``): id ``i`` lives in shard
``i % shards``; :func:`~graphrep.protocol.placement.place` puts ``replication`` replicas
of each shard on the nodes, and every node runs a
:class:`~graphrep.protocol.host.ShardHost` holding one replica (and one index) per shard
placed on it. The client sends each write to the replica it believes leads the write's
shard and follows that shard's redirects. The checker looks at each shard on its own:
``digests`` and ``recall_at_10`` are keyed ``node@shard``, ``converged`` means each
shard's replicas agree, a lost write is looked for on its own shard's replicas, and
``recall_at_10_merged`` is the recall of a scatter-gather search (each shard's first
replica searched, results merged by distance) against the whole data set. Client
searches (``searches``) need an unsharded run: the client has no scatter-gather path.

Data (``dataset``): ``gmm`` (a Gaussian mixture, the default), ``uniform`` (the unit
cube) or ``fmnist`` (Fashion-MNIST, 784 dimensions: ``dim`` must be 784; the first
``initial + writes`` training images and the first ``queries`` test images).

Replicas (``replica``): every replica of a run gets the same
:class:`~graphrep.protocol.replica.ReplicaConfig` settings, given once as a mapping
such as ``{"policy": "replay", "sync": "tick"}`` (see :mod:`graphrep.cluster.config`).

Modules, one job each: :mod:`~graphrep.cluster.config` (:class:`ClusterConfig`, and
:class:`Layout`: which node holds which shard), :mod:`~graphrep.cluster.client` (the
client workload process), :mod:`~graphrep.cluster.checker` (lost writes, search
quality, lag), :mod:`~graphrep.cluster.runner` (:func:`run_cluster`, the timed
replicas and the settle loop) and :mod:`~graphrep.cluster.summary` (the summary dict
and its human-readable lines). This package is the scenario that puts the simulator
(:mod:`graphrep.sim`), the protocol (:mod:`graphrep.protocol`) and the index together;
the simulator itself knows neither.
"""

from graphrep.cluster.config import (
    DATASETS,
    NEMESES,
    READ_PREFERENCES,
    REPLICA_DEFAULTS,
    SEARCH_K,
    ClusterConfig,
    Layout,
)
from graphrep.cluster.runner import run_cluster
from graphrep.cluster.summary import render

__all__ = ["DATASETS", "NEMESES", "READ_PREFERENCES", "REPLICA_DEFAULTS", "SEARCH_K",
           "ClusterConfig", "Layout", "render", "run_cluster"]
